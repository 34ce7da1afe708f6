"""Per-AU scores of probabilities against 1/0/-1 labels, computed as the reference computes them.

F1 follows the reference's `statistics` and `calc_f1_score`: an AU is predicted present at or
above its threshold; true and false positives and false negatives are summed over the whole set
per AU, unlabelled (-1) entries skipped; precision, recall or F1 whose denominator is 0 is 0. Its
mean is over every AU scored (`f1_mean`, the reference's number) and over the AUs with at least
one positive label (`f1_mean_labelled`: an AU without positives has F1 0 whatever the model
does). Accuracy is (TP + TN) / labelled entries. The area under the ROC curve and average
precision (scikit-learn's step-wise definition) need no threshold; they are NaN for an AU without
positives (or, for the AUC, without negatives).

Every function takes optional sample `weights` (rows, ) or (resamples, rows), so the bootstrap over
subjects reuses them with each subject's multiplicity instead of copying rows.
"""

from __future__ import annotations

import numpy as np

COUNTS = ("tp", "fp", "fn", "tn")


def confusion(scores: np.ndarray, labels: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """(AUs, 4) int64 TP, FP, FN, TN per AU: `scores` (rows, AUs) probabilities, `labels`
    (rows, AUs) 1/0/-1, `thresholds` (AUs,)."""
    predicted = np.asarray(scores) >= np.asarray(thresholds)
    positive, negative = labels == 1, labels == 0
    return np.stack(
        [
            (predicted & positive).sum(axis=0),
            (predicted & negative).sum(axis=0),
            (~predicted & positive).sum(axis=0),
            (~predicted & negative).sum(axis=0),
        ],
        axis=-1,
    ).astype(np.int64)


def _ratio(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    """top / bottom, 0 where bottom is 0 (as the reference's `+ 1e-20` gives)."""
    top, bottom = np.asarray(top, np.float64), np.asarray(bottom, np.float64)
    return np.divide(top, bottom, out=np.zeros(np.broadcast(top, bottom).shape), where=bottom > 0)


def scores_from_counts(counts: np.ndarray) -> dict[str, np.ndarray]:
    """F1, precision, recall and accuracy from (..., 4) counts, each (...)."""
    counts = np.asarray(counts, np.float64)
    tp, fp, fn, tn = (counts[..., i] for i in range(4))
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, tp + fn)
    f1 = _ratio(2 * precision * recall, precision + recall)
    accuracy = _ratio(tp + tn, tp + fp + fn + tn)
    return {"f1": f1, "precision": precision, "recall": recall, "accuracy": accuracy}


def ranking_scores(
    scores: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(ROC AUC, average precision) of one AU: `scores` and `labels` (rows,), unlabelled rows
    skipped; `weights` (rows,) or (resamples, rows) give each row a multiplicity. Each result is
    a float, or (resamples,) for 2-D weights; NaN where undefined."""
    keep = labels >= 0
    s, y = np.asarray(scores, np.float64)[keep], labels[keep] == 1
    w = np.ones((1, s.size)) if weights is None else np.atleast_2d(weights)[:, keep]
    order = np.argsort(-s, kind="stable")
    s, y, w = s[order], y[order], w[:, order].astype(np.float64)
    # The last row of each run of equal scores: one point of the curves per distinct threshold.
    ends = np.flatnonzero(np.append(np.diff(s) != 0, True)) if s.size else np.array([], int)
    tps = np.cumsum(w * y, axis=1)[:, ends]
    fps = np.cumsum(w * ~y, axis=1)[:, ends]
    positives, negatives = (tps[:, -1], fps[:, -1]) if s.size else (np.zeros(1), np.zeros(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        tpr = np.concatenate([np.zeros((w.shape[0], 1)), tps], axis=1) / positives[:, None]
        fpr = np.concatenate([np.zeros((w.shape[0], 1)), fps], axis=1) / negatives[:, None]
        auc = np.sum(np.diff(fpr, axis=1) * (tpr[:, 1:] + tpr[:, :-1]) / 2, axis=1)
        precision = tps / (tps + fps)
        ap = np.sum(np.diff(tpr, axis=1) * precision, axis=1)
    auc = np.where((positives > 0) & (negatives > 0), auc, np.nan)
    ap = np.where(positives > 0, ap, np.nan)
    if weights is None or np.ndim(weights) == 1:
        return auc[0], ap[0]
    return auc, ap


def curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision) at each distinct threshold of one AU, highest threshold first, for a
    precision-recall plot; unlabelled rows skipped."""
    keep = labels >= 0
    s, y = np.asarray(scores, np.float64)[keep], labels[keep] == 1
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    ends = np.flatnonzero(np.append(np.diff(s) != 0, True))
    tps, fps = np.cumsum(y)[ends], np.cumsum(~y)[ends]
    return tps / max(int(y.sum()), 1), tps / np.maximum(tps + fps, 1)
