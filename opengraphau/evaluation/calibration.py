"""Per-AU thresholds that maximise F1 on a labelled set, and what they are worth on unseen data.

For each AU the threshold is chosen among the set's own scores: predicting "present" at or above
each distinct score gives one F1 (as `metrics` counts it); the best (the highest threshold among
equals) wins, and the threshold written is halfway between that score and the next lower one, so
it does not sit on a training example. An AU without positive labels keeps its default.

The in-sample F1 of such thresholds is optimistic: they were fitted to the very labels they are
scored on. `calibrate` therefore also reports k-fold cross-validated F1: the thresholds are
chosen on k-1 folds, applied to the held-out fold, and TP/FP/FN summed over the held-out folds.
Folds are whole groups (subjects, or files: frames of one video never end up on both sides).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .metrics import confusion, scores_from_counts


def best_threshold(scores: np.ndarray, labels: np.ndarray, default: float) -> tuple[float, bool]:
    """(threshold, calibrated) of one AU: the F1-best cut of `scores` (rows,) against `labels`
    (1/0/-1); `default` and False when there is no positive label."""
    keep = labels >= 0
    s, y = np.asarray(scores, np.float64)[keep], labels[keep] == 1
    positives = int(y.sum())
    if positives == 0:
        return default, False
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    ends = np.flatnonzero(np.append(np.diff(s) != 0, True))
    tp = np.cumsum(y)[ends]
    predicted = ends + 1
    f1 = 2 * tp / (predicted + positives)  # 2TP / (2TP + FP + FN)
    best = int(np.argmax(f1))
    below = s[ends[best + 1]] if best + 1 < ends.size else 0.0
    return float((s[ends[best]] + below) / 2), True


def fit_thresholds(
    scores: np.ndarray, labels: np.ndarray, defaults: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(thresholds (AUs,), calibrated (AUs,) bool) for `scores` and `labels` (rows, AUs)."""
    fitted = [best_threshold(scores[:, a], labels[:, a], defaults[a]) for a in range(len(defaults))]
    return np.array([t for t, _ in fitted]), np.array([c for _, c in fitted])


def folds_of(groups: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Fold number of each row: the distinct `groups`, shuffled with `seed`, dealt round-robin
    into min(folds, groups) folds."""
    names, index = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    shuffled = np.random.default_rng(seed).permutation(len(names))
    fold_of_group = np.empty(len(names), np.int64)
    fold_of_group[shuffled] = np.arange(len(names)) % max(1, min(folds, len(names)))
    return fold_of_group[index]


@dataclass
class Calibration:
    """Per AU (`table`: au, threshold, calibrated, f1_before, f1_in_sample, f1_cv): the chosen
    thresholds, the F1 at the thresholds used before, in-sample with the chosen ones, and
    cross-validated; `means` of the three F1 columns over the AUs with positives."""

    table: pd.DataFrame
    means: dict[str, float]
    folds: int

    def thresholds(self) -> dict[str, float]:
        """{AU: threshold} of the AUs that were calibrated (the rest keep the default)."""
        rows = self.table[self.table["calibrated"]]
        return dict(zip(rows["au"], map(float, rows["threshold"])))


def calibrate(
    scores: np.ndarray,
    labels: np.ndarray,
    thresholds: np.ndarray,
    aus: tuple[str, ...],
    groups: np.ndarray,
    *,
    folds: int = 5,
    seed: int = 0,
) -> Calibration:
    """F1-best thresholds for `scores` and `labels` (rows, AUs; 1/0/-1), starting from
    `thresholds` (AUs,) (kept where an AU has no positives), with `folds`-fold cross-validation
    over `groups` (rows,)."""
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels, np.int8)
    thresholds = np.asarray(thresholds, np.float64)
    chosen, calibrated = fit_thresholds(scores, labels, thresholds)
    fold = folds_of(groups, folds, seed)
    held_out = np.zeros((len(aus), 4), np.int64)
    for k in np.unique(fold):
        train, test = fold != k, fold == k
        cut, _ = fit_thresholds(scores[train], labels[train], thresholds)
        held_out += confusion(scores[test], labels[test], cut)
    before = scores_from_counts(confusion(scores, labels, thresholds))["f1"]
    in_sample = scores_from_counts(confusion(scores, labels, chosen))["f1"]
    cross = scores_from_counts(held_out)["f1"]
    table = pd.DataFrame(
        {
            "au": list(aus),
            "threshold": chosen,
            "calibrated": calibrated,
            "f1_before": before,
            "f1_in_sample": in_sample,
            "f1_cv": cross,
        }
    )
    keep = (labels == 1).sum(axis=0) > 0

    def mean(values: np.ndarray) -> float:
        return float(values[keep].mean()) if keep.any() else float("nan")

    means = {
        "f1_before": mean(before),
        "f1_in_sample": mean(in_sample),
        "f1_cv": mean(cross),
    }
    return Calibration(table, means, int(len(np.unique(fold))))
