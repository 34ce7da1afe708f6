"""plot_timeline writes a 1600 x 900 PNG for ordinary, gappy, single-frame and long inputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.axes import Axes
from PIL import Image

from opengraphau.aus import AU_COLUMNS
from opengraphau.render.plots import _MAX_POINTS, MAX_TOP, _bin_means, _rank_aus, plot_timeline

N = len(AU_COLUMNS)


def check_png(path: Path) -> np.ndarray:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (1600, 900)
        return np.asarray(image.convert("RGB"))


def sample(frames: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    times = np.arange(frames) / 10.0
    probs = rng.uniform(0.0, 0.3, (frames, N))
    probs[:, 9] = 0.5 + 0.4 * np.sin(times)  # AU12 smiles now and then
    return times, probs


def test_plot_is_a_png_of_the_expected_size(tmp_path: Path) -> None:
    times, probs = sample(120)
    path = tmp_path / "timeline.png"
    plot_timeline(times, probs, path, title="clip.mp4 face 0")
    pixels = check_png(path)
    assert pixels.std() > 10  # something was drawn, not a blank canvas


def test_nan_rows_are_gaps(tmp_path: Path) -> None:
    times, probs = sample(120, seed=1)
    probs[30:70] = np.nan
    plot_timeline(times, probs, tmp_path / "gaps.png", threshold=0.4, top=3)
    check_png(tmp_path / "gaps.png")
    everything_missing = np.full_like(probs, np.nan)
    plot_timeline(times, everything_missing, tmp_path / "empty.png")
    check_png(tmp_path / "empty.png")


@pytest.mark.parametrize("top", [0, 8, MAX_TOP])
def test_single_frame(tmp_path: Path, top: int) -> None:
    times, probs = sample(1)
    plot_timeline(times + 3.2, probs, tmp_path / "one.png", top=top)
    check_png(tmp_path / "one.png")


def test_a_long_video_is_averaged_down_before_drawing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    times, probs = sample(60_000)  # 100 minutes at 10 fps
    drawn: list[tuple[int, int]] = []
    real_plot = Axes.plot

    def plot(self: Axes, x: np.ndarray, y: np.ndarray, *args: Any, **kwargs: Any) -> Any:
        drawn.append((len(x), len(y)))
        return real_plot(self, x, y, *args, **kwargs)

    monkeypatch.setattr(Axes, "plot", plot)
    plot_timeline(times, probs, tmp_path / "long.png")
    check_png(tmp_path / "long.png")
    assert drawn == [(_MAX_POINTS, _MAX_POINTS)] * N  # one line per AU, each of 2000 points


def test_bin_means_average_each_group_of_frames_leaving_gaps_out() -> None:
    times = np.arange(10.0)
    probs = np.arange(10.0 * N).reshape(10, N)
    probs[0:2, 0] = np.nan  # a gap inside the first group
    probs[3:6, 1] = np.nan  # a whole group without the face
    got_times, got_probs = _bin_means(times, probs, 3)
    groups = [slice(0, 3), slice(3, 6), slice(6, 10)]  # int(0), int(3.33), int(6.67)
    np.testing.assert_array_equal(got_times, [times[g].mean() for g in groups])
    for k, g in enumerate(groups):
        for au in range(N):
            values = [v for v in probs[g, au] if not np.isnan(v)]
            expected = sum(values) / len(values) if values else np.nan
            np.testing.assert_allclose(got_probs[k, au], expected, rtol=1e-12)
    assert got_probs[0, 0] == probs[2, 0] and np.isnan(got_probs[1, 1])


def test_ranking_by_time_above_threshold_then_mean() -> None:
    probs = np.full((10, N), 0.1)
    probs[:, 5] = 0.45  # highest mean, never above 0.5
    probs[:6, 2] = 0.9  # above threshold 60 % of the time
    probs[:3, 7] = 0.9  # 30 %
    probs[4:, 7] = np.nan  # ... of its 4 valid frames: 75 %
    assert list(_rank_aus(probs, 0.5)[:4]) == [7, 2, 5, 0]


def test_bad_arguments_are_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="probs"):
        plot_timeline(np.arange(5.0), np.zeros((5, 27)), tmp_path / "bad.png")
    with pytest.raises(ValueError, match="T >= 1"):
        plot_timeline(np.zeros(0), np.zeros((0, N)), tmp_path / "bad.png")
    with pytest.raises(ValueError, match="top"):
        plot_timeline(*sample(3), tmp_path / "bad.png", top=MAX_TOP + 1)
