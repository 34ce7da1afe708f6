"""The annotated output video: frames in, an MP4 out, written beside its final name and renamed
into place when finished, so the real name only ever holds a playable file."""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from pathlib import Path

import cv2
import numpy as np

from ..errors import OutputError
from ..sources.video import opencv_path, quiet_opencv

MIN_FPS = 1.0
"""Frames per second at least: with --every large, one frame in a million of a 30 fps video
would ask for 3e-5, which OpenCV's writer refuses; such a video plays a frame a second."""


def _complete_mp4(path: Path) -> bool:
    """Whether the MP4 file's top-level boxes chain exactly to its end and include its index
    (`moov`): a file cut short by a full disk does not, and would not play."""
    kinds = set()
    with open(path, "rb") as file:
        end = os.fstat(file.fileno()).st_size
        at = 0
        while at < end:
            file.seek(at)
            head = file.read(16)
            if len(head) < 8:
                return False
            size, kind = int.from_bytes(head[:4], "big"), head[4:8]
            if size == 1 and len(head) == 16:
                size = int.from_bytes(head[8:16], "big")
            elif size == 0:
                size = end - at
            if size < 8:
                return False
            kinds.add(kind)
            at += size
    return at == end and b"moov" in kinds


class VideoWriter:
    """Annotated output video (mp4, mp4v codec) at `fps`; opened on the first frame (its size).

    Always close it (or use it as a context manager): the MP4 index is written on close, so an
    interrupted run still leaves a playable file as long as close() runs in a finally block.
    """

    def __init__(self, path: str | Path, fps: float) -> None:
        self.path = Path(path)
        if not (math.isfinite(fps) and fps > 0):
            raise OutputError(f"output frame rate must be positive (got {fps})", value=self.path)
        if not self.path.parent.is_dir():
            raise OutputError(
                f"folder {self.path.parent} does not exist; create it or choose "
                "another output path",
                value=self.path,
            )
        if self.path.is_dir():
            raise OutputError(
                "a folder stands where the video should be; move it away", value=self.path
            )
        self.fps = max(fps, MIN_FPS)
        self._temporary: Path | None = None
        self._writer: cv2.VideoWriter | None = None
        self._shape: tuple[int, ...] | None = None

    def write(self, image_rgb: np.ndarray) -> None:
        """Append one H x W x 3 uint8 RGB frame; every frame must have the first frame's size."""
        if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
            raise ValueError(
                f"expected an H x W x 3 uint8 RGB image, got {image_rgb.dtype} {image_rgb.shape}"
            )
        if self._writer is None:
            self._open(image_rgb.shape)
        elif image_rgb.shape != self._shape:
            first = self._shape or ()
            raise ValueError(
                f"{self.path}: frame size {image_rgb.shape[1]}x{image_rgb.shape[0]} "
                f"differs from the first frame's {first[1]}x{first[0]}"
            )
        height, width = image_rgb.shape[:2]
        # MPEG-4 needs even dimensions and OpenCV would crop the last row/column: pad instead so
        # no annotated pixel is lost.
        bgr = cv2.copyMakeBorder(image_rgb, 0, height % 2, 0, width % 2, cv2.BORDER_REPLICATE)
        cv2.cvtColor(bgr, cv2.COLOR_RGB2BGR, dst=bgr)
        self._writer.write(bgr)  # type: ignore[union-attr]

    def _open(self, shape: tuple[int, ...]) -> None:
        height, width = shape[:2]
        size = (width + width % 2, height + height % 2)
        # Created here, exclusively, so OpenCV writes into a file of ours and never through a
        # link planted under the name; ASCII whatever the video's name (see `opencv_path`).
        try:
            fd, name = tempfile.mkstemp(prefix=".video.", suffix=".tmp.mp4", dir=self.path.parent)
        except OSError as exc:
            raise OutputError(
                f"cannot write video ({exc.strerror or exc})", value=self.path
            ) from None
        try:  # mkstemp makes it 0600: readable by others as every other output is
            os.fchmod(fd, 0o644)
        finally:
            os.close(fd)
        temporary = Path(name)
        try:
            with quiet_opencv(), opencv_path(temporary, create=True) as opened:
                writer = cv2.VideoWriter(opened, cv2.VideoWriter.fourcc(*"mp4v"), self.fps, size)
        except (cv2.error, OSError, ValueError):
            writer = None
        if writer is None or not writer.isOpened():
            with contextlib.suppress(OSError):
                temporary.unlink()
            # Not an OutputError: the folder took the temporary file, so only this video's
            # drawing ends; its rows are written all the same.
            raise RuntimeError(
                f"OpenCV's mp4v encoder refused {size[0]} x {size[1]} at {self.fps:g} frames/s "
                "(an opencv-python with FFmpeg has it)"
            )
        self._temporary = temporary
        self._writer = writer
        self._shape = shape

    def close(self) -> None:
        """Finish the file so it is playable and give it its name; safe to call more than once."""
        if self._writer is None or self._temporary is None:
            return
        self._writer.release()
        self._writer = None
        temporary, self._temporary = self._temporary, None
        try:
            if not _complete_mp4(temporary):  # OpenCV says nothing when the disk fills up
                with contextlib.suppress(OSError):
                    temporary.unlink()
                raise OutputError(
                    "could not be finished (the MP4 lacks its index: is the disk full?); it was "
                    "removed, free some space, then continue with --skip-existing",
                    value=self.path,
                )
            os.replace(temporary, self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                temporary.unlink()
            raise OutputError(
                f"cannot finish the video ({exc.strerror or exc})", value=self.path
            ) from None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
