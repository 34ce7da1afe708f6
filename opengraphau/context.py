"""What one run's parts share: its counts (`RunStats`), whom it tells (`Reporter`), and the
files, settings and helpers its image and video parts use (`RunContext`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .options import Options
from .records import FaceRecord, display_name
from .render.saving import PictureSaver
from .sinks.files import OutputFolder
from .sinks.manifest import RunManifest
from .sinks.summary import VideoSummary
from .sinks.writer import ResultWriter
from .thresholds import Thresholds

UNTRAINED_BANNER = "UNTRAINED: random weights, the numbers mean nothing (smoke test only)"


@dataclass
class RunStats:
    """What a run did; `failed` counts inputs that could not be used."""

    output_dir: Path
    untrained: bool = False
    detect: bool = True
    images: int = 0
    failed: int = 0
    faces: int = 0
    no_face: int = 0
    frames: int = 0
    videos: int = 0
    skipped: int = 0
    detect_s: float = 0.0
    model_s: float = 0.0
    elapsed_s: float = 0.0
    interrupted: bool = False
    warnings: list[str] = field(default_factory=list)


class Reporter:
    """Hears of a run's progress; subclass it to show it. Every method may be left as it is."""

    shows_progress = False
    """Whether a model's download may draw its progress bar on stderr."""

    def model_ready(self, description: str, untrained: bool) -> None:
        """The model is loaded: `description` says which, on which device."""

    def start_images(self, total: int) -> None:
        """`total` images are about to be processed."""

    def images_done(self, outcomes: list, threshold: Thresholds, detect: bool) -> None:
        """A batch of image outcomes (`engines.Outcome`) has been written; `threshold` is the
        cut of each AU."""

    def start_videos(self, totals: list[int | None]) -> None:
        """Videos and cameras come next: how many frames each will give (None: not known, as
        for a camera), for progress over all of them."""

    def start_video(self, name: str, total: int | None, camera: bool) -> None:
        """One video or camera starts; `total` frames are expected (None: not known)."""

    def frames_done(self, count: int) -> None:
        """`count` more frames of the current video have been written."""

    def end_video(self) -> None:
        """The current video or camera is over (done, stopped or failed)."""

    def failed(self, source: str, reason: str) -> None:
        """An input could not be used; the run goes on."""

    def warn(self, text: str) -> None:
        """Something was skipped (a picture that could not be drawn); its rows are written."""

    def start_camera(self) -> None:
        """A live camera starts: a front end may offer a way to stop it."""

    def preview(self, frame: np.ndarray) -> bool:
        """An annotated video frame to show; True asks the run to stop this video."""
        return False

    def stop_requested(self) -> bool:
        """Whether the user asked to stop the live camera."""
        return False

    def interrupt_requested(self) -> bool:
        """Whether the user asked to stop the whole run (Ctrl-C). Asked after every batch, so
        the run stops where it is consistent; it then ends as KeyboardInterrupt would."""
        return False

    def close(self) -> None:
        """The run is over."""


@dataclass
class RunContext:
    """What the image and video parts of one run share: its settings, the files it writes, its
    counts and whom it tells."""

    options: Options
    reporter: Reporter
    stats: RunStats
    writer: ResultWriter
    summary: VideoSummary
    manifest: RunManifest
    folder: OutputFolder
    inputs: set[str]
    """Real paths of the run's input files: no picture may replace one."""
    pictures: PictureSaver = field(init=False)

    def __post_init__(self) -> None:
        self.pictures = PictureSaver(self.folder, self.inputs, self.warn)

    @property
    def title(self) -> str | None:
        """What every picture says at its top: the untrained warning, or nothing."""
        return UNTRAINED_BANNER if self.options.untrained else None

    def count(self, records: list[FaceRecord]) -> None:
        faces = sum(r.success for r in records)
        self.stats.faces += faces
        self.stats.no_face += faces == 0

    def fail(self, source: str, reason: str) -> None:
        self.writer.error(source, reason)
        self.stats.failed += 1
        self.reporter.failed(display_name(source), reason)

    def warn(self, text: str) -> None:
        self.stats.warnings.append(text)
        self.reporter.warn(text)

    def stop_if_asked(self) -> None:
        if self.reporter.interrupt_requested():
            raise KeyboardInterrupt
