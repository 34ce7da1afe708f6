"""`evaluate(predictions, labels)`: a results folder scored against labels, for the command line
and for notebooks, and the files that report it.

    from opengraphau import evaluate
    result = evaluate("results/bp4d", "bp4d_labels.csv")
    result.per_au            # one row per AU: f1, accuracy, precision, recall, counts, auc, ap
    result.means["f1_mean_labelled"], result.intervals.get("f1_mean_labelled")
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..aus import AU_COLUMNS
from ..context import UNTRAINED_BANNER
from ..errors import InputError
from ..sinks.files import OutputFolder
from ..sinks.results import read_results
from ..thresholds import ThresholdLike, Thresholds, as_thresholds
from ..version import __version__
from .calibration import Calibration, calibrate
from .labels import Labels, read_labels
from .match import SKIP_REASONS, Matched, failed_inputs, frame_counts, match
from .scoring import COLUMNS, MEANS, Evaluation, score

EVALUATION_CSV = "evaluation.csv"
EVALUATION_JSON = "evaluation.json"
EVALUATION_PNG = "evaluation.png"
PR_CURVES_PNG = "pr_curves.png"
CALIBRATION_CSV = "calibration.csv"
THRESHOLDS_JSON = "thresholds.json"


def _thresholds(value: ThresholdLike | str | Path) -> Thresholds:
    return Thresholds.load(value) if isinstance(value, (str, Path)) else as_thresholds(value)


def evaluate(
    predictions: str | Path | pd.DataFrame,
    labels: str | Path | Labels,
    *,
    thresholds: ThresholdLike | str | Path = 0.5,
    positive_from: int | None = None,
    root: str | Path | None = None,
    bootstrap: int = 1000,
    seed: int = 0,
) -> Evaluation:
    """Scores of a results folder (or `read_results`' DataFrame) against `labels` (a labels
    CSV, or `read_labels` / `read_label_lists`' result): see `Evaluation`.

    `thresholds`: one cut for all AUs, `Thresholds`, or a thresholds.json. `positive_from` and
    `root` are `read_labels`' (for a CSV path). With a `subject` column, `bootstrap` resamples of
    the subjects give each mean a 95 % interval (0: none). InputError (param "labels") names the
    label file and line of a row that cannot be scored.
    """
    if not isinstance(labels, Labels):
        labels = read_labels(labels, root=root, positive_from=positive_from)
    folder = None
    if isinstance(predictions, pd.DataFrame):
        table = predictions
    else:
        folder = Path(predictions)
        table = read_results(folder)
    run = table.attrs.get("run")
    cuts = _thresholds(thresholds)
    matched = match(
        labels,
        table,
        failed=failed_inputs(folder) if folder is not None else set(),
        frames=frame_counts(run),
        where=str(folder) if folder is not None else "the predictions",
    )
    if matched.rows.size == 0:
        raise InputError(
            f"no label row could be scored ({_skipped_text(matched)})",
            param="labels",
            value=labels.source,
        )
    rows = labels.table.iloc[matched.rows]
    columns = [AU_COLUMNS.index(au) for au in labels.aus]
    groups = rows["subject"].to_numpy(str) if labels.has_subjects else None
    result = score(
        matched.scores,
        labels.values[matched.rows],
        cuts.vector[columns],
        labels.aus,
        groups=groups,
        bootstrap=bootstrap,
        seed=seed,
    )
    result.matching = matched.report()
    result.context = {
        "labels": [{"path": os.path.abspath(p), "sha256": h} for p, h in labels.files],
        "predictions": None if folder is None else os.path.abspath(folder),
        "checkpoints": _checkpoints(run),
        "thresholds": cuts.manifest(),
    }
    result.data = (matched.scores, labels.values[matched.rows], _folds_by(rows, labels))
    return result


def _folds_by(rows: pd.DataFrame, labels: Labels) -> np.ndarray:
    """What calibration's folds keep together: the subject, else the file (a video's frames)."""
    return rows["subject" if labels.has_subjects else "path"].to_numpy(str)


def _checkpoints(run: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The checkpoint (path, SHA-256, arch, stage, official name) of each run behind the
    results, without repeats; an entry {"untrained": true} for random weights."""
    found: list[dict[str, Any]] = []
    for entry in (run or {}).get("runs", []):
        item = entry.get("checkpoint") or {"untrained": bool(entry.get("untrained"))}
        if item not in found:
            found.append(item)
    return found


def _untrained(evaluation: Evaluation) -> bool:
    return any(c.get("untrained") for c in evaluation.context.get("checkpoints", ()))


def _skipped_text(matched: Matched) -> str:
    if not matched.skipped:
        return "no rows"
    return "; ".join(
        f"{n} skipped: {SKIP_REASONS[reason]}, e.g. {matched.examples[reason]}"
        for reason, n in matched.skipped.items()
    )


def run_calibration(evaluation: Evaluation, *, folds: int = 5, seed: int = 0) -> Calibration:
    """F1-best per-AU thresholds for the evaluated set, with `folds`-fold cross-validated F1
    (folds by subject, else by file)."""
    scores, labels, groups = evaluation.data
    return calibrate(
        scores,
        labels,
        evaluation.per_au["threshold"].to_numpy(),
        tuple(evaluation.per_au["au"]),
        groups,
        folds=folds,
        seed=seed,
    )


def _number(value: float) -> float | None:
    """JSON has no NaN: undefined scores are null."""
    return None if value is None or not math.isfinite(value) else float(value)


def evaluation_document(
    evaluation: Evaluation, calibration: Calibration | None = None
) -> dict[str, Any]:
    """What evaluation.json holds."""
    e = evaluation
    document: dict[str, Any] = {
        "tool": "opengraphau",
        "version": __version__,
        **e.context,
        "aus": list(e.per_au["au"]),
        "means": {k: _number(e.means[k]) for k in MEANS},
        "aus_with_positives": int((e.per_au["positives"] > 0).sum()),
        "intervals": {k: [_number(v) for v in pair] for k, pair in e.intervals.items()},
        "confidence": 0.95 if e.intervals else None,
        "bootstrap": {"resamples": e.bootstrap, "subjects": e.subjects},
        "matching": e.matching,
    }
    if calibration is not None:
        document["calibration"] = {
            "folds": calibration.folds,
            "means": {k: _number(v) for k, v in calibration.means.items()},
            "thresholds": calibration.thresholds(),
        }
    return document


def thresholds_document(evaluation: Evaluation, calibration: Calibration) -> dict[str, Any]:
    """What thresholds.json holds: `thresholds` (what `--thresholds` reads), and how each was
    found."""
    return {
        "tool": "opengraphau",
        "version": __version__,
        "thresholds": calibration.thresholds(),
        "default": evaluation.context["thresholds"]["default"],
        "folds": calibration.folds,
        "labels": evaluation.context["labels"],
        "checkpoints": evaluation.context["checkpoints"],
        "f1": {
            row.au: {
                "before": _number(row.f1_before),
                "in_sample": _number(row.f1_in_sample),
                "cross_validated": _number(row.f1_cv),
            }
            for row in calibration.table.itertuples()
            if row.calibrated
        },
    }


def write_outputs(
    evaluation: Evaluation,
    folder: str | Path,
    *,
    calibration: Calibration | None = None,
    title: str = "",
) -> list[str]:
    """evaluation.csv, evaluation.json, evaluation.png, pr_curves.png (and with `calibration`
    calibration.csv and thresholds.json) in `folder`, each written whole or not at all; the
    names written come back."""
    from .plots import plot_f1, plot_pr_curves

    out = OutputFolder(folder)
    written = []
    if _untrained(evaluation):
        title = f"{title}\n{UNTRAINED_BANNER}" if title else UNTRAINED_BANNER

    def text(name: str, content: str) -> None:
        with out.replace(name) as temporary:
            temporary.write_text(content, encoding="utf-8")
        written.append(name)

    text(EVALUATION_CSV, evaluation.per_au[list(COLUMNS)].to_csv(index=False))
    document = evaluation_document(evaluation, calibration)
    text(EVALUATION_JSON, json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    if calibration is not None:
        text(CALIBRATION_CSV, calibration.table.to_csv(index=False))
        document = thresholds_document(evaluation, calibration)
        text(THRESHOLDS_JSON, json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    scores, labels, _ = evaluation.data
    with out.replace(EVALUATION_PNG) as temporary:
        plot_f1(
            evaluation.per_au,
            temporary,
            title=title,
            mean=evaluation.means["f1_mean_labelled"],
            calibrated=None if calibration is None else calibration.table["f1_cv"],
        )
    written.append(EVALUATION_PNG)
    with out.replace(PR_CURVES_PNG) as temporary:
        plot_pr_curves(scores, labels, evaluation.per_au, temporary, title=title)
    written.append(PR_CURVES_PNG)
    return written


def format_table(evaluation: Evaluation, calibration: Calibration | None = None) -> str:
    """The seed's layout: the AUs as columns, F1 in %, the mean last; AUs without positive
    labels show "-" and stay out of that mean. The other means, their intervals and what was
    skipped follow."""
    e = evaluation
    has = e.per_au["positives"].to_numpy() > 0
    rows = [("F1", e.per_au["f1"].to_numpy(), e.means["f1_mean_labelled"])]
    if calibration is not None:
        rows.append(
            ("F1 cal. (CV)", calibration.table["f1_cv"].to_numpy(), calibration.means["f1_cv"])
        )
    names = [*e.per_au["au"], "Avg"]
    width = max(5, *(len(n) for n in names))
    first = max(len(r[0]) for r in rows)

    def cell(value: float, present: bool = True) -> str:
        return f"{value * 100:.1f}" if present and math.isfinite(value) else "-"

    lines = ["| " + " | ".join([" " * first, *(n.rjust(width) for n in names)]) + " |"]
    lines.append("|" + "|".join(["-" * (first + 2)] + ["-" * (width + 2)] * len(names)) + "|")
    for name, values, average in rows:
        cells = [cell(v, p) for v, p in zip(values, has)] + [cell(average)]
        lines.append(
            "| " + " | ".join([name.ljust(first), *(c.rjust(width) for c in cells)]) + " |"
        )

    def mean(key: str, label: str) -> str:
        value = e.means[key]
        text = f"{label} {cell(value)}"
        if key in e.intervals:
            low, high = e.intervals[key]
            text += f" [{cell(low)}, {cell(high)}]"
        return text

    lines.append(
        f"Avg: F1 over the {int(has.sum())} AUs with positive labels; the reference's mean "
        f"over all {len(has)} AUs scored: {cell(e.means['f1_mean'])}"
    )
    parts = [
        mean("f1_mean_labelled", "F1"),
        mean("accuracy_mean", "accuracy"),
        mean("auc_mean", "ROC AUC"),
        mean("ap_mean", "AP"),
    ]
    if e.intervals:
        parts.append(f"95% bootstrap intervals over {e.subjects} subjects")
    lines.append("means (%): " + "; ".join(parts))
    if calibration is not None:
        c = calibration.means
        lines.append(
            f"calibrated thresholds: mean F1 {cell(c['f1_before'])} before, "
            f"{cell(c['f1_in_sample'])} in-sample, {cell(c['f1_cv'])} in "
            f"{calibration.folds}-fold cross-validation"
        )
    m = e.matching
    lines.append(f"scored {m['scored_rows']} labelled rows")
    if _untrained(e):
        lines.append(UNTRAINED_BANNER)
    for reason, n in m["skipped"].items():
        lines.append(
            f"skipped {n}: {SKIP_REASONS[reason]} (first: {m['skipped_examples'][reason]})"
        )
    if m["several_faces_largest_scored"]:
        lines.append(
            f"{m['several_faces_largest_scored']} frames had several faces and no face_id "
            "label: the largest face was scored"
        )
    return "\n".join(lines)
