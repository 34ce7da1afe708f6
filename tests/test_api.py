"""The in-memory API as a notebook meets it: random weights only with `untrained=True`, and
announced; results as a DataFrame with predictions.csv's columns; a video with tracking."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import pytest

from factories import FACE, FAST, present
from opengraphau import AUPredictor, ConfigError, Options, run
from opengraphau.context import UNTRAINED_BANNER
from opengraphau.errors import UntrainedWarning
from opengraphau.weights import DownloadError


def test_without_a_checkpoint_the_default_model_is_taken_never_random_weights() -> None:
    """As the command line: the official model for the backbone asked (here not cached, and
    the suite is offline), never random weights without `untrained=True`."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", UntrainedWarning)
        with pytest.raises(DownloadError, match=r"^resnet18-s2: not cached \(offline\)"):
            AUPredictor(device="cpu", arch="resnet18")
    with pytest.raises(ConfigError, match="random weights and a checkpoint or model exclude"):
        AUPredictor(model="resnet18-s1", untrained=True)


def test_random_weights_warn_and_log(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.warns(UntrainedWarning, match="random weights"), caplog.at_level(logging.WARNING):
        predictor = AUPredictor(device="cpu", arch="resnet18", untrained=True)
    assert predictor.untrained
    assert [r.getMessage() for r in caplog.records if r.name == "opengraphau"] == [UNTRAINED_BANNER]


def test_run_on_random_weights_warns(tmp_path: Path) -> None:
    options = Options(
        inputs=(str(FACE),),
        output_dir=tmp_path / "o",
        untrained=True,
        arch="resnet18",
        detect=False,
        workers=0,
    )
    with pytest.warns(UntrainedWarning):
        assert run(options).images == 1


def test_the_cli_says_it_once_in_its_own_words(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """The terminal gets the banner, not a Python warning or a log record beside it."""
    from opengraphau.cli.main import main

    assert (
        main(
            [
                *FAST,
                "--output-dir",
                str(tmp_path / "o"),
                "--input",
                str(FACE),
            ]
        )
        == 0
    )
    err = capfd.readouterr().err
    assert err.count(UNTRAINED_BANNER) == 1 and "UntrainedWarning" not in err


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import numpy as np
    from PIL import Image
    from skimage import data

    from factories import write_clip, write_video

    folder = tmp_path_factory.mktemp("api")
    blank = folder / "blank.png"
    Image.fromarray(np.full((90, 120, 3), 128, np.uint8)).save(blank)
    # A face whose light flickers from frame to frame: its AUs move, and smoothing shows.
    face = data.astronaut()[20:240, 120:340].astype(np.float32)
    frames = []
    for i in range(10):
        frame = np.full((300, 400, 3), 170, np.uint8)
        frame[40:260, 90:310] = np.clip(face * (1.0, 0.5, 1.4, 0.7)[i % 4], 0, 255)
        frames.append(frame)
    return {
        "face": FACE,
        "blank": blank,
        "clip": write_video(folder / "clip.mp4", 12, face_until=9),
        "flicker": write_clip(folder / "flicker.mp4", frames),
    }


def _cli_table(checkpoint: Path, out: Path, *inputs: Path, extra: tuple[str, ...] = ()):
    from factories import run_main
    from opengraphau import read_results

    assert (
        run_main(
            "--resume",
            str(checkpoint),
            "--quiet",
            "--workers",
            "0",
            *extra,
            "--output-dir",
            str(out),
            *map(str, inputs),
        )
        == 0
    )
    return read_results(out)


def test_to_dataframe_is_predictions_csv_in_memory(
    resnet18_s1: Path, inputs: dict[str, Path], tmp_path: Path
) -> None:
    import pandas as pd

    from opengraphau import to_dataframe

    predictor = AUPredictor(resnet18_s1, device="cpu", detect_faces=True)
    table = to_dataframe(predictor.predict([inputs["face"], inputs["blank"]]))
    written = _cli_table(resnet18_s1, tmp_path / "o", inputs["face"], inputs["blank"])
    assert table["success"].tolist() == [True, False]
    pd.testing.assert_frame_equal(table, written, check_like=False)


def test_predict_video_tracks_faces_as_a_run_does(
    resnet18_s1: Path, inputs: dict[str, Path], tmp_path: Path
) -> None:
    import pandas as pd

    from opengraphau import to_dataframe

    predictor = AUPredictor(resnet18_s1, device="cpu", detect_faces=True)
    video = predictor.predict_video(inputs["clip"], every=2)
    assert video.error is None and video.fps > 0
    written = _cli_table(resnet18_s1, tmp_path / "o", inputs["clip"], extra=("--every", "2"))
    table = to_dataframe([video])
    assert table["frame"].tolist() == [0, 2, 4, 6, 8, 10]
    # One person, tracked (with the id from the first frame), as the run wrote it.
    assert set(table["face_id"][table["success"]]) == {0}
    pd.testing.assert_frame_equal(table, written)


def test_smoothing_keeps_the_models_values_beside_in_every_format(
    resnet18_s1: Path, inputs: dict[str, Path], tmp_path: Path
) -> None:
    """--smooth 3: AU12 stays the model's value (as a run without smoothing writes it) and
    AU12_smooth is the median of the face's last three frames, in CSV, JSONL, Parquet and
    read_results alike, and in predict_video's table."""
    import json

    import numpy as np
    import pandas as pd

    from opengraphau import to_dataframe
    from opengraphau.aus import AU_COLUMNS, SMOOTH_COLUMNS

    plain = _cli_table(resnet18_s1, tmp_path / "plain", inputs["flicker"])
    smoothed = _cli_table(
        resnet18_s1,
        tmp_path / "smooth",
        inputs["flicker"],
        extra=("--smooth", "3", "--format", "csv,jsonl,parquet"),
    )
    assert list(smoothed.columns) == [*plain.columns, *SMOOTH_COLUMNS]
    pd.testing.assert_frame_equal(smoothed[list(plain.columns)], plain)
    faces = smoothed[smoothed.success]
    raw = faces[list(AU_COLUMNS)].to_numpy(np.float64)
    expected = np.stack([np.median(raw[max(0, i - 2) : i + 1], axis=0) for i in range(len(raw))])
    np.testing.assert_allclose(
        faces[list(SMOOTH_COLUMNS)].to_numpy(np.float64), expected, atol=2e-6
    )
    csv_table = pd.read_csv(tmp_path / "smooth" / "predictions.csv")
    assert list(csv_table.columns) == list(smoothed.columns)
    parquet = pd.read_parquet(tmp_path / "smooth" / "predictions.parquet")
    np.testing.assert_array_equal(
        parquet["AU12_smooth"].to_numpy(), smoothed["AU12_smooth"].to_numpy()
    )
    lines = [
        json.loads(x) for x in (tmp_path / "smooth" / "predictions.jsonl").read_text().splitlines()
    ]
    au12 = [next(a for a in line["aus"] if a["id"] == "AU12") for line in lines if line["aus"]]
    assert [a["probability"] for a in au12] == pytest.approx(faces["AU12"].tolist(), abs=1e-6)
    assert [a["smoothed"] for a in au12] == pytest.approx(faces["AU12_smooth"].tolist(), abs=1e-6)
    predictor = AUPredictor(resnet18_s1, device="cpu", detect_faces=True)
    memory = to_dataframe([predictor.predict_video(inputs["flicker"], smooth=3)])
    pd.testing.assert_frame_equal(memory, smoothed)


def test_smoothed_and_model_values_reach_every_format(tmp_path: Path) -> None:
    """Faces whose values jump (as a random-weight model's hardly do): the tracker's smoother
    keeps each model value in `raw`, and every format writes both, as read_results reads."""
    import json

    import numpy as np
    import pandas as pd

    from opengraphau import read_results
    from opengraphau.aus import AU_COLUMNS, SMOOTH_COLUMNS
    from opengraphau.records import FaceRecord
    from opengraphau.sinks.files import OutputFolder
    from opengraphau.sinks.writer import ResultWriter
    from opengraphau.tracking import Smoother, TrackedFaces

    rng = np.random.default_rng(0)
    model = rng.random((6, len(AU_COLUMNS))).astype(np.float32)
    tracked = TrackedFaces(None, Smoother(3, "median"))
    records = [
        r
        for t in range(6)
        for r in tracked(
            [FaceRecord("v.mp4", t, t / 25, 0, (1.0, 2.0, 30.0, 40.0), 0.99, model[t])]
        )
    ]
    expected = np.stack([np.median(model[max(0, t - 2) : t + 1], axis=0) for t in range(6)])
    np.testing.assert_array_equal(np.stack(present(r.raw for r in records)), model)
    np.testing.assert_allclose(np.stack(present(r.probs for r in records)), expected, rtol=1e-6)
    tables = {}
    for fmt in ("csv", "jsonl", "parquet"):
        out = OutputFolder(tmp_path / fmt)
        with ResultWriter(out, formats=(fmt,), smooth=True) as writer:
            writer.write(records)
    for fmt in ("csv", "parquet"):
        tables[fmt] = read_results(tmp_path / fmt)
        assert list(tables[fmt].columns[-len(SMOOTH_COLUMNS) :]) == list(SMOOTH_COLUMNS)
        np.testing.assert_allclose(tables[fmt][list(AU_COLUMNS)], model, atol=5e-7)
        np.testing.assert_allclose(tables[fmt][list(SMOOTH_COLUMNS)], expected, atol=5e-7)
    pd.testing.assert_frame_equal(tables["csv"], tables["parquet"], check_like=True)
    lines = [
        json.loads(x) for x in (tmp_path / "jsonl" / "predictions.jsonl").read_text().splitlines()
    ]
    assert [line["aus"][0]["probability"] for line in lines] == pytest.approx(model[:, 0], abs=1e-6)
    assert [line["aus"][0]["smoothed"] for line in lines] == pytest.approx(expected[:, 0], abs=1e-6)
