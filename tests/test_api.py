"""The in-memory API as a notebook meets it: random weights announced and refused without
`untrained=True`; results as a DataFrame with predictions.csv's columns; a video with tracking."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest

from factories import FACE
from opengraphau import AUPredictor, ConfigError, Options, run
from opengraphau.context import UNTRAINED_BANNER
from opengraphau.errors import UntrainedWarning


def test_random_weights_are_refused_unless_asked_for() -> None:
    with pytest.raises(ConfigError) as caught:
        AUPredictor(device="cpu", arch="resnet18")
    assert caught.value.param == "checkpoint" and "untrained=True" in str(caught.value)


def test_random_weights_warn_and_log(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.warns(UntrainedWarning, match="random weights"), caplog.at_level(logging.WARNING):
        predictor = AUPredictor(device="cpu", arch="resnet18", untrained=True)
    assert predictor.untrained
    assert [r.getMessage() for r in caplog.records if r.name == "opengraphau"] == [UNTRAINED_BANNER]


def test_run_on_random_weights_warns(tmp_path: Path) -> None:
    options = Options(inputs=(str(FACE),), output_dir=tmp_path / "o", untrained=True,
                      arch="resnet18", detect=False, workers=0)
    with pytest.warns(UntrainedWarning):
        assert run(options).images == 1


def test_the_cli_says_it_once_in_its_own_words(tmp_path: Path,
                                              capfd: pytest.CaptureFixture[str]) -> None:
    """The terminal gets the banner, not a Python warning or a log record beside it."""
    from opengraphau.cli.main import main

    assert main(["--untrained", "--arc", "resnet18", "--no-detect", "--quiet", "--workers", "0",
                 "--output-dir", str(tmp_path / "o"), "--input", str(FACE)]) == 0
    err = capfd.readouterr().err
    assert err.count(UNTRAINED_BANNER) == 1 and "UntrainedWarning" not in err
