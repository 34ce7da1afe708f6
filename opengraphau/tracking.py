"""Stable face ids across video frames, and temporal smoothing of each face's AU probabilities.

Per-frame detections come in no particular order; tracking turns them into "face 0", "face 1", ...
so a CSV row or a timeline follows one person, and smoothing removes frame-to-frame flicker.
"""
from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from .records import Box, FaceRecord

#: A detection more than this many times larger or smaller (in side length) than a track's face
#: is another face (say one further back), however close its centre.
_MAX_SCALE_CHANGE = 2.0
#: Weight of the newest displacement in a track's velocity: damps detector jitter while still
#: following a head that changes direction within a few frames.
_VELOCITY_GAIN = 0.5


@dataclass
class _Track:
    id: int
    cx: float
    cy: float
    size: float  # sqrt(w * h): a face's side length, robust to box aspect ratios
    vx: float = 0.0  # centre displacement per frame
    vy: float = 0.0
    missing: int = 0  # frames since the last match


def _centre_size(box: Box) -> tuple[float, float, float]:
    x, y, w, h = (float(v) for v in box)
    if not (w > 0 and h > 0):
        raise ValueError(f"face box {box} must have a positive width and height")
    return x + w / 2, y + h / 2, math.sqrt(w * h)


class FaceTracker:
    """Gives each face a stable track id across frames by nearest box (greedy matching on centre
    distance).

    Each track predicts where its face is now from its last centre and velocity (constant
    motion), so two faces passing each other keep their ids. The cost of a (track, box) pair is the
    distance between the predicted and the detected centre divided by the mean face size of the
    two; pairs are matched greedily, cheapest first, as long as the cost is at most `max_distance`
    and the sizes differ by less than 2x. With the default 0.5 a face may move half its size between
    processed frames (fast head turns at 30 fps, ordinary motion with frame skipping), while two
    people side by side, whose centres are at least about one face apart, are not confused.

    A track survives up to `max_missing` consecutive frames without a match (a missed detection, a
    brief occlusion) and is dropped after that; ids are never reused.
    """

    def __init__(self, *, max_distance: float = 0.5, max_missing: int = 10) -> None:
        if max_distance <= 0:
            raise ValueError(f"max_distance must be positive (got {max_distance})")
        if max_missing < 0:
            raise ValueError(f"max_missing must be 0 or more (got {max_missing})")
        self.max_distance = max_distance
        self.max_missing = max_missing
        self._tracks: list[_Track] = []
        self._next_id = 0
        self.dropped: list[int] = []  # ids dropped by the last update(), e.g. for Smoother.forget

    def update(self, boxes: Sequence[Box]) -> list[int]:
        """Track ids of this frame's boxes (x, y, w, h), in their order; new faces get new ids."""
        detections = [_centre_size(box) for box in boxes]
        pairs = []
        for t, track in enumerate(self._tracks):
            steps = track.missing + 1
            px, py = track.cx + track.vx * steps, track.cy + track.vy * steps
            for d, (cx, cy, size) in enumerate(detections):
                if max(size / track.size, track.size / size) >= _MAX_SCALE_CHANGE:
                    continue
                cost = math.hypot(cx - px, cy - py) / ((size + track.size) / 2)
                if cost <= self.max_distance:
                    pairs.append((cost, t, d))
        pairs.sort()

        ids: list[int | None] = [None] * len(detections)
        matched: set[int] = set()
        for _, t, d in pairs:
            if t in matched or ids[d] is not None:
                continue
            matched.add(t)
            track = self._tracks[t]
            ids[d] = track.id
            cx, cy, size = detections[d]
            steps = track.missing + 1
            track.vx += _VELOCITY_GAIN * ((cx - track.cx) / steps - track.vx)
            track.vy += _VELOCITY_GAIN * ((cy - track.cy) / steps - track.vy)
            track.cx, track.cy, track.size, track.missing = cx, cy, size, 0

        self.dropped = []
        kept = []
        for t, track in enumerate(self._tracks):
            if t not in matched:
                track.missing += 1
            if track.missing > self.max_missing:
                self.dropped.append(track.id)
            else:
                kept.append(track)
        self._tracks = kept

        for d, (cx, cy, size) in enumerate(detections):
            if ids[d] is None:
                ids[d] = self._next_id
                self._tracks.append(_Track(self._next_id, cx, cy, size))
                self._next_id += 1
        return [track_id for track_id in ids if track_id is not None]


class Smoother:
    """Temporal median or EMA over K frames, per track id, of the 41 probabilities.

    Causal (current and past frames only), so it works live on a webcam. The median removes
    single-frame spikes without lagging behind real onsets as much as a mean; the EMA (alpha =
    2 / (k + 1), the span-k convention) is smoother and keeps one vector per track. A new track's
    first frames are smoothed over the frames seen so far. k <= 1 means no smoothing.
    """

    def __init__(self, k: int, mode: str = "median") -> None:
        if mode not in ("median", "ema"):
            raise ValueError(f"smoothing mode must be 'median' or 'ema' (got {mode!r})")
        self.k = k
        self.mode = mode
        self._alpha = 2.0 / (k + 1)
        self._history: dict[int, deque[np.ndarray]] = {}
        self._ema: dict[int, np.ndarray] = {}

    def __call__(self, track_id: int, probs: np.ndarray) -> np.ndarray:
        """The smoothed probabilities of `track_id` at this frame, given this frame's `probs`."""
        probs = np.asarray(probs)
        if self.k <= 1:
            return probs
        # Kept as copies: the caller may reuse its array for the next frame.
        current = probs.astype(np.float64)
        if self.mode == "ema":
            previous = self._ema.get(track_id)
            state = current if previous is None else previous + self._alpha * (current - previous)
            self._ema[track_id] = state
            return state.astype(probs.dtype)
        history = self._history.setdefault(track_id, deque(maxlen=self.k))
        history.append(current)
        return np.median(np.stack(history), axis=0).astype(probs.dtype)

    def forget(self, track_id: int) -> None:
        """Drop a finished track's history, so memory stays bounded over a long video."""
        self._history.pop(track_id, None)
        self._ema.pop(track_id, None)


class TrackedFaces:
    """A video's per-frame records -> the same records with track ids and smoothed probabilities.

    Without a tracker (the whole frame is the face) every face keeps id 0.
    """

    def __init__(self, tracker: FaceTracker | None, smoother: Smoother | None) -> None:
        self.tracker, self.smoother = tracker, smoother

    def __call__(self, records: Sequence[FaceRecord]) -> list[FaceRecord]:
        faces = [r for r in records if r.box is not None and r.probs is not None]
        boxes = [r.box for r in faces if r.box is not None]
        ids = self.tracker.update(boxes) if self.tracker else [0] * len(faces)
        if self.smoother is not None and self.tracker is not None:
            for gone in self.tracker.dropped:
                self.smoother.forget(gone)
        if not faces:
            return list(records)
        smooth = self.smoother
        return [replace(r, face_id=i, probs=smooth(i, r.probs)
                        if smooth is not None and r.probs is not None else r.probs)
                for r, i in zip(faces, ids)]
