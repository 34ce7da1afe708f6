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
import csv
import importlib
import io
import json
import os
from collections.abc import Iterable, Sequence
from typing import Protocol

import numpy as np

from ..aus import AU_COLUMNS, AU_IDS, AU_NAMES, SMOOTH_COLUMNS
from ..errors import ConfigError, OutputError
from ..records import FaceRecord, display_name, name_bytes
from ..thresholds import ThresholdLike, as_thresholds
from .files import OutputFolder, output_error

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
#: Output formats and the class writing each (module:class, imported when chosen).
FORMATS: dict[str, str] = {
    "csv": "writer:CsvSink",
    "jsonl": "writer:JsonlSink",
    "parquet": "parquet:ParquetSink",
}


def result_columns(*, untrained: bool, smooth: bool) -> list[str]:
    """A predictions file's columns: `CSV_HEADER`, the smoothed AUs when the run smooths
    (`AU12` stays the model's own value, `AU12_smooth` beside it), `untrained` on random
    weights."""
    return [*CSV_HEADER, *(SMOOTH_COLUMNS if smooth else ()), *(["untrained"] if untrained else [])]


def _model_and_smoothed(record: FaceRecord) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The model's probabilities and the smoothed ones (None: not smoothed)."""
    if record.raw is None:
        return record.probs, None
    return record.raw, record.probs


class RowSink(Protocol):
    """One predictions file: it drops rows of unfinished inputs on resume, then appends."""

    def write(self, records: Sequence[FaceRecord]) -> None: ...
    def close(self) -> None: ...


def csv_fields(record: FaceRecord, untrained: bool, smooth: bool = False) -> list[str]:
    b, s, t = DECIMALS["box"], DECIMALS["score"], DECIMALS["timestamp"]
    box = [f"{v:.{b}f}" for v in record.box] if record.box is not None else [""] * 4
    model, smoothed = _model_and_smoothed(record)

    def text(values: np.ndarray | None) -> list[str]:
        return [f"{float(p):.{s}f}" for p in values] if values is not None else [""] * len(AU_IDS)

    probs = text(model) + (text(smoothed) if smooth else [])
    confidence = f"{record.confidence:.{s}f}" if record.confidence is not None else ""
    fields = [
        display_name(record.source),
        str(record.frame),
        f"{record.timestamp:.{t}f}",
        str(record.face_id),
        "1" if record.success else "0",
        confidence,
        *box,
        *probs,
    ]
    return fields + ["1"] if untrained else fields


def json_record(record: FaceRecord, threshold: ThresholdLike, untrained: bool) -> dict:
    """One face; each AU's `probability` is the model's, `active` compares the value pictures
    and summaries use with `threshold`, which is `smoothed` when the face was smoothed."""
    b, s, t = DECIMALS["box"], DECIMALS["score"], DECIMALS["timestamp"]
    box = dict(zip("xywh", (round(v, b) for v in record.box))) if record.box is not None else None
    aus = None
    model, smoothed = _model_and_smoothed(record)
    if record.probs is not None and model is not None:
        active = as_thresholds(threshold).active(record.probs)
        aus = [
            {
                "id": f"AU{i}",
                "name": n,
                "probability": round(float(p), s),
                **({} if smoothed is None else {"smoothed": round(float(smoothed[j]), s)}),
                "active": bool(active[j]),
            }
            for j, (i, n, p) in enumerate(zip(AU_IDS, AU_NAMES, model))
        ]
    out = {
        "file": display_name(record.source),
        "frame": record.frame,
        "timestamp": round(record.timestamp, t),
        "face": record.face_id,
        "success": record.success,
        "confidence": None if record.confidence is None else round(record.confidence, s),
        "box": box,
        "aus": aus,
    }
    if untrained:
        out["untrained"] = True
    return out


def _read_csv(folder: OutputFolder, name: str) -> list[list[str]]:
    """The complete rows of a CSV file (a last row cut off by a crash is dropped)."""
    path = folder.root / name
    text = folder.read_text(name) or ""
    if not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    try:
        return list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error:
        raise OutputError(
            "is not a CSV file this tool wrote; choose another output folder",
            param="output_dir",
            value=path,
        ) from None


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


def csv_text(rows: Iterable[Sequence[str]]) -> str:
    """RFC 4180 CSV (CRLF line ends, so a CR or LF inside a field is always quoted)."""
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue()


class CsvSink:
    """predictions.csv: one row per face, `result_columns`."""

    name = "predictions.csv"

    def __init__(
        self,
        folder: OutputFolder,
        *,
        completed: set[str] | None,
        threshold: ThresholdLike,
        untrained: bool,
        smooth: bool = False,
    ) -> None:
        self.untrained, self.smooth = untrained, smooth
        header = result_columns(untrained=untrained, smooth=smooth)
        rows = _read_csv(folder, self.name) if completed is not None else []
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
        self._file.append(csv_text(csv_fields(r, self.untrained, self.smooth) for r in records))

    def close(self) -> None:
        self._file.close()


class JsonlSink:
    """predictions.jsonl: one JSON object per face (see `json_record`)."""

    name = "predictions.jsonl"

    def __init__(
        self,
        folder: OutputFolder,
        *,
        completed: set[str] | None,
        threshold: ThresholdLike,
        untrained: bool,
        smooth: bool = False,
    ) -> None:
        self.threshold, self.untrained = as_thresholds(threshold), untrained
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
        self._file.append(
            "".join(
                json.dumps(json_record(r, self.threshold, self.untrained)) + "\n" for r in records
            )
        )

    def close(self) -> None:
        self._file.close()


def check_formats(formats: Sequence[str]) -> tuple[str, ...]:
    """The formats, lower-cased; ConfigError naming the choices for an unknown or empty list."""
    chosen = tuple(dict.fromkeys(f.strip().lower() for f in formats if f.strip()))
    bad = [f for f in chosen if f not in FORMATS]
    if bad or not chosen:
        raise ConfigError(
            f"choose from {', '.join(FORMATS)}", param="formats", value=",".join(formats)
        )
    return chosen


def _sink_class(fmt: str) -> type:
    module, name = FORMATS[fmt].split(":")
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
        completed_rows = _read_csv(folder, "completed.csv")[1:] if resume else []
        self.completed: set[tuple[str, str]] = {
            (row[0], row[1] if len(row) > 1 else "") for row in completed_rows if row
        }
        keep = {shown for shown, _ in self.completed} if resume else None
        self._sinks: list[RowSink] = []
        try:
            for fmt in check_formats(formats):
                self._sinks.append(
                    _sink_class(fmt)(
                        folder,
                        completed=keep,
                        threshold=threshold,
                        untrained=untrained,
                        smooth=smooth,
                    )
                )
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
