"""The evaluation's numbers against an independent plain-loop transcription of the reference's
`statistics` / `calc_f1_score` / `calc_acc` (OpenGraphAU/utils.py) and against scikit-learn, on
random labels with unlabelled (-1) entries and AUs without positives; the bootstrap against
resampling by copying rows; calibration on scores with a known best threshold and on noise."""

from __future__ import annotations

import numpy as np
import pytest
from reference_metrics import reference_acc, reference_f1, reference_statistics
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from opengraphau.evaluation.calibration import best_threshold, calibrate
from opengraphau.evaluation.metrics import Ranking, ranking_scores
from opengraphau.evaluation.scoring import score


def random_set(seed: int, rows: int = 400, aus: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Scores with 6 decimals (as predictions.csv holds them) and 1/0/-1 labels; AU 3 has no
    positives, AU 5 no labels at all, AU 7 no negatives; ties in the scores."""
    rng = np.random.default_rng(seed)
    labels = rng.choice([-1, 0, 1], size=(rows, aus), p=[0.2, 0.5, 0.3]).astype(np.int8)
    scores = np.round(np.clip(rng.random((rows, aus)) * 0.6 + 0.4 * (labels == 1), 0, 1), 6)
    scores[:, 1] = np.round(scores[:, 1], 1)  # many ties
    labels[:, 3] = np.where(labels[:, 3] == 1, 0, labels[:, 3])
    labels[:, 5] = -1
    labels[:, 7] = np.where(labels[:, 7] == 0, 1, labels[:, 7])
    return scores, labels


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("threshold", [0.5, 0.3])
def test_f1_and_accuracy_equal_the_reference(seed: int, threshold: float) -> None:
    scores, labels = random_set(seed)
    aus = tuple(f"AU{i}" for i in range(labels.shape[1]))
    result = score(scores, labels, np.full(len(aus), threshold), aus, bootstrap=0)
    stats = reference_statistics(scores.tolist(), labels.tolist(), threshold)
    mean_f1, f1s = reference_f1(stats)
    mean_acc, accs = reference_acc(stats)
    np.testing.assert_array_equal(result.per_au["f1"].to_numpy(), np.array(f1s))
    assert result.means["f1_mean"] == pytest.approx(mean_f1, abs=1e-15)
    np.testing.assert_allclose(result.per_au["accuracy"].to_numpy(), accs, rtol=0, atol=1e-15)
    assert result.means["accuracy_mean"] == pytest.approx(mean_acc, abs=1e-15)
    for name, key in (("tp", "TP"), ("fp", "FP"), ("fn", "FN"), ("tn", "TN")):
        assert result.per_au[name].tolist() == [s[key] for s in stats]
    # The mean over AUs with positives leaves out AU 3 (no positives) and AU 5 (no labels).
    with_positives = [f for a, f in enumerate(f1s) if a not in (3, 5)]
    assert result.means["f1_mean_labelled"] == pytest.approx(np.mean(with_positives), abs=1e-15)
    assert result.per_au["positives"].tolist()[3] == 0 and result.per_au["negatives"][5] == 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_equal_scikit_learn(seed: int) -> None:
    scores, labels = random_set(seed)
    thresholds = np.linspace(0.3, 0.7, labels.shape[1])
    aus = tuple(f"AU{i}" for i in range(labels.shape[1]))
    table = score(scores, labels, thresholds, aus, bootstrap=0).per_au
    for a in range(labels.shape[1]):
        keep = labels[:, a] >= 0
        y, s = labels[keep, a], scores[keep, a]
        row = table.iloc[a]
        if not keep.any():
            assert row["f1"] == 0 and row["accuracy"] == 0 and np.isnan(row["auc"])
            continue
        predicted = (s >= thresholds[a]).astype(int)
        assert row["f1"] == pytest.approx(f1_score(y, predicted, zero_division=0), abs=1e-12)
        assert row["precision"] == pytest.approx(
            precision_score(y, predicted, zero_division=0), abs=1e-12
        )
        assert row["recall"] == pytest.approx(
            recall_score(y, predicted, zero_division=0), abs=1e-12
        )
        assert row["accuracy"] == pytest.approx(accuracy_score(y, predicted), abs=1e-12)
        if 0 < y.sum() < y.size:
            assert row["auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        else:
            assert np.isnan(row["auc"])
        if y.sum() > 0:
            assert row["ap"] == pytest.approx(average_precision_score(y, s), abs=1e-12)
        else:
            assert np.isnan(row["ap"])


def test_ranking_by_subject_equals_scikit_learn_weights_and_copied_rows() -> None:
    rng = np.random.default_rng(5)
    s = np.round(rng.random(300), 2)  # many ties, across subjects too
    y = rng.choice([-1, 0, 1], size=300).astype(np.int8)
    subject = rng.integers(0, 9, size=300)
    multiplicity = rng.integers(0, 4, size=(5, 9))
    multiplicity[4] = 0
    multiplicity[4, 2] = 1  # one subject alone
    auc, ap = Ranking(s, y, subject)(multiplicity)
    keep = y >= 0
    for b in range(5):
        w = multiplicity[b, subject]
        copied = np.repeat(np.arange(300), w)
        want_auc, want_ap = ranking_scores(s[copied], y[copied])
        assert auc[b] == pytest.approx(want_auc, abs=1e-12, nan_ok=True)
        assert ap[b] == pytest.approx(want_ap, abs=1e-12, nan_ok=True)
        if b < 4:
            assert auc[b] == pytest.approx(
                roc_auc_score(y[keep], s[keep], sample_weight=w[keep]), abs=1e-12
            )
            assert ap[b] == pytest.approx(
                average_precision_score(y[keep], s[keep], sample_weight=w[keep]), abs=1e-12
            )
    # The whole set, by subject or as one group: the same.
    whole = Ranking(s, y, subject)(np.ones((1, 9)))
    assert (whole[0][0], whole[1][0]) == (
        pytest.approx(ranking_scores(s, y)[0], abs=1e-12),
        pytest.approx(ranking_scores(s, y)[1], abs=1e-12),
    )


def test_bootstrap_intervals_equal_resampling_by_copying_rows() -> None:
    scores, labels = random_set(3, rows=240, aus=8)
    subjects = np.repeat([f"S{i:02d}" for i in range(12)], 20)
    aus = tuple(f"AU{i}" for i in range(8))
    thresholds = np.full(8, 0.5)
    result = score(scores, labels, thresholds, aus, groups=subjects, bootstrap=60, seed=7)
    assert result.subjects == 12 and result.bootstrap == 60
    # The same draws, done the slow way: copy the rows of each drawn subject.
    names, index = np.unique(subjects, return_inverse=True)
    drawn = np.random.default_rng(7).integers(0, len(names), size=(60, len(names)))
    keep = (labels == 1).sum(axis=0) > 0
    f1_means, auc_means = [], []
    for draw in drawn:
        rows = np.concatenate([np.flatnonzero(index == g) for g in draw])
        one = score(scores[rows], labels[rows], thresholds, aus, bootstrap=0)
        f1_means.append(one.per_au["f1"].to_numpy()[keep].mean())
        auc_means.append(np.nanmean(one.per_au["auc"].to_numpy()))
    low, high = result.intervals["f1_mean_labelled"]
    assert (low, high) == (
        pytest.approx(np.percentile(f1_means, 2.5), abs=1e-12),
        pytest.approx(np.percentile(f1_means, 97.5), abs=1e-12),
    )
    low, high = result.intervals["auc_mean"]
    assert low == pytest.approx(np.percentile(auc_means, 2.5), abs=1e-12)
    assert high == pytest.approx(np.percentile(auc_means, 97.5), abs=1e-12)
    assert low <= result.means["auc_mean"] <= high
    # One subject: no interval.
    alone = score(scores, labels, thresholds, aus, groups=np.zeros(240), bootstrap=60)
    assert alone.intervals == {} and alone.subjects == 1


def test_calibration_recovers_known_thresholds() -> None:
    rng = np.random.default_rng(11)
    truth = np.array([0.2, 0.35, 0.5, 0.65, 0.8])
    rows = 4000
    labels = (rng.random((rows, truth.size)) < 0.4).astype(np.int8)
    # Positives score at or above their AU's threshold, negatives below: F1 1 exactly there.
    u = rng.random((rows, truth.size))
    scores = np.where(labels == 1, truth + u * (1 - truth), u * truth)
    labels[rng.random(labels.shape) < 0.1] = -1
    groups = np.arange(rows) % 40
    result = calibrate(
        scores,
        labels,
        np.full(truth.size, 0.5),
        tuple(f"AU{i}" for i in range(truth.size)),
        groups,
        folds=5,
    )
    np.testing.assert_allclose(result.table["threshold"], truth, atol=0.005)
    assert result.table["calibrated"].all()
    np.testing.assert_allclose(result.table["f1_in_sample"], 1.0)
    assert result.means["f1_cv"] > 0.99 and result.means["f1_before"] < result.means["f1_cv"]


def test_cross_validated_f1_is_below_in_sample_on_noise() -> None:
    rng = np.random.default_rng(13)
    rows, aus = 300, 8
    scores = rng.random((rows, aus))
    labels = (rng.random((rows, aus)) < 0.1).astype(np.int8)
    labels[:, 7] = 0  # no positives: keeps its default, not calibrated
    result = calibrate(
        scores,
        labels,
        np.full(aus, 0.5),
        tuple(f"AU{i}" for i in range(aus)),
        np.arange(rows) % 30,
        folds=5,
    )
    calibrated = result.table[result.table["calibrated"]]
    assert len(calibrated) == 7 and result.table["threshold"].iloc[7] == 0.5
    assert (calibrated["f1_cv"] <= calibrated["f1_in_sample"]).all()
    assert result.means["f1_cv"] < result.means["f1_in_sample"] - 0.03
    assert result.thresholds().keys() == set(calibrated["au"])


def test_best_threshold_is_between_scores_and_maximises_f1() -> None:
    rng = np.random.default_rng(17)
    s = np.round(rng.random(300), 3)
    y = (rng.random(300) < s).astype(np.int8)
    t, calibrated = best_threshold(s, y, 0.5)
    assert calibrated and t not in set(s)

    def f1_at(cut: float) -> float:
        return f1_score(y, (s >= cut).astype(int), zero_division=0)

    assert f1_at(t) == pytest.approx(max(f1_at(c) for c in np.unique(s)), abs=1e-12)
    assert best_threshold(s, np.zeros(300, np.int8), 0.42) == (0.42, False)
