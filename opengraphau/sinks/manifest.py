"""run.json: which tool, model and settings made the results in a folder, and when, so they can
be traced months later.

    {"tool": "opengraphau", "manifest": 1, "runs": [{"version": ..., "checkpoint": ...}, ...]}

One entry per run into the folder: a resumed run (`skip_existing`) adds its own after the earlier
ones; a fresh run starts the list anew, as its rows replace theirs. The file is rewritten whole
through a temporary file when the run starts (status "running", no end time), when a video opens
(its frame rate, frame count, duration and size) and when the run ends (done, interrupted, or
failed with the error's line), so it is always complete JSON. An entry a later run finds still
"running" belonged to a run that was killed, and is marked "killed".
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import OutputError
from ..records import VideoInfo, display_name
from ..schema import DECIMALS
from ..version import __version__
from ..weights import ModelCache, Weights, sha256_of
from .files import OutputFolder

if TYPE_CHECKING:
    from ..options import Options

MANIFEST_NAME = "run.json"
MANIFEST_VERSION = 1
"""Bumped when the layout of run.json changes in a way readers must know."""


def checkpoint_entry(
    path: str | Path, *, arch: str, stage: int, sha256: str | None = None
) -> dict[str, Any]:
    """Where the weights came from: path, SHA-256, what they hold, and the official model's name
    when the bytes are those the model cache fetched and checked for it (a file merely named
    like an official one is not called official). `sha256`: when already known."""
    sha = sha256 or sha256_of(path)
    official = ModelCache().official_for(sha)
    if official is not None and (official.arch, official.stage) != (arch, stage):
        official = None
    return {
        "path": display_name(os.path.abspath(path)),
        "sha256": sha,
        "bytes": os.path.getsize(path),
        "arch": arch,
        "stage": stage,
        "official": official.name if official else None,
        "official_file": official.filename if official else None,
    }


def run_entry(
    options: Options, *, device: str, arch: str, stage: int, weights: Weights | None
) -> dict[str, Any]:
    """The entry of a run starting now with `options` on `device`; `weights` None: random
    weights."""
    o = options
    return {
        "version": __version__,
        "command": [display_name(a) for a in o.command],
        "inputs": [display_name(i) for i in o.inputs],
        "started": _now(),
        "ended": None,
        "status": "running",
        "error": None,
        "resumed": o.skip_existing,
        "device": device,
        "precision": o.precision,
        "engine": o.engine,
        "batch_size": o.batch_size,
        "exact_pixels": o.exact_pixels,
        "threshold": o.threshold,
        "thresholds": _thresholds_entry(o),
        "detector": {
            "enabled": o.detect,
            "min_face_size": o.min_face_size,
            "min_confidence": o.min_confidence,
            "max_faces": o.max_faces,
            "detect_every": o.detect_every,
        },
        "video": {
            "every": o.every,
            "start": o.start,
            "end": o.end,
            "max_frames": o.max_frames,
            "smooth": o.smooth,
            "smooth_mode": o.smooth_mode,
        },
        "checkpoint": (
            None
            if weights is None
            else checkpoint_entry(weights.path, arch=arch, stage=stage, sha256=weights.sha256)
        ),
        "untrained": o.untrained,
        "formats": list(o.formats),
        "counts": None,
        "videos": [],
    }


def _thresholds_entry(options: Options) -> dict[str, Any]:
    """Each AU's cut, and the file (with its SHA-256) they came from, if any."""
    entry = options.au_thresholds.manifest()
    if entry["file"] is not None:
        entry["file"] = display_name(os.path.abspath(entry["file"]))
    return entry


def _now() -> str:
    """Local time with its UTC offset, to the second."""
    return datetime.now().astimezone().isoformat(timespec="seconds")


class RunManifest:
    """run.json of one run: `entry` (from `run_entry`) after the earlier runs' when resuming."""

    def __init__(self, folder: OutputFolder, entry: dict[str, Any], *, resume: bool) -> None:
        self.folder, self.entry = folder, entry
        earlier = self._earlier() if resume else []
        self.document = {
            "tool": "opengraphau",
            "manifest": MANIFEST_VERSION,
            "runs": [*earlier, entry],
        }
        self._write()

    def add_video(self, source: str, info: VideoInfo) -> None:
        """A video or camera opened: what it is."""
        duration = (
            None
            if info.frame_count is None
            else round(info.frame_count / info.fps, DECIMALS["timestamp"])
        )
        self.entry["videos"].append(
            {
                "file": display_name(source),
                "fps": info.fps,
                "frame_count": info.frame_count,
                "duration_s": duration,
                "size": list(info.size),
                "camera": info.is_camera,
            }
        )
        self._write()

    def finish(self, status: str, error: str | None, counts: Mapping[str, int]) -> None:
        """The run ended: "done", "interrupted" or "failed" (`error` says why)."""
        self.entry.update(
            ended=_now(),
            status=status,
            counts=dict(counts),
            error=None if error is None else display_name(error),
        )
        self._write()

    def _earlier(self) -> list[dict[str, Any]]:
        path = self.folder.root / MANIFEST_NAME
        text = self.folder.read_text(MANIFEST_NAME)
        if text is None:
            return []
        try:
            runs = json.loads(text)["runs"]
            if not all(isinstance(run, dict) for run in runs):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise OutputError(
                "is not a run.json this tool wrote; move it away or choose another output folder",
                param="output_dir",
                value=path,
            ) from None
        for run in runs:
            if run.get("status") == "running":  # this run holds the folder's lock: that one died
                run.update(
                    status="killed",
                    error="the run ended without closing its entry "
                    "(killed, or the machine stopped)",
                )
        return runs

    def _write(self) -> None:
        with self.folder.replace(MANIFEST_NAME) as temporary:
            temporary.write_text(
                json.dumps(self.document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
            )
