"""The output schema, in one home: the columns of every predictions file, their types and
decimals, the output formats, and the one function that turns face records into those columns.

CSV, JSON Lines, Parquet, `records_frame` and the Ray engine all take their numbers from
`face_columns`, so every output holds the same digits. Plain data and numpy: importing it is
cheap (the CLI's `--help` reads `FORMATS`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from .aus import AU_COLUMNS, SMOOTH_COLUMNS
from .errors import ConfigError
from .records import FaceRecord, display_name

CSV_HEADER: tuple[str, ...] = (
    "file",
    "frame",
    "timestamp",
    "face_id",
    "success",
    "confidence",
    "x",
    "y",
    "w",
    "h",
    *AU_COLUMNS,
)
#: The type of each column wherever rows are typed (Parquet, `read_results`); names that numpy,
#: pandas and pyarrow all know. Faceless rows leave confidence, box and AUs empty (null, NaN).
COLUMN_TYPES: dict[str, str] = {
    "file": "string",
    "frame": "int64",
    "timestamp": "float64",
    "face_id": "int64",
    "success": "bool",
    **dict.fromkeys(("confidence", "x", "y", "w", "h"), "float64"),
    **dict.fromkeys(AU_COLUMNS, "float32"),
    **dict.fromkeys(SMOOTH_COLUMNS, "float32"),
    "untrained": "bool",
}
#: Decimals every result file keeps: times to the millisecond, boxes to a tenth of a pixel,
#: probabilities and detector scores to 1e-6 (so CSV, JSONL and Parquet hold the same numbers).
DECIMALS: dict[str, int] = {"timestamp": 3, "box": 1, "score": 6}
#: The output formats a run can write (`sinks.writer` names the class writing each).
FORMATS: tuple[str, ...] = ("csv", "jsonl", "parquet")


def result_columns(*, untrained: bool, smooth: bool) -> list[str]:
    """A predictions file's columns: `CSV_HEADER`, the smoothed AUs when the run smooths
    (`AU12` stays the model's own value, `AU12_smooth` beside it), `untrained` on random
    weights."""
    return [*CSV_HEADER, *(SMOOTH_COLUMNS if smooth else ()), *(["untrained"] if untrained else [])]


def check_formats(formats: Sequence[str]) -> tuple[str, ...]:
    """The formats, lower-cased; ConfigError naming the choices for an unknown or empty list."""
    chosen = tuple(dict.fromkeys(f.strip().lower() for f in formats if f.strip()))
    bad = [f for f in chosen if f not in FORMATS]
    if bad or not chosen:
        raise ConfigError(
            f"choose from {', '.join(FORMATS)}", param="formats", value=",".join(formats)
        )
    return chosen


def _model_and_smoothed(record: FaceRecord) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The model's probabilities and the smoothed ones (None: not smoothed)."""
    if record.raw is None:
        return record.probs, None
    return record.raw, record.probs


def face_columns(
    records: Sequence[FaceRecord],
    *,
    smooth: bool = False,
    untrained: bool = False,
    rounded: bool = True,
) -> dict[str, np.ndarray]:
    """The records as the columns of predictions.csv (`result_columns(untrained, smooth)`, in
    that order), one row per record, each value rounded to `DECIMALS` as the CSV writes it.

    `file` is the display name (an object array of str), frame and face_id int64, success
    bool, the rest float64 holding the rounded decimal exactly (cast to `COLUMN_TYPES` with
    `typed`); NaN where the CSV leaves a field empty: a faceless record's confidence, box and
    AUs, and the smoothed AUs of a face that was not smoothed. Times, boxes and scores round
    as Python's `round` (and the CSV's formatting) do; the AUs are float32, which numpy rounds
    to the same digits, the whole array at once.

    `rounded` False: every value as the record holds it, for a transport between processes
    that `face_records` undoes without loss (with `smooth`)."""
    n = len(records)
    b, s, t = (DECIMALS[k] if rounded else None for k in ("box", "score", "timestamp"))
    pairs = [_model_and_smoothed(r) for r in records]
    model, smoothed = _by_column([m for m, _ in pairs]), _by_column([m for _, m in pairs])
    shown = {source: display_name(source) for source in {r.source for r in records}}
    boxes = np.array(
        [(np.nan,) * 4 if r.box is None else [_round(v, b) for v in r.box] for r in records],
        np.float64,
    ).reshape(n, 4)
    columns = {
        "file": np.array([shown[r.source] for r in records], dtype=object),
        "frame": np.array([r.frame for r in records], np.int64),
        "timestamp": np.array([_round(r.timestamp, t) for r in records], np.float64),
        "face_id": np.array([r.face_id for r in records], np.int64),
        "success": np.array([r.success for r in records], np.bool_),
        "confidence": np.array(
            [np.nan if r.confidence is None else _round(r.confidence, s) for r in records],
            np.float64,
        ),
        **{c: np.ascontiguousarray(boxes[:, i]) for i, c in enumerate("xywh")},
        **dict(zip(AU_COLUMNS, model if s is None else np.round(model, s))),
    }
    if smooth:
        columns.update(zip(SMOOTH_COLUMNS, smoothed if s is None else np.round(smoothed, s)))
    if untrained:
        columns["untrained"] = np.ones(n, np.bool_)
    return columns


def typed(columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`face_columns`' columns in `COLUMN_TYPES` (the AUs float32), `file` left as it is."""
    return {c: v if c == "file" else v.astype(COLUMN_TYPES[c]) for c, v in columns.items()}


def _by_column(rows: list[np.ndarray | None]) -> np.ndarray:
    """(41, n) float64 from n rows of 41 AUs, NaN for a row that is None: one contiguous
    array per AU column."""
    none = np.full(len(AU_COLUMNS), np.nan)
    matrix = np.array([none if r is None else r for r in rows], np.float64)
    return matrix.reshape(-1, len(AU_COLUMNS)).T.copy()


def _round(value: float, decimals: int | None) -> float:
    """Python's rounding (correct, half to even: the digits "%.Nf" writes) of a float or a numpy
    scalar, whose own `round` multiplies and so can differ; None: the value unrounded."""
    return float(value) if decimals is None else round(float(value), decimals)


def face_records(columns: Mapping[str, np.ndarray], source: str) -> list[FaceRecord]:
    """The records whose `face_columns(records, smooth=True, rounded=False)` these are, every
    one from `source` (the input as given: `file` holds only its display name). Embeddings
    are no column: they come back None."""
    model = np.stack([columns[c] for c in AU_COLUMNS], axis=1).astype(np.float32)
    smoothed = np.stack([columns[c] for c in SMOOTH_COLUMNS], axis=1).astype(np.float32)
    boxes = np.stack([columns[c] for c in "xywh"], axis=1).tolist()
    records = []
    for j, (frame, timestamp, face_id, success, confidence) in enumerate(
        zip(
            *(
                columns[c].tolist()
                for c in ("frame", "timestamp", "face_id", "success", "confidence")
            )
        )
    ):
        x, y, w, h = boxes[j]
        probs, raw = (model[j], None) if success else (None, None)
        if success and not np.isnan(smoothed[j, 0]):
            probs, raw = smoothed[j], model[j]
        records.append(
            FaceRecord(
                source,
                frame,
                timestamp,
                face_id,
                None if math.isnan(x) else (x, y, w, h),
                None if math.isnan(confidence) else confidence,
                probs,
                raw=raw,
            )
        )
    return records
