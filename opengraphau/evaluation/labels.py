"""Ground-truth AU labels from the two formats researchers have: a CSV, or the reference's lists.

CSV: a header with `file` (then optional `frame`, `face_id`, `subject`), then AU columns named as
in predictions.csv (`AU1`, `AU12`, `AUL1`, ...; any subset of the 41). Cells hold 1/0, with -1 or
an empty cell meaning "not labelled"; with `positive_from=K` they hold intensities 0-5 (FACS A-E
as 1-5) and K or more counts as present (DISFA's convention is K=2).

Lists (the reference's `tool/` scripts): a file of image paths, one a line, relative to a root
folder, and a label file of 41 space-separated 1/0/-1 columns a line in the models' AU order.

A label file that cannot be trusted stops everything: every problem is an InputError whose
message starts with `file:line:` (param "labels"), never a guess.
"""

from __future__ import annotations

import csv
import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..aus import AU_COLUMNS
from ..errors import InputError

KEY_COLUMNS = ("file", "frame", "face_id", "subject")
UNLABELLED = -1
NO_FACE_ID = -1
"""`face_id` of a label row that names no face: the frame's largest face is scored."""
MAX_INTENSITY = 5


@dataclass(frozen=True)
class Labels:
    """Labelled frames: `table` has `path` (the image or video, joined to the root folder),
    `file` (as the labels wrote it), `frame`, `face_id` (NO_FACE_ID when not named), `subject`
    ("" when not given), `line` (where the row is, for messages), then one int8 column per AU
    in `aus` (1 present, 0 absent, UNLABELLED)."""

    table: pd.DataFrame
    aus: tuple[str, ...]
    source: str
    """The label file (what messages name)."""
    files: tuple[tuple[str, str], ...]
    """(path, SHA-256) of each file read: the labels, and the image list of the list format."""
    has_subjects: bool = False
    has_face_ids: bool = False

    @property
    def values(self) -> np.ndarray:
        """(rows, len(aus)) int8 labels."""
        return self.table[list(self.aus)].to_numpy(np.int8)

    def where(self, row: int) -> str:
        """`file:line` of table row `row`, for messages."""
        return f"{self.source}:{int(self.table['line'].iloc[row])}"


def _fail(source: str | Path, line: int | None, reason: str) -> InputError:
    where = f"{source}:{line}" if line is not None else str(source)
    return InputError(reason, param="labels", value=where)


def _label_value(
    text: str, source: str | Path, line: int, au: str, positive_from: int | None
) -> int:
    """One cell as 1, 0 or UNLABELLED."""
    text = text.strip()
    if text == "":
        return UNLABELLED
    try:
        number = float(text)
    except ValueError:
        raise _fail(source, line, f"{au} is {text!r}, not a number (1, 0, -1 or empty)") from None
    if not math.isfinite(number) or number != int(number):
        raise _fail(source, line, f"{au} is {text!r}; labels are whole numbers")
    value = int(number)
    if value == UNLABELLED:
        return UNLABELLED
    if positive_from is None:
        if value not in (0, 1):
            hint = (
                "; for intensities (0-5) give the positive-from level (DISFA: 2)"
                if 0 <= value <= MAX_INTENSITY
                else ""
            )
            raise _fail(source, line, f"{au} is {value}; expected 1, 0, -1 or empty{hint}")
        return value
    if not 0 <= value <= MAX_INTENSITY:
        raise _fail(source, line, f"{au} is {value}; intensities are 0 to {MAX_INTENSITY} or -1")
    return int(value >= positive_from)


def _whole(text: str, source: str | Path, line: int, column: str, minimum: int) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise _fail(source, line, f"{column} is {text!r}, not a whole number") from None
    if value < minimum:
        raise _fail(source, line, f"{column} is {value}; it must be {minimum} or more")
    return value


def _root_of(source: Path, root: str | Path | None) -> str:
    return str(root) if root is not None else (str(source.parent) or ".")


def _read_text(path: Path, hashes: list[tuple[str, str]]) -> str:
    """The file's text; its path and SHA-256 are added to `hashes`."""
    try:
        data = path.read_bytes()
        text = data.decode("utf-8-sig")
    except OSError as exc:
        raise _fail(path, None, f"cannot be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise _fail(path, None, "is not UTF-8 text") from None
    hashes.append((str(path), hashlib.sha256(data).hexdigest()))
    return text


def read_labels(
    path: str | Path, *, root: str | Path | None = None, positive_from: int | None = None
) -> Labels:
    """Labels from a CSV file; `file` paths are relative to `root` (default: the CSV's folder).
    `positive_from`: the cells are intensities 0-5, and this level or more counts as present."""
    source = Path(path)
    if positive_from is not None and not 1 <= positive_from <= MAX_INTENSITY:
        raise InputError(
            f"must be between 1 and {MAX_INTENSITY}", param="positive_from", value=positive_from
        )
    hashes: list[tuple[str, str]] = []
    rows = list(csv.reader(_read_text(source, hashes).splitlines()))
    if not rows or not any(cell.strip() for cell in rows[0]):
        raise _fail(source, 1, "no header; the first line names the columns (file, AU1, ...)")
    header = [c.strip() for c in rows[0]]
    if header[0] != "file":
        raise _fail(source, 1, f"the first column is {header[0]!r}; it must be 'file'")
    seen: set[str] = set()
    for column in header:
        if column in seen:
            raise _fail(source, 1, f"column {column!r} appears twice")
        seen.add(column)
        if column not in KEY_COLUMNS and column not in AU_COLUMNS:
            raise _fail(
                source,
                1,
                f"unknown column {column!r}; after file, frame, face_id and subject come AU "
                "columns named as in predictions.csv (AU1, AU12, AUL1, ...)",
            )
    aus = tuple(c for c in AU_COLUMNS if c in seen)
    if not aus:
        raise _fail(source, 1, "no AU columns (AU1, AU12, ...)")
    base = _root_of(source, root)
    records = []
    for number, cells in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) != len(header):
            raise _fail(source, number, f"{len(cells)} cells where the header has {len(header)}")
        cell = dict(zip(header, cells))
        file = cell["file"].strip()
        if not file:
            raise _fail(source, number, "the file cell is empty")
        face = cell.get("face_id", "").strip()
        record: dict[str, object] = {
            "path": os.path.normpath(os.path.join(base, file)),
            "file": file,
            "frame": _whole(cell["frame"], source, number, "frame", 0) if "frame" in cell else 0,
            "face_id": _whole(face, source, number, "face_id", 0) if face else NO_FACE_ID,
            "subject": cell.get("subject", "").strip(),
            "line": number,
        }
        for au in aus:
            record[au] = _label_value(cell[au], source, number, au, positive_from)
        records.append(record)
    return _labels(
        records, aus, source, hashes, subjects="subject" in seen, faces="face_id" in seen
    )


def read_label_lists(
    images: str | Path, labels: str | Path, *, root: str | Path | None = None
) -> Labels:
    """Labels in the reference's format: `images` lists one path a line (relative to `root`,
    default the list's folder), `labels` holds a row of 41 space-separated 1/0/-1 values (the
    models' AU order) for each. Blank lines are ignored in both."""
    images, labels = Path(images), Path(labels)
    hashes: list[tuple[str, str]] = []
    rows = [
        (n, line.split())
        for n, line in enumerate(_read_text(labels, hashes).splitlines(), 1)
        if line.strip()
    ]
    paths = [
        (n, line.strip())
        for n, line in enumerate(_read_text(images, hashes).splitlines(), 1)
        if line.strip()
    ]
    if len(paths) != len(rows):
        raise _fail(
            labels,
            None,
            f"has {len(rows)} label rows but {images} lists {len(paths)} images; "
            "they must pair up line by line",
        )
    base = _root_of(images, root)
    records = []
    for (_, file), (number, values) in zip(paths, rows):
        if len(values) != len(AU_COLUMNS):
            raise _fail(
                labels,
                number,
                f"{len(values)} columns; the reference's label files have {len(AU_COLUMNS)} "
                "(one per AU, in the models' order)",
            )
        record: dict[str, object] = {
            "path": os.path.normpath(os.path.join(base, file)),
            "file": file,
            "frame": 0,
            "face_id": NO_FACE_ID,
            "subject": "",
            "line": number,
        }
        for au, text in zip(AU_COLUMNS, values):
            record[au] = _label_value(text, labels, number, au, None)
        records.append(record)
    return _labels(records, AU_COLUMNS, labels, hashes, subjects=False, faces=False)


def _labels(
    records: list[dict[str, object]],
    aus: tuple[str, ...],
    source: Path,
    hashes: list[tuple[str, str]],
    *,
    subjects: bool,
    faces: bool,
) -> Labels:
    if not records:
        raise _fail(source, None, "holds no labelled rows")
    table = pd.DataFrame.from_records(records)
    table = table.astype({"frame": "int64", "face_id": "int64", "line": "int64"})
    table = table.astype(dict.fromkeys(aus, "int8"))
    repeated = table.duplicated(["path", "frame", "face_id"], keep=False)
    if repeated.any():
        lines = table.loc[repeated, "line"].tolist()
        raise _fail(source, lines[1], f"labels the same file, frame and face as line {lines[0]}")
    return Labels(table, aus, str(source), tuple(hashes), subjects, faces)
