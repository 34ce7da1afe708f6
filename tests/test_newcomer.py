"""The smaller things a new user meets on the command line: inputs without --input, images or
videos only, the face detector's confidence, AU tables only for one image, and the annotated
video readable like every other output."""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path

import pytest

from factories import FACE, read_rows, run_main, write_video

QUICK = ("--untrained", "--arc", "resnet18", "--quiet", "--workers", "0")


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with two photos and a short video."""
    folder = tmp_path_factory.mktemp("mixed")
    for name in ("a", "b"):
        shutil.copyfile(FACE, folder / f"{name}.jpg")
    write_video(folder / "clip.mp4", 4, face_until=4)
    return folder


def _files(out: Path) -> list[str]:
    return sorted({Path(r["file"]).name for r in read_rows(out)})


def test_inputs_need_no_flag(mixed: Path, tmp_path: Path) -> None:
    """`opengraphau a.jpg b.mp4` is `--input a.jpg b.mp4`, flags may come between them."""
    assert (
        run_main(
            *QUICK,
            "--no-detect",
            "--output-dir",
            str(tmp_path / "flag"),
            "--input",
            str(mixed / "a.jpg"),
            str(mixed / "clip.mp4"),
        )
        == 0
    )
    assert (
        run_main(
            str(mixed / "a.jpg"),
            *QUICK,
            "--no-detect",
            str(mixed / "clip.mp4"),
            "--output-dir",
            str(tmp_path / "bare"),
        )
        == 0
    )
    assert read_rows(tmp_path / "bare") == read_rows(tmp_path / "flag")
    assert _files(tmp_path / "bare") == ["a.jpg", "clip.mp4"]


def test_no_inputs_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main(*QUICK) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("demo.py: error: no inputs")


@pytest.mark.parametrize(
    ("flag", "expected"),
    [
        ("--images-only", ["a.jpg", "b.jpg"]),
        ("--videos-only", ["clip.mp4"]),
        (None, ["a.jpg", "b.jpg", "clip.mp4"]),
    ],
)
def test_a_folder_by_kind(
    mixed: Path, tmp_path: Path, flag: str | None, expected: list[str]
) -> None:
    extra = (flag,) if flag else ()
    assert (
        run_main(*QUICK, "--no-detect", *extra, "--output-dir", str(tmp_path / "o"), str(mixed))
        == 0
    )
    assert _files(tmp_path / "o") == expected


def test_only_one_kind_found_is_a_clear_error(
    mixed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        run_main(*QUICK, "--videos-only", "--output-dir", str(tmp_path / "o"), str(mixed / "a.jpg"))
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert err.startswith("demo.py: error: --input no videos found") or err.startswith(
        "demo.py: error: no videos found"
    ), err
    assert "as only videos were asked for" in err and not (tmp_path / "o").exists()


def test_min_confidence_drops_faces_below_it(tmp_path: Path) -> None:
    assert run_main(*QUICK, "--output-dir", str(tmp_path / "d"), str(FACE)) == 0
    (row,) = read_rows(tmp_path / "d")
    confidence = float(row["confidence"])
    assert row["success"] == "1" and 0.9 <= confidence < 1.0
    above = f"{(confidence + 1) / 2:.9f}"
    assert (
        run_main(*QUICK, "--min-confidence", above, "--output-dir", str(tmp_path / "h"), str(FACE))
        == 0
    )
    assert [r["success"] for r in read_rows(tmp_path / "h")] == ["0"]
    run = json.loads((tmp_path / "h" / "run.json").read_text())["runs"][-1]
    assert run["detector"]["min_confidence"] == float(above)


def test_au_tables_only_for_a_single_image(
    mixed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    quick = tuple(a for a in QUICK if a != "--quiet")
    photos = (str(mixed / "a.jpg"), str(mixed / "b.jpg"))
    assert run_main(*quick, "--output-dir", str(tmp_path / "one"), photos[0]) == 0
    assert capsys.readouterr().out.count("AU12") == 1
    assert run_main(*quick, "--output-dir", str(tmp_path / "two"), *photos) == 0
    assert "AU12" not in capsys.readouterr().out
    assert run_main(*quick, "--tables", "--output-dir", str(tmp_path / "all"), *photos) == 0
    assert capsys.readouterr().out.count("AU12") == 2


def test_the_annotated_video_is_readable_by_all(mixed: Path, tmp_path: Path) -> None:
    assert (
        run_main(
            *QUICK,
            "--draw_text",
            "--output-dir",
            str(tmp_path / "o"),
            str(mixed / "clip.mp4"),
            str(mixed / "a.jpg"),
        )
        == 0
    )
    modes = {
        p.name: stat.S_IMODE(p.stat().st_mode)
        for p in (tmp_path / "o").iterdir()
        if p.is_file() and not p.name.startswith(".")
    }
    assert "clip_pred.mp4" in modes and "a_pred.jpg" in modes
    assert set(modes.values()) == {0o644}, modes
