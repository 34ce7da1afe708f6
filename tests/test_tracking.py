"""FaceTracker ids on synthetic box sequences, Smoother numbers against plain NumPy."""
from __future__ import annotations

import numpy as np
import pytest

from opengraphau.tracking import FaceTracker, Smoother

SIZE = 80.0


def box(cx: float, cy: float, size: float = SIZE) -> tuple[float, float, float, float]:
    return (cx - size / 2, cy - size / 2, size, size)


def test_moving_face_keeps_its_id() -> None:
    tracker = FaceTracker()
    rng = np.random.default_rng(0)
    ids = []
    for t in range(60):
        jitter = rng.uniform(-3, 3, size=2)
        ids += tracker.update([box(100 + 8 * t + jitter[0], 200 + 2 * t + jitter[1],
                                   SIZE + t / 2)])
    assert set(ids) == {0}


def test_missed_detections_within_max_missing_keep_the_id() -> None:
    tracker = FaceTracker(max_missing=3)
    assert tracker.update([box(100, 100)]) == [0]
    for _ in range(3):
        assert tracker.update([]) == []
    assert tracker.update([box(105, 100)]) == [0]


def test_face_that_leaves_and_new_face_get_new_ids() -> None:
    tracker = FaceTracker(max_missing=2)
    for t in range(5):
        assert tracker.update([box(100 + 5 * t, 100)]) == [0]
    # the face leaves; a different face appears far away at once: a new id
    assert tracker.update([box(500, 300)]) == [1]
    assert tracker.update([]) == []
    assert tracker.update([]) == []
    assert tracker.dropped == [0]
    # after max_missing frames the old track is gone: a face at its old place is new too
    assert tracker.update([box(120, 100)]) == [2]
    assert 0 not in tracker.update([box(120, 100), box(500, 300)])


def test_ids_follow_boxes_not_list_order() -> None:
    tracker = FaceTracker()
    assert tracker.update([box(100, 100), box(400, 100)]) == [0, 1]
    assert tracker.update([box(402, 101), box(98, 99)]) == [1, 0]
    assert tracker.update([box(300, 400), box(403, 102), box(97, 98)]) == [2, 1, 0]


def test_much_smaller_face_at_the_same_place_is_another_face() -> None:
    tracker = FaceTracker(max_missing=5)
    assert tracker.update([box(200, 200)]) == [0]
    assert tracker.update([box(205, 195, SIZE / 3)]) == [1]


@pytest.mark.parametrize("dy", [0.0, 20.0])
def test_two_faces_crossing_slowly_keep_their_ids(dy: float) -> None:
    tracker = FaceTracker()
    left, right = [], []
    for t in range(40):
        a = box(100 + 3 * t, 200)  # moving right
        b = box(217 - 3 * t, 200 + dy)  # moving left, passes through the other face
        boxes = [a, b] if t % 2 else [b, a]  # the detector's order changes
        ids = tracker.update(boxes)
        ida, idb = (ids[0], ids[1]) if t % 2 else (ids[1], ids[0])
        left.append(ida)
        right.append(idb)
    assert set(left) == {left[0]} and set(right) == {right[0]} and left[0] != right[0]


def test_smoother_median_matches_numpy() -> None:
    rng = np.random.default_rng(1)
    frames = rng.random((12, 41)).astype(np.float32)
    other = rng.random((12, 41)).astype(np.float32)
    k = 5
    smoother = Smoother(k, "median")
    for t in range(12):
        out = smoother(7, frames[t])
        smoother(8, other[t])  # another track must not mix in
        expected = np.median(frames[max(0, t - k + 1):t + 1], axis=0)
        assert out.shape == (41,) and out.dtype == np.float32
        np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_smoother_ema_matches_numpy() -> None:
    rng = np.random.default_rng(2)
    frames = rng.random((20, 41))
    k = 4
    alpha = 2 / (k + 1)
    smoother = Smoother(k, "ema")
    # closed form: weights alpha * (1 - alpha)^age, the oldest frame carrying the remaining mass
    for t in range(20):
        out = smoother(3, frames[t])
        weights = alpha * (1 - alpha) ** np.arange(t, -1, -1)
        weights[0] = (1 - alpha) ** t
        np.testing.assert_allclose(out, weights @ frames[:t + 1], rtol=1e-10)


def test_smoother_forget_and_identity() -> None:
    smoother = Smoother(3)
    smoother(0, np.zeros(41))
    smoother(0, np.zeros(41))
    smoother.forget(0)
    np.testing.assert_array_equal(smoother(0, np.ones(41)), np.ones(41))  # fresh history
    probs = np.linspace(0, 1, 41)
    for k in (0, 1):
        identity = Smoother(k, "ema")
        identity(0, np.zeros(41))
        np.testing.assert_array_equal(identity(0, probs), probs)
    with pytest.raises(ValueError, match="median"):
        Smoother(3, "mean")


def test_smoother_keeps_its_own_copy() -> None:
    smoother = Smoother(3)
    buffer = np.zeros(41)
    smoother(0, buffer)
    buffer[:] = 1.0  # the caller reuses its array
    np.testing.assert_array_equal(smoother(0, np.zeros(41)), np.zeros(41))
