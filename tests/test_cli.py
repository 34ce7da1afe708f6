"""demo.py end to end, as a user runs it: exit codes, files written, text shown."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from factories import FACE, ROOT, cli
from opengraphau.aus import AU_COLUMNS, AU_IDS
from opengraphau.model import load_model
from opengraphau.render.pictures import LINE_PX, PAD, ROWS
from opengraphau.sources.images import load_image

HEADER = (
    "file,frame,timestamp,face_id,success,confidence,x,y,w,h,AU1,AU2,AU4,AU5,AU6,AU7,AU9,"
    "AU10,AU11,AU12,AU13,AU14,AU15,AU16,AU17,AU18,AU19,AU20,AU22,AU23,AU24,AU25,AU26,AU27,"
    "AU32,AU38,AU39,AUL1,AUR1,AUL2,AUR2,AUL4,AUR4,AUL6,AUR6,AUL10,AUR10,AUL12,AUR12,AUL14,"
    "AUR14"
)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def au_lines(stdout: str) -> list[str]:
    """The table's AU rows (not its header)."""
    return [
        ln
        for ln in stdout.splitlines()
        if ln.split() and ln.split()[0].startswith("AU") and ln.split()[0] != "AU"
    ]


def expected_probs(checkpoint: Path, image: Path) -> np.ndarray:
    """Independent of the CLI: the plain eager model on the decoded, preprocessed image."""
    from oracle import oracle_forward

    model = load_model(checkpoint, optimize=False)
    batch = model.preprocess(load_image(image)).unsqueeze(0)
    with torch.no_grad():
        return oracle_forward(model, batch)[0].numpy()


@pytest.mark.parametrize("fixture", ["resnet18_s1", "resnet18_s2"])
def test_reference_command(fixture: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    checkpoint = request.getfixturevalue(fixture)
    stage = fixture[-1]
    out = tmp_path / "out"
    result = cli(
        "--arc",
        "resnet18",
        "--stage",
        stage,
        "--exp-name",
        "demo",
        "--resume",
        str(checkpoint),
        "--input",
        str(FACE),
        "--draw_text",
        "--no-detect",
        "--output-dir",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    assert (out / "predictions.csv").read_text().splitlines()[0] == HEADER
    rows = read_csv(out / "predictions.csv")
    assert len(rows) == 1
    row = rows[0]
    assert (row["file"], row["frame"], row["face_id"], row["success"]) == (str(FACE), "0", "0", "1")
    assert float(row["timestamp"]) == 0 and float(row["confidence"]) == 1
    assert [float(row[c]) for c in "xywh"] == [0, 0, 256, 256]
    probs = np.array([float(row[c]) for c in AU_COLUMNS])
    assert all(len(row[c].split(".")[1]) == 6 for c in AU_COLUMNS)
    np.testing.assert_allclose(probs, expected_probs(checkpoint, FACE), atol=2e-6)
    # The table on stdout: one line per AU, marked when at or above the threshold.
    lines = au_lines(result.stdout)
    assert [ln.split()[0] for ln in lines] == [f"AU{i}" for i in AU_IDS]
    marked = sum(ln.rstrip().endswith("*") for ln in lines)
    assert marked == int((probs >= 0.5).sum())
    assert (out / "astronaut_face_pred.jpg").is_file()


def test_threshold_marks_and_picture(resnet18_s1: Path, tmp_path: Path) -> None:
    for threshold, name in (("0", "all"), ("1", "none")):
        out = tmp_path / name
        result = cli(
            "--resume",
            str(resnet18_s1),
            "--input",
            str(FACE),
            "--no-detect",
            "--draw_text",
            "--threshold",
            threshold,
            "--output-dir",
            str(out),
        )
        assert result.returncode == 0, result.stderr
        lines = au_lines(result.stdout)
        assert sum(ln.rstrip().endswith("*") for ln in lines) == (41 if name == "all" else 0)
        picture = np.asarray(Image.open(out / "astronaut_face_pred.jpg").convert("RGB")).astype(int)
        height = PAD + ROWS * LINE_PX + PAD
        photo_w = round(256 * height / 256)
        assert picture.shape[0] == height and picture.shape[1] > photo_w + 500
        panel = picture[:, photo_w + 4 :]
        red = (panel[..., 0] > 150) & (panel[..., 1] < 80) & (panel[..., 2] < 80)
        assert (red.sum() > 500) if name == "all" else (red.sum() < 20)


def test_untrained_says_so_everywhere(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = cli(
        "--untrained",
        "--arc",
        "resnet18",
        "--input",
        str(FACE),
        "--no-detect",
        "--draw_text",
        "--format",
        "csv,jsonl",
        "--output-dir",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    assert "UNTRAINED" in result.stderr and "UNTRAINED" in result.stdout
    header = (out / "predictions.csv").read_text().splitlines()[0]
    assert header == HEADER + ",untrained"
    assert read_csv(out / "predictions.csv")[0]["untrained"] == "1"
    assert '"untrained": true' in (out / "predictions.jsonl").read_text()
    picture = np.asarray(Image.open(out / "astronaut_face_pred.jpg").convert("RGB")).astype(int)
    top = picture[: LINE_PX + PAD]
    assert ((top[..., 0] > 150) & (top[..., 1] < 80)).sum() > 100  # red title line


def test_no_checkpoint_anywhere_offline_names_the_download_command(tmp_path: Path) -> None:
    env = {**os.environ, "OPENGRAPHAU_HOME": str(tmp_path / "cache"), "OPENGRAPHAU_OFFLINE": "1"}
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "demo.py"),
            "--input",
            str(FACE),
            "--no-detect",
            "--checkpoint-dir",
            str(tmp_path),
            "--output-dir",
            str(tmp_path / "o"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert "`opengraphau download resnet50-s2`" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_checkpoint_found_in_checkpoint_dir(resnet18_s1: Path, tmp_path: Path) -> None:
    folder = tmp_path / "ck"
    folder.mkdir()
    (folder / "anything.pth").write_bytes(resnet18_s1.read_bytes())
    result = cli(
        "--input",
        str(FACE),
        "--no-detect",
        "--checkpoint-dir",
        str(folder),
        "--output-dir",
        str(tmp_path / "o"),
        "--quiet",
    )
    assert result.returncode == 0, result.stderr
    assert len(read_csv(tmp_path / "o" / "predictions.csv")) == 1


@pytest.mark.parametrize(
    "flags,needle",
    [
        (["--arc", "resnet1000"], "--arc"),
        (["--threshold", "2"], "--threshold"),
        (["--format", "xml"], "--format"),
        (["--batch-size", "0"], "--batch-size"),
        (["--device", "tpu"], "--device"),
        (["--stage", "3"], "--stage"),
    ],
)
def test_bad_flags_exit_2_with_one_line(flags: list[str], needle: str, tmp_path: Path) -> None:
    result = cli(
        "--untrained",
        "--input",
        str(FACE),
        "--no-detect",
        "--output-dir",
        str(tmp_path / "o"),
        *flags,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in result.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_cuda_requested_without_cuda(tmp_path: Path) -> None:
    result = cli(
        "--untrained",
        "--input",
        str(FACE),
        "--no-detect",
        "--device",
        "cuda",
        "--output-dir",
        str(tmp_path / "o"),
    )
    assert result.returncode == 2 and "CUDA is not available" in result.stderr


def test_a_failed_start_keeps_earlier_results(resnet18_s1: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert (
        cli(
            "--resume",
            str(resnet18_s1),
            "--input",
            str(FACE),
            "--no-detect",
            "--quiet",
            "--output-dir",
            str(out),
        ).returncode
        == 0
    )
    before = (out / "predictions.csv").read_text()
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    result = cli(
        "--resume",
        str(tmp_path / "bad.pth"),
        "--input",
        str(FACE),
        "--no-detect",
        "--overwrite",
        "--output-dir",
        str(out),
    )
    assert result.returncode == 2 and (out / "predictions.csv").read_text() == before
    (tmp_path / "file").write_text("x")
    result = cli(
        "--untrained",
        "--input",
        str(FACE),
        "--no-detect",
        "--output-dir",
        str(tmp_path / "file" / "sub"),
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"demo.py: error: --output-dir {tmp_path / 'file' / 'sub'}: cannot create it "
        "(Not a directory); choose another folder"
    ]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU message")
def test_fp16_on_cpu_is_a_usage_error(tmp_path: Path) -> None:
    result = cli(
        "--untrained",
        "--arc",
        "resnet18",
        "--input",
        str(FACE),
        "--no-detect",
        "--precision",
        "fp16",
        "--output-dir",
        str(tmp_path / "o"),
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--precision fp16" in lines[0] and "CUDA" in lines[0]


def test_export_onnx_checks_the_file(resnet18_s2: Path, tmp_path: Path) -> None:
    import onnxruntime as ort

    target = tmp_path / "model.onnx"
    result = cli("--resume", str(resnet18_s2), "--export-onnx", str(target))
    assert result.returncode == 0, result.stderr
    assert "resnet18 stage 2" in result.stdout and "onnxruntime matches" in result.stdout
    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    batch = load_model(resnet18_s2, optimize=False).preprocess(load_image(FACE)).unsqueeze(0)
    (probs,) = session.run(None, {"images": np.repeat(batch.numpy(), 3, axis=0)})
    assert probs.shape == (3, 41)
    np.testing.assert_allclose(probs[0], expected_probs(resnet18_s2, FACE), atol=1e-4)
    result = cli("--resume", str(resnet18_s2), "--export-onnx", str(tmp_path / "no" / "m.onnx"))
    assert result.returncode == 2 and "does not exist" in result.stderr
