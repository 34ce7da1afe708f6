"""Pairing label rows with rows of a results folder.

Files: a label's path (joined to its root folder) is looked up as the results' `file` column
wrote it, normalised; failing that, the label's `file` as written; failing that, the one result
file whose path ends with the label's path (component by component). Frames: by number (0 for
photos). Faces: the label's `face_id` when it names one; otherwise the frame's largest face (by
box area), and frames where that was a choice among several are counted.

A label row is skipped, counted by reason and reported, when its input failed in the run
(errors.csv), when its frame was not processed (`--every`, `--max-frames`, an interrupted run),
when no face was found in it, or when the face it names is not there. Everything else that does
not fit is an InputError naming the label file and line (exit 2): a labelled file the results
do not hold at all, or a frame past the end of its video.
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InputError
from ..records import display_name
from .labels import NO_FACE_ID, Labels

SKIP_REASONS = {
    "failed": "the input failed in the run (see errors.csv)",
    "not_processed": "the frame was not processed (--every, --max-frames, --start/--end)",
    "no_face": "no face was found",
    "face_missing": "the face_id it names is not among the frame's faces",
}


@dataclass
class Matched:
    """Label rows with their prediction: `rows` (indices into `labels.table`), `scores`
    (rows, AUs of the labels) probabilities, and what happened to the others."""

    rows: np.ndarray
    scores: np.ndarray
    skipped: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)
    """The first label row (file:line) skipped for each reason."""
    several_faces: int = 0
    """Frames with several faces where the labels named none: the largest was scored."""

    def report(self) -> dict[str, Any]:
        return {
            "scored_rows": int(self.rows.size),
            "skipped": dict(self.skipped),
            "skipped_examples": dict(self.examples),
            "several_faces_largest_scored": self.several_faces,
        }


def _parts(path: str) -> tuple[str, ...]:
    return tuple(p for p in PurePath(os.path.normpath(path)).parts if p not in ("", "."))


class _FileIndex:
    """The result files, found by a label's path."""

    def __init__(self, files: list[str]) -> None:
        self.exact = {os.path.normpath(f): f for f in files}
        self.by_name: dict[str, list[str]] = {}
        for f in files:
            self.by_name.setdefault(os.path.basename(os.path.normpath(f)), []).append(f)

    def find(self, path: str, file: str) -> str | None:
        for candidate in (path, file):
            found = self.exact.get(os.path.normpath(display_name(candidate)))
            if found is not None:
                return found
        want = _parts(display_name(file))
        ends = [
            f
            for f in self.by_name.get(want[-1] if want else "", [])
            if _parts(f)[-len(want) :] == want
        ]
        return ends[0] if len(ends) == 1 else None


def failed_inputs(folder: str | Path) -> set[str]:
    """The `file` column of a results folder's errors.csv (empty when there is none)."""
    path = Path(folder) / "errors.csv"
    try:
        with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:
            return {row[0] for row in list(csv.reader(f))[1:] if row}
    except FileNotFoundError:
        return set()
    except OSError as exc:
        raise InputError(
            f"cannot be read ({exc.strerror or exc})", param="predictions", value=path
        ) from None


def frame_counts(run: dict[str, Any] | None) -> dict[str, int | None] | None:
    """{video file: frame count (None when unknown)} from a results folder's run.json
    (`read_results`' attrs); None without run.json, when videos cannot be told from photos."""
    if run is None:
        return None
    counts: dict[str, int | None] = {}
    for entry in run.get("runs", []):
        for video in entry.get("videos", []):
            total = video.get("frame_count")
            counts[video["file"]] = None if total is None else int(total)
    return counts


def match(
    labels: Labels,
    predictions: pd.DataFrame,
    *,
    failed: set[str] = frozenset(),  # type: ignore[assignment]
    frames: dict[str, int | None] | None = None,
    where: str = "the results",
) -> Matched:
    """Pair each label row with one prediction row (see the module docstring). `failed`: files
    errors.csv lists; `frames`: each video's frame count (`frame_counts`; files it does not
    list are photos, of one frame; None: unknown, nothing is checked); `where` names the
    results for messages."""
    table = labels.table
    index = _FileIndex(predictions["file"].astype(str).unique().tolist())
    by_frame = predictions.groupby(["file", "frame"], sort=False).indices
    success = predictions["success"].to_numpy(bool)
    face_ids = predictions["face_id"].to_numpy(np.int64)
    area = (predictions["w"] * predictions["h"]).to_numpy(np.float64)
    au_values = predictions[list(labels.aus)].to_numpy(np.float64)
    result = Matched(np.array([], np.int64), np.zeros((0, len(labels.aus))))
    rows: list[int] = []
    picked: list[int] = []

    def skip(reason: str, row: int) -> None:
        result.skipped[reason] += 1
        result.examples.setdefault(reason, labels.where(row))

    paths, names = table["path"].tolist(), table["file"].tolist()
    wanted_frames, wanted_faces = table["frame"].tolist(), table["face_id"].tolist()
    for row, (path, file, frame, face) in enumerate(zip(paths, names, wanted_frames, wanted_faces)):
        found = index.find(path, file)
        if found is None:
            if display_name(path) in failed or display_name(file) in failed:
                skip("failed", row)
                continue
            raise InputError(
                f"{file} has no rows in {where}; was it an input of that run?",
                param="labels",
                value=labels.where(row),
            )
        positions = by_frame.get((found, frame))
        if positions is None:
            total = None if frames is None else frames.get(found, 1)
            if total is not None and frame >= total:
                what = "video" if frames and found in frames else "image (one frame, number 0)"
                raise InputError(
                    f"frame {frame} is past the end of {file}: the {what} has {total} "
                    f"frame{'s' if total != 1 else ''}",
                    param="labels",
                    value=labels.where(row),
                )
            skip("not_processed", row)
            continue
        faces = [p for p in positions if success[p]]
        if not faces:
            skip("no_face", row)
            continue
        if face != NO_FACE_ID:
            named = [p for p in faces if face_ids[p] == face]
            if not named:
                skip("face_missing", row)
                continue
            choice = named[0]
        else:
            if len(faces) > 1:
                result.several_faces += 1
            choice = max(faces, key=lambda p: (area[p], -p))
        rows.append(row)
        picked.append(choice)
    result.rows = np.array(rows, np.int64)
    result.scores = au_values[np.array(picked, np.int64)] if picked else result.scores
    return result
