"""Results people analyse: run.json, predictions.parquet, summary.csv and read_results, on photos
and a short video with a real face, through resumed, interrupted and killed runs."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

import opengraphau
from factories import FACE, FAST, ROOT, doc_section, fast_with, read_rows, run_main, write_video
from opengraphau import InputError, OutputError, read_results
from opengraphau.aus import AU_COLUMNS
from opengraphau.pipeline import Pipeline
from opengraphau.records import UNCONFIRMED, FaceRecord
from opengraphau.schema import CSV_HEADER
from opengraphau.sinks import parquet
from opengraphau.sinks.files import OutputFolder
from opengraphau.sinks.writer import CsvSink, SinkSettings
from opengraphau.thresholds import as_thresholds

OFFICIAL_NAME = "OpenGprahAU-ResNet18_first_stage.pth"


def _settings(completed: set[str] | None) -> SinkSettings:
    """A trained, unsmoothed run's sink settings; `completed`: None for a fresh run."""
    done = None if completed is None else frozenset(completed)
    return SinkSettings(completed=done, threshold=as_thresholds(0.5), untrained=False)


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory, resnet18_s1: Path) -> dict[str, Path]:
    """A photo with a face, one without, and a 16-frame clip whose face leaves at frame 12, run
    with face detection into results/demo (CSV and Parquet) and into csv_only/ (CSV alone)."""
    root = tmp_path_factory.mktemp("study")
    checkpoint = root / OFFICIAL_NAME
    shutil.copyfile(resnet18_s1, checkpoint)
    clip = write_video(root / "clip.mp4", 16, face_until=12)
    blank = root / "blank.png"
    Image.new("RGB", (96, 112), (128, 128, 128)).save(blank)
    folders = {"out": root / "results" / "demo", "csv": root / "csv_only"}
    for folder, formats in ((folders["out"], "csv,parquet"), (folders["csv"], "csv")):
        assert (
            run_main(
                "--resume",
                str(checkpoint),
                "--quiet",
                "--workers",
                "0",
                "--batch-size",
                "5",
                "--format",
                formats,
                "--output-dir",
                str(folder),
                "--input",
                str(FACE),
                str(blank),
                str(clip),
            )
            == 0
        )
    return {"root": root, "checkpoint": checkpoint, "clip": clip, **folders}


def _manifest(out: Path) -> dict:
    return json.loads((out / "run.json").read_text(encoding="utf-8"))


def _interrupt_on(
    monkeypatch: pytest.MonkeyPatch, call: int, stop: type[BaseException] = KeyboardInterrupt
) -> None:
    """Pipeline.infer raises `stop` on its `call`-th call (the batches before are written)."""
    original, calls = Pipeline.infer, {"n": 0}

    def infer(self, batch):
        calls["n"] += 1
        if calls["n"] == call:
            raise stop
        return original(self, batch)

    monkeypatch.setattr(Pipeline, "infer", infer)


def _expected_summary(out: Path, threshold: float) -> pd.DataFrame:
    """summary.csv computed independently: a groupby over the video rows of predictions.csv."""
    rows = pd.read_csv(out / "predictions.csv")
    faces = rows[
        (rows["success"] == 1)
        & rows["file"].str.endswith(".mp4")
        & (rows["face_id"] != UNCONFIRMED)
    ]
    tracks = faces.groupby(["file", "face_id"])
    expected = pd.DataFrame(
        {
            "first_frame": tracks["frame"].min(),
            "last_frame": tracks["frame"].max(),
            "first_time": tracks["timestamp"].min(),
            "last_time": tracks["timestamp"].max(),
            "frames": tracks.size(),
            "threshold": threshold,
        }
    )
    means = tracks[list(AU_COLUMNS)].mean().add_suffix("_mean")
    rates = (
        (faces[list(AU_COLUMNS)] >= threshold)
        .groupby([faces["file"], faces["face_id"]])
        .mean()
        .add_suffix("_rate")
    )
    return pd.concat([expected, means, rates], axis=1)


def _assert_summary(out: Path, threshold: float = 0.5) -> pd.DataFrame:
    summary = pd.read_csv(out / "summary.csv").set_index(["file", "face_id"])
    assert not summary.index.duplicated().any()
    expected = _expected_summary(out, threshold)
    pd.testing.assert_frame_equal(
        summary.sort_index(),
        expected.sort_index(),
        check_dtype=False,
        check_exact=False,
        atol=1e-6,
        rtol=0,
    )
    return summary


def test_run_json_says_what_made_the_results(study: dict[str, Path]) -> None:
    document = _manifest(study["out"])
    assert document["tool"] == "opengraphau" and document["manifest"] == 1
    (run,) = document["runs"]
    assert run["version"] == opengraphau.__version__
    assert run["status"] == "done" and run["error"] is None and run["resumed"] is False
    started, ended = (datetime.fromisoformat(run[k]) for k in ("started", "ended"))
    assert started.tzinfo is not None and started <= ended
    assert run["command"][-4:] == [
        "--input",
        str(FACE),
        str(study["root"] / "blank.png"),
        str(study["clip"]),
    ]
    assert run["device"] == "cpu" and run["precision"] == "fp32" and run["threshold"] == 0.5
    assert run["batch_size"] == 5 and run["exact_pixels"] is False
    assert run["detector"] == {
        "enabled": True,
        "min_face_size": 20,
        "min_confidence": 0.9,
        "max_faces": None,
        "detect_every": 5,  # the default
    }
    assert run["untrained"] is False and run["formats"] == ["csv", "parquet"]
    checkpoint = study["checkpoint"]
    assert run["checkpoint"] == {
        "path": os.path.abspath(checkpoint),
        "sha256": hashlib.sha256(checkpoint.read_bytes()).hexdigest(),
        "bytes": checkpoint.stat().st_size,
        "arch": "resnet18",
        "stage": 1,
        "official": None,
        "official_file": None,
    }  # named like a release, not fetched as one
    rows = read_rows(study["out"])
    clip_rows = [r for r in rows if r["file"] == str(study["clip"])]
    assert run["counts"] == {
        "images": 2,
        "videos": 1,
        "frames": len(clip_rows),
        "faces": sum(r["success"] == "1" for r in rows),
        "no_face": sum(r["success"] == "0" for r in rows),
        "failed": 0,
        "skipped": 0,
    }
    capture = cv2.VideoCapture(str(study["clip"]))
    fps, count = capture.get(cv2.CAP_PROP_FPS), int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    size = [int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))]
    capture.release()
    assert run["videos"] == [
        {
            "file": str(study["clip"]),
            "fps": fps,
            "frame_count": count,
            "duration_s": round(count / fps, 3),
            "size": size,
            "camera": False,
        }
    ]
    assert (fps, count, size) == (10.0, 16, [480, 320])


def test_parquet_holds_the_csv_rows_with_real_types(study: dict[str, Path]) -> None:
    table = pq.read_table(study["out"] / "predictions.parquet")  # the folder reads as one table
    assert table.column_names == list(CSV_HEADER)
    types = {f.name: str(f.type) for f in table.schema}
    assert (types["file"], types["frame"], types["face_id"], types["success"]) == (
        "string",
        "int64",
        "int64",
        "bool",
    )
    assert {types[c] for c in ("timestamp", "confidence", "x", "y", "w", "h")} == {"double"}
    assert {types[c] for c in AU_COLUMNS} == {"float"}
    rows = read_rows(study["out"])
    faceless = sum(r["success"] == "0" for r in rows)
    assert faceless > 0 and table.column("AU12").null_count == faceless  # nulls, not NaN
    assert table.column("x").null_count == table.column("confidence").null_count == faceless
    frame = table.to_pandas()
    assert frame["file"].tolist() == [r["file"] for r in rows]
    assert frame["success"].tolist() == [r["success"] == "1" for r in rows]
    for column in CSV_HEADER[1:]:
        if column != "success":
            np.testing.assert_allclose(
                frame[column].to_numpy(float),
                [float(r[column]) if r[column] else np.nan for r in rows],
                atol=1e-6,
                rtol=0,
            )


def test_read_results_is_the_same_from_parquet_and_csv(
    study: dict[str, Path], tmp_path: Path
) -> None:
    from_parquet, from_csv = read_results(study["out"]), read_results(study["csv"])
    assert list(from_parquet.columns) == list(CSV_HEADER)
    assert from_parquet.dtypes.equals(from_csv.dtypes)
    assert (
        str(from_parquet["file"].dtype),
        str(from_parquet["frame"].dtype),
        str(from_parquet["success"].dtype),
        str(from_parquet["AU12"].dtype),
    ) == ("string", "int64", "bool", "float32")
    pd.testing.assert_frame_equal(from_parquet, from_csv, check_exact=False, atol=1e-6, rtol=0)
    assert from_parquet.attrs["run"] == _manifest(study["out"])
    assert from_csv.attrs["run"]["runs"][0]["formats"] == ["csv"]
    assert from_parquet["AU12"].isna().sum() == (~from_parquet["success"]).sum() > 0
    # A last line cut off by a crash is left out; file names are never read as numbers or NA.
    shutil.copyfile(study["csv"] / "predictions.csv", tmp_path / "predictions.csv")
    with open(tmp_path / "predictions.csv", "a", encoding="utf-8") as f:
        f.write("NA,3,0.3")
    cut = read_results(tmp_path)
    assert cut.attrs["run"] is None
    pd.testing.assert_frame_equal(cut, from_csv, check_exact=False, atol=1e-6, rtol=0)


def test_read_results_of_a_folder_without_results(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        read_results(tmp_path)
    assert info.value.param == "folder" and "holds no results" in str(info.value)
    assert "\n" not in str(info.value)


def test_summary_is_a_groupby_of_the_predictions(study: dict[str, Path]) -> None:
    summary = _assert_summary(study["out"])
    assert summary.index.tolist() == [(str(study["clip"]), 0)]  # one track, photos left out
    track = summary.iloc[0]
    assert track["last_frame"] == 11 and track["last_time"] == pytest.approx(1.1)
    assert track["frames"] == track["last_frame"] - track["first_frame"] + 1


def _noise_photos(folder: Path, count: int, shape: tuple[int, int], *, seed: int) -> Path:
    """`folder` with `count` PNGs of noise, 0.png, 1.png, ...: images that differ, fast."""
    folder.mkdir()
    rng = np.random.default_rng(seed)
    for n in range(count):
        Image.fromarray(rng.integers(0, 256, (*shape, 3), dtype=np.uint8)).save(folder / f"{n}.png")
    return folder


def test_resumed_run_adds_an_entry_and_no_duplicate_rows(
    resnet18_s1: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    photos = _noise_photos(tmp_path / "photos", 5, (112, 96), seed=0)

    def run(out: Path, *extra: str) -> int:
        return run_main(
            *fast_with(resnet18_s1),
            "--batch-size",
            "2",
            "--format",
            "parquet,csv",
            "--output-dir",
            str(out),
            "--input",
            str(photos),
            *extra,
        )

    assert run(tmp_path / "full") == 0
    full = read_results(tmp_path / "full")
    out = tmp_path / "out"
    _interrupt_on(monkeypatch, 2)
    assert run(out) == 130
    assert len(pd.read_parquet(out / "predictions.parquet")) == 2  # the batch before the stop
    assert _manifest(out)["runs"][0]["status"] == "interrupted"
    monkeypatch.undo()
    assert run(out, "--skip-existing") == 0
    assert run(out, "--skip-existing") == 0  # nothing left: adds an entry, no rows
    runs = _manifest(out)["runs"]
    assert [r["status"] for r in runs] == ["interrupted", "done", "done"]
    assert [r["resumed"] for r in runs] == [False, True, True]
    assert [(r["counts"]["images"], r["counts"]["skipped"]) for r in runs] == [
        (2, 0),
        (3, 2),
        (0, 5),
    ]
    assert runs[0]["checkpoint"]["official"] is None
    resumed = read_results(out)
    assert sorted(resumed["file"]) == sorted(full["file"]) and resumed["file"].is_unique
    by_file = resumed.set_index("file").loc[full["file"]].reset_index()
    pd.testing.assert_frame_equal(by_file, full, check_exact=False, atol=1e-6, rtol=0)
    assert (
        pd.read_parquet(out / "predictions.parquet")["file"].tolist()
        == pd.read_csv(out / "predictions.csv")["file"].tolist()
    )
    # The run's batches, kept and new, were merged into one file when it ended.
    assert os.listdir(out / "predictions.parquet") == ["part-00000000-00000002.parquet"]


def test_read_results_takes_parquet_only_when_it_holds_every_row(
    resnet18_s1: Path, tmp_path: Path
) -> None:
    """An older run's Parquet left behind by a fresh CSV-only run, or Parquet added by a
    resumed run whose first rows are in CSV only: read_results reads the CSV, which is whole."""
    photos = _noise_photos(tmp_path / "photos", 3, (64, 80), seed=1)

    def run(out: Path, formats: str, *inputs: Path, resume: bool = False) -> None:
        assert (
            run_main(
                *fast_with(resnet18_s1),
                "--format",
                formats,
                "--output-dir",
                str(out),
                "--input",
                *map(str, inputs),
                *(["--skip-existing"] if resume else []),
            )
            == 0
        )

    out = tmp_path / "stale"
    run(tmp_path / "older", "csv,parquet", photos)
    run(out, "csv", photos / "0.png")
    shutil.copytree(tmp_path / "older" / "predictions.parquet", out / "predictions.parquet")
    assert read_results(out)["file"].tolist() == [str(photos / "0.png")]
    out = tmp_path / "added"
    run(out, "csv", photos / "0.png")
    run(out, "csv,parquet", photos, resume=True)
    assert len(pd.read_parquet(out / "predictions.parquet")) == 2
    assert sorted(read_results(out)["file"]) == sorted(str(p) for p in photos.iterdir())


def test_a_failed_run_says_why(
    resnet18_s1: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    photos = [shutil.copyfile(FACE, tmp_path / f"face{n}.jpg") for n in range(2)]
    original, calls = CsvSink.write, {"n": 0}

    def write(self, records):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OutputError(
                "the disk is full; free some space", param="output_dir", value="x.csv"
            )
        original(self, records)

    monkeypatch.setattr(CsvSink, "write", write)
    assert (
        run_main(
            *fast_with(resnet18_s1),
            "--batch-size",
            "1",
            "--output-dir",
            str(tmp_path / "out"),
            "--input",
            *map(str, photos),
        )
        == 2
    )
    (run,) = _manifest(tmp_path / "out")["runs"]
    assert (run["status"], run["error"]) == ("failed", "x.csv: the disk is full; free some space")
    assert run["counts"] is not None and run["ended"] is not None


def test_run_json_records_the_batch_size_the_device_chose(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert (
        run_main(
            *FAST,
            "--exact-pixels",
            "--output-dir",
            str(out),
            "--input",
            str(FACE),
        )
        == 0
    )
    (run,) = _manifest(out)["runs"]
    assert (run["device"], run["batch_size"], run["exact_pixels"]) == ("cpu", 16, True)


def test_a_device_out_of_memory_splits_batches_and_says_so(
    resnet18_s1: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    photos = [shutil.copyfile(FACE, tmp_path / f"face{n}.jpg") for n in range(3)]
    infer = Pipeline.infer

    def in_fours(out: Path) -> int:
        return run_main(
            *fast_with(resnet18_s1),
            "--batch-size",
            "4",
            "--output-dir",
            str(out),
            "--input",
            *map(str, photos),
        )

    def tight(self, pixels):  # room for one face at a time
        if len(pixels) > 1:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return infer(self, pixels)

    monkeypatch.setattr(Pipeline, "infer", tight)
    out = tmp_path / "out"
    assert in_fours(out) == 0
    assert sorted(r["file"] for r in read_rows(out)) == sorted(map(str, photos))
    warnings = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("warning:")]
    assert warnings == [
        "warning: cpu ran out of memory on batches of 4 frames; the run goes on "
        "in parts of 1 (a batch size of 1 saves the retries)"
    ]
    (run,) = _manifest(out)["runs"]
    assert run["status"] == "done" and run["counts"]["failed"] == 0
    # One frame too large for the device alone: it fails, in errors.csv; the others go on.
    monkeypatch.undo()
    locate = Pipeline.locate

    def huge(self, frames, images=None):
        if any(f.source.endswith("face1.jpg") for f in frames):
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return locate(self, frames, images)

    monkeypatch.setattr(Pipeline, "locate", huge)
    out = tmp_path / "huge"
    assert in_fours(out) == 1  # some inputs failed
    assert sorted(r["file"] for r in read_rows(out)) == [str(photos[0]), str(photos[2])]
    with open(out / "errors.csv", newline="", encoding="utf-8") as f:
        assert list(csv.reader(f))[1:] == [
            [
                str(photos[1]),
                "ran out of memory on cpu for this "
                "frame alone (256x256 px); use a device with more "
                "memory, or the CPU",
            ]
        ]
    err = capsys.readouterr().err
    assert "warning:" not in err and "ran out of memory" in err and "Traceback" not in err


_HARD_STOP = """
import os, sys
from opengraphau.cli import main
from opengraphau.pipeline import Pipeline

original, calls = Pipeline.infer, [0]

def infer(self, batch):
    calls[0] += 1
    if calls[0] == 3:
        os._exit(9)  # no finally, no close, no flush: as kill -9 stops it
    return original(self, batch)

Pipeline.infer = infer
main(sys.argv[1:])
"""


def test_a_killed_run_keeps_every_finished_batch(resnet18_s1: Path, tmp_path: Path) -> None:
    photos = [shutil.copyfile(FACE, tmp_path / f"face{n}.jpg") for n in range(4)]
    args = [
        *fast_with(resnet18_s1),
        "--batch-size",
        "1",
        "--format",
        "parquet",
        "--output-dir",
        str(tmp_path / "out"),
        "--input",
        *map(str, photos),
    ]
    killed = subprocess.run(
        [sys.executable, "-c", _HARD_STOP, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert killed.returncode == 9, killed.stderr
    out = tmp_path / "out"
    table = pq.read_table(out / "predictions.parquet")
    assert table.column("file").to_pylist() == [str(p) for p in photos[:2]]
    assert len(read_results(out)) == 2
    assert _manifest(out)["runs"][0]["status"] == "running"  # it never got to say otherwise
    assert run_main(*args, "--skip-existing") == 0
    runs = _manifest(out)["runs"]
    assert [r["status"] for r in runs] == ["killed", "done"]
    assert read_results(out)["file"].tolist() == [str(p) for p in photos]


@pytest.mark.parametrize("crash_at", ["_rename", "_unlink"])
def test_a_merge_cut_short_is_read_once_and_finished_by_the_next_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crash_at: str
) -> None:
    """Stopped after the merged file is written hidden: before it is renamed into view, or
    after only one of the small files it replaces was removed."""
    monkeypatch.setattr(parquet, "COMPACT_ROWS", 6)
    folder = OutputFolder(tmp_path)

    def batch(n: int) -> list[FaceRecord]:
        probs = np.full(len(AU_COLUMNS), n / 10, np.float32)
        return [
            FaceRecord(f"f{n}.png", 0, 0.0, face, (1.0, 2.0, 3.0, 4.0), 0.9, probs)
            for face in range(2)
        ]

    sink = parquet.ParquetSink(folder, _settings(completed=None))
    sink.write(batch(0))
    sink.write(batch(1))
    original, calls = getattr(parquet.ParquetSink, crash_at), {"n": 0}

    def hard_stop(self, *args):
        calls["n"] += 1
        if calls["n"] == 2 or crash_at == "_rename":
            raise SystemExit(9)
        return original(self, *args)

    monkeypatch.setattr(parquet.ParquetSink, crash_at, hard_stop)
    with pytest.raises(SystemExit):
        sink.write(batch(2))  # the 6th row: the three small files are merged
    monkeypatch.undo()
    assert any(name.startswith(".part-") for name in os.listdir(tmp_path / sink.name))
    read = read_results(tmp_path)
    assert read["file"].tolist() == ["f0.png"] * 2 + ["f1.png"] * 2 + ["f2.png"] * 2
    resumed = parquet.ParquetSink(folder, _settings(completed={"f0.png", "f1.png", "f2.png"}))
    assert os.listdir(tmp_path / sink.name) == ["part-00000000-00000002.parquet"]
    resumed.write(batch(3))
    resumed.close()
    assert sorted(os.listdir(tmp_path / sink.name)) == [
        "part-00000000-00000002.parquet",
        "part-00000003.parquet",
    ]
    frame = pd.read_parquet(tmp_path / sink.name)
    assert frame["file"].tolist() == [f"f{n}.png" for n in range(4) for _ in range(2)]
    np.testing.assert_allclose(frame["AU12"], np.repeat(np.arange(4) / 10, 2), atol=1e-6)


@pytest.mark.parametrize("planted", ["link", "pipe"])
def test_a_part_planted_in_the_parquet_folder_is_never_read(tmp_path: Path, planted: str) -> None:
    outside = tmp_path / "outside.parquet"
    pq.write_table(parquet.schema(False).empty_table(), outside)
    parts = tmp_path / "out" / parquet.ParquetSink.name
    parts.mkdir(parents=True)
    if planted == "link":
        os.symlink(outside, parts / "part-00000000.parquet")
    else:
        os.mkfifo(parts / "part-00000000.parquet")
    with pytest.raises(OutputError, match="symbolic link" if planted == "link" else "a pipe"):
        parquet.ParquetSink(OutputFolder(tmp_path / "out"), _settings(completed=set()))


def test_video_resume_keeps_summaries_of_completed_videos(
    study: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = study["clip"]
    second = Path(shutil.copyfile(first, tmp_path / "second.mp4"))

    def run(*extra: str) -> int:
        return run_main(
            *FAST,
            "--batch-size",
            "4",
            "--format",
            "csv,parquet",
            "--threshold",
            "0.45",
            "--output-dir",
            str(tmp_path / "out"),
            "--input",
            str(first),
            str(second),
            *extra,
        )

    _interrupt_on(monkeypatch, 6)  # 4 batches a video: the second video's second batch
    assert run() == 130
    out = tmp_path / "out"
    assert pd.read_csv(out / "summary.csv")["file"].tolist() == [str(first)]
    (stopped,) = _manifest(out)["runs"]
    assert stopped["checkpoint"] is None and stopped["untrained"] is True
    assert [v["file"] for v in stopped["videos"]] == [str(first), str(second)]
    monkeypatch.undo()
    assert run("--skip-existing") == 0
    summary = _assert_summary(out, threshold=0.45)
    assert summary.index.tolist() == [(str(first), 0), (str(second), 0)]
    assert (summary["frames"] == 16).all()
    resumed = read_results(out)
    assert resumed["untrained"].all() and len(resumed) == 32
    assert not resumed.duplicated(["file", "frame", "face_id"]).any()
    assert [v["file"] for v in _manifest(out)["runs"][1]["videos"]] == [str(second)]


def test_analysis_snippets_run(study: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/analysis.md's analyses, in order, on results/demo."""
    import matplotlib.pyplot as plt

    plt.switch_backend("Agg")
    text = doc_section("docs/analysis.md", "Analysing results")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 4
    monkeypatch.chdir(study["root"])
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "docs/analysis.md", "exec"), namespace)
    plt.close("all")
    assert sorted(namespace["mean_aus"].index) == sorted([str(FACE), str(study["clip"])])
    assert (study["root"] / "au12_over_time.png").stat().st_size > 10_000
