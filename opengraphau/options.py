"""Everything one run needs, as one frozen object: what `opengraphau.run` takes and the CLI builds.

Checked when made: a bad value raises ConfigError naming the parameter, which the CLI turns into
its flag. Importing this loads no PyTorch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError
from .model.variants import ARCHS, STAGES
from .schema import check_formats
from .thresholds import Thresholds
from .weights import official_by_name

PRECISIONS = ("fp32", "bf16", "fp16")
SMOOTH_MODES = ("median", "ema")
ENGINES = ("local", "ray")
ONLY = ("images", "videos")


@dataclass(frozen=True)
class Options:
    """One run: inputs, model, faces, video, outputs and speed settings."""

    inputs: tuple[str, ...]
    """Images, folders, globs, @list files, videos and webcam:N."""
    output_dir: Path = Path("results/demo")
    checkpoint: Path | None = None
    """A checkpoint file. None: the official `model`, else the file in `checkpoint_dir`, else
    the default official model (`weights.choose_weights`); random weights with `untrained`."""
    model: str | None = None
    """An official model by name (`resnet50-s2`), fetched into the model cache when needed."""
    checkpoint_dir: Path = Path("checkpoints")
    untrained: bool = False
    offline: bool | None = None
    """Never touch the network (a model not cached is an error); None: `$OPENGRAPHAU_OFFLINE`."""
    arch: str | None = None
    stage: int | None = None
    formats: tuple[str, ...] = ("csv",)
    threshold: float = 0.5
    """An AU is present at or above this probability (the AUs `thresholds` does not name)."""
    thresholds: Thresholds | str | Path | None = None
    """Per-AU cuts: a thresholds.json (read when the Options are made) or `Thresholds`."""
    skip_existing: bool = False
    """Continue the run whose results `output_dir` holds: inputs it completed are skipped."""
    overwrite: bool = False
    """Replace the results `output_dir` holds (its pictures too). Without this or
    `skip_existing`, a folder that holds files is refused (ResultsExistError)."""
    draw: bool = False
    save_crops: bool = False
    device: str = "auto"
    precision: str = "fp32"
    batch_size: int | None = None
    """Frames (faces) per model call; None: as `pipeline.default_batch_size` chooses."""
    workers: int | None = None
    """Decoding processes; None: as `engines.local.default_workers` chooses; 0: decode here."""
    exact_pixels: bool = False
    """On a GPU too, decode, search and crop with Pillow on the CPU: the reference's pixels
    everywhere, at the CPU's speed (by default a GPU does that work, within a grey level)."""
    detect: bool = True
    max_faces: int | None = None
    min_face_size: int = 20
    detect_every: int = 5
    """In videos and cameras, search whole frames for faces on every Nth processed frame (a
    key frame) and, between, only around the faces found (`faces.keyframes`), as the full search
    sees those parts: the same boxes, 1.8x less detection; a new face waits at most N-1 frames
    for the next key frame. 1: every frame in full (docs/video.md)."""
    min_confidence: float = 0.9
    """The face detector's probability below which a face is dropped (clear faces score
    above 0.99; raise it against false faces in patterned cloth, lower it for hard faces)."""
    only: str | None = None
    """"images" or "videos" (cameras too): the other kind found in folders and lists is left
    out; None takes both."""
    every: int = 1
    start: float | None = None
    end: float | None = None
    max_frames: int | None = None
    smooth: int = 0
    smooth_mode: str = "median"
    show: bool = False
    engine: str = "local"
    ray_address: str | None = None
    command: tuple[str, ...] = field(default=(), compare=False)
    """The command line that asked for the run, recorded in run.json."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "output_dir", Path(self.output_dir))
        object.__setattr__(self, "formats", check_formats(self.formats))
        if self.checkpoint is not None:
            object.__setattr__(self, "checkpoint", Path(self.checkpoint))
        self._check()
        if isinstance(self.thresholds, (str, Path)):
            object.__setattr__(self, "thresholds", Thresholds.load(self.thresholds, self.threshold))

    @property
    def au_thresholds(self) -> Thresholds:
        """The cut of each AU: `thresholds` where given, else `threshold` for all."""
        if isinstance(self.thresholds, Thresholds):
            return self.thresholds
        return Thresholds.uniform(self.threshold)

    def _check(self) -> None:
        def bad(param: str, reason: str) -> ConfigError:
            return ConfigError(reason, param=param, value=getattr(self, param))

        if not self.inputs:
            raise ConfigError(
                "give at least one image, folder, glob, @list, video or webcam:N",
                param="inputs",
                value="()",
            )
        for param in ("threshold", "start", "end"):  # NaN passes every comparison below
            value = getattr(self, param)
            if value is not None and not math.isfinite(value):
                raise bad(param, "must be a finite number")
        if self.arch is not None and self.arch not in ARCHS:
            raise bad("arch", f"choose one of {', '.join(ARCHS)}")
        if self.stage is not None and self.stage not in STAGES:
            raise bad("stage", "choose 1 (ANFL) or 2 (MEFL)")
        if not 0.0 <= self.threshold <= 1.0:
            raise bad("threshold", "must be between 0 and 1")
        for param in (
            "batch_size",
            "max_faces",
            "min_face_size",
            "detect_every",
            "every",
            "max_frames",
        ):
            value = getattr(self, param)
            if value is not None and value < 1:
                raise bad(param, "must be at least 1")
        if self.workers is not None and self.workers < 0:
            raise bad("workers", "must be 0 or more")
        if self.smooth < 0:
            raise bad("smooth", "must be 0 (off) or more")
        if self.start is not None and self.start < 0:
            raise bad("start", "must be 0 s or later")
        if self.end is not None and self.end < (self.start or 0.0):
            raise bad("end", "must not be before the start (seconds)")
        if not 0.0 <= self.min_confidence <= 1.0:
            raise bad("min_confidence", "must be between 0 and 1")
        if self.only not in (None, *ONLY):
            raise bad("only", f"choose one of {', '.join(ONLY)}")
        if self.precision not in PRECISIONS:
            raise bad("precision", f"choose one of {', '.join(PRECISIONS)}")
        if self.smooth_mode not in SMOOTH_MODES:
            raise bad("smooth_mode", f"choose one of {', '.join(SMOOTH_MODES)}")
        if self.engine not in ENGINES:
            raise bad("engine", f"choose one of {', '.join(ENGINES)}")
        if self.ray_address is not None and self.engine != "ray":
            raise bad("ray_address", "a Ray cluster is joined only with the ray engine")
        if self.overwrite and self.skip_existing:
            raise bad("overwrite", "replacing results and continuing them exclude each other")
        if self.untrained and self.checkpoint is not None:
            raise bad("untrained", "random weights and a checkpoint exclude each other")
        if self.model is not None:
            official_by_name(self.model)
            if self.checkpoint is not None:
                raise bad("model", "a model by name and a checkpoint file exclude each other")
            if self.untrained:
                raise bad("untrained", "random weights and a model by name exclude each other")
