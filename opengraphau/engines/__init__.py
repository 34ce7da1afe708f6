"""Engines decide where the pipeline runs; all hand back the same outcomes to the same sinks.

`local`: decoding workers and one model in this process. `ray`: Ray Data tasks and actors, from
one machine to a cluster.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from ..pipeline import PipelineTimes
from ..records import FaceRecord, Frame, VideoInfo
from ..sources.inputs import InputItem

__all__ = ["Engine", "Outcome", "VideoInfo", "VideoStream"]


@dataclass(frozen=True, eq=False)
class Outcome:
    """One image or video frame done: its records, its pixels when they were asked for, or why
    it failed (then `records` is empty)."""

    item: InputItem
    records: list[FaceRecord]
    frame: Frame | None = None
    error: str | None = None


class VideoStream(Protocol):
    """A video being processed: batches of frame outcomes in order, then `error` if it broke."""

    info: VideoInfo
    error: str | None

    def __iter__(self) -> Iterator[list[Outcome]]: ...
    def flush(self) -> list[Outcome]:
        """The frames held back for their faces' confirmation, for a stream stopped early."""

    def close(self) -> None: ...


class Engine(Protocol):
    """Runs the pipeline over inputs; `times` adds up detection and model seconds."""

    times: PipelineTimes

    def images(self, items: list[InputItem]) -> Iterator[list[Outcome]]: ...
    def prepare_videos(self, items: list[InputItem]) -> None:
        """The videos `video` will be asked for, in order: an engine may start some early."""

    def video(self, item: InputItem) -> VideoStream: ...
    def frames_that_fit(self) -> tuple[str, int] | None:
        """Since a batch ran out of a device's memory: which device, and how many frames fit
        there at once (the batches go in parts of that size); None while every batch fitted."""

    def close(self) -> None: ...
