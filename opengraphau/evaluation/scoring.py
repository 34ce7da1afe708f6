"""Scores of matched predictions and labels: the per-AU table, its means, and bootstrap intervals
of the means over subjects."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .metrics import COUNTS, Ranking, confusion, ranking_scores, scores_from_counts

#: evaluation.csv's columns, in order.
COLUMNS = (
    "au",
    "f1",
    "accuracy",
    "precision",
    "recall",
    "positives",
    "negatives",
    "auc",
    "ap",
    "threshold",
    *COUNTS,
)
#: The means `Evaluation.means` holds (and bootstrap intervals are given for).
MEANS = (
    "f1_mean",
    "f1_mean_labelled",
    "accuracy_mean",
    "precision_mean_labelled",
    "recall_mean_labelled",
    "auc_mean",
    "ap_mean",
)
CONFIDENCE = 0.95


@dataclass
class Evaluation:
    """The scores of one labelled set: `per_au` (one row per AU scored, `COLUMNS`), `means`
    (`MEANS`), `intervals` ({mean: (low, high)}, 95 % bootstrap over subjects; empty without
    subjects), and how the label rows were matched (`matching`)."""

    per_au: pd.DataFrame
    means: dict[str, float]
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    matching: dict[str, Any] = field(default_factory=dict)
    bootstrap: int = 0
    subjects: int = 0
    context: dict[str, Any] = field(default_factory=dict)
    """Where the numbers came from: label files and their SHA-256, checkpoints, thresholds."""
    data: tuple[np.ndarray, ...] = ()
    """(scores, labels, groups) of the scored rows, for calibration and plots."""


def _means(table: dict[str, np.ndarray], labelled: np.ndarray) -> dict[str, np.ndarray]:
    """The means of per-AU `table` entries (..., AUs); `labelled` (AUs,) marks AUs with
    positives."""

    def mean(values: np.ndarray, keep: np.ndarray | None = None) -> np.ndarray:
        values = values if keep is None else values[..., keep]
        if values.shape[-1] == 0:
            return np.full(values.shape[:-1], np.nan)
        with warnings.catch_warnings():  # an AU whose AUC is NaN in every resample
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmean(values, axis=-1)

    return {
        "f1_mean": mean(table["f1"]),
        "f1_mean_labelled": mean(table["f1"], labelled),
        "accuracy_mean": mean(table["accuracy"]),
        "precision_mean_labelled": mean(table["precision"], labelled),
        "recall_mean_labelled": mean(table["recall"], labelled),
        "auc_mean": mean(table["auc"]),
        "ap_mean": mean(table["ap"]),
    }


def score(
    scores: np.ndarray,
    labels: np.ndarray,
    thresholds: np.ndarray,
    aus: tuple[str, ...],
    *,
    groups: np.ndarray | None = None,
    bootstrap: int = 1000,
    seed: int = 0,
) -> Evaluation:
    """Scores of `scores` (rows, AUs) against `labels` (rows, AUs; 1/0/-1) at `thresholds`
    (AUs,). `groups` (rows,) names each row's subject: with two or more, `bootstrap` resamples
    of the subjects (with replacement, `seed`) give each mean a 95 % interval."""
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels, np.int8)
    thresholds = np.asarray(thresholds, np.float64)
    counts = confusion(scores, labels, thresholds)
    table = scores_from_counts(counts)
    ranked = [ranking_scores(scores[:, a], labels[:, a]) for a in range(len(aus))]
    table["auc"] = np.array([float(r[0]) for r in ranked])
    table["ap"] = np.array([float(r[1]) for r in ranked])
    positives = (labels == 1).sum(axis=0)
    labelled = positives > 0
    per_au = pd.DataFrame(
        {
            "au": list(aus),
            **{k: table[k] for k in ("f1", "accuracy", "precision", "recall")},
            "positives": positives,
            "negatives": (labels == 0).sum(axis=0),
            "auc": table["auc"],
            "ap": table["ap"],
            "threshold": thresholds,
            **{name: counts[:, i] for i, name in enumerate(COUNTS)},
        },
        columns=list(COLUMNS),
    )
    means = {k: float(v) for k, v in _means(table, labelled).items()}
    result = Evaluation(per_au, means)
    if groups is not None:
        names, index = np.unique(np.asarray(groups).astype(str), return_inverse=True)
        result.subjects = len(names)
        if len(names) >= 2 and bootstrap > 0:
            result.intervals = _bootstrap(
                scores, labels, thresholds, index, len(names), labelled, bootstrap, seed
            )
            result.bootstrap = bootstrap
    return result


def _bootstrap(
    scores: np.ndarray,
    labels: np.ndarray,
    thresholds: np.ndarray,
    group: np.ndarray,
    groups: int,
    labelled: np.ndarray,
    resamples: int,
    seed: int,
) -> dict[str, tuple[float, float]]:
    """Percentile intervals of the means over `resamples` resamples of the subjects: each
    resample weighs a subject by how often it was drawn. The AUs of the labelled means stay
    those of the whole set, so every resample averages the same AUs."""
    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, groups, size=(resamples, groups))
    multiplicity = np.stack([np.bincount(d, minlength=groups) for d in drawn])  # (B, G)
    # Counts per subject, then per resample as the weighted sum: no row is copied.
    per_subject = np.stack(
        [
            _subject_counts(scores[:, a], labels[:, a], thresholds[a], group, groups)
            for a in range(labels.shape[1])
        ],
        axis=1,
    )  # (G, AUs, 4)
    counts = np.einsum("bg,gak->bak", multiplicity.astype(np.float64), per_subject)
    table = scores_from_counts(counts)
    ranked = [
        Ranking(scores[:, a], labels[:, a], group)(multiplicity) for a in range(labels.shape[1])
    ]
    table["auc"] = np.stack([r[0] for r in ranked], axis=1)
    table["ap"] = np.stack([r[1] for r in ranked], axis=1)
    tail = (1 - CONFIDENCE) / 2 * 100
    intervals = {}
    for name, values in _means(table, labelled).items():
        finite = values[np.isfinite(values)]
        if finite.size:
            low, high = np.percentile(finite, [tail, 100 - tail])
            intervals[name] = (float(low), float(high))
    return intervals


def _subject_counts(
    scores: np.ndarray, labels: np.ndarray, threshold: float, group: np.ndarray, groups: int
) -> np.ndarray:
    """(subjects, 4) TP, FP, FN, TN of one AU per subject."""
    predicted = scores >= threshold
    cells = (
        predicted & (labels == 1),
        predicted & (labels == 0),
        ~predicted & (labels == 1),
        ~predicted & (labels == 0),
    )
    return np.stack([np.bincount(group, weights=c, minlength=groups) for c in cells], axis=1)
