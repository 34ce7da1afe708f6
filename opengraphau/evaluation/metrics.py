"""Per-AU scores of probabilities against 1/0/-1 labels, computed as the reference computes them.

F1 follows the reference's `statistics` and `calc_f1_score`: an AU is predicted present at or
above its threshold; true and false positives and false negatives are summed over the whole set
per AU, unlabelled (-1) entries skipped; precision, recall or F1 whose denominator is 0 is 0. Its
mean is over every AU scored (`f1_mean`, the reference's number) and over the AUs with at least
one positive label (`f1_mean_labelled`: an AU without positives has F1 0 whatever the model
does). Accuracy is (TP + TN) / labelled entries. The area under the ROC curve and average
precision (scikit-learn's step-wise definition) need no threshold; they are NaN for an AU without
positives (or, for the AUC, without negatives).

`Ranking` counts per subject, so the bootstrap over subjects weighs each subject by how often it
was drawn instead of copying rows.
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


class Ranking:
    """ROC AUC and average precision of one AU, for the whole set or for resamples of its
    subjects. Everything about the scores is counted once per subject: the AUC is then the
    Mann-Whitney statistic (pairs of a positive and a negative, ties counting half) summed over
    pairs of subjects, and AP's precision at each positive score a sum of per-subject counts,
    so a resample that weighs subject g by m_g costs a few matrix products, not a sort."""

    def __init__(
        self, scores: np.ndarray, labels: np.ndarray, groups: np.ndarray | None = None
    ) -> None:
        """`scores`, `labels` (1/0/-1; -1 rows skipped) and `groups` (subject numbers 0..G-1;
        None: one group) of the rows."""
        keep = labels >= 0
        s = np.asarray(scores, np.float64)[keep]
        y = labels[keep] == 1
        g = np.zeros(s.size, np.int64) if groups is None else np.asarray(groups)[keep]
        self.groups = 1 if groups is None else int(np.max(groups)) + 1
        count = self.groups
        pos_s, pos_g, neg_s, neg_g = s[y], g[y], s[~y], g[~y]
        self.positives = np.bincount(pos_g, minlength=count).astype(np.float64)
        self.negatives = np.bincount(neg_g, minlength=count).astype(np.float64)
        # pairs[g, h]: positives of g scored above negatives of h, ties counting half.
        self.pairs = np.zeros((count, count))
        # The distinct positive scores, highest first, and per subject how many positives and
        # negatives score at or above each, and how many positives score exactly it.
        values = np.unique(pos_s)[::-1]
        self.above_pos = np.zeros((count, values.size))
        self.above_neg = np.zeros((count, values.size))
        self.at_pos = np.zeros((count, values.size))
        ascending = values[::-1]
        for h in range(count):
            negative = np.sort(neg_s[neg_g == h])
            below = np.searchsorted(negative, pos_s, "left")
            ties = np.searchsorted(negative, pos_s, "right") - below
            self.pairs[:, h] = np.bincount(pos_g, weights=below + ties / 2, minlength=count)
            self.above_neg[h] = negative.size - np.searchsorted(negative, values, "left")
            positive = np.sort(pos_s[pos_g == h])
            self.above_pos[h] = positive.size - np.searchsorted(positive, values, "left")
            found = np.searchsorted(ascending, positive)
            self.at_pos[h] = np.bincount(found, minlength=values.size)[::-1]

    def __call__(self, multiplicity: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(AUC, AP), each (resamples,), for `multiplicity` (resamples, groups): how often each
        subject was drawn (None: the whole set once, (1,)). NaN where undefined: no positives
        (and, for the AUC, no negatives)."""
        m = np.ones((1, self.groups)) if multiplicity is None else np.atleast_2d(multiplicity)
        m = m.astype(np.float64)
        positives, negatives = m @ self.positives, m @ self.negatives
        with np.errstate(invalid="ignore", divide="ignore"):
            auc = np.einsum("bg,gh,bh->b", m, self.pairs, m) / (positives * negatives)
            tp, fp = m @ self.above_pos, m @ self.above_neg
            precision = np.where(tp > 0, tp / (tp + fp), 0.0)
            ap = np.sum((m @ self.at_pos) * precision, axis=1) / positives
        auc = np.where((positives > 0) & (negatives > 0), auc, np.nan)
        ap = np.where(positives > 0, ap, np.nan)
        return auc, ap


def ranking_scores(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(ROC AUC, average precision) of one AU over `scores` and `labels` (rows,), unlabelled
    rows skipped; NaN where undefined."""
    auc, ap = Ranking(scores, labels)()
    return float(auc[0]), float(ap[0])


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
