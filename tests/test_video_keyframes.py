"""--detect-every K: full face searches on key frames, a search around the known faces between
(`faces.keyframes`), and ids on a person's rows from their first frame, on synthetic clips made
from real photos (people walking, entering, leaving, crossing)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from factories import (
    SPRITE_FACES,
    Actor,
    face_sprites,
    iou,
    read_rows,
    render_clip,
    run_main,
    write_clip,
)
from opengraphau.aus import AU_COLUMNS
from opengraphau.faces.detector import FaceDetector
from opengraphau.faces.keyframes import KeyFrameSearch

FPS = 25.0
SIZE = (320, 240)
FRAMES = 40


def _people() -> list[Actor]:
    """The astronaut walks right from the start; the cameraman walks left across her; a second
    astronaut enters at frame 13 (between key frames at K = 5: 10, 15) and leaves at frame 31."""
    faces, box = face_sprites(), SPRITE_FACES
    return [
        Actor(faces["astronaut"], 80, lambda t: (60 + 4 * t, 110), box["astronaut"]),
        Actor(faces["cameraman"], 80, lambda t: (270 - 4 * t, 130), box["cameraman"]),
        Actor(
            faces["astronaut"],
            64,
            lambda t: (250, 60 + math.sin(t / 3)) if 13 <= t < 31 else None,
            box["astronaut"],
        ),
    ]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    images, truth = render_clip(_people(), FRAMES, SIZE)
    return write_clip(tmp_path_factory.mktemp("kf") / "people.mp4", images, FPS), truth


@pytest.fixture(scope="module")
def runs(
    clip: tuple[Path, list], resnet18_s1: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[int, Path]:
    """The clip's output folder at K = 1 and K = 5."""
    folders = {}
    for k in (1, 5):
        out = tmp_path_factory.mktemp(f"k{k}")
        assert (
            run_main(
                "--resume",
                str(resnet18_s1),
                "--quiet",
                "--workers",
                "0",
                "--batch-size",
                "8",
                "--detect-every",
                str(k),
                "--output-dir",
                str(out),
                "--input",
                str(clip[0]),
            )
            == 0
        )
        folders[k] = out
    return folders


def _faces(out: Path) -> dict[int, list[dict[str, str]]]:
    found: dict[int, list[dict[str, str]]] = {}
    for r in read_rows(out):
        found.setdefault(int(r["frame"]), [])
        if r["success"] == "1":
            found[int(r["frame"])].append(r)
    return found


def _box(row: dict[str, str]) -> tuple[float, ...]:
    return tuple(float(row[c]) for c in "xywh")


def _box_int(box: tuple[float, ...] | None) -> tuple[float, ...]:
    assert box is not None
    return box


def test_detect_every_1_is_the_full_search_of_every_frame(clip: tuple[Path, list]) -> None:
    """K = 1 hands back exactly `FaceDetector.detect`'s detections, batch after batch."""
    images = render_clip(_people(), 12, SIZE)[0]
    detector = FaceDetector()
    search = KeyFrameSearch(1)
    found = search(detector, images[:8], [t / FPS for t in range(8)])
    found += search(detector, images[8:], [t / FPS for t in range(8, 12)])
    assert found == detector.detect(images)
    assert (search.frames, search.key_frames) == (12, 12)


def test_key_frames_find_the_faces_the_full_search_finds(
    runs: dict[int, Path], clip: tuple[Path, list]
) -> None:
    """K = 5 against K = 1 on the same frames: every face found (recall >= 0.98; a face that
    enters may wait for the next key frame, `test_an_entering_face...`), boxes with IoU >= 0.9
    each and a median >= 0.95 (the issue's targets), AU probabilities within 0.02 at the
    median."""
    full, keyed = _faces(runs[1]), _faces(runs[5])
    assert sorted(full) == sorted(keyed) == list(range(FRAMES))
    entering = {(t, _box_int(clip[1][t][2])) for t in (13, 14)}
    hits, ious, diffs, total = 0, [], [], 0
    for t, rows in full.items():
        for r in rows:
            if any(t == e and iou(_box(r), box) > 0.3 for e, box in entering):
                continue
            total += 1
            best = max(keyed[t], key=lambda o: iou(_box(r), _box(o)), default=None)
            if best is not None and iou(_box(r), _box(best)) >= 0.5:
                hits += 1
                ious.append(iou(_box(r), _box(best)))
                diffs.append(
                    np.abs(np.array([float(r[c]) - float(best[c]) for c in AU_COLUMNS])).max()
                )
    assert total > 80 and hits / total >= 0.98
    assert min(ious) >= 0.9 and np.median(ious) >= 0.95
    assert np.median(diffs) <= 0.02
    manifest = json.loads((runs[5] / "run.json").read_text())
    assert manifest["runs"][-1]["detector"]["detect_every"] == 5


def test_an_entering_face_is_found_within_k_frames_and_a_leaving_one_ends(
    runs: dict[int, Path], clip: tuple[Path, list]
) -> None:
    """The second astronaut enters at frame 13, between key frames: found by frame 15, the next
    key frame; she leaves at frame 31 and no row of her follows; her rows carry one id."""
    truth = clip[1]
    keyed = _faces(runs[5])
    hers = {
        t: [r for r in keyed[t] if iou(_box(r), truth[t][2]) >= 0.3]
        for t in range(FRAMES)
        if truth[t][2] is not None
    }
    seen = [t for t, rows in hers.items() if rows]
    assert 13 <= seen[0] <= 15 and seen[-1] == 30
    assert all(hers[t] for t in range(seen[0], 31))
    assert all(float(r["x"]) < 200 for t in range(31, FRAMES) for r in keyed[t])
    ids = {r["face_id"] for t in seen for r in hers[t]}
    assert len(ids) == 1 and ids != {"-1"}


def test_ids_from_the_first_frame_and_one_per_person(
    runs: dict[int, Path], clip: tuple[Path, list]
) -> None:
    """Every person's rows carry their id from their first row on, at K = 1 and K = 5: as many
    ids as people, none given to two of them, none -1."""
    truth = clip[1]
    for k in (1, 5):
        found = _faces(runs[k])
        ids: list[set[str]] = []
        for person in range(3):
            ids.append(
                {
                    r["face_id"]
                    for t in found
                    for r in found[t]
                    if truth[t][person] is not None and iou(_box(r), truth[t][person]) >= 0.3
                }
            )
        assert all(len(i) == 1 and i != {"-1"} for i in ids), (k, ids)
        assert len(set.union(*ids)) == 3


def test_ctrl_c_and_resume_keep_every_row_once(
    clip: tuple[Path, list], resnet18_s1: Path, runs: dict[int, Path], tmp_path: Path
) -> None:
    """Ctrl-C after the second batch: the rows held for confirmation are written; the video is
    not completed, so --skip-existing does it again, and the rows are those of a run never
    stopped, each once."""
    from opengraphau import Options, Reporter, run

    class CtrlCAfterTwoBatches(Reporter):
        asked = 0

        def interrupt_requested(self) -> bool:
            self.asked += 1
            return self.asked == 2

    options = Options(
        inputs=(str(clip[0]),),
        output_dir=tmp_path / "o",
        checkpoint=resnet18_s1,
        detect_every=5,
        batch_size=8,
        workers=0,
    )
    assert run(options, CtrlCAfterTwoBatches()).interrupted
    cut = read_rows(tmp_path / "o")
    assert sorted({int(r["frame"]) for r in cut}) == list(range(16))
    run(Options(**{**options.__dict__, "skip_existing": True}))
    assert read_rows(tmp_path / "o") == read_rows(runs[5])


@pytest.mark.slow
@pytest.mark.ray
def test_ray_video_tasks_give_the_local_rows(
    clip: tuple[Path, list], resnet18_s1: Path, runs: dict[int, Path], tmp_path: Path
) -> None:
    import os

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        assert (
            run_main(
                "--resume",
                str(resnet18_s1),
                "--quiet",
                "--workers",
                "0",
                "--batch-size",
                "8",
                "--detect-every",
                "5",
                "--engine",
                "ray",
                "--output-dir",
                str(tmp_path / "r"),
                "--input",
                str(clip[0]),
            )
            == 0
        )
    finally:
        ray.shutdown()
    assert read_rows(tmp_path / "r") == read_rows(runs[5])


def test_the_search_around_faces_is_the_same_on_a_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """Frames held on a device (a GPU) are searched from their device copies, as tensors; here
    CPU tensors stand in for them (frames no larger than the copy: the same pixels), and the
    faces found are those of the host frames."""
    import torch

    import opengraphau.faces.detector as detector_module

    images = render_clip(_people(), 20, SIZE)[0]
    detector = FaceDetector()
    known = detector.detect(images[15:16])[0]
    near = [[(d.box, 1.9) for d in known]] * 4
    host = detector.follow(images[16:20], near)
    monkeypatch.setattr(detector_module, "_device_shape", lambda frame: frame.shape)
    device = detector.follow([torch.from_numpy(i) for i in images[16:20]], near)
    assert [len(f) for f in host] == [3] * 4
    for a, b in zip(host, device):
        np.testing.assert_allclose([d.box for d in a], [d.box for d in b], atol=1e-3)


@pytest.mark.parametrize("size", [(1280, 720), (1920, 1080)])
def test_squares_of_a_large_frame_are_its_search_copys_pixels(size: tuple[int, int]) -> None:
    """A square `follow` shrinks alone from the frame is, pixel for pixel, that part of the copy
    `detect` searches (the whole frame shrunk by Pillow), at the frame's edges too."""
    from PIL import Image

    from opengraphau.faces.detector import _copy_part, _Square

    width, height = size
    frame = np.asarray(Image.fromarray(face_sprites()["astronaut"]).resize(size))
    detector = FaceDetector()
    small = detector._copy_size(width, height)
    copy = np.asarray(Image.fromarray(frame).resize(small, Image.Resampling.BILINEAR))
    for left, top, right, bottom in [(0, 0, 301, 203), (333, 101, 620, 390), (700, 400, 1024, 576)]:
        part = _copy_part(frame, small, _Square(0, left, top, right, bottom, 12.0)).numpy()
        assert np.array_equal(part, copy[top:bottom, left:right])


def test_faces_inside_their_squares_get_the_full_searchs_boxes() -> None:
    """`follow` on 1280 x 720 frames (searched on a 1024 x 576 copy) around the faces the full
    search found on the frame before: every face is found again with the full search's box and
    probability on its frame (IoU >= 0.99: the same box up to the last bits of the
    convolutions), and nothing else."""
    unit = 720 / 240
    actors = [Actor(a.picture, round(a.picture.shape[0] * unit), a.path, a.face) for a in _people()]
    for actor, person in zip(actors, _people()):
        actor.path = lambda t, p=person.path: (
            None if p(t) is None else (p(t)[0] * unit, p(t)[1] * unit)
        )
    images = render_clip(actors, 20, (1280, 720))[0][14:20]
    detector = FaceDetector()
    full = detector.detect(images)
    assert [len(f) for f in full] == [3] * 6
    followed = detector.follow(images[1:], [[(d.box, 1.5) for d in f] for f in full[:-1]])
    for want, got in zip(full[1:], followed):
        assert len(got) == len(want)
        for a, b in zip(want, got):
            assert iou(a.box, b.box) >= 0.99
            assert abs(a.confidence - b.confidence) < 1e-4


def test_a_bad_detect_every_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main("--untrained", "--input", "x.mp4", "--detect-every", "0") == 2
    assert capsys.readouterr().err.strip() == "demo.py: error: --detect-every 0: must be at least 1"


def test_detect_every_1_gives_todays_rows(
    runs: dict[int, Path], clip: tuple[Path, list], resnet18_s1: Path
) -> None:
    """--detect-every 1 against the road before key frames, rebuilt here: every frame searched
    in full by the pipeline, records tracked frame by frame. Every field is the same, byte for
    byte, but face_id: the same id where that road had one, and the person's id where it wrote
    -1 (the first frames, before confirmation)."""
    from opengraphau.sinks.writer import csv_rows
    from opengraphau.sources.video import VideoSource
    from opengraphau.spec import PipelineSpec
    from opengraphau.tracking import FaceTracker, TrackedFaces

    pipeline = PipelineSpec(str(resnet18_s1), device="cpu", batch_size=8).build()
    tracked = TrackedFaces(FaceTracker(), None)
    today: list[list[str]] = []
    with VideoSource(str(clip[0])) as source:
        frames = list(source)
    for start in range(0, len(frames), 8):
        for records in pipeline(frames[start : start + 8]):
            today += csv_rows(tracked(records), untrained=False, smooth=False)
    rows = [list(r.values()) for r in read_rows(runs[1])]
    face_id = list(read_rows(runs[1])[0]).index("face_id")
    assert len(rows) == len(today)
    for new, old in zip(rows, today):
        assert new[:face_id] + new[face_id + 1 :] == old[:face_id] + old[face_id + 1 :]
        assert new[face_id] == old[face_id] or (old[face_id] == "-1" and new[face_id] != "-1")
    assert sum(old[face_id] == "-1" for old in today) >= 6  # 2 frames for each of 3 people
