"""Videos and webcams through demo.py: rows per frame and face, timestamps, outputs, damage."""
from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data

from opengraphau.aus import AU_COLUMNS
from factories import FakeCamera, probs_of, read_rows, run_main

FPS = 10.0


def _write_video(path: Path, frames: int, *, face_until: int, fourcc: str = "mp4v") -> Path:
    """A face sliding right over a grey background; it leaves the picture at `face_until`."""
    face = np.ascontiguousarray(data.astronaut()[20:240, 120:340][..., ::-1])
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), FPS, (480, 320))
    for i in range(frames):
        frame = np.full((320, 480, 3), 180, np.uint8)
        if i < face_until:
            x = 10 + (8 * i) % 240
            frame[50:270, x:x + 220] = face
        writer.write(frame)
    writer.release()
    return path


def _run(out: Path, *inputs: str, extra: tuple[str, ...] = (), capture_factory=None) -> int:
    return run_main("--untrained", "--arc", "resnet18", "--quiet", "--workers", "0",
                    "--output-dir", str(out), "--input", *inputs, *extra,
                    capture_factory=capture_factory)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_video(tmp_path_factory.mktemp("v") / "clip.mp4", 16, face_until=12)


def test_face_tracked_then_leaving(clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert _run(out, str(clip), extra=("--draw_text", "--batch-size", "5")) == 0
    rows = read_rows(out)
    assert [int(r["frame"]) for r in rows] == list(range(16))
    np.testing.assert_allclose([float(r["timestamp"]) for r in rows], np.arange(16) / FPS, atol=1e-3)
    assert [r["success"] for r in rows] == ["1"] * 12 + ["0"] * 4
    assert {r["face_id"] for r in rows[:12]} == {"0"}  # one track throughout
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
    assert _run(tmp_path / "se", str(clip), extra=("--start", "0.5", "--end", "1.0",
                                                  "--no-detect")) == 0
    assert [int(r["frame"]) for r in read_rows(tmp_path / "se")] == [5, 6, 7, 8, 9, 10]
    assert _run(tmp_path / "raw", str(clip), extra=("--no-detect",)) == 0
    assert _run(tmp_path / "sm", str(clip), extra=("--no-detect", "--smooth", "3")) == 0
    raw = probs_of(read_rows(tmp_path / "raw"))
    smooth = probs_of(read_rows(tmp_path / "sm"))
    expected = np.stack([np.median(raw[max(0, i - 2):i + 1], axis=0) for i in range(len(raw))])
    np.testing.assert_allclose(smooth, expected, atol=2e-6)


def test_truncated_video_keeps_early_frames(tmp_path: Path) -> None:
    path = _write_video(tmp_path / "cut.mkv", 40, face_until=40, fourcc="MJPG")
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
    empty = _write_video(tmp_path / "empty.avi", 0, face_until=0, fourcc="MJPG")
    image = tmp_path / "ok.png"
    cv2.imwrite(str(image), np.full((64, 64, 3), 100, np.uint8))
    assert _run(tmp_path / "o", str(tmp_path / "garbage.mp4"), str(empty), str(image),
                extra=("--no-detect",)) == 1
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

    assert _run(tmp_path / "o", "webcam:0", extra=("--no-detect", "--max-frames", "7",
                                                   "--draw_text"), capture_factory=factory) == 0
    rows = read_rows(tmp_path / "o")
    assert len(rows) == 7 and {r["file"] for r in rows} == {"webcam:0"}
    times = [float(r["timestamp"]) for r in rows]
    assert times == sorted(times)
    assert cameras[0].released
    assert (tmp_path / "o" / "webcam0_pred.mp4").is_file()
    assert (tmp_path / "o" / "webcam0_aus.png").is_file()
