"""`opengraphau evaluate` end to end: the reference's list format on generated images, a CSV with
intensities over a video and a photo of two faces, a results folder scored without rerunning,
--calibrate then --thresholds in a normal run, and every bad input as one line with exit 2."""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from reference_metrics import reference_f1, reference_statistics
from skimage import data

from factories import FACE, ROOT, probs_of, read_rows, run_main, write_video
from opengraphau.aus import AU_COLUMNS, AU_IDS
from opengraphau.evaluation import evaluate

TWO_FACES = ROOT / "demo_imgs" / "two_faces.jpg"


def generated_set(root: Path, count: int = 12, seed: int = 0) -> tuple[Path, Path, np.ndarray]:
    """`count` face-like images under `root` (in subject folders, as BP4D's lists name them),
    the reference's image list (relative paths) and label file (41 columns of 1/0/-1, AU 2 with
    no positives, AU 4 never labelled)."""
    rng = np.random.default_rng(seed)
    photo = data.astronaut()
    lines = []
    for n in range(count):
        left, top, side = 120 + 7 * (n % 5), 20 + 6 * (n % 4), 180 - 9 * (n % 3)
        crop = Image.fromarray(photo[top : top + side, left : left + side])
        if n % 2:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        rel = Path(f"F{n % 3:03d}") / f"T{n}" / f"{n:04d}.jpg"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        crop.resize((256, 256)).save(root / rel, quality=95)
        lines.append(str(rel))
    labels = rng.choice([-1, 0, 1], size=(count, len(AU_COLUMNS)), p=[0.2, 0.5, 0.3])
    labels[:, 2] = np.where(labels[:, 2] == 1, 0, labels[:, 2])
    labels[:, 4] = -1
    images = root / "test_img_path.txt"
    images.write_text("\n".join(lines) + "\n")
    label_file = root / "test_label.txt"
    np.savetxt(label_file, labels, fmt="%d", delimiter=" ")
    return images, label_file, labels


def expected_table(scores: np.ndarray, labels: np.ndarray, thresholds: np.ndarray) -> dict:
    """Per AU, independently: F1 and counts by the reference's transcription, the mean."""
    f1s = [
        reference_f1(
            reference_statistics(
                scores[:, [a]].tolist(), labels[:, [a]].tolist(), float(thresholds[a])
            )
        )[1][0]
        for a in range(labels.shape[1])
    ]
    return {"f1": np.array(f1s)}


def table_row(stdout: str, name: str) -> dict[str, str]:
    """The printed table's row `name` as {column: cell}."""
    lines = [ln for ln in stdout.splitlines() if ln.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] == name:
            return dict(zip(header[1:], cells[1:]))
    raise AssertionError(f"no row {name!r} in {stdout}")


def one_error_line(err: str) -> str:
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip()


def test_reference_lists_end_to_end_then_predictions_then_thresholds(
    resnet18_s1: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_root = tmp_path / "bp4d"
    images, label_file, labels = generated_set(data_root)
    out = tmp_path / "eval"
    assert (
        run_main(
            "evaluate",
            "--image-list",
            str(images),
            "--label-list",
            str(label_file),
            "--root",
            str(data_root),
            "--no-detect",
            "--resume",
            str(resnet18_s1),
            "--output-dir",
            str(out),
            "--quiet",
        )
        == 0
    )
    printed = capsys.readouterr().out
    rows = read_rows(out)
    listed = [str(data_root / line) for line in images.read_text().split()]
    assert [r["file"] for r in rows] == listed  # the normal run's rows, in the list's order
    scores = probs_of(rows)
    want = expected_table(scores, labels, np.full(41, 0.5))
    table = {r["au"]: r for r in read_rows(out, "evaluation.csv")}
    assert list(table) == list(AU_COLUMNS)
    np.testing.assert_allclose(
        [float(table[c]["f1"]) for c in AU_COLUMNS], want["f1"], rtol=0, atol=1e-12
    )
    for a, au in enumerate(AU_COLUMNS):
        y = labels[:, a]
        assert int(table[au]["positives"]) == (y == 1).sum()
        assert int(table[au]["negatives"]) == (y == 0).sum()
        predicted = scores[:, a] >= 0.5
        assert int(table[au]["tp"]) == (predicted & (y == 1)).sum()
        assert float(table[au]["threshold"]) == 0.5
    assert table["AU4"]["auc"] == "" and table["AU4"]["ap"] == ""  # never labelled
    # The printed table: AUs as columns, F1 in %, "-" without positives, the mean last.
    row = table_row(printed, "F1")
    assert list(row) == [*AU_COLUMNS, "Avg"]
    has = (labels == 1).sum(axis=0) > 0
    for a, au in enumerate(AU_COLUMNS):
        assert row[au] == (f"{want['f1'][a] * 100:.1f}" if has[a] else "-")
    assert row["Avg"] == f"{want['f1'][has].mean() * 100:.1f}"
    assert f"over all 41 AUs scored: {np.mean(want['f1']) * 100:.1f}" in printed
    document = json.loads((out / "evaluation.json").read_text())
    assert document["means"]["f1_mean"] == pytest.approx(np.mean(want["f1"]), abs=1e-12)
    assert document["means"]["f1_mean_labelled"] == pytest.approx(want["f1"][has].mean(), abs=1e-12)
    hashes = {Path(f["path"]).name: f["sha256"] for f in document["labels"]}
    assert hashes == {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (images, label_file)
    }
    assert (
        document["checkpoints"][0]["sha256"] == hashlib.sha256(resnet18_s1.read_bytes()).hexdigest()
    )
    assert document["thresholds"]["per_au"] == dict.fromkeys(AU_COLUMNS, 0.5)
    for name in ("evaluation.png", "pr_curves.png"):
        with Image.open(out / name) as picture:
            assert picture.format == "PNG" and picture.width >= 800 and picture.height >= 300

    # The same folder scored without rerunning: the same numbers, the folder's results untouched.
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.suffix in (".csv", ".json")}
    again = tmp_path / "again"
    assert (
        run_main(
            "evaluate",
            "--image-list",
            str(images),
            "--label-list",
            str(label_file),
            "--root",
            str(data_root),
            "--predictions",
            str(out),
            "--output-dir",
            str(again),
            "--calibrate",
            "--folds",
            "3",
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert (again / "evaluation.csv").read_text() == before["evaluation.csv"].decode()
    assert {
        p.name: p.read_bytes() for p in out.iterdir() if p.suffix in (".csv", ".json")
    } == before
    assert not (again / "predictions.csv").exists()
    assert "F1 cal. (CV)" in printed and "thresholds.json" in printed
    # The Python API gives the same table.
    frame = evaluate(out, _labels_of(images, label_file, data_root)).per_au
    np.testing.assert_allclose(frame["f1"], want["f1"], rtol=0, atol=1e-12)

    # --calibrate's thresholds.json in a normal run: the printed marks follow each AU's cut.
    written = json.loads((again / "thresholds.json").read_text())
    cuts = np.array([written["thresholds"].get(c, 0.5) for c in AU_COLUMNS])
    assert set(written["thresholds"]) == {c for c, h in zip(AU_COLUMNS, has) if h}
    run_out = tmp_path / "run"
    first = data_root / images.read_text().split()[0]
    for extra in ((), ("--thresholds", str(again / "thresholds.json"), "--overwrite")):
        assert (
            run_main(
                "--input",
                str(first),
                "--no-detect",
                "--resume",
                str(resnet18_s1),
                "--output-dir",
                str(run_out),
                *extra,
            )
            == 0
        )
        marked = [
            ln.split()[0]
            for ln in capsys.readouterr().out.splitlines()
            if re.match(r"\s+AU\S+ .*\d\.\d{3}  \*$", ln)
        ]
        probs = probs_of(read_rows(run_out))[0]
        want_marked = probs >= (cuts if extra else 0.5)
        assert marked == [f"AU{i}" for i, m in zip(AU_IDS, want_marked) if m]
    assert (probs >= cuts).tolist() != (probs >= 0.5).tolist()  # the marks did change
    run = json.loads((run_out / "run.json").read_text())["runs"][-1]
    assert run["thresholds"]["per_au"] == dict(zip(AU_COLUMNS, cuts.tolist()))
    assert (
        run["thresholds"]["sha256"]
        == hashlib.sha256((again / "thresholds.json").read_bytes()).hexdigest()
    )


def _labels_of(images: Path, label_file: Path, root: Path):
    from opengraphau.evaluation import read_label_lists

    return read_label_lists(images, label_file, root=root)


def test_intensity_csv_over_a_video_and_two_faces(
    resnet18_s1: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clip = write_video(tmp_path / "clip.mp4", 10, face_until=7)
    (tmp_path / "two_faces.jpg").write_bytes(TWO_FACES.read_bytes())
    rng = np.random.default_rng(3)
    intensity = rng.integers(0, 6, size=(11, 3))
    intensity[0] = (1, 2, 5)
    lines = ["file,frame,subject,AU6,AU12,AU25"]
    for frame in range(10):
        lines.append(f"clip.mp4,{frame},S1," + ",".join(map(str, intensity[frame])))
    lines.append("two_faces.jpg,0,S2," + ",".join(map(str, intensity[10])))
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    assert (
        run_main(
            "evaluate",
            "--labels",
            str(tmp_path / "labels.csv"),
            "--positive-from",
            "2",
            "--resume",
            str(resnet18_s1),
            "--output-dir",
            str(out),
            "--quiet",
        )
        == 0
    )
    printed = capsys.readouterr().out
    rows = read_rows(out)
    video = {int(r["frame"]): r for r in rows if r["file"].endswith("clip.mp4")}
    assert sorted(video) == list(range(10))
    faces = [r for r in rows if r["file"].endswith("two_faces.jpg") and r["success"] == "1"]
    assert len(faces) == 2
    largest = max(faces, key=lambda r: float(r["w"]) * float(r["h"]))
    scored = [video[f] for f in range(10) if video[f]["success"] == "1"] + [largest]
    kept = [f for f in range(10) if video[f]["success"] == "1"] + [10]
    assert len(kept) < 11  # frames after the face left are skipped: no face found
    scores = np.array([[float(r[c]) for c in ("AU6", "AU12", "AU25")] for r in scored])
    labels = (intensity[kept] >= 2).astype(int)
    want = reference_f1(reference_statistics(scores.tolist(), labels.tolist(), 0.5))[1]
    table = {r["au"]: float(r["f1"]) for r in read_rows(out, "evaluation.csv")}
    assert list(table) == ["AU6", "AU12", "AU25"]
    np.testing.assert_allclose(list(table.values()), want, rtol=0, atol=1e-12)
    document = json.loads((out / "evaluation.json").read_text())
    assert document["matching"]["skipped"] == {"no_face": 10 - len(kept) + 1}
    assert document["matching"]["several_faces_largest_scored"] == 1
    assert document["bootstrap"]["subjects"] == 2 and "f1_mean" in document["intervals"]
    assert "no face was found" in printed and "the largest face was scored" in printed

    # A label for a frame past the video's end: one line naming the file and line, exit 2.
    (tmp_path / "late.csv").write_text("file,frame,AU12\nclip.mp4,3,1\nclip.mp4,15,0\n")
    assert (
        run_main("evaluate", "--labels", str(tmp_path / "late.csv"), "--predictions", str(out)) == 2
    )
    err = one_error_line(capsys.readouterr().err)
    assert f"{tmp_path / 'late.csv'}:3:" in err and "past the end" in err and "10 frames" in err
    assert clip.exists()


@pytest.mark.parametrize(
    ("content", "line", "words"),
    [
        ("file,AU1,AU99\na.jpg,1,0\n", 1, "unknown column 'AU99'"),
        ("file,AU1,AU12\na.jpg,1,0\nb.jpg,1\n", 3, "2 cells where the header has 3"),
        ("file,AU1\na.jpg,yes\n", 2, "AU1 is 'yes', not a number"),
        ("file,AU1\na.jpg,3\n", 2, "positive-from"),
        ("file,frame,AU1\na.jpg,-2,1\n", 2, "frame is -2"),
        ("file,AU1\na.jpg,1\na.jpg,0\n", 3, "same file, frame and face as line 2"),
        ("image,AU1\na.jpg,1\n", 1, "must be 'file'"),
    ],
)
def test_bad_label_csv_is_one_line_naming_file_and_line(
    content: str, line: int, words: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text(content)
    out = tmp_path / "out"
    assert (
        run_main("evaluate", "--labels", str(labels), "--untrained", "--output-dir", str(out)) == 2
    )
    err = one_error_line(capsys.readouterr().err)
    assert f"{labels}:{line}:" in err and words in err, err
    assert labels.read_text() == content  # inputs are never touched
    assert not out.exists()


def test_bad_inputs_of_every_other_kind(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.jpg").write_bytes(FACE.read_bytes())
    labels = tmp_path / "labels.csv"

    def fails(*args: str) -> str:
        assert run_main("evaluate", *args) == 2
        return one_error_line(capsys.readouterr().err)

    # A labelled image that does not exist: named before any model is loaded.
    labels.write_text("file,AU1\na.jpg,1\nmissing.jpg,0\n")
    err = fails("--labels", str(labels), "--untrained", "--output-dir", str(tmp_path / "o"))
    assert f"{labels}:3:" in err and "missing.jpg not found" in err
    assert not (tmp_path / "o").exists()
    # The reference's lists: rows of the wrong width, lists of different lengths.
    images = tmp_path / "list.txt"
    images.write_text("a.jpg\na.jpg\n")
    rows = tmp_path / "label.txt"
    rows.write_text(" ".join(["0"] * 41) + "\n" + " ".join(["1"] * 40) + "\n")
    err = fails("--image-list", str(images), "--label-list", str(rows), "--untrained")
    assert f"{rows}:2:" in err and "40 columns" in err
    rows.write_text(" ".join(["0"] * 41) + "\n")
    err = fails("--image-list", str(images), "--label-list", str(rows), "--untrained")
    assert str(rows) in err and "1 label rows but" in err and "2 images" in err
    rows.write_text((" ".join(["0"] * 40) + " 2\n") * 2)
    err = fails("--image-list", str(images), "--label-list", str(rows), "--untrained")
    assert f"{rows}:1:" in err and "AUR14 is 2" in err
    # A label file the results folder has no rows for.
    results = tmp_path / "results"
    results.mkdir()
    (results / "predictions.csv").write_text(
        "file,frame,timestamp,face_id,success,confidence,x,y,w,h,"
        + ",".join(AU_COLUMNS)
        + "\n"
        + f"{tmp_path / 'a.jpg'},0,0.0,0,1,1,0,0,9,9,"
        + ",".join(["0.7"] * 41)
        + "\n"
    )
    labels.write_text("file,AU1\na.jpg,1\nother.jpg,0\n")
    err = fails("--labels", str(labels), "--predictions", str(results))
    assert f"{labels}:3:" in err and "other.jpg has no rows in" in err
    # Usage.
    assert "give --labels CSV" in fails("--untrained")
    assert "--positive-from" in fails(
        "--image-list", str(images), "--label-list", str(rows), "--positive-from", "2"
    )
    assert "must be between 1 and 5" in fails(
        "--labels", str(labels), "--positive-from", "9", "--predictions", str(results)
    )


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ('{"thresholds": {"AU99": 0.4}}', "unknown AU 'AU99'"),
        ('{"thresholds": {"AU12": 1.5}}', "AU12 is 1.5; a threshold is a number between 0 and 1"),
        ('{"thresholds": {"AU12": "high"}}', "AU12 is 'high'"),
        ("AU12=0.4", "is not valid JSON"),
        ("[0.4]", 'expected {"thresholds"'),
    ],
)
def test_bad_thresholds_file_is_refused_in_one_line(
    content: str, words: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "t.json"
    bad.write_text(content)
    assert (
        run_main(
            "--input",
            str(FACE),
            "--untrained",
            "--thresholds",
            str(bad),
            "--output-dir",
            str(tmp_path / "out"),
        )
        == 2
    )
    err = one_error_line(capsys.readouterr().err)
    assert f"--thresholds {bad}: " in err and words in err, err
    assert not (tmp_path / "out").exists()


def test_thresholds_file_sets_every_mark(
    resnet18_s1: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """First 20 AUs at 0, the rest at 1 (from --threshold): table, JSONL, summary.csv, the
    picture and run.json all follow."""
    cuts = tmp_path / "cuts.json"
    cuts.write_text(json.dumps({"thresholds": dict.fromkeys(AU_COLUMNS[:20], 0.0)}))
    clip = write_video(tmp_path / "clip.mp4", 4, face_until=4)
    out = tmp_path / "out"
    assert (
        run_main(
            "--input",
            str(FACE),
            str(clip),
            "--no-detect",
            "--resume",
            str(resnet18_s1),
            "--threshold",
            "1",
            "--thresholds",
            str(cuts),
            "--format",
            "csv,jsonl",
            "--draw_text",
            "--output-dir",
            str(out),
        )
        == 0
    )
    printed = capsys.readouterr().out
    marked = [ln.split()[0] for ln in printed.splitlines() if ln.rstrip().endswith("*")]
    assert marked == list(AU_COLUMNS[:20])
    for line in (out / "predictions.jsonl").read_text().splitlines():
        active = [au["active"] for au in json.loads(line)["aus"]]
        assert active == [True] * 20 + [False] * 21
    summary = read_rows(out, "summary.csv")
    assert summary and all(r["threshold"] == "per AU (cuts.json)" for r in summary)
    for row in summary:
        assert [float(row[f"{c}_rate"]) for c in AU_COLUMNS] == [1.0] * 20 + [0.0] * 21
    run = json.loads((out / "run.json").read_text())["runs"][-1]
    assert run["threshold"] == 1.0
    assert run["thresholds"]["per_au"] == {
        c: 0.0 if i < 20 else 1.0 for i, c in enumerate(AU_COLUMNS)
    }
    assert run["thresholds"]["file"] == str(cuts.resolve())
    drawn = next(out.rglob("astronaut_face_pred.jpg"))  # mirrors the inputs' folders
    picture = np.asarray(Image.open(drawn).convert("RGB")).astype(int)
    red = (picture[..., 0] > 150) & (picture[..., 1] < 80) & (picture[..., 2] < 80)
    assert red.sum() > 300


def doc_commands() -> list[str]:
    """The shell commands of docs/evaluate.md's worked example (its ```bash blocks, in order)."""
    text = (ROOT / "docs" / "evaluate.md").read_text(encoding="utf-8")
    start = text.index("## Worked example")
    end = text.index("\n## ", start + 1)
    return re.findall(r"```bash\n(.*?)```", text[start:end], flags=re.S)


def test_the_docs_worked_example_runs_as_written(tmp_path: Path) -> None:
    """In a copy's folder layout: demo_imgs/ beside it, `opengraphau` as this Python's module."""
    (tmp_path / "demo_imgs").symlink_to(ROOT / "demo_imgs")
    script = "\n".join(doc_commands())
    script = re.sub(
        r"(?m)(^|\s)opengraphau ", rf"\1{shlex.quote(sys.executable)} -m opengraphau ", script
    )
    result = subprocess.run(
        ["bash", "-e", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = tmp_path / "results" / "eval-demo"
    for name in (
        "evaluation.csv",
        "evaluation.json",
        "evaluation.png",
        "pr_curves.png",
        "thresholds.json",
        "calibration.csv",
    ):
        assert (out / name).is_file(), name
    assert "| F1" in result.stdout and "Avg" in result.stdout


def test_python_api_marks_follow_a_thresholds_file(tmp_path: Path) -> None:
    from opengraphau import AUPredictor, Options, Thresholds

    cuts = tmp_path / "t.json"
    cuts.write_text(json.dumps({"thresholds": {"AU1": 0.0, "AU2": 1.0, "AUR14": 0.25}}))
    predictor = AUPredictor(arch="resnet18", untrained=True, thresholds=cuts)
    face = predictor.predict([FACE])[0].faces[0]
    want = np.full(41, 0.5)
    want[[0, 1, 40]] = (0.0, 1.0, 0.25)
    assert list(predictor.present(face).values()) == (face.probs >= want).tolist()
    assert predictor.present(face)["AU1"] and not predictor.present(face)["AU2"]
    # Options read the file as --thresholds does; AUs it leaves out keep `threshold`.
    options = Options(inputs=("x",), threshold=0.7, thresholds=cuts)
    assert options.au_thresholds.values[:3] == (0.0, 1.0, 0.7)
    assert Options(inputs=("x",), threshold=0.3).au_thresholds == Thresholds.uniform(0.3)
