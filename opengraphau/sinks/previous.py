"""An output folder's earlier results: found before a run writes, so none is lost by accident.

A run into a folder that already holds results (files named as a run names them) stops
(`ResultsExistError`) unless it continues that run (`skip_existing`) or replaces it
(`overwrite`: the earlier run's files go, its pictures too, so no stale one is left beside the
new ones). Files of other kinds (the inputs themselves, notes) neither stop a run nor go. Front
ends that choose the folder themselves take a fresh numbered one (`fresh_folder`).
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import shutil
from pathlib import Path

from ..errors import ResultsExistError
from .files import OutputFolder, output_error

#: What a run writes at the top of its folder: tables, then pictures, videos and timelines.
RESULT_NAMES = (
    "predictions.csv",
    "predictions.jsonl",
    "run.json",
    "summary.csv",
    "errors.csv",
    "completed.csv",
    "*_pred.jpg",
    "*_pred.mp4",
    "*_aus.png",
    ".*.tmp*",
)
#: Folders a run writes, removed whole by `overwrite`.
RESULT_FOLDERS = ("predictions.parquet", "crops")


def _is_result(name: str) -> bool:
    return name in RESULT_FOLDERS or any(fnmatch.fnmatchcase(name, n) for n in RESULT_NAMES)


def holds_results(root: Path) -> bool:
    """Whether `root` exists and holds a file or folder named as a run's results."""
    try:
        return any(_is_result(entry.name) for entry in os.scandir(root))
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as exc:
        raise output_error(root, exc) from None


def check_unused(root: Path, *, skip_existing: bool, overwrite: bool) -> None:
    """ResultsExistError when `root` holds results and neither continuing nor replacing them
    was asked for."""
    if not (skip_existing or overwrite) and holds_results(root):
        raise ResultsExistError(
            "already holds an earlier run's results; continue that run with skip_existing, "
            "or replace its results with overwrite",
            param="output_dir",
            value=root,
        )


def remove_results(folder: OutputFolder, inputs: set[str]) -> None:
    """Delete an earlier run's files from `folder` (never one of this run's `inputs`)."""
    root = folder.root
    try:
        for entry in os.scandir(root):
            if os.path.realpath(entry.path) in inputs:
                continue
            if entry.name in RESULT_FOLDERS and entry.is_dir(follow_symlinks=False):
                _remove_folder(Path(entry.path), inputs)
            elif _is_result(entry.name) and not entry.is_dir(follow_symlinks=False):
                os.unlink(entry.path)
    except OSError as exc:
        raise output_error(root, exc) from None


def _remove_folder(path: Path, inputs: set[str]) -> None:
    if not any(i == str(path) or i.startswith(str(path) + os.sep) for i in inputs):
        shutil.rmtree(path)
        return
    for entry in os.scandir(path):  # an input inside crops/ stays, the rest goes
        if os.path.realpath(entry.path) not in inputs and not entry.is_dir():
            os.unlink(entry.path)
    with contextlib.suppress(OSError):
        path.rmdir()


def fresh_folder(base: Path) -> Path:
    """`base` when it holds no results yet, else the first of base2, base3, ... that does not
    (as ultralytics numbers its runs), so the same command run twice keeps both results."""
    candidate, n = base, 1
    while holds_results(candidate):
        n += 1
        candidate = base.with_name(f"{base.name}{n}")
    return candidate


def latest_folder(base: Path) -> Path:
    """The last of base, base2, base3, ... that holds results (`base` when none does): the run
    that --skip-existing continues or --overwrite replaces when no folder is named."""
    latest, n = base, 2
    while holds_results(base.with_name(f"{base.name}{n}")):
        latest = base.with_name(f"{base.name}{n}")
        n += 1
    return latest
