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


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import numpy as np
    from PIL import Image

    from factories import write_video

    folder = tmp_path_factory.mktemp("api")
    blank = folder / "blank.png"
    Image.fromarray(np.full((90, 120, 3), 128, np.uint8)).save(blank)
    return {"face": FACE, "blank": blank,
            "clip": write_video(folder / "clip.mp4", 12, face_until=9)}


def _cli_table(checkpoint: Path, out: Path, *inputs: Path, extra: tuple[str, ...] = ()):
    from factories import run_main
    from opengraphau import read_results

    assert run_main("--resume", str(checkpoint), "--quiet", "--workers", "0", *extra,
                    "--output-dir", str(out), *map(str, inputs)) == 0
    return read_results(out)


def test_to_dataframe_is_predictions_csv_in_memory(resnet18_s1: Path, inputs: dict[str, Path],
                                                   tmp_path: Path) -> None:
    import pandas as pd

    from opengraphau import to_dataframe

    predictor = AUPredictor(resnet18_s1, device="cpu", detect_faces=True)
    table = to_dataframe(predictor.predict([inputs["face"], inputs["blank"]]))
    written = _cli_table(resnet18_s1, tmp_path / "o", inputs["face"], inputs["blank"])
    assert table["success"].tolist() == [True, False]
    pd.testing.assert_frame_equal(table, written, check_like=False)


def test_predict_video_tracks_faces_as_a_run_does(resnet18_s1: Path, inputs: dict[str, Path],
                                                  tmp_path: Path) -> None:
    import pandas as pd

    from opengraphau import to_dataframe

    predictor = AUPredictor(resnet18_s1, device="cpu", detect_faces=True)
    video = predictor.predict_video(inputs["clip"], every=2)
    assert video.error is None and video.fps > 0
    written = _cli_table(resnet18_s1, tmp_path / "o", inputs["clip"], extra=("--every", "2"))
    table = to_dataframe([video])
    assert table["frame"].tolist() == [0, 2, 4, 6, 8, 10]
    # One person, tracked (-1 while not yet confirmed as one), as the run wrote it.
    assert set(table["face_id"][table["success"]]) == {-1, 0}
    pd.testing.assert_frame_equal(table, written)
