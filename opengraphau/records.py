"""The types that travel between sources, the pipeline and sinks: a decoded frame, a face, and
what a video is.

A photo is a frame too (index 0, time 0), so images, videos and webcams share one road.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from .aus import AU_COLUMNS

if TYPE_CHECKING:
    import torch

Box = tuple[float, float, float, float]
"""x, y, width, height in the frame's pixels (may reach past its edges)."""

UNCONFIRMED = -1
"""`face_id` of a video face not yet seen in enough frames to be a person (`tracking`): its row
is written, but it belongs to no track."""


class Encoded(NamedTuple):
    """A JPEG file's bytes, left for the pipeline to decode on its device (`sources.images`)."""

    data: bytes
    orientation: int
    """EXIF orientation (1 upright ... 8), applied once decoded."""


@dataclass(frozen=True, eq=False)
class Frame:
    """One decoded picture and where it came from.

    For video files `timestamp` is the decoder's (index / fps where it gives none); for cameras
    it is wall-clock time since the first frame; for photos it is 0. A decoding worker may hand
    over `prepared` (the model's crop of the whole frame) instead of the pixels, when
    nothing else needs them, or, for a GPU, the file's JPEG bytes (`encoded`) to decode there.
    """

    source: str
    """The input as given (path or webcam:N): what the outputs' `file` column shows."""
    index: int
    """0-based frame number in the video, counting skipped frames; 0 for photos."""
    timestamp: float
    image: np.ndarray | None
    """H x W x 3 uint8 RGB (None when only `prepared` was kept)."""
    size: tuple[int, int]
    """(width, height) of the decoded picture."""
    prepared: torch.Tensor | None = None
    """The model's uint8 (3, 224, 224) crop of the whole frame, made where it was decoded."""
    encoded: Encoded | None = None
    """The JPEG to decode on the model's device (then `image` and `prepared` are None)."""

    @classmethod
    def of(cls, source: str, image: np.ndarray, index: int = 0, timestamp: float = 0.0) -> Frame:
        return cls(source, index, timestamp, image, (int(image.shape[1]), int(image.shape[0])))


@dataclass(frozen=True)
class VideoInfo:
    """What a video or camera stream is, known once it is open (what run.json says of it)."""

    fps: float
    size: tuple[int, int]
    frame_count: int | None
    is_camera: bool


@dataclass(frozen=True, eq=False)
class FaceRecord:
    """One face in one frame, or the frame's only record when it has no face (`success` False).

    Everything the outputs hold about a face; one record is one row of predictions.csv.
    """

    source: str
    frame: int
    timestamp: float
    face_id: int
    """Left-to-right index in a photo; the track id in a video (`UNCONFIRMED` until confirmed)."""
    box: Box | None
    confidence: float | None
    """The detector's face probability (1 when the whole frame is the face)."""
    probs: np.ndarray | None
    """(41,) float32 probabilities in `aus.AU_IDS` order."""
    embedding: np.ndarray | None = None
    """The backbone's pooled, L2-normalised feature: what the face looks like, for tracking."""
    raw: np.ndarray | None = None
    """With temporal smoothing: the model's own (41,) probabilities, `probs` being the smoothed
    ones every decision and picture uses; None when this face was not smoothed."""

    @property
    def success(self) -> bool:
        return self.probs is not None

    @property
    def aus(self) -> dict[str, float]:
        """{'AU1': p, ..., 'AUR14': p} in the models' order ({} when there is no face)."""
        return {} if self.probs is None else dict(zip(AU_COLUMNS, map(float, self.probs)))

    @classmethod
    def no_face(cls, frame: Frame) -> FaceRecord:
        return cls(frame.source, frame.index, frame.timestamp, 0, None, None, None)


def name_bytes(source: str) -> bytes:
    """The bytes of a name as the file system holds them (`os.fsencode`, whatever the locale);
    text that is no file name of this locale (a library's message in other letters) as UTF-8."""
    try:
        return os.fsencode(source)
    except UnicodeEncodeError:
        return source.encode("utf-8", "surrogateescape")


def display_name(source: str) -> str:
    """`source` as every output file and message writes it: its bytes (`name_bytes`) read as
    UTF-8, bytes that are not UTF-8 as the text \\xNN, so the name can be written anywhere and
    matched again when a run resumes, under any locale (a Latin-1 one would otherwise turn a
    UTF-8 name's bytes into other letters)."""
    return name_bytes(source).decode("utf-8", "backslashreplace")
