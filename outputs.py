"""Result files: predictions.csv, predictions.jsonl, errors.csv and completed.txt.

Rows are appended and flushed as batches finish, so a crash or Ctrl-C loses at most the batch in
flight. `completed.txt` lists every input whose rows are all written; a `--skip-existing` rerun
skips those inputs and drops any rows of inputs that were cut off half way (a video stopped
mid-file), so resuming never duplicates or loses rows.
"""
from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from conf import AU_COLUMNS, AU_IDS, AU_NAMES
from utils import UserError

CSV_HEADER: tuple[str, ...] = ("file", "frame", "timestamp", "face_id", "success", "confidence",
                               "x", "y", "w", "h", *AU_COLUMNS)
FORMATS: tuple[str, ...] = ("csv", "jsonl")


@dataclass(frozen=True)
class Row:
    """One face (or one face-less image/frame, `success` False) in one image or video frame."""

    file: str
    frame: int
    timestamp: float
    face_id: int
    success: bool
    confidence: float | None
    box: tuple[float, float, float, float] | None
    probs: np.ndarray | None  # (41,) in conf.AU_IDS order


def _num(value: float, digits: int) -> str:
    return f"{value:.{digits}f}"


def csv_fields(row: Row, untrained: bool) -> list[str]:
    box = [_num(v, 1) for v in row.box] if row.box is not None else [""] * 4
    probs = [_num(float(p), 6) for p in row.probs] if row.probs is not None else [""] * len(AU_IDS)
    fields = [row.file, str(row.frame), _num(row.timestamp, 3), str(row.face_id),
              "1" if row.success else "0",
              _num(row.confidence, 6) if row.confidence is not None else "", *box, *probs]
    return fields + ["1"] if untrained else fields


def json_record(row: Row, threshold: float, untrained: bool) -> dict:
    box = dict(zip("xywh", (round(v, 1) for v in row.box))) if row.box is not None else None
    aus = None
    if row.probs is not None:
        aus = [{"id": f"AU{i}", "name": n, "probability": round(float(p), 6),
                "active": bool(p >= threshold)} for i, n, p in zip(AU_IDS, AU_NAMES, row.probs)]
    record = {"file": row.file, "frame": row.frame, "timestamp": round(row.timestamp, 3),
              "face": row.face_id, "success": row.success,
              "confidence": None if row.confidence is None else round(row.confidence, 6),
              "box": box, "aus": aus}
    if untrained:
        record["untrained"] = True
    return record


def _read_lines(path: Path) -> list[str]:
    """Complete lines only: a last line cut off by a crash is dropped."""
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    return lines[:-1]  # the part after the last newline is empty or incomplete


def _rewrite(path: Path, lines: list[str]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    os.replace(tmp, path)


class ResultWriter:
    """Appends rows to the chosen formats, flushing per batch; see the module docstring."""

    def __init__(self, out_dir: Path, *, formats: Sequence[str] = ("csv",), threshold: float = 0.5,
                 untrained: bool = False, resume: bool = False) -> None:
        self.out_dir = out_dir
        self.threshold, self.untrained = threshold, untrained
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"--output-dir {out_dir}: cannot create it ({exc.strerror or exc}); "
                            "choose another folder") from None
        self.csv_path = out_dir / "predictions.csv"
        self.jsonl_path = out_dir / "predictions.jsonl"
        self.errors_path = out_dir / "errors.csv"
        self.completed_path = out_dir / "completed.txt"
        self.header = list(CSV_HEADER) + (["untrained"] if untrained else [])
        self.completed: set[str] = set()
        if resume:
            self._prepare_resume()
        else:
            for path in (self.csv_path, self.jsonl_path, self.completed_path):
                path.unlink(missing_ok=True)
        self.errors_path.unlink(missing_ok=True)
        new_csv = not self.csv_path.exists()
        self._csv_file = self._csv = self._jsonl = None
        if "csv" in formats:
            self._csv_file = open(self.csv_path, "a", newline="", encoding="utf-8")
            self._csv = csv.writer(self._csv_file, lineterminator="\n")
            if new_csv:
                self._csv.writerow(self.header)
        if "jsonl" in formats:
            self._jsonl = open(self.jsonl_path, "a", encoding="utf-8")
        self._completed = open(self.completed_path, "a", encoding="utf-8")
        self._errors_file = None
        self.error_count = 0

    def _prepare_resume(self) -> None:
        self.completed = set(_read_lines(self.completed_path)) - {""}
        lines = _read_lines(self.csv_path)
        if lines:
            if next(csv.reader([lines[0]])) != self.header:
                raise UserError(f"{self.csv_path}: its columns differ from this run's (trained vs "
                                "--untrained, or another tool); choose another --output-dir")
            keep = [lines[0]] + [ln for ln in lines[1:]
                                 if next(csv.reader([ln]), [""])[0] in self.completed]
            _rewrite(self.csv_path, keep)
        jsonl = _read_lines(self.jsonl_path)
        if jsonl or self.jsonl_path.exists():
            _rewrite(self.jsonl_path, [ln for ln in jsonl if ln.strip()
                                       and json.loads(ln).get("file") in self.completed])
        _rewrite(self.completed_path, sorted(self.completed))

    def write(self, rows: Sequence[Row], completed: Sequence[str] = ()) -> None:
        """Append rows, then mark `completed` inputs as fully written; both flushed."""
        if self._csv is not None:
            self._csv.writerows(csv_fields(r, self.untrained) for r in rows)
            self._csv_file.flush()
        if self._jsonl is not None:
            self._jsonl.writelines(json.dumps(json_record(r, self.threshold, self.untrained)) + "\n"
                                   for r in rows)
            self._jsonl.flush()
        self.mark_completed(completed)

    def mark_completed(self, files: Sequence[str]) -> None:
        if files:
            self._completed.writelines(f + "\n" for f in files)
            self._completed.flush()
            self.completed.update(files)

    def error(self, file: str, reason: str) -> None:
        if self._errors_file is None:
            self._errors_file = open(self.errors_path, "w", newline="", encoding="utf-8")
            self._errors = csv.writer(self._errors_file, lineterminator="\n")
            self._errors.writerow(["file", "reason"])
        self._errors.writerow([file, reason])
        self._errors_file.flush()
        self.error_count += 1

    def close(self) -> None:
        for handle in (self._csv_file, self._jsonl, self._completed, self._errors_file):
            if handle is not None and not handle.closed:
                handle.close()

    def __enter__(self) -> "ResultWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
