"""Videos and webcams through demo.py: rows per frame and face, timestamps, outputs, damage."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from factories import (
    ROOT,
    Actor,
    FakeCamera,
    face_sprites,
    probs_of,
    read_rows,
    render_clip,
    run_main,
    write_clip,
    write_video,
)
from factories import VIDEO_FPS as FPS
from opengraphau.aus import AU_COLUMNS
from opengraphau.cli.report import fit_to_screen


def _run(out: Path, *inputs: str, extra: tuple[str, ...] = (), capture_factory=None) -> int:
    return run_main(
        "--untrained",
        "--arc",
        "resnet18",
        "--quiet",
        "--workers",
        "0",
        "--output-dir",
        str(out),
        "--input",
        *inputs,
        *extra,
        capture_factory=capture_factory,
    )


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(tmp_path_factory.mktemp("v") / "clip.mp4", 16, face_until=12)


def test_face_tracked_then_leaving(clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert _run(out, str(clip), extra=("--draw_text", "--batch-size", "5")) == 0
    rows = read_rows(out)
    assert [int(r["frame"]) for r in rows] == list(range(16))
    np.testing.assert_allclose(
        [float(r["timestamp"]) for r in rows], np.arange(16) / FPS, atol=1e-3
    )
    assert [r["success"] for r in rows] == ["1"] * 12 + ["0"] * 4
    # confirmed at its third frame, its rows held back until then: one id from the first frame
    assert [r["face_id"] for r in rows[:12]] == ["0"] * 12
    xs = [float(r["x"]) for r in rows[:12]]
    assert all(b > a for a, b in zip(xs, xs[1:]))  # the box follows the moving face
    assert all(r[c] == "" for r in rows[12:] for c in AU_COLUMNS)
    capture = cv2.VideoCapture(str(out / "clip_pred.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 16
    ok, frame = capture.read()
    capture.release()
    assert ok and frame.shape == (320, 480, 3)
    plot = cv2.imread(str(out / "clip_aus.png"))
    assert plot is not None and plot.shape[0] >= 600 and plot.shape[1] >= 1000


def test_every_start_end_and_smoothing(clip: Path, tmp_path: Path) -> None:
    assert _run(tmp_path / "e", str(clip), extra=("--every", "3", "--no-detect")) == 0
    assert [int(r["frame"]) for r in read_rows(tmp_path / "e")] == [0, 3, 6, 9, 12, 15]
    assert (
        _run(tmp_path / "se", str(clip), extra=("--start", "0.5", "--end", "1.0", "--no-detect"))
        == 0
    )
    assert [int(r["frame"]) for r in read_rows(tmp_path / "se")] == [5, 6, 7, 8, 9, 10]
    assert _run(tmp_path / "raw", str(clip), extra=("--no-detect",)) == 0
    assert _run(tmp_path / "sm", str(clip), extra=("--no-detect", "--smooth", "3")) == 0
    raw = probs_of(read_rows(tmp_path / "raw"))
    rows = read_rows(tmp_path / "sm")
    smooth = np.array([[float(r[f"{c}_smooth"]) for c in AU_COLUMNS] for r in rows])
    expected = np.stack([np.median(raw[max(0, i - 2) : i + 1], axis=0) for i in range(len(raw))])
    np.testing.assert_allclose(smooth, expected, atol=2e-6)
    np.testing.assert_array_equal(probs_of(rows), raw)  # the model's values are kept


def test_truncated_video_keeps_early_frames(tmp_path: Path) -> None:
    path = write_video(tmp_path / "cut.mkv", 40, face_until=40, fourcc="MJPG")
    data_bytes = path.read_bytes()
    path.write_bytes(data_bytes[: len(data_bytes) // 2])
    code = _run(tmp_path / "o", str(path), extra=("--no-detect",))
    assert code == 1
    rows = read_rows(tmp_path / "o")
    assert 5 < len(rows) < 40 and [int(r["frame"]) for r in rows] == list(range(len(rows)))
    errors = (tmp_path / "o" / "errors.csv").read_text()
    assert "cut.mkv" in errors and "truncated" in errors


def test_unreadable_videos_are_errors(tmp_path: Path, capsys) -> None:
    (tmp_path / "garbage.mp4").write_bytes(b"\x00" * 1000)
    empty = write_video(tmp_path / "empty.avi", 0, face_until=0, fourcc="MJPG")
    image = tmp_path / "ok.png"
    cv2.imwrite(str(image), np.full((64, 64, 3), 100, np.uint8))
    assert (
        _run(
            tmp_path / "o",
            str(tmp_path / "garbage.mp4"),
            str(empty),
            str(image),
            extra=("--no-detect",),
        )
        == 1
    )
    with open(tmp_path / "o" / "errors.csv", newline="") as f:
        failed = {Path(r["file"]).name for r in csv.DictReader(f)}
    assert failed == {"garbage.mp4", "empty.avi"}
    assert len(read_rows(tmp_path / "o")) == 1
    assert "Traceback" not in capsys.readouterr().err


def test_webcam_with_a_fake_capture(tmp_path: Path) -> None:
    cameras: list[FakeCamera] = []

    def factory(index):
        assert index == 0
        cameras.append(FakeCamera())
        return cameras[-1]

    assert (
        _run(
            tmp_path / "o",
            "webcam:0",
            extra=("--no-detect", "--max-frames", "7", "--draw_text"),
            capture_factory=factory,
        )
        == 0
    )
    rows = read_rows(tmp_path / "o")
    assert len(rows) == 7 and {r["file"] for r in rows} == {"webcam:0"}
    times = [float(r["timestamp"]) for r in rows]
    assert times == sorted(times)
    assert cameras[0].released
    assert (tmp_path / "o" / "webcam0_pred.mp4").is_file()
    assert (tmp_path / "o" / "webcam0_aus.png").is_file()


def test_a_cameras_rows_are_kept_however_it_stopped(tmp_path: Path) -> None:
    """A camera's rows are a recording that cannot be made again: after --max-frames, and after
    Ctrl-C, a resumed run keeps them and does not open the camera again."""
    from opengraphau import Options, Reporter, run

    opened: list[FakeCamera] = []

    def camera(index: str | int) -> FakeCamera:
        opened.append(FakeCamera())
        return opened[-1]

    class CtrlCAfterTwoFrames(Reporter):
        asked = 0

        def interrupt_requested(self) -> bool:
            self.asked += 1
            return self.asked == 2

    extra = ("--no-detect", "--max-frames", "3", "--skip-existing")
    for _ in range(2):
        assert _run(tmp_path / "o", "webcam:0", extra=extra, capture_factory=camera) == 0
    assert len(read_rows(tmp_path / "o")) == 3 and len(opened) == 1
    options = Options(
        inputs=("webcam:0",),
        output_dir=tmp_path / "c",
        untrained=True,
        arch="resnet18",
        detect=False,
        workers=0,
    )
    assert run(options, CtrlCAfterTwoFrames(), capture_factory=camera).interrupted
    assert len(read_rows(tmp_path / "c")) == 2
    resumed = Options(
        inputs=("webcam:0",),
        output_dir=tmp_path / "c",
        untrained=True,
        arch="resnet18",
        detect=False,
        workers=0,
        skip_existing=True,
        max_frames=5,
    )
    run(resumed, capture_factory=camera)
    assert len(read_rows(tmp_path / "c")) == 2 and len(opened) == 2


def test_q_in_the_preview_keeps_the_batch_and_leaves_the_video_to_redo(
    clip: Path, tmp_path: Path
) -> None:
    """q in the --show window stops the video: every frame of the batch in flight is written,
    and the video is not completed, so --skip-existing does it again, whole, once."""
    from opengraphau import Options, Reporter, run

    class QuitOnSecondFrame(Reporter):
        shown = 0

        def preview(self, frame: np.ndarray) -> bool:
            self.shown += 1
            return self.shown == 2

    options = Options(
        inputs=(str(clip),),
        output_dir=tmp_path / "o",
        untrained=True,
        arch="resnet18",
        detect=False,
        show=True,
        batch_size=4,
        workers=0,
    )
    run(options, QuitOnSecondFrame())
    assert [int(r["frame"]) for r in read_rows(tmp_path / "o")] == [0, 1, 2, 3]
    assert str(clip) not in (tmp_path / "o" / "completed.csv").read_text()
    resumed = Options(
        inputs=(str(clip),),
        output_dir=tmp_path / "o",
        untrained=True,
        arch="resnet18",
        detect=False,
        batch_size=4,
        workers=0,
        skip_existing=True,
    )
    run(resumed)
    assert [int(r["frame"]) for r in read_rows(tmp_path / "o")] == list(range(16))


def _tracked(
    folder: Path, checkpoint: Path, actors: list[Actor], frames: int, *extra: str
) -> list[dict[str, str]]:
    """The CSV rows of a 240 x 180, 25 fps clip of `actors`, with faces found and tracked by a
    calibrated ResNet-18 (its embeddings tell these two people apart)."""
    clip = write_clip(folder / "people.mp4", render_clip(actors, frames, (240, 180))[0])
    assert (
        run_main(
            "--resume",
            str(checkpoint),
            "--quiet",
            "--workers",
            "0",
            "--output-dir",
            str(folder / "out"),
            "--input",
            str(clip),
            *extra,
        )
        == 0
    )
    return read_rows(folder / "out")


def test_new_person_where_one_left_and_a_flash_get_no_old_id(
    resnet18_s1: Path, tmp_path: Path
) -> None:
    """The astronaut stands for 12 frames and leaves; 3 frames later the cameraman stands where
    she was; a face flashes up for one frame. Unconfirmed rows carry -1 in CSV and JSONL."""
    faces = face_sprites()

    def spot(t: int) -> tuple[float, float]:
        return (100 + 2 * math.sin(t / 2), 90 + math.cos(t / 3))

    actors = [
        Actor(faces["astronaut"], 60, lambda t: spot(t) if t < 12 else None),
        Actor(faces["cameraman"], 60, lambda t: spot(t) if t >= 15 else None),
        Actor(faces["cameraman"], 54, lambda t: (200, 50) if t == 5 else None),
    ]
    rows = _tracked(tmp_path, resnet18_s1, actors, 24, "--format", "csv,jsonl", "--draw_text")
    found = [r for r in rows if r["success"] == "1"]
    flash = [r["face_id"] for r in found if float(r["x"]) > 150]
    her = [r["face_id"] for r in found if float(r["x"]) < 150 and int(r["frame"]) < 12]
    his = [r["face_id"] for r in found if int(r["frame"]) >= 15]
    assert flash == ["-1"] and her == ["0"] * 12 and his == ["1"] * 9
    with open(tmp_path / "out" / "predictions.jsonl", encoding="utf-8") as f:
        assert [str(json.loads(line)["face"]) for line in f] == [r["face_id"] for r in rows]
    assert (tmp_path / "out" / "people_pred.mp4").is_file()
    # A timeline per person: hers (seen longest) under the plain name, his beside it.
    assert sorted(p.name for p in (tmp_path / "out").glob("*_aus.png")) == [
        "people_aus.png",
        "people_face1_aus.png",
    ]


def test_face_hidden_behind_another_keeps_its_id(resnet18_s1: Path, tmp_path: Path) -> None:
    """The cameraman, nearer the camera, walks across the astronaut and hides her for about 6
    frames: both keep their ids, and no third one appears."""
    faces = face_sprites()
    rear = Actor(faces["astronaut"], 56, lambda t: (120 + 2 * math.sin(t / 3), 90))
    front = Actor(faces["cameraman"], 100, lambda t: None)
    width = rear.picture.shape[1] + front.picture.shape[1]
    speed = front.picture.shape[1] / 6
    front.path = lambda t: (120 - width / 2 - 6 * speed + speed * t, 95)
    rows = _tracked(tmp_path, resnet18_s1, [rear, front], 12 + math.ceil(width / speed))
    found = [r for r in rows if r["success"] == "1"]
    hers = [r for r in found if float(r["w"]) < 27]  # her face is about 21 px wide, his 33
    assert max(np.diff([int(r["frame"]) for r in hers])) > 4  # she was hidden for a while
    assert [r["face_id"] for r in hers] == ["0"] * len(hers)
    assert {r["face_id"] for r in found} == {"0", "1"}


def test_preview_is_shrunk_to_the_screen() -> None:
    full_hd = np.zeros((1080, 1920, 3), np.uint8)
    shown = fit_to_screen(full_hd, (1600, 1000))
    assert shown.shape[0] <= 0.85 * 1000 and shown.shape[1] <= 1600
    assert abs(shown.shape[1] / shown.shape[0] - 1920 / 1080) < 0.01
    small = np.zeros((240, 320, 3), np.uint8)
    assert fit_to_screen(small, (1280, 720)) is small  # never enlarged


@pytest.fixture
def display() -> Iterator[str]:
    """A virtual 1600 x 1000 X display, when Xvfb is installed."""
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        pytest.skip("Xvfb is not installed")
    server = subprocess.Popen(
        [xvfb, "-displayfd", "1", "-screen", "0", "1600x1000x24"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None
        yield f":{server.stdout.readline().strip()}"
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_show_fits_the_screen_and_prints_no_qt_warnings(display: str, tmp_path: Path) -> None:
    """--show on a 1080p clip under a 1600 x 1000 display: the window is shrunk to fit (the
    saved video is not) and Qt says nothing on the terminal."""
    clip = write_clip(
        tmp_path / "hd.mp4", [np.full((1080, 1920, 3), 60 * i, np.uint8) for i in range(3)]
    )
    spy = (
        "import sys, cv2; shown = []; imshow = cv2.imshow\n"
        "cv2.imshow = lambda name, image: (shown.append(image.shape), imshow(name, image))\n"
        "from opengraphau.cli import main; code = main(sys.argv[1:])\n"
        "print('shown', shown[0][1], shown[0][0]); sys.exit(code)"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            spy,
            "--untrained",
            "--arc",
            "resnet18",
            "--no-detect",
            "--show",
            "--draw_text",
            "--quiet",
            "--workers",
            "0",
            "--input",
            str(clip),
            "--output-dir",
            str(tmp_path / "out"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "DISPLAY": display},
    )
    assert done.returncode == 0, done.stderr
    width, height = (int(v) for v in done.stdout.split("shown")[1].split())
    assert width <= 1600 and height <= 1000 and width / height == pytest.approx(16 / 9, 0.01)
    assert "QFont" not in done.stderr and "Qt" not in done.stderr, done.stderr
    saved = cv2.VideoCapture(str(tmp_path / "out" / "hd_pred.mp4"))
    assert (saved.get(cv2.CAP_PROP_FRAME_WIDTH), saved.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (
        1920,
        1080,
    )
    saved.release()
