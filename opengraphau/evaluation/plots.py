"""evaluation.png (per-AU F1 as bars) and pr_curves.png (a precision-recall curve per AU), sized
and lettered for a slide. matplotlib's object API: no display, no pyplot state."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .metrics import curve

_DPI = 100
_BLUE, _ORANGE, _GREY = "#1f77b4", "#ff7f0e", "#9a9a9a"


def plot_f1(
    per_au: pd.DataFrame,
    path: str | Path,
    *,
    title: str,
    mean: float,
    calibrated: pd.Series | None = None,
) -> None:
    """Bars of F1 (%) per AU with their number of positives beneath, the mean over AUs with
    positives as a dashed line; `calibrated` (F1 per AU, cross-validated) as second bars."""
    count = len(per_au)
    fig = Figure(figsize=(max(8.0, 0.42 * count + 2.5), 6.0), dpi=_DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    x = np.arange(count)
    has_positives = per_au["positives"].to_numpy() > 0
    width = 0.4 if calibrated is not None else 0.75
    shift = width / 2 if calibrated is not None else 0.0
    f1 = per_au["f1"].to_numpy() * 100
    ax.bar(
        x - shift,
        f1,
        width,
        color=np.where(has_positives, _BLUE, _GREY),
        label="F1 at the thresholds used",
    )
    if calibrated is not None:
        ax.bar(
            x + shift,
            calibrated.to_numpy() * 100,
            width,
            color=_ORANGE,
            label="F1 with calibrated thresholds (cross-validated)",
        )
    if math.isfinite(mean):
        ax.axhline(
            mean * 100,
            color="black",
            linestyle="--",
            linewidth=1.2,
            label=f"mean over AUs with positives: {mean * 100:.1f}",
        )
    labels = [
        f"{au}\n{int(p)}" if p else f"{au}\n(none)"
        for au, p in zip(per_au["au"], per_au["positives"])
    ]
    ax.set_xticks(x, labels, fontsize=9 if count > 20 else 11)
    ax.set_xlim(-0.7, count - 0.3)
    ax.set_ylim(0, 100)
    ax.set_ylabel("F1 (%)", fontsize=13)
    ax.set_xlabel("AU, and its number of positive labels (grey bars: none)", fontsize=12)
    ax.set_title(title, fontsize=14)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(
        loc="upper center",
        bbox_to_anchor=(0.5, -0.16),
        ncol=3 if count > 12 else 1,
        fontsize=11,
        frameon=False,
    )
    fig.tight_layout()
    fig.savefig(str(path), format="png", bbox_inches="tight")


def plot_pr_curves(
    scores: np.ndarray,
    labels: np.ndarray,
    per_au: pd.DataFrame,
    path: str | Path,
    *,
    title: str,
) -> None:
    """One precision-recall panel per AU with positives: the curve, its AP, the point the
    threshold gives, and the share of positives (a random scorer's precision)."""
    picked = [a for a in range(len(per_au)) if per_au["positives"].iloc[a] > 0]
    columns = min(6, max(1, len(picked)))
    rows = max(1, math.ceil(len(picked) / columns))
    fig = Figure(figsize=(3.0 * columns + 0.5, 2.8 * rows + 0.8), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    for n, a in enumerate(picked):
        ax = fig.add_subplot(rows, columns, n + 1)
        row = per_au.iloc[a]
        recall, precision = curve(scores[:, a], labels[:, a])
        ax.step(
            np.concatenate([[0.0], recall]),
            np.concatenate([[precision[0]], precision]),
            where="pre",
            color=_BLUE,
            linewidth=1.6,
        )
        ax.axhline(
            row["positives"] / (row["positives"] + row["negatives"]),
            color=_GREY,
            linestyle=":",
            linewidth=1.0,
        )
        ax.plot(row["recall"], row["precision"], "o", color=_ORANGE, markersize=6)
        ap = "n/a" if not math.isfinite(row["ap"]) else f"{row['ap']:.2f}"
        ax.set_title(f"{row['au']}  AP {ap}", fontsize=11)
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.05)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        if n % columns == 0:
            ax.set_ylabel("precision", fontsize=10)
        if n >= len(picked) - columns:
            ax.set_xlabel("recall", fontsize=10)
    if not picked:
        ax = fig.add_subplot()
        ax.text(0.5, 0.5, "no AU has a positive label", ha="center", va="center", fontsize=14)
        ax.set_axis_off()
    fig.suptitle(
        f"{title}\n(dot: the threshold's operating point; dotted: share of positives)",
        fontsize=12,
    )
    fig.savefig(str(path), format="png")
