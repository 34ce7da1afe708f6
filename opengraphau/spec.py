"""How a pipeline is built, as one small frozen value: every entry point builds through it.

    spec = PipelineSpec.from_options(options, weights)   # the CLI's runs
    pipeline = spec.build()                              # resolve the device, load the model, ...
    spec = spec.resolved(pipeline)                       # what run.json and workers need

`AUPredictor`, the CLI's jobs, the Ray engine's workers (which get it pickled), `FaceAUs` and
the benchmarks all make their `Pipeline` here, so "which device, which model, which detector,
which crop" is decided in one place. Its field defaults are `Options`' (the one place they are
stated), which the CLI's flags and the API's signatures read too.

A module of its own, above `pipeline.py`: building reads checkpoints and may fetch an official
model into the cache, while the pipeline itself stays pure over a batch (no file, no network).
Importing this loads no PyTorch.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from .options import Options

if TYPE_CHECKING:
    import torch
    from typing_extensions import Unpack

    from .faces.detector import FaceDetector
    from .model.optimize import InferenceModel
    from .pipeline import Pipeline
    from .weights import Weights


class PipelineOptions(TypedDict, total=False):
    """The API's keyword arguments that choose the model and build the pipeline (`AUPredictor`'s
    but `thresholds`; `FaceAUs`' all): what `api_spec` reads."""

    model: str | None
    offline: bool | None
    arch: str | None
    stage: int | None
    device: str
    detect_faces: bool
    min_face_size: int
    max_faces: int | None
    batch_size: int | None
    precision: str
    exact_pixels: bool
    untrained: bool
    min_confidence: float


_WEIGHTS_FIELDS = ("checkpoint", "model", "sha256", "cached")


@dataclass(frozen=True)
class PipelineSpec:
    """A pipeline's checkpoint, model, device, batch and face settings: plain, hashable values.

    `checkpoint` None means seeded random weights (a smoke test). `model`/`sha256` name the
    official model the checkpoint is when it came from the model cache; with `cached` the
    checkpoint is taken from this machine's cache by that name instead of the path (a Ray
    worker on another node), and refused if its sha256 is not the driver's.
    """

    checkpoint: str | None = None
    model: str | None = None
    """The official model's name, when the checkpoint came from the model cache."""
    sha256: str | None = None
    offline: bool | None = None
    """Never fetch (a `cached` model missing is an error); None: `$OPENGRAPHAU_OFFLINE`."""
    cached: bool = False
    arch: str | None = None
    """None: what the checkpoint holds."""
    stage: int | None = None
    device: str = Options.device
    precision: str = Options.precision
    batch_size: int | None = Options.batch_size
    """Frames (faces) per model call; None: `pipeline.default_batch_size` for the device."""
    detect: bool = Options.detect
    """Search for faces (MTCNN); False: the whole frame is the face."""
    min_face_size: int = Options.min_face_size
    max_faces: int | None = Options.max_faces
    min_confidence: float = Options.min_confidence
    """The face detector's probability below which a face is dropped."""
    exact_pixels: bool = Options.exact_pixels
    """Pillow's pixels on the CPU everywhere (the reference's), not the device's own road."""

    @classmethod
    def settings(cls) -> tuple[str, ...]:
        """The fields that are a run's settings, named as `Options` names them (the others say
        which weights to load)."""
        return tuple(f.name for f in fields(cls) if f.name not in _WEIGHTS_FIELDS)

    @classmethod
    def from_options(cls, options: Options, weights: Weights | None) -> PipelineSpec:
        """A run's pipeline: `options`' settings with the checkpoint chosen (None: random)."""
        chosen = {name: getattr(options, name) for name in cls.settings()}
        return cls(**chosen).with_weights(weights)

    def with_weights(self, weights: Weights | None) -> PipelineSpec:
        """This spec loading `weights` (None: random weights)."""
        if weights is None:
            return replace(self, checkpoint=None, model=None, sha256=None)
        return replace(
            self, checkpoint=str(weights.path), model=weights.model, sha256=weights.sha256
        )

    @property
    def crop(self) -> str:
        """The pipeline's `crop`: Pillow's pixels when they must be exact, else the device's."""
        from .pipeline import crop_mode

        return crop_mode(exact_pixels=self.exact_pixels)

    def build(self) -> Pipeline:
        """Resolve the device, load the model (DeviceError, CheckpointError, ...), make the
        detector: the pipeline this spec describes."""
        from .device import resolve_device
        from .pipeline import Pipeline

        device = resolve_device(self.device)
        model = build_model_for(
            self._checkpoint(),
            arch=self.arch,
            stage=self.stage,
            device=device,
            precision=self.precision,
        )
        return Pipeline(
            model,
            detector=self.detector(device) if self.detect else None,
            batch_size=self.batch_size,
            crop=self.crop,
        )

    def detector(self, device: str | torch.device = "cpu") -> FaceDetector:
        """The face detector of these settings on `device`."""
        from .faces.detector import FaceDetector

        return FaceDetector(
            device=device,
            min_face_size=self.min_face_size,
            max_faces=self.max_faces,
            threshold=self.min_confidence,
        )

    def resolved(self, pipeline: Pipeline) -> PipelineSpec:
        """This spec as `pipeline` (built from it) turned out: its device, the checkpoint's
        backbone and stage, the batch size chosen. What run.json records and workers rebuild."""
        from .device import resolve_device

        return replace(
            self,
            device=str(resolve_device(self.device)),
            arch=pipeline.model.arch,
            stage=pipeline.model.stage,
            batch_size=pipeline.batch_size,
        )

    def on_worker(self, *, gpu: bool, detect: bool) -> PipelineSpec:
        """The spec a worker of a cluster builds: its own GPU or its CPU, the model from its
        node's cache when it is an official one, faces searched there or not."""
        return replace(
            self,
            checkpoint=None if self.checkpoint is None else os.path.abspath(self.checkpoint),
            device="cuda" if gpu else "cpu",
            detect=detect,
            cached=self.model is not None,
        )

    def _checkpoint(self) -> str | None:
        """The checkpoint file to load on this machine."""
        if not self.cached or self.model is None:
            return self.checkpoint
        from .errors import CheckpointError
        from .weights import ModelCache, offline_from_env

        cached = ModelCache().get(
            self.model,
            offline=offline_from_env() if self.offline is None else self.offline,
            progress=False,
        )
        if cached.sha256 != self.sha256:
            raise CheckpointError(
                f"the model cache of {socket.gethostname()} holds another file under this "
                f"name (sha256 {cached.sha256[:12]}, the driver's {str(self.sha256)[:12]}); "
                "delete it there",
                param="model",
                value=self.model,
            )
        return str(cached.path)


def build_model_for(
    checkpoint: str | Path | None,
    *,
    arch: str | None,
    stage: int | None,
    device: torch.device,
    precision: str,
) -> InferenceModel:
    """The fast inference model of `checkpoint`, or seeded random weights when it is None."""
    if checkpoint is None:
        from .model.opengraphau import untrained_model
        from .model.optimize import optimize_for_inference

        return optimize_for_inference(
            untrained_model(arch, stage), precision=precision, device=device, inplace=True
        )
    from .model.checkpoint import load_model

    return load_model(checkpoint, arch=arch, stage=stage, device=device, precision=precision)


def api_spec(
    checkpoint: str | Path | None = None, **settings: Unpack[PipelineOptions]
) -> tuple[PipelineSpec, Weights | None]:
    """The spec, and the weights chosen, for the API's keyword arguments (`AUPredictor`,
    `FaceAUs`): `checkpoint`, else `model`, else the default official model, as the command
    line chooses; random weights only with `untrained` (announced by `warn_untrained`), never
    with a checkpoint or model. Faces are searched for only with `detect_faces`."""
    from .device import resolve_device
    from .errors import ConfigError
    from .weights import choose_weights

    model, offline = settings.get("model"), settings.get("offline")
    arch, stage = settings.get("arch"), settings.get("stage")
    untrained = settings.get("untrained", False)
    if untrained and (checkpoint is not None or model is not None):
        raise ConfigError(
            "random weights and a checkpoint or model exclude each other",
            param="untrained",
            value=True,
        )
    device = resolve_device(settings.get("device", PipelineSpec.device))
    weights = (
        None
        if untrained
        else choose_weights(
            checkpoint=checkpoint, model=model, arch=arch, stage=stage, offline=offline
        )
    )
    if untrained:
        warn_untrained()
    # The API names its settings as `Options` does, but for `detect_faces` (off by default).
    names = PipelineSpec.settings()
    chosen: dict[str, Any] = {k: v for k, v in settings.items() if k in names}
    chosen.update(device=str(device), detect=settings.get("detect_faces", False))
    spec = PipelineSpec(**chosen)
    return spec.with_weights(weights), weights


def warn_untrained() -> None:
    """Say loudly, as an UntrainedWarning and a log line, that the model has random weights:
    an API user who forgot the checkpoint must not mistake its numbers for predictions."""
    import logging
    import warnings

    from .context import UNTRAINED_BANNER
    from .errors import UntrainedWarning

    warnings.warn(UNTRAINED_BANNER, UntrainedWarning, stacklevel=4)
    logging.getLogger("opengraphau").warning(UNTRAINED_BANNER)
