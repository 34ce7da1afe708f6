"""An independent, plain-loop transcription of the reference's metric code (OpenGraphAU/utils.py:
`statistics`, `calc_f1_score`, `calc_acc`), written from reading it: the tests' measure of the
evaluation's numbers."""

from __future__ import annotations


def reference_statistics(pred: list[list[float]], y: list[list[int]], thresh: float) -> list[dict]:
    """The reference's `statistics`, as plain loops over samples and classes."""
    out = []
    for j in range(len(pred[0])):
        tp = fp = fn = tn = 0
        for i in range(len(pred)):
            p = 1 if pred[i][j] >= thresh else 0
            if p == 1:
                if y[i][j] == 1:
                    tp += 1
                elif y[i][j] == 0:
                    fp += 1
            else:
                if y[i][j] == 1:
                    fn += 1
                elif y[i][j] == 0:
                    tn += 1
        out.append({"TP": tp, "FP": fp, "TN": tn, "FN": fn})
    return out


def reference_f1(stats: list[dict]) -> tuple[float, list[float]]:
    """The reference's `calc_f1_score`: 1e-20 in every denominator, the mean over all classes."""
    scores = []
    for s in stats:
        precise = s["TP"] / (s["TP"] + s["FP"] + 1e-20)
        recall = s["TP"] / (s["TP"] + s["FN"] + 1e-20)
        scores.append(2 * precise * recall / (precise + recall + 1e-20))
    return sum(scores) / len(scores), scores


def reference_acc(stats: list[dict]) -> tuple[float, list[float]]:
    accs = [(s["TP"] + s["TN"]) / (s["TP"] + s["TN"] + s["FP"] + s["FN"] + 1e-20) for s in stats]
    return sum(accs) / len(accs), accs
