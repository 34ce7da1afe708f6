"""A video's face search at the model's speed: MTCNN over the whole frame on key frames only,
and between them a search of small squares around the faces the last key frame found.

Faces barely move from one frame to the next, yet a full search costs more than the network
that reads the faces (a 1080p pyramid per frame). Here every `every`-th processed frame is a key
frame and is searched in full; on the frames between, each face of the key frame before is
looked for in a square around where it was, wider the longer ago that was
(`FaceDetector.follow`). A frame where a face of its key frame is not found again (it left,
was hidden, or moved out of its square) is searched in full at once and becomes the key frame
of the frames after it, so a lost face costs one full search, not missing rows; a face entering
the picture is found at the next key frame, at most `every` - 1 frames late.

All of one batch's frames are searched together: key frames in one full pass, the frames between
in one pass of all their squares, on the detector's device (a GPU too), then again only for the
frames a lost face made key frames. The state carried from batch to batch is the last key
frame's faces and time, so a batch's search never waits for the model or the tracker.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from ..errors import ConfigError
from ..records import Box
from .detector import Detection, FaceDetector

#: Half the side of the square a known face is looked for in, in face sizes, on the frame after
#: its key frame: the face itself and as much again around it.
_REACH = 1.5
#: Face sizes per second by which the square widens with the time since the key frame. On
#: `bench_video`'s clip (people walking 1-2 face sizes/s) 2 gives every face the full search's
#: box at K = 10; 1 leaves one face at IoU 0.96, and 4 costs 5-10% more time for nothing. A
#: face moving faster reaches its square's edge and its frame is searched in full.
_DRIFT = 2.0
#: The widest square, in face sizes (half its side): beyond, a full search is as cheap.
_MOST_REACH = 4.0

Pixels = np.ndarray | Image.Image | torch.Tensor


class KeyFrameSearch:
    """One video's face search, batch after batch, in order: `every` 1 searches every frame in
    full (`FaceDetector.detect`, exactly)."""

    def __init__(self, every: int) -> None:
        if every < 1:
            raise ConfigError("must be at least 1", param="detect_every", value=every)
        self.every = every
        self.frames = 0
        """Frames searched so far."""
        self.key_frames = 0
        """Of those, the frames searched in full."""
        self._anchor: tuple[list[Box], float] | None = None  # last key frame: faces, time

    def __call__(
        self, detector: FaceDetector, pixels: Sequence[Pixels], times: Sequence[float]
    ) -> list[list[Detection]]:
        """Faces per frame of the next frames of the video (`pixels` as `detect` takes them,
        `times` their timestamps in seconds)."""
        n = len(pixels)
        if self.every == 1:
            self.frames += n
            self.key_frames += n
            return detector.detect(pixels)
        keys = {i for i in range(n) if (self.frames + i) % self.every == 0}
        if self._anchor is None and n:
            keys.add(0)
        full: dict[int, list[Detection]] = {}
        followed: dict[int, tuple[int, list[Detection]]] = {}  # frame: its key frame, faces

        def anchor(i: int) -> tuple[int, list[Box], float]:
            before = [k for k in keys if k < i]
            if before:
                k = max(before)
                return k, [d.box for d in full[k]], times[k]
            assert self._anchor is not None
            return -1, *self._anchor

        while True:
            todo = sorted(keys - full.keys())
            if todo:
                full.update(zip(todo, detector.detect([pixels[i] for i in todo])))
            need = [
                i
                for i in range(n)
                if i not in keys and (i not in followed or followed[i][0] != anchor(i)[0])
            ]
            if need:
                near = []
                for i in need:
                    _, boxes, then = anchor(i)
                    reach = _reach(times[i] - then)
                    near.append([(box, reach) for box in boxes])
                found = detector.follow([pixels[i] for i in need], near)
                followed.update((i, (anchor(i)[0], f)) for i, f in zip(need, found))
            # Frames that lost a face of their key frame: searched in full, all at once.
            lost = {
                i for i in range(n) if i not in keys and len(followed[i][1]) < len(anchor(i)[1])
            }
            if not lost:
                break
            keys |= lost
        if keys:
            last = max(keys)
            self._anchor = ([d.box for d in full[last]], times[last])
        self.frames += n
        self.key_frames += len(keys)
        return [full[i] if i in keys else followed[i][1] for i in range(n)]


def _reach(seconds: float) -> float:
    """How far around a face of a key frame `seconds` before to look (half the square's side,
    in face sizes); the widest for times a damaged file gets wrong."""
    if not math.isfinite(seconds) or seconds < 0:
        return _MOST_REACH
    return min(_MOST_REACH, _REACH + _DRIFT * seconds)
