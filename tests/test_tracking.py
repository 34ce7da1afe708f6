"""FaceTracker ids on synthetic records (boxes and real faces' embeddings in, ids out), and
Smoother numbers against plain NumPy."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from factories import SPRITE_FACES, face_sprites, present
from opengraphau.errors import ConfigError
from opengraphau.faces.crop import square_crop
from opengraphau.records import UNCONFIRMED, FaceRecord, Frame
from opengraphau.spec import PipelineSpec
from opengraphau.tracking import FaceTracker, IdsFromFirstFrame, Smoother, TrackedFaces

SIZE = 80.0
FPS = 25.0
VIEWS = 8
Box = tuple[float, float, float, float]
#: A clip as a script: per frame, each person present and their box.
Script = list[dict[str, Box]]


def box(cx: float, cy: float, size: float = SIZE) -> Box:
    return (cx - size / 2, cy - size / 2, size, size)


def faces(
    boxes: list[Box], t: int = 0, embeddings: list | None = None, confidence: float = 0.999
) -> list[FaceRecord]:
    return [
        FaceRecord(
            "clip",
            t,
            t / FPS,
            i,
            b,
            confidence,
            np.zeros(41, np.float32),
            None if embeddings is None else embeddings[i],
        )
        for i, b in enumerate(boxes)
    ]


def ids_of(tracker: FaceTracker, boxes: list[Box], t: int) -> list[int]:
    return tracker.update(faces(boxes, t), t / FPS)


@pytest.fixture(scope="module")
def looks(resnet18_s1: Path) -> dict[str, np.ndarray]:
    """Per person, VIEWS embeddings (the calibrated ResNet-18's) of their face cropped a few
    pixels and percent apart, as a detector frames one face from frame to frame."""
    pipeline = PipelineSpec(str(resnet18_s1), device="cpu", detect=False).build()
    found = {}
    for name, sprite in face_sprites().items():
        x, y, w, h = SPRITE_FACES[name]
        picture = Image.fromarray(sprite)
        views = [
            Frame.of(
                name,
                np.asarray(
                    square_crop(
                        picture,
                        (
                            x + 3 * math.sin(k),
                            y + 3 * math.cos(1.3 * k),
                            w * (1 + 0.05 * math.sin(k)),
                            h * (1 + 0.05 * math.sin(k)),
                        ),
                    )
                ),
            )
            for k in range(VIEWS)
        ]
        found[name] = np.stack(present(records[0].embedding for records in pipeline(views)))
    return found


def play(
    tracker: FaceTracker, script: Script, looks: dict[str, np.ndarray] | None, every: int = 1
) -> dict[str, list[int]]:
    """Per person, the ids it got in the frames it was in (every `every`-th frame)."""
    given: dict[str, list[int]] = {}
    for t in range(0, len(script), every):
        people = list(script[t])
        embeddings = None if looks is None else [looks[p][t % VIEWS] for p in people]
        ids = tracker.update(faces([script[t][p] for p in people], t, embeddings), t / FPS)
        for person, track_id in zip(people, ids):
            given.setdefault(person, []).append(track_id)
    return given


def confirmed(ids: list[int]) -> set[int]:
    return set(ids) - {UNCONFIRMED}


def crossing(dy: float) -> Script:
    """Two people walking past each other; with dy 0 the cameraman, in front, hides the
    astronaut while their boxes overlap by more than half."""
    script = []
    for t in range(50):
        a, c = (100 + 4 * t, 120), (300 - 4 * t, 120 + dy)
        frame = {"cameraman": box(*c)}
        if dy or abs(a[0] - c[0]) > SIZE / 2:
            frame["astronaut"] = box(*a)
        script.append(frame)
    return script


def hidden(frames: int) -> Script:
    """The astronaut stands still (60 px face); the cameraman, nearer (100 px), walks across
    and hides her for `frames` frames, from frame 40 on."""
    speed, start = 100 / frames, 40
    script = []
    for t in range(start + frames + 40):
        x = 160 + speed * (t - start - frames / 2)  # centred on her mid-way
        frame = {"cameraman": box(x, 125, 100)}
        if not start <= t < start + frames:
            frame["astronaut"] = box(160 + 2 * math.sin(t / 3), 120, 60)
        script.append(frame)
    return script


def swap(gap: int) -> Script:
    """The astronaut stands for 30 frames and leaves; `gap` frames later the cameraman stands
    where she was."""
    return [
        {"astronaut": box(160, 120)}
        if t < 30
        else {"cameraman": box(160, 120)}
        if t >= 30 + gap
        else {}
        for t in range(70)
    ]


def test_people_look_further_apart_than_one_face_from_frame_to_frame(
    looks: dict[str, np.ndarray],
) -> None:
    """What the tests below rely on: the random but calibrated backbone tells these two people
    apart (the closest pair of their crops is twice as far apart as two crops of one face are at
    most), though at a scale of 1e-7."""
    a, c = (looks[p].astype(np.float64) for p in ("astronaut", "cameraman"))

    def distances(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.linalg.norm(x[:, None] - y[None], axis=-1)

    within = max(distances(a, a).max(), distances(c, c).max())
    assert distances(a, c).min() > 2 * within > 0


def test_moving_face_keeps_its_id() -> None:
    tracker = FaceTracker()
    rng = np.random.default_rng(0)
    ids = []
    for t in range(60):
        jitter = rng.uniform(-3, 3, size=2)
        ids += ids_of(
            tracker, [box(100 + 8 * t + jitter[0], 200 + 2 * t + jitter[1], SIZE + t / 2)], t
        )
    assert ids == [UNCONFIRMED] * 2 + [0] * 58


def test_confirmation_takes_three_frames_or_a_sure_detection() -> None:
    tracker = FaceTracker()
    # seen in frames 0, 2, 3 (one missed in between): confirmed at its third
    assert [ids_of(tracker, [box(100, 100)] if t != 1 else [], t) for t in range(4)] == [
        [UNCONFIRMED],
        [],
        [UNCONFIRMED],
        [0],
    ]
    # seen in frames 10 and 13 (two missed): the second sighting starts over
    assert ids_of(tracker, [box(100, 100), box(300, 100)], 10) == [0, UNCONFIRMED]
    assert ids_of(tracker, [box(100, 100)], 11) == [0]
    assert ids_of(tracker, [box(100, 100)], 12) == [0]
    assert ids_of(tracker, [box(100, 100), box(300, 100)], 13) == [0, UNCONFIRMED]
    assert ids_of(tracker, [box(100, 100), box(300, 100)], 14) == [0, UNCONFIRMED]
    assert ids_of(tracker, [box(100, 100), box(300, 100)], 15) == [0, 1]
    sure = FaceTracker(confirm_score=0.99)
    assert sure.update(faces([box(100, 100), box(300, 100)], confidence=0.995), 0.0) == [0, 1]
    assert sure.update(faces([box(100, 300)], 1, confidence=0.95), 1 / FPS) == [UNCONFIRMED]


def test_one_frame_detection_gets_no_id(looks: dict[str, np.ndarray]) -> None:
    script: Script = [{"astronaut": box(110, 120)} for _ in range(30)]
    script[12]["cameraman"] = box(240, 110)
    script[20]["cameraman"] = box(250, 115)  # flickers again, 8 frames later
    tracker = FaceTracker()
    given = play(tracker, script, looks)
    assert set(given["cameraman"]) == {UNCONFIRMED}
    assert confirmed(given["astronaut"]) == {0}
    newcomer = [ids_of(tracker, [box(110, 120), box(250, 200)], t)[1] for t in range(30, 33)]
    assert newcomer == [UNCONFIRMED, UNCONFIRMED, 1]  # the flickers used up no id


@pytest.mark.parametrize("dy", [0.0, 20.0])
def test_two_people_crossing_keep_their_ids(looks: dict[str, np.ndarray], dy: float) -> None:
    for seen in (looks, None):  # appearance helps, motion alone must do too
        given = play(FaceTracker(), crossing(dy), seen)
        a, c = confirmed(given["astronaut"]), confirmed(given["cameraman"])
        assert len(a) == len(c) == 1 and a != c, (dy, seen is None, given)


@pytest.mark.parametrize("frames", [10, 25, 50])
def test_hidden_face_keeps_its_id(looks: dict[str, np.ndarray], frames: int) -> None:
    """Up to 1 s (25 frames) where she was; 2 s by a clear appearance match, made once his face
    no longer reaches into her crop (her rows wait as unconfirmed until then)."""
    given = play(FaceTracker(), hidden(frames), looks)
    (her,) = confirmed(given["astronaut"])
    assert confirmed(given["cameraman"]) == {1 - her}
    if frames <= 25:
        assert given["astronaut"][2:] == [her] * (len(given["astronaut"]) - 2)  # no row lost
    assert given["astronaut"][-10:] == [her] * 10


def test_without_appearance_a_face_hidden_over_a_second_is_new() -> None:
    """Motion alone keeps a hidden face for `max_lost_s` (1 s) of video time, whatever the
    frame step; only a clear appearance match bridges longer absences."""
    for frames, every, expected in ((25, 1, 1), (25, 5, 1), (27, 1, 2), (30, 5, 2), (50, 1, 2)):
        given = play(FaceTracker(), hidden(frames), None, every)
        assert len(confirmed(given["astronaut"])) == expected, (frames, every)


def test_hidden_face_at_a_coarser_frame_step(looks: dict[str, np.ndarray]) -> None:
    for every in (2, 3, 5):
        given = play(FaceTracker(), hidden(25), looks, every)
        assert len(confirmed(given["astronaut"])) == 1, every
        assert not confirmed(given["astronaut"]) & confirmed(given["cameraman"])


@pytest.mark.parametrize("gap", [1, 5, 20])
def test_new_person_where_one_left_gets_a_new_id(looks: dict[str, np.ndarray], gap: int) -> None:
    given = play(FaceTracker(), swap(gap), looks)
    assert confirmed(given["astronaut"]) == {0} and confirmed(given["cameraman"]) == {1}
    # by motion alone the newcomer would take her id: the appearance makes the difference
    blind = play(FaceTracker(), swap(gap), None)
    assert confirmed(blind["cameraman"]) == {0}


def test_ids_follow_boxes_not_list_order() -> None:
    tracker = FaceTracker(confirm_frames=1)
    assert ids_of(tracker, [box(100, 100), box(400, 100)], 0) == [0, 1]
    assert ids_of(tracker, [box(402, 101), box(98, 99)], 1) == [1, 0]
    assert ids_of(tracker, [box(300, 400), box(403, 102), box(97, 98)], 2) == [2, 1, 0]


def test_much_smaller_face_at_the_same_place_is_another_face() -> None:
    tracker = FaceTracker(confirm_frames=1)
    assert ids_of(tracker, [box(200, 200)], 0) == [0]
    assert ids_of(tracker, [box(205, 195, SIZE / 3)], 1) == [1]


def test_timestamps_that_stall_go_back_or_are_not_numbers() -> None:
    tracker = FaceTracker()
    times = [0.0, 0.04, 0.04, 0.02, math.nan, math.inf, 0.2, 0.24]
    ids = [
        tracker.update(faces([box(100 + 3 * t, 100)], t), time)[0] for t, time in enumerate(times)
    ]
    assert ids == [UNCONFIRMED] * 2 + [0] * 6


def test_unusable_embeddings_are_ignored() -> None:
    tracker = FaceTracker()
    bad = [np.zeros(512), np.full(512, np.nan), np.full(512, np.inf), np.zeros(0)]
    ids = [
        tracker.update(faces([box(100 + 2 * t, 100)], t, [bad[t % 4]]), t / FPS)[0]
        for t in range(8)
    ]
    assert ids == [UNCONFIRMED] * 2 + [0] * 6


def test_tracks_end_and_say_so() -> None:
    tracker = FaceTracker(max_lost_s=0.1, reid_s=0.1)
    for t in range(3):
        ids_of(tracker, [box(100, 100)], t)
    flicker = tracker.update(faces([box(100, 100), box(400, 400)], 3), 3 / FPS)
    keys = tracker.keys
    assert flicker == [0, UNCONFIRMED] and keys[0] != keys[1]
    ended = []
    for t in range(4, 10):
        ids_of(tracker, [], t)
        ended += tracker.dropped
    assert ended == [keys[1], keys[0]]  # the flicker after two frames, the face after 0.1 s
    assert ids_of(tracker, [box(100, 100)], 10) == [UNCONFIRMED]  # ids are never reused


@pytest.mark.parametrize(
    "param, value",
    [
        ("max_distance", 0.0),
        ("confirm_frames", 0),
        ("confirm_score", 1.5),
        ("max_lost_s", -1.0),
        ("reid_s", 0.5),
    ],
)
def test_bad_settings_name_their_parameter(param: str, value: float) -> None:
    settings: dict[str, Any] = {param: value}  # each test sets one parameter by its name
    with pytest.raises(ConfigError) as caught:
        FaceTracker(**settings)
    assert caught.value.param == param


def test_tracked_faces_smooth_per_track_from_the_first_frame() -> None:
    """Rows of unconfirmed faces stay (face_id UNCONFIRMED); smoothing follows each track,
    its unconfirmed frames included, and never mixes two people."""
    tracked = TrackedFaces(FaceTracker(), Smoother(3))
    levels = {"left": [0.1, 0.2, 0.9, 0.3], "right": [0.8, 0.7, 0.0, 0.6]}
    out: dict[str, list[FaceRecord]] = {"left": [], "right": []}
    for t in range(4):
        records = [
            FaceRecord(
                "clip", t, t / FPS, i, box(x, 100), 0.999, np.full(41, levels[side][t], np.float32)
            )
            for i, (side, x) in enumerate((("right", 400), ("left", 100)))
        ]
        for record, side in zip(tracked(records), ("right", "left")):
            out[side].append(record)
    assert [r.face_id for r in out["right"]] == [UNCONFIRMED, UNCONFIRMED, 0, 0]
    assert [r.face_id for r in out["left"]] == [UNCONFIRMED, UNCONFIRMED, 1, 1]
    for side, values in levels.items():
        expected = [np.median(values[max(0, t - 2) : t + 1]) for t in range(4)]
        probs = present(r.probs for r in out[side])
        np.testing.assert_allclose([p[0] for p in probs], np.array(expected), rtol=1e-6)
    nothing = [FaceRecord.no_face(Frame.of("clip", np.zeros((4, 4, 3), np.uint8), 4, 0.16))]
    assert tracked(nothing) == nothing
    without = TrackedFaces(None, None)
    assert [r.face_id for r in without(faces([box(50, 50)]))] == [0]


def test_smoother_median_matches_numpy() -> None:
    rng = np.random.default_rng(1)
    frames = rng.random((12, 41)).astype(np.float32)
    other = rng.random((12, 41)).astype(np.float32)
    k = 5
    smoother = Smoother(k, "median")
    for t in range(12):
        out = smoother(7, frames[t])
        smoother(8, other[t])  # another track must not mix in
        expected = np.median(frames[max(0, t - k + 1) : t + 1], axis=0)
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
        np.testing.assert_allclose(out, weights @ frames[: t + 1], rtol=1e-10)


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


def test_rows_wait_for_their_faces_confirmation() -> None:
    """IdsFromFirstFrame: a face's first two frames wait for its confirmation at the third and
    go with its id; a flicker's frame waits until its track ends and keeps UNCONFIRMED; what is
    held when the video stops goes with the ids known then; no frame waits past the limit."""
    held: IdsFromFirstFrame[int] = IdsFromFirstFrame(TrackedFaces(FaceTracker(), None), limit=8)
    assert held(0, faces([box(100, 100)], 0)) == []
    assert held(1, faces([box(102, 100)], 1)) == []
    out = held(2, faces([box(104, 100)], 2))
    assert [(t, [r.face_id for r in rows]) for t, rows in out] == [(0, [0]), (1, [0]), (2, [0])]
    assert held(3, faces([box(106, 100), box(300, 100)], 3)) == []  # a second face appears
    assert held(4, faces([box(108, 100)], 4)) == []
    out = held(5, faces([box(110, 100)], 5))  # its track ended unconfirmed
    assert [[r.face_id for r in rows] for _, rows in out] == [[0, UNCONFIRMED], [0], [0]]
    assert held(6, faces([box(112, 100), box(300, 300)], 6)) == []
    assert [[r.face_id for r in rows] for _, rows in held.flush()] == [[0, UNCONFIRMED]]
    assert held.flush() == []
    short: IdsFromFirstFrame[int] = IdsFromFirstFrame(
        TrackedFaces(FaceTracker(confirm_frames=30), None), limit=2
    )
    released = [t for n in range(6) for t, _ in short(n, faces([box(100, 100)], n))]
    assert released == [0, 1, 2, 3]
