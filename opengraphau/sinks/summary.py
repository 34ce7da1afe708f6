"""summary.csv: per video and face track, when the face was seen and how active each AU was.

One row per (file, face_id) of a video or camera, faces not confirmed as a track (`UNCONFIRMED`)
left out: first and last frame and time, the frames the track was seen in, the threshold (its
value, or "per AU (FILE)" with `--thresholds`; run.json lists the cuts), then per AU its mean
probability (`AU12_mean`) and the share of those frames at or above its threshold (`AU12_rate`).
It is computed from the probabilities as predictions.csv rounds them, so a groupby over that file
gives the same numbers. Written whole when each video ends; a resumed run keeps
the rows of completed videos.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np

from ..aus import AU_COLUMNS
from ..errors import OutputError
from ..records import UNCONFIRMED, FaceRecord, display_name
from ..schema import DECIMALS
from ..thresholds import ThresholdLike, Thresholds, as_thresholds
from .files import OutputFolder, csv_text, read_csv

SUMMARY_HEADER: tuple[str, ...] = (
    "file",
    "face_id",
    "first_frame",
    "last_frame",
    "first_time",
    "last_time",
    "frames",
    "threshold",
    *(f"{c}_mean" for c in AU_COLUMNS),
    *(f"{c}_rate" for c in AU_COLUMNS),
)


class _Track:
    """One face track of the video in progress."""

    def __init__(self, record: FaceRecord) -> None:
        self.first_frame, self.first_time = record.frame, record.timestamp
        self.last_frame, self.last_time = record.frame, record.timestamp
        self.frames = 0
        self.sums = np.zeros(len(AU_COLUMNS))
        self.active = np.zeros(len(AU_COLUMNS), np.int64)

    def add(self, record: FaceRecord, threshold: Thresholds) -> None:
        assert record.probs is not None
        probs = np.round(record.probs.astype(np.float64), DECIMALS["score"])
        self.last_frame, self.last_time = record.frame, record.timestamp
        self.frames += 1
        self.sums += probs
        self.active += threshold.active(probs)

    def row(self, file: str, face_id: int, threshold: Thresholds) -> list[str]:
        s, t = DECIMALS["score"], DECIMALS["timestamp"]
        return [
            file,
            str(face_id),
            str(self.first_frame),
            str(self.last_frame),
            f"{self.first_time:.{t}f}",
            f"{self.last_time:.{t}f}",
            str(self.frames),
            threshold.describe(),
            *(f"{v:.{s}f}" for v in self.sums / self.frames),
            *(f"{v:.{s}f}" for v in self.active / self.frames),
        ]


class VideoSummary:
    """summary.csv, fed one video at a time: `start`, `add` its rows, `finish` writes it."""

    name = "summary.csv"

    def __init__(
        self, folder: OutputFolder, *, threshold: ThresholdLike, completed: set[str] | None
    ) -> None:
        self.folder, self.threshold = folder, as_thresholds(threshold)
        rows = read_csv(folder, self.name) if completed is not None else []
        if rows and rows[0] != list(SUMMARY_HEADER):
            raise OutputError(
                "its columns differ from this tool's; choose another output folder",
                param="output_dir",
                value=folder.root / self.name,
            )
        self.rows = [r for r in rows[1:] if r and r[0] in (completed or set())]
        self._tracks: dict[int, _Track] = {}
        if os.path.lexists(folder.root / self.name):  # an earlier run's rows go now, not later
            self._write()

    def start(self) -> None:
        """A new video: what an unfinished one left is dropped."""
        self._tracks = {}

    def add(self, records: Iterable[FaceRecord]) -> None:
        for record in records:
            if record.success and record.face_id != UNCONFIRMED:
                track = self._tracks.setdefault(record.face_id, _Track(record))
                track.add(record, self.threshold)

    def finish(self, source: str) -> None:
        """The video `source` ended: its tracks' rows are written."""
        self.rows += [
            track.row(display_name(source), face_id, self.threshold)
            for face_id, track in sorted(self._tracks.items())
        ]
        self._tracks = {}
        self._write()

    def _write(self) -> None:
        with self.folder.replace(self.name) as temporary:
            temporary.write_text(
                csv_text([list(SUMMARY_HEADER), *self.rows]),
                encoding="utf-8",
                errors="surrogateescape",
            )
