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
        self.fps = fps
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
            raise OutputError(
                "cannot write video (the folder is not writable or this OpenCV "
                "build lacks the mp4v encoder); choose another output folder or "
                "install opencv-python with FFmpeg",
                value=self.path,
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
