"""Result files: predictions.csv / .jsonl (and .parquet), errors.csv and completed.csv.

Rows are appended and flushed as batches finish, so a crash or Ctrl-C loses at most the batch in
flight. `completed.csv` lists every input whose rows are all written; a resumed run skips those
inputs and drops any rows of inputs that were cut off half way (a video stopped mid-file), so
resuming never duplicates or loses rows. File names are written by `records.display_name`, CSV
fields quoted as RFC 4180 says (line breaks inside a name included); completed.csv adds the
bytes of names that are not UTF-8, so it tells apart names that display alike.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..aus import AU_COLUMNS, AU_IDS, AU_NAMES, SMOOTH_COLUMNS
from ..errors import OutputError
from ..records import FaceRecord, display_name, name_bytes
from ..schema import CSV_HEADER, DECIMALS, check_formats, face_columns, result_columns
from ..thresholds import ThresholdLike, Thresholds, as_thresholds
from .files import OutputFolder, csv_text, output_error, read_csv

#: The class writing each of `schema.FORMATS` (module:class, imported when chosen).
SINKS: dict[str, str] = {
    "csv": "writer:CsvSink",
    "jsonl": "writer:JsonlSink",
    "parquet": "parquet:ParquetSink",
}


@dataclass(frozen=True)
class SinkSettings:
    """What every predictions file of one run is written with; `ResultWriter` makes it once."""

    completed: frozenset[str] | None
    """Resuming: the display names of the completed inputs, whose earlier rows are kept (the
    others' are dropped); None: a fresh run, earlier rows go."""
    threshold: Thresholds
    untrained: bool
    """Random weights: an `untrained` column marks every row."""
    smooth: bool = False
    """The run smooths video faces: their smoothed AUs are written beside the model's."""

    @property
    def columns(self) -> list[str]:
        """The predictions files' columns (`schema.result_columns`)."""
        return result_columns(untrained=self.untrained, smooth=self.smooth)


class RowSink(Protocol):
    """One predictions file: it drops rows of unfinished inputs on resume, then appends."""

    def write(self, records: Sequence[FaceRecord]) -> None: ...
    def close(self) -> None: ...


def csv_rows(records: Sequence[FaceRecord], *, untrained: bool, smooth: bool) -> list[list[str]]:
    """predictions.csv's rows of `records` (`schema.face_columns`, as text): empty fields where
    a record has no face, no box or no smoothed values."""
    columns = face_columns(records, smooth=smooth, untrained=untrained)
    b, s, t = DECIMALS["box"], DECIMALS["score"], DECIMALS["timestamp"]
    values = {c: columns[c].tolist() for c in CSV_HEADER[: -len(AU_COLUMNS)]}  # file ... h

    def probs(names: Sequence[str], empty: Sequence[bool]) -> list[list[str]]:
        """The AU fields row by row (a matrix, so a face's 41 values are formatted in one go)."""
        rows = np.stack([columns[c] for c in names], axis=1).tolist()
        blank = [""] * len(names)
        return [blank if e else [f"{v:.{s}f}" for v in row] for row, e in zip(rows, empty)]

    model = probs(AU_COLUMNS, [not r.success for r in records])
    smoothed = probs(SMOOTH_COLUMNS, [r.raw is None for r in records]) if smooth else None
    out = []
    for k, r in enumerate(records):
        box = ["", "", "", ""] if r.box is None else [f"{values[c][k]:.{b}f}" for c in "xywh"]
        row = [
            values["file"][k],
            str(values["frame"][k]),
            f"{values['timestamp'][k]:.{t}f}",
            str(values["face_id"][k]),
            "1" if values["success"][k] else "0",
            "" if r.confidence is None else f"{values['confidence'][k]:.{s}f}",
            *box,
            *model[k],
            *(smoothed[k] if smoothed is not None else ()),
        ]
        if untrained:
            row.append("1")
        out.append(row)
    return out


def json_records(
    records: Sequence[FaceRecord], threshold: ThresholdLike, *, untrained: bool = False
) -> list[dict]:
    """One object per face; each AU's `probability` is the model's, `active` compares the value
    pictures and summaries use with `threshold`, which is `smoothed` when the face was
    smoothed. Numbers as `schema.face_columns` rounds them."""
    columns = face_columns(records, smooth=True)
    cut = as_thresholds(threshold)
    values = {c: v.tolist() for c, v in columns.items()}
    out = []
    for k, record in enumerate(records):
        aus = None
        if record.probs is not None:
            active = cut.active(record.probs)
            smoothed = record.raw is not None
            aus = [
                {
                    "id": f"AU{i}",
                    "name": n,
                    "probability": values[c][k],
                    **({"smoothed": values[sc][k]} if smoothed else {}),
                    "active": bool(active[j]),
                }
                for j, (i, n, c, sc) in enumerate(zip(AU_IDS, AU_NAMES, AU_COLUMNS, SMOOTH_COLUMNS))
            ]
        row = {
            "file": values["file"][k],
            "frame": values["frame"][k],
            "timestamp": values["timestamp"][k],
            "face": values["face_id"][k],
            "success": values["success"][k],
            "confidence": None if record.confidence is None else values["confidence"][k],
            "box": None if record.box is None else {c: values[c][k] for c in "xywh"},
            "aus": aus,
        }
        if untrained:
            row["untrained"] = True
        out.append(row)
    return out


class _AppendFile:
    """A file of the output folder that grows by whole batches of rows: a batch that cannot be
    written in full (a full disk) is cut off again, so the file always ends after a whole row
    (a cut-off last row would read as a real one with a wrong value)."""

    def __init__(self, folder: OutputFolder, name: str) -> None:
        self.path = folder.root / name
        self.fd = folder.open_append(name)

    def append(self, text: str) -> None:
        data = memoryview(text.encode("utf-8", "surrogateescape"))
        end = -1
        try:
            end = os.fstat(self.fd).st_size
            while data:
                data = data[os.write(self.fd, data) :]
        except OSError as exc:
            if end >= 0:
                with contextlib.suppress(OSError):
                    os.ftruncate(self.fd, end)
            raise output_error(self.path, exc) from None

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            try:
                os.close(fd)
            except OSError as exc:
                raise output_error(self.path, exc) from None


class CsvSink:
    """predictions.csv: one row per face, `result_columns`."""

    name = "predictions.csv"

    def __init__(self, folder: OutputFolder, settings: SinkSettings) -> None:
        self.settings = settings
        header, completed = settings.columns, settings.completed
        rows = read_csv(folder, self.name) if completed is not None else []
        if rows and rows[0] != header:
            raise OutputError(
                "its columns differ from this run's (trained vs untrained weights, "
                "smoothed or not, or another tool); choose another output folder",
                param="output_dir",
                value=folder.root / self.name,
            )
        keep = [header] + [r for r in rows[1:] if r and r[0] in (completed or set())]
        with folder.replace(self.name) as temporary:
            temporary.write_text(csv_text(keep), encoding="utf-8", errors="surrogateescape")
        self._file = _AppendFile(folder, self.name)

    def write(self, records: Sequence[FaceRecord]) -> None:
        untrained, smooth = self.settings.untrained, self.settings.smooth
        self._file.append(csv_text(csv_rows(records, untrained=untrained, smooth=smooth)))

    def close(self) -> None:
        self._file.close()


class JsonlSink:
    """predictions.jsonl: one JSON object per face (see `json_records`)."""

    name = "predictions.jsonl"

    def __init__(self, folder: OutputFolder, settings: SinkSettings) -> None:
        self.settings, completed = settings, settings.completed
        keep = []
        if completed is not None:
            text = folder.read_text(self.name) or ""
            for line in text.split("\n")[:-1]:  # after the last newline: empty or cut off
                try:
                    if json.loads(line).get("file") in completed:
                        keep.append(line + "\n")
                except (ValueError, AttributeError):
                    continue
        with folder.replace(self.name) as temporary:
            temporary.write_text("".join(keep), encoding="utf-8", errors="surrogateescape")
        self._file = _AppendFile(folder, self.name)

    def write(self, records: Sequence[FaceRecord]) -> None:
        rows = json_records(records, self.settings.threshold, untrained=self.settings.untrained)
        self._file.append("".join(json.dumps(row) + "\n" for row in rows))

    def close(self) -> None:
        self._file.close()


def _sink_class(fmt: str) -> type:
    module, name = SINKS[fmt].split(":")
    return getattr(importlib.import_module(f"{__package__}.{module}"), name)


def completed_key(source: str) -> tuple[str, str]:
    """How completed.csv names an input: its display name, and the bytes of its name in hex when
    they are not UTF-8. Display names alone are ambiguous (a file named with the four
    characters \\xff and one with the byte 0xff display alike); the pair is not."""
    raw = name_bytes(source)
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return display_name(source), raw.hex()
    return display_name(source), ""


class ResultWriter:
    """Appends rows to the chosen formats, flushing per batch; see the module docstring."""

    def __init__(
        self,
        folder: OutputFolder,
        *,
        formats: Sequence[str] = ("csv",),
        threshold: ThresholdLike = 0.5,
        untrained: bool = False,
        resume: bool = False,
        smooth: bool = False,
    ) -> None:
        """`smooth`: the run smooths video faces over time; their smoothed values are written
        beside the model's (`result_columns`)."""
        self.folder = folder
        completed_rows = read_csv(folder, "completed.csv")[1:] if resume else []
        self.completed: set[tuple[str, str]] = {
            (row[0], row[1] if len(row) > 1 else "") for row in completed_rows if row
        }
        settings = SinkSettings(
            completed=frozenset(shown for shown, _ in self.completed) if resume else None,
            threshold=as_thresholds(threshold),
            untrained=untrained,
            smooth=smooth,
        )
        self._sinks: list[RowSink] = []
        try:
            for fmt in check_formats(formats):
                self._sinks.append(_sink_class(fmt)(folder, settings))
            with folder.replace("completed.csv") as temporary:
                temporary.write_text(
                    csv_text([["file", "name_bytes_hex"], *map(list, sorted(self.completed))]),
                    encoding="utf-8",
                )
            self._completed = _AppendFile(folder, "completed.csv")
            with folder.replace("errors.csv") as temporary:
                temporary.write_text(csv_text([["file", "reason"]]), encoding="utf-8")
            self._errors = _AppendFile(folder, "errors.csv")
        except BaseException:
            self.close()
            raise

    def write(self, records: Sequence[FaceRecord]) -> None:
        """Append rows to every format."""
        if records:
            for sink in self._sinks:
                sink.write(records)

    def mark_completed(self, sources: Sequence[str]) -> None:
        """Inputs (as given) whose rows are all written: a resumed run skips them."""
        keys = [completed_key(s) for s in sources]
        if keys:
            self._completed.append(csv_text(keys))
            self.completed.update(keys)

    def is_completed(self, source: str) -> bool:
        return completed_key(source) in self.completed

    def error(self, source: str, reason: str) -> None:
        self._errors.append(csv_text([[display_name(source), display_name(reason)]]))

    def close(self) -> None:
        """Close every file, even when one fails to (a full disk while Parquet merges its
        parts); then raise the first failure."""
        handles = (*self._sinks, getattr(self, "_completed", None), getattr(self, "_errors", None))
        with contextlib.ExitStack() as stack:
            for handle in reversed(handles):  # the stack closes the last pushed first
                if handle is not None:
                    stack.callback(handle.close)

    def __enter__(self) -> ResultWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
