"""Scoring predictions against AU labels: label readers (a CSV, the reference's lists), the
reference's F1 with accuracy, precision, recall, ROC AUC and average precision, bootstrap
intervals over subjects, and per-AU threshold calibration with cross-validation.

`opengraphau evaluate` is the command line over these; `opengraphau.evaluate` the function.
"""

from __future__ import annotations

from .calibration import Calibration
from .core import evaluate, format_table, run_calibration, write_outputs
from .labels import Labels, read_label_lists, read_labels
from .scoring import Evaluation

__all__ = [
    "Calibration",
    "Evaluation",
    "Labels",
    "evaluate",
    "format_table",
    "read_label_lists",
    "read_labels",
    "run_calibration",
    "write_outputs",
]
