"""Stable face ids across video frames, and temporal smoothing of each face's AU probabilities.

Per-frame detections come in no particular order; tracking turns them into "face 0", "face 1", ...
so a row, a timeline or a summary line follows one person, and smoothing removes frame-to-frame
flicker. How ids behave for a user is told in README.md ("Face ids in videos").
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Generic, TypeVar

import numpy as np

from .errors import ConfigError
from .faces.crop import crop_box
from .records import UNCONFIRMED, Box, FaceRecord

T = TypeVar("T")

#: A detection more than this many times larger or smaller (in side length) than a track's face
#: is another face (say one further back), however close its centre.
_MAX_SCALE_CHANGE = 2.0
#: Weight of the newest displacement in a track's velocity: damps detector jitter while still
#: following a head that changes direction within a few frames.
_VELOCITY_GAIN = 0.5
#: Face sizes per second by which a face may stray from where its track expects it: the motion
#: gate widens with the time since the face was last seen. A track seen once has no velocity
#: yet, so its gate widens as fast as a brisk walk across the picture.
_DRIFT = 1.5
_UNKNOWN_SPEED = 5.0
#: Weight of a new detection in a track's appearance: slow, so a face half hidden for a frame or a
#: grimace does not overwrite what the person looks like.
_APPEARANCE_GAIN = 0.1
#: Appearance distances are measured in this video's typical same-face distance (see
#: `_AppearanceScale`). Further than `_SAME` of them from a track, a face is someone else.
_SAME = 3.0
#: A face re-found after more than `max_lost_s` must be within `_CLEAR` typical distances of the
#: track, with no other track that close.
_CLEAR = 2.0
#: Long absences are bridged only once faces seen together (different people) have been at least
#: this many typical same-face distances apart: proof that the backbone tells people apart here.
_SEPARATION = 4.0
_SAMPLES = 200
_MIN_SAMPLES = 3
#: Seconds of rounding forgiven when times are compared: 25 frames of 0.04 s are 1 s, not more.
_SLACK_S = 1e-6
#: The least typical distance: a still picture's crops can be identical (distance 0), and then any
#: difference at all is someone else.
_TINY = 1e-12


@dataclass
class _Track:
    key: int  # unique from its first detection on: smoothing history, `FaceTracker.keys`
    id: int  # UNCONFIRMED until seen in enough frames
    cx: float
    cy: float
    size: float  # sqrt(w * h): a face's side length, robust to box aspect ratios
    time: float  # when it was last seen (seconds)
    step: int  # the processed frame it was last seen in
    appearance: np.ndarray | None  # float64 unit vector, a running mean of its embeddings
    vx: float = 0.0  # centre velocity, pixels per second
    vy: float = 0.0
    hits: int = 1


@dataclass
class _Face:
    cx: float
    cy: float
    size: float
    box: Box
    crop: Box  # the square the model saw: its embedding describes all of it
    embedding: np.ndarray | None  # float64: distances between faces can be below float32's step
    confidence: float
    crowded: bool = False  # its crop holds part of another face's: its embedding is not its own


def _centre_size(box: Box) -> tuple[float, float, float]:
    x, y, w, h = (float(v) for v in box)
    if not (w > 0 and h > 0 and math.isfinite(x + y + w + h)):
        raise ValueError(f"face box {box} must be finite, with a positive width and height")
    return x + w / 2, y + h / 2, math.sqrt(w * h)


def _overlap(a: Box, b: Box) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


class _AppearanceScale:
    """How far apart this video's embeddings of one face are from frame to frame, and those of
    two faces seen together: appearance thresholds are multiples of the first, so they hold for
    any backbone (a trained ResNet-50's distances and a random one's differ by 10^5)."""

    def __init__(self) -> None:
        self.same: deque[float] = deque(maxlen=_SAMPLES)
        self.different: deque[float] = deque(maxlen=_SAMPLES)
        self.typical: float | None = None  # the median of `same`, at least _TINY
        self.separates = False  # faces seen together lie `_SEPARATION` typical distances apart

    def update(self) -> None:
        if len(self.same) >= _MIN_SAMPLES:
            self.typical = max(statistics.median(self.same), _TINY)
        self.separates = (
            self.typical is not None
            and len(self.different) >= _MIN_SAMPLES
            and statistics.median(self.different) >= _SEPARATION * self.typical
        )


class FaceTracker:
    """Gives each face in a video a stable id from its boxes, motion and appearance.

    Each track predicts where its face is now from its last centre and velocity (constant motion
    in pixels per second, so any frame step works), so two faces passing each other keep their
    ids. A detection may continue a track when it is within `max_distance` face sizes of the
    predicted centre, plus a margin that grows with the time since the face was last seen, and
    less than 2x larger or smaller. Appearance is the backbone's pooled embedding
    (`FaceRecord.embedding`), measured in this video's typical frame-to-frame distance of one
    face: it adds to the cost of every pair (two faces crossing), and a hidden track is not
    re-found in a face that looks clearly like someone else (a new person where one left) or
    more like another track. A track seen in the previous frame is never vetoed by looks: a
    laugh or a head turn must not split a person. Confirmed tracks seen in the previous frame are
    matched first, then hidden ones, then unconfirmed ones, cheapest pair first.

    A new face is UNCONFIRMED until it was seen in `confirm_frames` frames missing at most one
    in between (or at once when its detector confidence reaches `confirm_score`); a detection that
    flickers for a frame or two never gets an id. A confirmed face hidden for up to `max_lost_s`
    seconds keeps its id when it reappears near where it was going or where it was; up to
    `reid_s` seconds when its appearance is a clear match, in a video where faces seen together
    have shown that the embedding tells people apart. A new face that may be such a person but
    cannot be judged yet (its crop holds part of another face) stays unconfirmed until it can.
    Ids are never reused.
    """

    def __init__(
        self,
        *,
        max_distance: float = 0.5,
        confirm_frames: int = 3,
        confirm_score: float | None = None,
        max_lost_s: float = 1.0,
        reid_s: float = 3.0,
    ) -> None:
        if not max_distance > 0:
            raise ConfigError(
                "must be positive (face sizes)", param="max_distance", value=max_distance
            )
        if confirm_frames < 1:
            raise ConfigError("must be at least 1", param="confirm_frames", value=confirm_frames)
        if confirm_score is not None and not 0 < confirm_score <= 1:
            raise ConfigError(
                "must be None or in (0, 1]", param="confirm_score", value=confirm_score
            )
        if not max_lost_s >= 0:
            raise ConfigError("must be 0 s or more", param="max_lost_s", value=max_lost_s)
        if not reid_s >= max_lost_s:
            raise ConfigError("must be at least max_lost_s", param="reid_s", value=reid_s)
        self.max_distance, self.confirm_frames = max_distance, confirm_frames
        self.confirm_score, self.max_lost_s, self.reid_s = confirm_score, max_lost_s, reid_s
        self._tracks: list[_Track] = []
        self._scale = _AppearanceScale()
        self._next_id = self._next_key = 0
        self._step = 0
        self._time: float | None = None
        self._frame_s = 0.04  # the last time step seen, for timestamps that do not advance
        self.keys: list[int] = []
        """Track keys of the last update's faces: unique per track from its first detection on,
        confirmed or not, so per-track state (smoothing) spans a face's unconfirmed frames."""
        self.dropped: list[int] = []
        """Keys of the tracks the last update() ended, e.g. for Smoother.forget."""

    def update(self, faces: Sequence[FaceRecord], timestamp: float) -> list[int]:
        """Ids of this frame's `faces` (records with a box), in their order: a track id, or
        UNCONFIRMED. `timestamp` is the frame's time in seconds; call once per processed frame,
        with no faces too."""
        now = self._advance(timestamp)
        found = [self._face(record) for record in faces]
        for face in found:
            face.crowded = any(
                _overlap(face.crop, other.box) for other in found if other is not face
            )
        self._learn_differences(found)
        ranked = self._pairs(found, now)
        ids = [UNCONFIRMED] * len(found)
        self.keys = [-1] * len(found)
        matched: set[int] = set()
        for _, _, t, d in sorted(ranked):
            if t in matched or self.keys[d] >= 0:
                continue
            matched.add(t)
            track = self._tracks[t]
            self._follow(track, found[d], now)
            ids[d], self.keys[d] = track.id, track.key
        for d, face in enumerate(found):
            if self.keys[d] < 0:
                track = _Track(
                    self._next_key,
                    UNCONFIRMED,
                    face.cx,
                    face.cy,
                    face.size,
                    now,
                    self._step,
                    None if face.crowded else face.embedding,
                )
                self._next_key += 1
                self._confirm(track, face, now)
                self._tracks.append(track)
                ids[d], self.keys[d] = track.id, track.key
        self._scale.update()
        self._expire(now)
        return ids

    def waiting(self) -> set[int]:
        """Keys of the tracks that are not confirmed yet but may still be: their faces' ids
        are not known yet."""
        return {t.key for t in self._tracks if t.id == UNCONFIRMED}

    def _advance(self, timestamp: float) -> float:
        """This frame's time, kept increasing (by the last step) when a damaged file's timestamps
        stall, go back or are not numbers."""
        self._step += 1
        if self._time is None:
            timestamp = timestamp if math.isfinite(timestamp) else 0.0
        elif math.isfinite(timestamp) and timestamp > self._time:
            self._frame_s = timestamp - self._time
        else:
            timestamp = self._time + self._frame_s
        self._time = timestamp
        return timestamp

    @staticmethod
    def _face(record: FaceRecord) -> _Face:
        if record.box is None:
            raise ValueError(f"frame {record.frame} of {record.source}: a face record needs a box")
        cx, cy, size = _centre_size(record.box)
        embedding = None
        if record.embedding is not None and record.embedding.size:
            vector = np.asarray(record.embedding, np.float64).ravel()
            norm = np.linalg.norm(vector)
            embedding = vector / norm if math.isfinite(norm) and norm > 0 else None
        return _Face(
            cx,
            cy,
            size,
            record.box,
            crop_box(record.box),
            embedding,
            1.0 if record.confidence is None else float(record.confidence),
        )

    def _learn_differences(self, found: list[_Face]) -> None:
        """Faces in one frame are different people: how far apart they look."""
        vectors = [f.embedding for f in found if f.embedding is not None and not f.crowded]
        for i, a in enumerate(vectors):
            for b in vectors[i + 1 :]:
                self._scale.different.append(float(np.linalg.norm(a - b)))

    def _distances(self, found: list[_Face]) -> list[list[float | None]]:
        """Per track and face, how far the face's embedding is from the track's appearance;
        None when either is unknown or the face's crop holds part of another face (say one it
        is emerging from behind)."""
        return [
            [
                None
                if track.appearance is None or face.embedding is None or face.crowded
                else float(np.linalg.norm(face.embedding - track.appearance))
                for face in found
            ]
            for track in self._tracks
        ]

    def _motion(self, track: _Track, face: _Face | _Track, now: float) -> float:
        """How far `face` is from where `track` expects it, as a share of the motion gate (more
        than 1: out of reach)."""
        if max(face.size / track.size, track.size / face.size) >= _MAX_SCALE_CHANGE:
            return math.inf
        gap = now - track.time
        miss = math.hypot(face.cx - track.cx - track.vx * gap, face.cy - track.cy - track.vy * gap)
        if self._step - track.step > 1:  # a hidden face walked on, or stood still
            miss = min(miss, math.hypot(face.cx - track.cx, face.cy - track.cy))
        gate = self.max_distance + (_DRIFT if track.hits > 1 else _UNKNOWN_SPEED) * gap
        return miss / ((face.size + track.size) / 2) / gate

    def _pairs(self, found: list[_Face], now: float) -> list[tuple[int, float, int, int]]:
        """(tier, cost, track, face) of every pair that may be the same face. Tier 0: confirmed
        tracks seen in the previous frame, 1: hidden ones, 2: unconfirmed ones; so a face in
        plain sight is continued first, and a person re-found before a new face is. A hidden
        track is not re-found in a face that looks more like another track, nor in one that
        looks clearly like someone else."""
        distances = self._distances(found)
        typical = self._scale.typical
        pairs = []
        for t, track in enumerate(self._tracks):
            gap = now - track.time
            missed = self._step - track.step > 1
            tier = 2 if track.id == UNCONFIRMED else int(missed)
            for d, face in enumerate(found):
                motion = self._motion(track, face, now)
                if motion > 1:
                    continue
                distance = distances[t][d]
                looks = None if distance is None or typical is None else distance / typical
                if (
                    missed
                    and distance is not None
                    and (
                        (looks is not None and looks > _SAME)
                        or any(
                            (other := row[d]) is not None and other < distance for row in distances
                        )
                    )
                ):
                    continue
                hidden = gap - self._frame_s  # the frames it was missing in
                if hidden > self.max_lost_s + _SLACK_S and not self._clear(t, d, distances):
                    continue
                pairs.append((tier, motion + (looks or 0.0) / _SAME, t, d))
        return pairs

    def _clear(self, t: int, d: int, distances: list[list[float | None]]) -> bool:
        """Whether face `d` is track `t` beyond doubt: close in appearance, in a video whose
        embeddings tell people apart, and no other track looks that close."""
        typical, distance = self._scale.typical, distances[t][d]
        if distance is None or typical is None or not self._scale.separates:
            return False
        close = [(other := row[d]) is not None and other <= _CLEAR * typical for row in distances]
        return close[t] and sum(close) == 1

    def _follow(self, track: _Track, face: _Face, now: float) -> None:
        """Move `track` to `face`. A crop of the face alone adds to the video's typical same-face
        distance, and to the track's appearance when it looks like it (a face half hidden by
        someone's shoulder does not, and must not teach the track a wrong look)."""
        gap = now - track.time
        if gap > 0:
            track.vx += _VELOCITY_GAIN * ((face.cx - track.cx) / gap - track.vx)
            track.vy += _VELOCITY_GAIN * ((face.cy - track.cy) / gap - track.vy)
        if face.embedding is not None and not face.crowded:
            if track.appearance is None:
                track.appearance = face.embedding
            else:
                distance = float(np.linalg.norm(face.embedding - track.appearance))
                if self._step - track.step == 1:
                    self._scale.same.append(distance)
                typical = self._scale.typical
                if typical is None or distance <= _CLEAR * typical:
                    mixed = track.appearance + _APPEARANCE_GAIN * (
                        face.embedding - track.appearance
                    )
                    track.appearance = mixed / np.linalg.norm(mixed)
        track.cx, track.cy, track.size = face.cx, face.cy, face.size
        track.time, track.step = now, self._step
        track.hits += 1
        self._confirm(track, face, now)

    def _confirm(self, track: _Track, face: _Face, now: float) -> None:
        """Give `track` an id once it is sure, unless it was never seen alone and may be a
        hidden person coming back (say from behind the face still in front of it): then it waits
        until its looks can tell, or the hidden track ends."""
        if track.id != UNCONFIRMED or not (
            track.hits >= self.confirm_frames
            or (self.confirm_score is not None and face.confidence >= self.confirm_score)
        ):
            return
        if (
            track.appearance is None
            and face.embedding is not None
            and any(
                other.id != UNCONFIRMED
                and other.step < self._step
                and self._motion(other, track, now) <= 1
                for other in self._tracks
            )
        ):
            return
        track.id = self._next_id
        self._next_id += 1

    def _expire(self, now: float) -> None:
        """End unconfirmed tracks that missed two frames in a row and confirmed ones hidden for
        longer than they can be re-found."""
        horizon = self.reid_s if self._scale.separates else self.max_lost_s
        self.dropped, kept = [], []
        for track in self._tracks:
            if track.id == UNCONFIRMED:
                ended = self._step - track.step >= 2
            else:
                ended = now - track.time > horizon + _SLACK_S
            if ended:
                self.dropped.append(track.key)
            else:
                kept.append(track)
        self._tracks = kept


class Smoother:
    """Temporal median or EMA over K frames, per track, of the 41 probabilities.

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

    Without a tracker (the whole frame is the face) every face keeps id 0. Faces not yet
    confirmed keep their rows with face_id UNCONFIRMED; they are smoothed with their track all
    the same, so a confirmed face's first smoothed values already span its earlier frames.
    """

    def __init__(self, tracker: FaceTracker | None, smoother: Smoother | None) -> None:
        self.tracker, self.smoother = tracker, smoother

    def __call__(self, records: Sequence[FaceRecord]) -> list[FaceRecord]:
        if not records:
            return []
        faces = [r for r in records if r.box is not None and r.probs is not None]
        if self.tracker is None:
            ids = keys = [0] * len(faces)
        else:
            ids = self.tracker.update(faces, records[0].timestamp)
            keys = self.tracker.keys
            if self.smoother is not None:
                for gone in self.tracker.dropped:
                    self.smoother.forget(gone)
        if not faces:
            return list(records)
        smooth = self.smoother
        return [
            replace(
                r,
                face_id=i,
                probs=smooth(k, r.probs) if smooth is not None and r.probs is not None else r.probs,
                raw=r.probs if smooth is not None else None,
            )
            for r, i, k in zip(faces, ids, keys)
        ]


#: Processed frames a frame may be held back for its faces' confirmation (`IdsFromFirstFrame`):
#: a new face is confirmed within 3 to 5 frames; one that waits longer (its crop holds part of
#: another face, `FaceTracker`) lets its first rows go with UNCONFIRMED rather than stall
#: a camera's rows and preview.
HOLD_FRAMES = 8


class IdsFromFirstFrame(Generic[T]):
    """A video's frames and their tracked records, held back while one of their faces waits for
    its track's confirmation, then handed on in order with the id the track got: a person's
    rows carry their id from the first frame they were seen in. Faces whose tracks end
    unconfirmed keep UNCONFIRMED. A frame is held at most `limit` processed frames.

    `T` is whatever travels with a frame's records (its decoded frame)."""

    def __init__(self, tracked: TrackedFaces, limit: int = HOLD_FRAMES) -> None:
        self.tracked, self.limit = tracked, limit
        self._held: deque[tuple[T, list[FaceRecord], list[int]]] = deque()
        self._ids: dict[int, int] = {}  # track key -> id, of tracks confirmed while held

    def __call__(self, frame: T, records: Sequence[FaceRecord]) -> list[tuple[T, list[FaceRecord]]]:
        """Track this frame's `records`; the frames that may go now, in order, with their
        records."""
        tracked = self.tracked(records)
        tracker = self.tracked.tracker
        if tracker is None:
            return [(frame, tracked)]
        keys = list(tracker.keys) if len(tracked) == len(tracker.keys) else []
        for record, key in zip(tracked, keys):
            if record.face_id != UNCONFIRMED:
                self._ids[key] = record.face_id
        self._held.append((frame, tracked, keys))
        waiting = tracker.waiting()
        out = []
        while self._held:
            _, _, keys = self._held[0]
            if len(self._held) <= self.limit and any(
                k in waiting and k not in self._ids for k in keys
            ):
                break
            out.append(self._release())
        if not self._held:
            self._ids.clear()
        return out

    def flush(self) -> list[tuple[T, list[FaceRecord]]]:
        """Every frame still held (the video ended or was stopped), with the ids known now."""
        out = [self._release() for _ in range(len(self._held))]
        self._ids.clear()
        return out

    def _release(self) -> tuple[T, list[FaceRecord]]:
        frame, records, keys = self._held.popleft()
        return frame, [
            replace(r, face_id=self._ids[k]) if r.face_id == UNCONFIRMED and k in self._ids else r
            for r, k in zip(records, keys)
        ] + records[len(keys) :]
