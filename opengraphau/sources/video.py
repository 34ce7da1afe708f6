"""Frames from video files and webcams, streamed.

Decoding runs in a background thread feeding a small bounded queue, so the decoder works while the
model runs on the previous frame and memory stays constant for any video length.
"""

from __future__ import annotations

import contextlib
import math
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from ..errors import ImageError, VideoError, describe
from ..records import Frame
from .images import open_input, special_file_reason

VIDEO_EXTENSIONS: tuple[str, ...] = (
    ".mp4",
    ".avi",
    ".mov",
    ".mkv",
    ".webm",
    ".m4v",
    ".mpg",
    ".mpeg",
    ".wmv",
    ".flv",
)

_WEBCAM_PREFIX = "webcam:"
#: Used when a camera or container reports no frame rate: the usual webcam rate. It only sets the
#: output video's rate and the index / fps timestamp fallback.
_DEFAULT_FPS = 30.0
#: Containers whose frame count is estimated from duration x fps (MKV, WebM, MPEG-PS) can be off by
#: a frame or two, or by about a percent for variable-rate video, so decoding is only reported as
#: cut short when it ends more than max(2 frames, 1 %) before the reported count.
_COUNT_TOLERANCE_FRAMES = 2
_COUNT_TOLERANCE_FRACTION = 0.01
#: Decoder timestamps are in milliseconds with float noise (5800.000000000001); start/end compare
#: with this slack in seconds so a frame exactly at a bound is kept.
_TIME_EPSILON = 1e-6
#: How often a blocked producer re-checks whether the consumer has gone away.
_PUT_POLL_SECONDS = 0.1


def frames_kept(
    frame_count: int | None,
    fps: float,
    *,
    every: int = 1,
    start: float | None = None,
    end: float | None = None,
    max_frames: int | None = None,
) -> int | None:
    """How many frames of a video of `frame_count` frames at `fps` a run keeps (every Nth
    between start and end, at most max_frames): what its progress counts towards. None when
    the count is unknown (a camera, a container that does not say)."""
    if frame_count is None:
        return max_frames
    first = 0 if start is None else max(0, math.ceil(start * fps - _TIME_EPSILON))
    last = frame_count - 1 if end is None else min(frame_count - 1, math.floor(end * fps))
    if last < first:
        return 0
    kept = last // every - (first - 1) // every
    return kept if max_frames is None else min(kept, max_frames)


def probe_frames(
    source: str, capture_factory: CaptureFactory | None = None
) -> tuple[int, float] | None:
    """A video file's (frame count, fps) as its container states them, without decoding a
    frame; None for a camera or a file that cannot tell (its progress then counts up)."""
    if parse_webcam(source) is not None or special_file_reason(source):
        return None
    try:
        with quiet_opencv():
            capture = (capture_factory or _open_capture)(source)
            try:
                count = capture.get(cv2.CAP_PROP_FRAME_COUNT)
                fps = capture.get(cv2.CAP_PROP_FPS)
            finally:
                capture.release()
    except Exception:  # noqa: BLE001 - only progress depends on it; the run reports the file
        return None
    if not (math.isfinite(count) and count > 0):
        return None
    return int(count), fps if math.isfinite(fps) and fps > 0 else _DEFAULT_FPS


class Capture(Protocol):
    """The part of cv2.VideoCapture used here, so tests can inject a fake camera.

    Cameras need only isOpened, read, get and release; files also use grab and retrieve, so the
    frames skipped by `every` and `start` are decoded but never converted.
    """

    def isOpened(self) -> bool: ...
    def read(self) -> tuple[bool, np.ndarray | None]: ...
    def grab(self) -> bool: ...
    def retrieve(self) -> tuple[bool, np.ndarray | None]: ...
    def get(self, prop: int) -> float: ...
    def release(self) -> None: ...


CaptureFactory = Callable[[str | int], Capture]
"""Opens a video file's path or a camera's index: cv2.VideoCapture, or a test's fake camera."""


def is_video_path(path: str | Path) -> bool:
    """Whether `path` names a video file, judged by its extension (case-insensitive)."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def parse_webcam(spec: str) -> int | None:
    """Camera index of a "webcam:N" source, or None when `spec` is not a webcam source."""
    if not spec.lower().startswith(_WEBCAM_PREFIX):
        return None
    number = spec[len(_WEBCAM_PREFIX) :]
    if not number.isdigit():
        raise VideoError(
            "invalid webcam source; use webcam:N with N a camera number such as webcam:0",
            value=spec,
        )
    return int(number)


def _open_capture(source: str | int) -> Capture:
    """cv2.VideoCapture, files through FFmpeg when this OpenCV has it: the readers OpenCV would
    try after FFmpeg print their complaints about a damaged file to stderr, whatever its log
    level, and read nothing FFmpeg cannot."""
    if isinstance(source, int):
        return cv2.VideoCapture(source)
    with opencv_path(source) as name:
        if cv2.videoio_registry.hasBackend(cv2.CAP_FFMPEG):
            return cv2.VideoCapture(name, cv2.CAP_FFMPEG)
        return cv2.VideoCapture(name)


@contextlib.contextmanager
def opencv_path(path: str | Path, *, create: bool = False) -> Iterator[str]:
    """`path` as OpenCV may be given it, to open the file there (with `create`, to write a new
    one, whose name must then be UTF-8) while the context lasts.

    OpenCV kills the process with a segmentation fault when a path is not UTF-8 (Python holds
    such bytes as lone surrogates). The file, or for `create` its folder (OpenCV's writers
    choose the format by the name's suffix), is opened here instead and handed over as
    /proc/self/fd/N, which OpenCV opens again for itself. A file to read is always opened so
    (`open_input`: what is read is the regular file that was checked, never a pipe swapped in
    after). ValueError where that cannot be.
    """
    text = os.fspath(path)
    proc = os.path.isdir("/proc/self/fd")
    if create:
        if _is_utf8(text):
            yield text
            return
        folder, name = os.path.split(text)
        if not proc or not _is_utf8(name):
            raise ValueError("its name is not UTF-8, which OpenCV cannot take here; rename it")
        fd = os.open(folder or ".", os.O_RDONLY | os.O_DIRECTORY)
        try:
            yield f"/proc/self/fd/{fd}/{name}"
        finally:
            os.close(fd)
        return
    if not proc and not _is_utf8(text):
        raise ValueError("its name is not UTF-8, which OpenCV cannot take here; rename it")
    # The file is opened here without blocking and checked, since it may have been swapped for
    # a named pipe since it was listed, on whose open or read OpenCV would block for ever.
    try:
        file = open_input(text)
    except ImageError as exc:
        raise VideoError(exc.reason, value=text) from None
    with file:
        yield f"/proc/self/fd/{file.fileno()}" if proc else text


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@contextlib.contextmanager
def quiet_opencv() -> Iterator[None]:
    """Silence OpenCV's own log while opening, so a failure shows only our VideoError message.

    FFmpeg, inside OpenCV, prints its own complaints about a damaged file ("moov atom not
    found") straight to stderr too; OpenCV reads its level from the environment once, the
    first time it uses FFmpeg, which is inside this (a user's own setting wins).
    """
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(level)


class VideoSource:
    """Iterates Frames of a video file or a camera.

    The source is opened and its first frame decoded in the constructor, so a missing, damaged or
    empty source fails before any model work starts. Iterate once; use as a context manager (or
    call close()) so the decoder thread and the capture are released when the consumer stops early.

    Frames before `start` are grabbed (decoded, not converted) instead of seeked to, so frame
    indices stay exact whatever the container's seeking precision; `every` keeps the frames whose
    index is a multiple of it, the same frames with or without `start`.
    """

    def __init__(
        self,
        source: str,
        *,
        every: int = 1,
        start: float | None = None,
        end: float | None = None,
        max_frames: int | None = None,
        prefetch: int = 8,
        capture_factory: CaptureFactory | None = None,
    ) -> None:
        if every < 1:
            raise VideoError(f"every must be 1 or more (got {every})", value=source)
        if start is not None and start < 0:
            raise VideoError(f"start must be 0 s or later (got {start})", value=source)
        if end is not None and end < (start or 0.0):
            raise VideoError(
                f"end ({end} s) must not be before start ({start or 0} s)", value=source
            )
        if max_frames is not None and max_frames < 1:
            raise VideoError(f"max_frames must be 1 or more (got {max_frames})", value=source)
        if prefetch < 1:
            raise VideoError(f"prefetch must be 1 or more (got {prefetch})", value=source)
        self.name = source
        self.error: str | None = None
        self._every = every
        self._start = start
        self._end = end
        self._max_frames = max_frames
        # Frames, then None at the end or the exception the consumer should raise.
        self._queue: queue.Queue[Frame | BaseException | None] = queue.Queue(maxsize=prefetch)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False

        factory = capture_factory or _open_capture
        camera = parse_webcam(source)
        self.is_camera = camera is not None
        reason = special_file_reason(source) if camera is None else None
        if reason:
            raise VideoError(reason, value=source)
        try:
            with quiet_opencv():
                self._capture = factory(source if camera is None else camera)
        except cv2.error as exc:
            raise VideoError(f"cannot open ({exc.err or exc})", value=source) from None
        except (OSError, ValueError) as exc:
            raise VideoError(f"cannot open ({describe(exc)})", value=source) from None
        try:
            self._open(camera)
        except BaseException:
            self._capture.release()
            raise

    def _open(self, camera: int | None) -> None:
        """Check the capture delivers frames and read the stream's properties."""
        if camera is None:
            cannot = (
                "cannot open as a video (not a video file, an unsupported codec, or a "
                "damaged/truncated file); check the file plays, or re-encode it, e.g. "
                "ffmpeg -i INPUT OUTPUT.mp4"
            )
        else:
            cannot = (
                f"cannot open camera {camera}; check that it is connected and not in use "
                "by another program"
            )
        try:
            with quiet_opencv():
                if not self._capture.isOpened():
                    raise VideoError(cannot, value=self.name)
                ok, image = self._capture.read()
        except cv2.error:
            raise VideoError(cannot, value=self.name) from None
        if not ok or image is None:
            if camera is None:
                raise VideoError(
                    "has no frames; check the file is a complete video", value=self.name
                )
            raise VideoError(
                f"camera {camera} opened but gives no frames; check that it is not "
                "in use by another program",
                value=self.name,
            )
        fps = self._capture.get(cv2.CAP_PROP_FPS)
        self.fps = fps if math.isfinite(fps) and fps > 0 else _DEFAULT_FPS
        self.size = (int(image.shape[1]), int(image.shape[0]))
        self.frame_count: int | None = None
        # A file's first frame is kept as frame 0; a camera's probe frame is stale by the time
        # iteration starts (models load in between), so the stream restarts from the next one.
        self._first: tuple[np.ndarray, float] | None = None
        if camera is None:
            count = self._capture.get(cv2.CAP_PROP_FRAME_COUNT)
            self.frame_count = int(count) if math.isfinite(count) and count > 0 else None
            self._first = (image, self._file_timestamp(0, -math.inf))

    def _file_timestamp(self, index: int, previous: float) -> float:
        """The decoder's timestamp of the frame just grabbed, or index / fps when it is unusable."""
        seconds = self._capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
        usable = math.isfinite(seconds) and seconds >= 0 and (index == 0 or seconds > previous)
        return seconds if usable else index / self.fps

    def __iter__(self) -> Iterator[Frame]:
        if self._thread is not None or self._closed:
            raise RuntimeError(f"{self.name}: a VideoSource can be iterated only once")
        self._thread = threading.Thread(
            target=self._produce, name=f"VideoSource:{self.name}", daemon=True
        )
        self._thread.start()
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.close()

    def _put(self, item: Frame | BaseException | None) -> bool:
        """Hand an item to the consumer; False when the consumer has stopped."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_PUT_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        """Decoder thread: grab every frame, convert and queue the kept ones."""
        try:
            self._put(self._decode())
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            self._put(exc)
        finally:
            self._capture.release()

    def _decode(self) -> VideoError | None:
        """Queue the selected frames; returns the error to raise when none could be kept."""
        start = -math.inf if self._start is None else self._start - _TIME_EPSILON
        end = math.inf if self._end is None else self._end + _TIME_EPSILON
        kept = 0
        index = 0
        timestamp = -math.inf
        clock_zero: float | None = None
        while not self._stop.is_set():
            image: np.ndarray | None = None
            if self._first is not None:
                image, timestamp = self._first
                self._first = None
            else:
                try:
                    if self.is_camera:
                        grabbed, image = self._capture.read()
                        grabbed = grabbed and image is not None
                    else:
                        grabbed = self._capture.grab()
                except cv2.error:
                    grabbed = False
                if not grabbed:
                    self._note_early_end(index)
                    break
                if self.is_camera:
                    now = time.monotonic()
                    clock_zero = now if clock_zero is None else clock_zero
                    timestamp = now - clock_zero
                else:
                    timestamp = self._file_timestamp(index, timestamp)
            if timestamp > end:
                break
            if timestamp >= start and index % self._every == 0:
                if image is None:
                    ok, image = self._capture.retrieve()
                    if not ok or image is None:
                        self._note_early_end(index, force=True)
                        break
                rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
                if not self._put(Frame.of(self.name, rgb, index, timestamp)):
                    return None
                kept += 1
                if self._max_frames is not None and kept >= self._max_frames:
                    break
            index += 1
        if kept == 0 and not self._stop.is_set():
            if self.error:
                return VideoError(self.error, value=self.name)
            first = self._start or 0.0
            span = f"from {first:g} s" + (" on" if self._end is None else f" to {self._end:g} s")
            length = f" (the video is {index / self.fps:.2f} s long)" if timestamp <= end else ""
            return VideoError(f"no frames {span}{length}; check start/end", value=self.name)
        return None

    def _note_early_end(self, decoded: int, *, force: bool = False) -> None:
        """Set .error when the stream ended too early (damage, truncation, a lost camera)."""
        if self.is_camera:
            self.error = f"the camera stopped delivering frames after {decoded} frames"
            return
        count = self.frame_count
        tolerance = max(_COUNT_TOLERANCE_FRAMES, round(_COUNT_TOLERANCE_FRACTION * (count or 0)))
        if force or (count is not None and decoded < count - tolerance):
            of = f" of {count}" if count is not None else ""
            self.error = f"decoding stopped at frame {decoded}{of} (file damaged or truncated)"

    def close(self) -> None:
        """Stop the decoder thread and release the capture; safe to call more than once."""
        self._closed = True
        self._stop.set()
        if self._thread is None:
            self._capture.release()
        elif self._thread is not threading.current_thread():
            self._thread.join()

    def __enter__(self) -> VideoSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
