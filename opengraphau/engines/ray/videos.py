"""Videos on Ray: each file in a streaming task that runs the local engine's video loop, its
batches sent back in order as they are done."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import ray
from ray import ObjectRefGenerator

from ...options import Options
from ...pipeline import Pipeline, PipelineTimes
from ...records import Frame, VideoInfo
from ...sources.inputs import InputItem
from ...spec import PipelineSpec
from .. import Outcome
from ..local import LocalEngine
from . import cluster
from .columns import FACES, Columns, face_matrix, matrix_records


@functools.lru_cache(maxsize=1)
def _video_pipeline(spec: PipelineSpec) -> Pipeline:
    """One per worker process: the next video task on the same worker finds it loaded."""
    cluster.use_assigned_cpus()
    return spec.build()


@ray.remote(num_returns="streaming")
def video_task(
    spec: PipelineSpec, options: Options, item: InputItem, pixels: bool
) -> Iterator[Any]:
    """One video through the local engine's video loop (frames in order, faces tracked, so rows
    and track ids are the local engine's): its VideoInfo, then ("rows", columns) per batch as
    it is done, then ("end", why it ended early, or None). Exceptions travel to the driver,
    which raises them where the local engine would have."""
    pipeline = _video_pipeline(spec)
    stream = LocalEngine(pipeline, options, keep_pixels=False).video(item)
    try:
        yield stream.info
        times = pipeline.times
        detect, model = times.detect, times.model
        for outcomes in stream:
            frames = [o.frame for o in outcomes if o.frame is not None]  # a video's always are
            columns: Columns = {
                "frame": np.array([f.index for f in frames], np.int64),
                "timestamp": np.array([f.timestamp for f in frames], np.float64),
                "size": [f.size for f in frames],
                "detect_s": times.detect - detect,
                "model_s": times.model - model,
            }
            columns["fit"], columns["fit_on"] = cluster.fit_on(pipeline)
            columns[FACES] = [face_matrix(o.records) for o in outcomes]
            if pixels:
                columns["image"] = [f.image for f in frames]
            yield "rows", columns
            detect, model = times.detect, times.model
        yield "end", stream.error
    finally:
        stream.close()


def _get(ref: ray.ObjectRef) -> Any:
    """`ray.get`, raising a task's own exception (a VideoError, say) instead of Ray's wrapper,
    so `video_job` meets it as it meets the local engine's."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, Exception):
            raise exc.cause from None
        raise


class RayVideo:
    """One video file in its own Ray task, its batches streamed back in order as they are done."""

    def __init__(
        self,
        item: InputItem,
        refs: ObjectRefGenerator,
        times: PipelineTimes,
        fitted: Callable[[int, str], None],
    ) -> None:
        """`times` adds up the task's seconds; `fitted` hears its out-of-memory reports."""
        self.item, self._refs, self.times, self.fitted = item, refs, times, fitted
        self.error: str | None = None
        self._done = False
        try:
            self.info: VideoInfo = _get(next(self._refs))
        except BaseException:
            self.close()
            raise

    def __iter__(self) -> Iterator[list[Outcome]]:
        for ref in self._refs:
            kind, value = _get(ref)
            if kind == "end":
                self.error, self._done = value, True
                return
            self.times.detect += value["detect_s"]
            self.times.model += value["model_s"]
            self.fitted(value["fit"], value["fit_on"])
            yield [self._outcome(value, k) for k in range(len(value["frame"]))]

    def _outcome(self, columns: Columns, k: int) -> Outcome:
        index, timestamp = int(columns["frame"][k]), float(columns["timestamp"][k])
        image = columns["image"][k] if "image" in columns else None
        frame = Frame(self.item.path, index, timestamp, image, tuple(columns["size"][k]))
        return Outcome(self.item, matrix_records(columns[FACES][k], self.item.path), frame)

    def flush(self) -> list[Outcome]:
        """Nothing: the frames the task held back stop with it. A video stopped early is not
        completed, and a resumed run does it again whole."""
        return []

    def close(self) -> None:
        """Stop the task when this process stops reading early."""
        if not self._done:
            self._done = True
            ray.cancel(self._refs)
