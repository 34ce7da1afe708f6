"""Records as plain columns, the form in which they cross Ray Data: one frame's records as
arrays (`face_arrays`) and back (`face_records`), texts as bytes, ragged columns."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ...aus import AU_COLUMNS
from ...records import Box, FaceRecord

Columns = dict[str, Any]
"""A batch as Ray Data hands it over: column name -> one value per row (arrays, or lists)."""

#: The columns `face_arrays` ships one frame's records in.
FACE_COLUMNS = ("face_id", "success", "box", "score", "probs", "raw")


# -- records as plain columns -----------------------------------------------------------------
def face_arrays(records: Sequence[FaceRecord]) -> dict[str, np.ndarray]:
    """One frame's records as plain arrays; NaN stands for a faceless record's missing values.
    (Embeddings stay behind: only tracking uses them, and it runs where the model does.)"""
    none_box, none_probs = (np.nan,) * 4, np.full(len(AU_COLUMNS), np.nan, np.float32)
    return {
        "face_id": np.array([r.face_id for r in records], np.int64),
        "success": np.array([r.success for r in records], np.bool_),
        "box": np.array(
            [none_box if r.box is None else r.box for r in records], np.float64
        ).reshape(-1, 4),
        "score": np.array(
            [np.nan if r.confidence is None else r.confidence for r in records], np.float64
        ),
        "probs": np.array(
            [none_probs if r.probs is None else r.probs for r in records], np.float32
        ).reshape(-1, len(AU_COLUMNS)),
        "raw": np.array(
            [none_probs if r.raw is None else r.raw for r in records], np.float32
        ).reshape(-1, len(AU_COLUMNS)),
    }


def face_records(
    columns: Columns, k: int, source: str, frame: int, timestamp: float
) -> list[FaceRecord]:
    """Row `k`'s records, rebuilt from what `face_arrays` shipped."""
    face_id, success, box, score, probs, raw = (columns[c][k] for c in FACE_COLUMNS)
    return [
        FaceRecord(
            source,
            frame,
            timestamp,
            int(face_id[j]),
            None if np.isnan(box[j][0]) else as_box(box[j]),
            None if np.isnan(score[j]) else float(score[j]),
            np.array(probs[j], np.float32) if success[j] else None,
            raw=None if np.isnan(raw[j][0]) else np.array(raw[j], np.float32),
        )
        for j in range(len(face_id))
    ]


def as_box(values: np.ndarray) -> Box:
    x, y, w, h = (float(v) for v in values)
    return x, y, w, h


def ragged(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """A column of one array per row, whatever their shapes (Ray Data keeps it as tensors)."""
    column = np.empty(len(arrays), dtype=object)
    for k, array in enumerate(arrays):
        column[k] = array
    return column


def as_bytes(texts: Sequence[str]) -> np.ndarray:
    """Texts as bytes, so the undecodable bytes of a file name (lone surrogates, as `os`
    keeps them) survive Arrow and come back as they were."""
    return np.array([t.encode("utf-8", "surrogatepass") for t in texts], dtype=object)


def as_text(raw: bytes) -> str:
    return bytes(raw).decode("utf-8", "surrogatepass")


def first_row(seconds: float, rows: int) -> np.ndarray:
    """A batch's seconds as a column: all on its first row, so the column sums to them."""
    column = np.zeros(rows)
    column[:1] = seconds
    return column
