"""No run silently loses an earlier run's results: a named folder that holds files is refused
(exit 2, one line offering --skip-existing or --overwrite), --overwrite replaces them and their
pictures, the default folder is numbered, and a run that stops before it starts creates nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from factories import FACE, read_rows, run_main
from opengraphau import Options, run
from opengraphau.errors import ResultsExistError
from opengraphau.sinks.previous import fresh_folder, latest_folder

QUICK = ("--untrained", "--arc", "resnet18", "--no-detect", "--quiet", "--workers", "0")


@pytest.fixture
def photos(tmp_path: Path) -> list[str]:
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a", "b"):
        (folder / f"{name}.jpg").write_bytes(FACE.read_bytes())
    return [str(folder / "a.jpg"), str(folder / "b.jpg")]


def test_a_second_run_into_a_named_folder_is_refused(
    photos: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert run_main(*QUICK, "--output-dir", str(out), "--input", *photos) == 0
    before = (out / "predictions.csv").read_bytes()
    capsys.readouterr()
    assert run_main(*QUICK, "--output-dir", str(out), "--input", photos[0]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith(f"demo.py: error: {out}: already holds an earlier run's results")
    assert "--skip-existing" in err and "--overwrite" in err
    assert (out / "predictions.csv").read_bytes() == before
    # Continuing is still allowed, and replacing and continuing exclude each other.
    assert run_main(*QUICK, "--output-dir", str(out), "--skip-existing", "--input", *photos) == 0
    assert len(read_rows(out)) == 2
    assert (
        run_main(
            *QUICK, "--output-dir", str(out), "--skip-existing", "--overwrite", "--input", *photos
        )
        == 2
    )
    assert "--overwrite" in capsys.readouterr().err


def test_overwrite_replaces_results_and_stale_pictures(photos: list[str], tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run_main(*QUICK, "--draw_text", "--output-dir", str(out), "--input", *photos) == 0
    assert (out / "b_pred.jpg").is_file()
    (out / "notes.txt").write_text("mine")
    assert (
        run_main(
            *QUICK, "--draw_text", "--overwrite", "--output-dir", str(out), "--input", photos[0]
        )
        == 0
    )
    assert [r["file"] for r in read_rows(out)] == [photos[0]]
    assert (out / "a_pred.jpg").is_file() and not (out / "b_pred.jpg").exists()
    assert (out / "notes.txt").read_text() == "mine"  # not a result: it stays


def test_the_default_folder_is_numbered_so_a_command_runs_twice(
    photos: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for _ in range(3):
        assert run_main(*QUICK, "--input", photos[0]) == 0
    assert sorted(os.listdir("results")) == ["demo", "demo2", "demo3"]
    assert all(len(read_rows(Path("results", d))) == 1 for d in ("demo", "demo2", "demo3"))
    assert run_main(*QUICK, "--skip-existing", "--input", *photos) == 0  # continues demo3
    assert len(read_rows(Path("results/demo3"))) == 2
    assert sorted(os.listdir("results")) == ["demo", "demo2", "demo3"]
    assert fresh_folder(Path("results/demo")) == Path("results/demo4")
    assert latest_folder(Path("results/demo")) == Path("results/demo3")


def test_a_run_that_stops_before_it_starts_creates_nothing(
    photos: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    assert (
        run_main("--quiet", "--checkpoint-dir", str(tmp_path / "none"), "--input", photos[0]) == 2
    )
    assert "no checkpoint" in capsys.readouterr().err
    assert not Path("results").exists()


def test_the_api_names_the_parameter(photos: list[str], tmp_path: Path) -> None:
    options = Options(
        inputs=(photos[0],),
        output_dir=tmp_path / "o",
        untrained=True,
        arch="resnet18",
        detect=False,
        workers=0,
    )
    with pytest.warns(UserWarning):
        run(options)
    with pytest.raises(ResultsExistError) as caught:
        run(options)
    assert caught.value.param == "output_dir" and "overwrite" in str(caught.value)
