"""Whole data sets in one run: input expansion, bad files, batching, resuming, untouched inputs."""

from __future__ import annotations

import csv
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from factories import present, probs_of, read_rows, run_main
from opengraphau.aus import AU_COLUMNS
from opengraphau.pipeline import Pipeline
from opengraphau.predictor import AUPredictor


def _image(path: Path, seed: int, size: tuple[int, int] = (96, 112)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def _run(ck: Path, out: Path, *inputs: str, extra: tuple[str, ...] = ()) -> int:
    return run_main(
        "--resume",
        str(ck),
        "--no-detect",
        "--quiet",
        "--output-dir",
        str(out),
        "--workers",
        "0",
        "--input",
        *inputs,
        *extra,
    )


@pytest.fixture()
def dataset(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    _image(root / "b" / "face.JPG", 1)
    _image(root / "a" / "deep" / "x.Png", 2)
    _image(root / "a" / "face.jpeg", 3)
    _image(root / "top.webp", 4, (130, 90))
    _image(root / "c" / "pic.TIFF", 5)
    (root / "notes.txt").write_text("not an image")
    (root / "a" / "data.csv").write_text("1,2")
    return root


def _fingerprint(folder: Path) -> dict[str, tuple[str, float]]:
    return {
        str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_folder_walk_is_recursive_sorted_and_case_insensitive(
    resnet18_s1: Path, dataset: Path, tmp_path: Path
) -> None:
    before = _fingerprint(dataset)
    assert _run(resnet18_s1, tmp_path / "out", str(dataset), extra=("--draw_text",)) == 0
    files = [Path(r["file"]).relative_to(dataset).as_posix() for r in read_rows(tmp_path / "out")]
    assert files == ["a/deep/x.Png", "a/face.jpeg", "b/face.JPG", "c/pic.TIFF", "top.webp"]
    # Two face.* files in different folders get separate pictures, mirrored under the output.
    assert (tmp_path / "out" / "a" / "face_pred.jpg").is_file()
    assert (tmp_path / "out" / "b" / "face_pred.jpg").is_file()
    assert _fingerprint(dataset) == before  # inputs untouched, nothing added beside them


def test_globs_and_list_files(resnet18_s1: Path, dataset: Path, tmp_path: Path) -> None:
    listing = tmp_path / "list.txt"
    listing.write_text(f"# comment\n{dataset / 'top.webp'}\n\nrel/one.png\n")
    _image(tmp_path / "rel" / "one.png", 9)
    code = _run(resnet18_s1, tmp_path / "out", str(dataset / "a" / "**" / "*.*"), f"@{listing}")
    assert code == 0
    files = [r["file"] for r in read_rows(tmp_path / "out")]
    assert files == [
        str(dataset / "a" / "deep" / "x.Png"),
        str(dataset / "a" / "face.jpeg"),
        str(dataset / "top.webp"),
        os.path.join(str(tmp_path), "rel/one.png"),
    ]


def test_nothing_found_is_a_usage_error(resnet18_s1: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    missing = str(tmp_path / "no*.jpg")
    assert _run(resnet18_s1, tmp_path / "out", str(tmp_path / "empty"), missing) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no images or videos found" in err[0]


def test_bad_files_are_reported_and_the_run_goes_on(
    resnet18_s1: Path, tmp_path: Path, capsys
) -> None:
    root = tmp_path / "mixed"
    _image(root / "good1.png", 1)
    _image(root / "good2.png", 2)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 300, 3), dtype=np.uint8)).save(
        root / "full.jpg"
    )
    data = (root / "full.jpg").read_bytes()
    (root / "full.jpg").unlink()
    (root / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (root / "empty.png").write_bytes(b"")
    (root / "random.jpg").write_bytes(np.random.default_rng(1).bytes(4000))
    (root / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100)
    Image.new("1", (10000, 9000)).save(root / "bomb.png")  # 90 Mpx: over Pillow's limit
    code = _run(resnet18_s1, tmp_path / "out", str(root), str(tmp_path / "missing.jpg"))
    assert code == 1
    rows = read_rows(tmp_path / "out")
    assert sorted(Path(r["file"]).name for r in rows) == ["good1.png", "good2.png"]
    with open(tmp_path / "out" / "errors.csv", newline="") as f:
        errors = {Path(r["file"]).name: r["reason"] for r in csv.DictReader(f)}
    assert set(errors) == {
        "truncated.jpg",
        "empty.png",
        "random.jpg",
        "corrupt.png",
        "bomb.png",
        "missing.jpg",
    }
    assert "decoded" in errors["truncated.jpg"] and "decompression bomb" in errors["bomb.png"]
    err = capsys.readouterr().err
    assert "Traceback" not in err and all(name in err for name in errors)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_file(resnet18_s1: Path, tmp_path: Path) -> None:
    path = _image(tmp_path / "locked.png", 1)
    path.chmod(0)
    assert _run(resnet18_s1, tmp_path / "out", str(path)) == 1
    assert "permission denied" in (tmp_path / "out" / "errors.csv").read_text()


def test_batched_equals_one_at_a_time(resnet18_s1: Path, dataset: Path, tmp_path: Path) -> None:
    assert _run(resnet18_s1, tmp_path / "b4", str(dataset), extra=("--batch-size", "4")) == 0
    assert (
        _run(
            resnet18_s1,
            tmp_path / "b1",
            str(dataset),
            extra=("--batch-size", "1", "--workers", "1"),
        )
        == 0
    )
    np.testing.assert_allclose(
        probs_of(read_rows(tmp_path / "b4")), probs_of(read_rows(tmp_path / "b1")), atol=1e-6
    )


def test_skip_existing_after_an_interrupted_run(
    resnet18_s1: Path, dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _run(resnet18_s1, tmp_path / "full", str(dataset), extra=("--batch-size", "2")) == 0
    calls = {"n": 0}
    original = Pipeline.infer

    def interrupted(self, batch):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(self, batch)

    monkeypatch.setattr(Pipeline, "infer", interrupted)
    out = tmp_path / "resumed"
    assert _run(resnet18_s1, out, str(dataset), extra=("--batch-size", "2")) == 130
    assert len(read_rows(out)) == 2  # the first batch was written before the interruption
    # A crash can also cut the last line in half: simulate that too.
    with open(out / "predictions.csv", "a") as f:
        f.write(f"{dataset / 'c' / 'pic.TIFF'},0,0.0")
    monkeypatch.setattr(Pipeline, "infer", original)
    assert _run(resnet18_s1, out, str(dataset), extra=("--batch-size", "2", "--skip-existing")) == 0
    resumed, full = read_rows(out), read_rows(tmp_path / "full")
    assert sorted(r["file"] for r in resumed) == sorted(r["file"] for r in full)
    by_file = {r["file"]: r for r in resumed}
    np.testing.assert_allclose(
        probs_of([by_file[r["file"]] for r in full]), probs_of(full), atol=1e-6
    )
    # A third run has nothing left to do and adds nothing.
    assert _run(resnet18_s1, out, str(dataset), extra=("--skip-existing",)) == 0
    assert len(read_rows(out)) == len(full)


def test_jsonl_output(resnet18_s1: Path, tmp_path: Path) -> None:
    import json

    path = _image(tmp_path / "one.png", 1)
    assert (
        _run(
            resnet18_s1,
            tmp_path / "out",
            str(path),
            extra=("--format", "csv,jsonl", "--threshold", "0.4"),
        )
        == 0
    )
    records = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").open()]
    assert len(records) == 1
    rec = records[0]
    assert rec["file"] == str(path) and rec["frame"] == 0 and rec["face"] == 0
    assert rec["box"] == {"x": 0, "y": 0, "w": 96, "h": 112}
    row = read_rows(tmp_path / "out")[0]
    assert [a["id"] for a in rec["aus"]] == list(AU_COLUMNS)
    for au in rec["aus"]:
        assert au["probability"] == pytest.approx(float(row[au["id"]]), abs=1e-6)
        assert au["active"] == (au["probability"] >= 0.4)
    assert rec["aus"][9]["name"] == "Lip corner puller"


def test_api_takes_paths_pil_and_numpy(resnet18_s1: Path, tmp_path: Path) -> None:
    path = _image(tmp_path / "a.png", 1)
    pil = Image.open(path).convert("RGB")
    results = AUPredictor(resnet18_s1, device="cpu", batch_size=2).predict(
        [path, pil, np.asarray(pil), str(path)]
    )
    probs = np.stack(present(r.faces[0].probs for r in results))
    assert probs.shape == (4, 41) and results[0].size == (96, 112)
    np.testing.assert_allclose(probs, np.repeat(probs[:1], 4, axis=0), atol=1e-6)
    assert results[0].faces[0].aus["AU12"] == pytest.approx(float(probs[0, 9]))
