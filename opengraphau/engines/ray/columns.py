"""Records as plain columns, the form in which they cross Ray Data: one frame's records as
the output schema's columns in one matrix (`face_matrix`) and back (`matrix_records`), texts as
bytes, ragged columns."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ...records import Box, FaceRecord
from ...schema import face_columns, face_records, result_columns, typed

Columns = dict[str, Any]
"""A batch as Ray Data hands it over: column name -> one value per row (arrays, or lists)."""

#: The column one input's or frame's face records cross Ray Data in.
FACES = "faces"
#: `schema.face_columns`' numeric columns, the smoothed AUs among them: a record a line.
_NUMBERS = tuple(c for c in result_columns(untrained=False, smooth=True) if c != "file")


# -- records as plain columns -----------------------------------------------------------------
def face_matrix(records: Sequence[FaceRecord]) -> np.ndarray:
    """One row's records as `schema.face_columns` gives them, unrounded (the driver writes and
    draws them as the local engine does), in one float64 matrix, a record a line: every value
    is exact in float64. (Embeddings stay behind: only tracking uses them, and it runs where
    the model does.)"""
    columns = face_columns(records, smooth=True, rounded=False)
    return np.column_stack([columns[c] for c in _NUMBERS]).reshape(len(records), len(_NUMBERS))


def matrix_records(matrix: np.ndarray, source: str) -> list[FaceRecord]:
    """The records `face_matrix` shipped, from `source` (the input as given)."""
    lines = np.asarray(matrix, np.float64).reshape(-1, len(_NUMBERS))
    return face_records(typed({c: lines[:, j] for j, c in enumerate(_NUMBERS)}), source)


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
