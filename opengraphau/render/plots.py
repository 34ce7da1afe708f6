"""Timeline picture of the AU probabilities of one face over a video.

Built on matplotlib's object API (Figure + Agg canvas), so it needs no display and leaves pyplot's
global state alone, which matters when it runs in a worker or next to a preview window.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

from ..aus import AU_COLUMNS, AU_NAMES
from ..thresholds import ThresholdLike, as_thresholds

#: 16 x 9 inches at 100 dpi: 1600 x 900 pixels, a screen-sized picture.
_FIGSIZE = (16.0, 9.0)
_DPI = 100
#: Longer series are averaged down to this many points before drawing: more than the plot's ~1250
#: pixel columns, and drawing 41 lines of an hour at 30 fps point by point takes minutes.
_MAX_POINTS = 2000
#: More highlighted lines than this are no longer told apart by colour, nor fit the legend.
MAX_TOP = 12


def _rank_aus(probs: np.ndarray, threshold: ThresholdLike) -> np.ndarray:
    """AU indices, most active first: by the fraction of face frames at or above each AU's
    threshold, ties (typically AUs never reaching it) broken by mean probability."""
    valid = ~np.isnan(probs)
    frames = np.maximum(valid.sum(axis=0), 1)
    above = as_thresholds(threshold).active(np.nan_to_num(probs, nan=-1.0)).sum(axis=0) / frames
    mean = np.nan_to_num(probs, nan=0.0).sum(axis=0) / frames
    return np.lexsort((-mean, -above))


def _bin_means(times: np.ndarray, probs: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Average consecutive frames into `bins` groups, ignoring NaN; all-NaN groups stay NaN."""
    starts = np.linspace(0, times.size, bins, endpoint=False).astype(int)
    lengths = np.diff(np.append(starts, times.size))
    valid = ~np.isnan(probs)
    sums = np.add.reduceat(np.where(valid, probs, 0.0), starts, axis=0)
    counts = np.add.reduceat(valid, starts, axis=0)
    means = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return np.add.reduceat(times, starts) / lengths, means


def plot_timeline(
    times: np.ndarray,
    probs: np.ndarray,
    path: str | Path,
    *,
    threshold: ThresholdLike = 0.5,
    title: str = "",
    top: int = 8,
) -> None:
    """Save a PNG with the `top` most active AUs as labelled lines over time, the other AUs as thin
    grey lines, the threshold, and a heatmap strip of all 41 AUs below.

    `times` (T,) are seconds, `probs` (T, 41) are in conf.AU_IDS order; NaN rows (frames without
    a face) show as gaps. The most active AUs are those above `threshold` most often (ties by mean);
    `top` is at most MAX_TOP.
    """
    times = np.asarray(times, dtype=np.float64)
    probs = np.asarray(probs, dtype=np.float64)
    if times.ndim != 1 or times.size == 0 or probs.shape != (times.size, len(AU_COLUMNS)):
        raise ValueError(
            f"expected times (T,) and probs (T, {len(AU_COLUMNS)}) with T >= 1, got "
            f"{times.shape} and {probs.shape}"
        )
    if not 0 <= top <= MAX_TOP:
        raise ValueError(f"top must be between 0 and {MAX_TOP} AUs (got {top})")
    cuts = as_thresholds(threshold)
    order = _rank_aus(probs, cuts)
    highlighted = order[:top]
    if times.size > _MAX_POINTS:
        times, probs = _bin_means(times, probs, _MAX_POINTS)

    fig = Figure(figsize=_FIGSIZE, dpi=_DPI)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(
        2,
        2,
        height_ratios=(1.15, 1),
        width_ratios=(1, 0.012),
        hspace=0.08,
        wspace=0.015,
        left=0.055,
        right=0.80,
        top=0.93 if title else 0.97,
        bottom=0.07,
    )
    lines = fig.add_subplot(grid[0, 0])
    heat = fig.add_subplot(grid[1, 0], sharex=lines)
    colorbar_axes = fig.add_subplot(grid[1, 1])

    # A single frame has no line segment to draw: mark the points instead.
    marker = "o" if times.size == 1 else None
    for au in order[top:]:
        lines.plot(
            times,
            probs[:, au],
            color="0.6",
            linewidth=0.7,
            alpha=0.6,
            marker=marker,
            markersize=3,
            zorder=1,
        )
    # Grey is taken by the other AUs: the highlighted ones get the strong, then the light, non-grey
    # tab colours (18 of them, enough for MAX_TOP).
    strong = [colormaps["tab10"](i) for i in range(10)]
    light = [colormaps["tab20"](i) for i in range(1, 20, 2)]
    palette = [to_hex(c) for c in strong + light if len(set(c[:3])) > 1]
    colors = dict(zip(highlighted, palette))
    for au in highlighted:
        lines.plot(
            times,
            probs[:, au],
            color=colors[au],
            linewidth=2.0,
            marker=marker,
            markersize=7,
            label=f"{AU_COLUMNS[au]} {AU_NAMES[au]}",
            zorder=3,
        )
    if cuts.is_uniform:
        lines.axhline(
            cuts.values[0],
            color="black",
            linestyle="--",
            linewidth=1.2,
            label=f"threshold {cuts.values[0]:g}",
            zorder=4,
        )
    else:  # each highlighted AU's own cut, dashed in its colour
        for au in highlighted:
            lines.axhline(cuts.values[au], color=colors[au], linestyle="--", linewidth=1.0)
    lines.set_ylim(-0.02, 1.02)  # a little room so lines at 0 or 1 are not cut in half
    lines.set_ylabel("probability", fontsize=12)
    lines.grid(alpha=0.3)
    lines.tick_params(labelbottom=False, labelsize=11)
    lines.legend(
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize=11,
        frameon=False,
        title=f"top {top} by time above threshold" if top else None,
        title_fontsize=11,
        alignment="left",
    )

    # One column per frame, as wide as the usual frame step (frames without a face are NaN rows, so
    # the steps stay even); NaN columns stay blank.
    if times.size > 1:
        step = float(np.median(np.diff(times)))
        extent = (times[0] - step / 2, times[-1] + step / 2)
    else:
        extent = (times[0] - 0.5, times[0] + 0.5)
    cmap = colormaps["viridis"].with_extremes(bad="white")
    image = heat.imshow(
        probs.T,
        aspect="auto",
        interpolation="nearest",
        cmap=cmap,
        vmin=0,
        vmax=1,
        extent=(extent[0], extent[1], len(AU_COLUMNS) - 0.5, -0.5),
    )
    heat.set_yticks(range(len(AU_COLUMNS)), AU_COLUMNS, fontsize=7)
    for au in highlighted:
        label = heat.get_yticklabels()[au]
        label.set_color(colors[au])
        label.set_fontweight("bold")
    heat.set_xlim(*extent)
    heat.set_xlabel("time (s)", fontsize=12)
    heat.tick_params(axis="x", labelsize=11)
    fig.colorbar(image, cax=colorbar_axes).set_label("probability", fontsize=11)
    if title:
        fig.suptitle(title, fontsize=15)
    fig.savefig(path, format="png")
