"""Load once, predict many: the Python API.

from opengraphau import AUPredictor
predictor = AUPredictor("checkpoints/OpenGprahAU-ResNet50_first_stage.pth", detect_faces=True)
for result in predictor.predict(["a.jpg", "b.png"]):
    for face in result.faces:
        print(face.box, face.aus["AU12"], predictor.present(face)["AU12"])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import numpy as np
import torch
from PIL import Image

from .device import resolve_device
from .errors import ImageError
from .faces.detector import FaceDetector
from .model.checkpoint import load_model
from .model.opengraphau import untrained_model
from .model.optimize import InferenceModel, optimize_for_inference
from .pipeline import Pipeline, crop_mode
from .records import FaceRecord, Frame
from .sources.images import as_pil, load_image
from .thresholds import ThresholdLike, Thresholds, as_thresholds
from .weights import choose_weights

ImageLike = Union[str, Path, Image.Image, np.ndarray]


@dataclass(frozen=True)
class ImageResult:
    """One image's faces, left to right; empty when none was found."""

    size: tuple[int, int]
    faces: list[FaceRecord] = field(default_factory=list)


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
        return optimize_for_inference(
            untrained_model(arch, stage), precision=precision, device=device, inplace=True
        )
    return load_model(checkpoint, arch=arch, stage=stage, device=device, precision=precision)


class AUPredictor:
    """Holds the model (and the face detector when asked) and predicts on batches of images."""

    def __init__(
        self,
        checkpoint: str | Path | None = None,
        *,
        model: str | None = None,
        offline: bool | None = None,
        arch: str | None = None,
        stage: int | None = None,
        device: str = "auto",
        detect_faces: bool = False,
        min_face_size: int = 20,
        max_faces: int | None = None,
        batch_size: int | None = None,
        precision: str = "fp32",
        exact_pixels: bool = False,
        thresholds: ThresholdLike | str | Path = 0.5,
    ) -> None:
        """`checkpoint` None means random weights (`untrained` is then True), unless `model`
        names an official model (`resnet50-s2`): it is fetched into the model cache on first
        use, never with `offline` (default `$OPENGRAPHAU_OFFLINE`).

        `precision` fp32 (default) | bf16 (CUDA, or CPUs with native bf16) | fp16 (CUDA); one
        that cannot run on the device raises DeviceError. `exact_pixels`: on a GPU too, search
        and crop with Pillow on the CPU, for the reference's pixels exactly (slower).
        `batch_size` None: 16 on a CPU, 64 on a GPU (`pipeline.default_batch_size`).
        `thresholds`: when `present` calls an AU present: one cut for all, `Thresholds`, or a
        thresholds.json (`opengraphau evaluate --calibrate`; AUs it leaves out keep 0.5).
        """
        self.thresholds: Thresholds = (
            Thresholds.load(thresholds)
            if isinstance(thresholds, (str, Path))
            else as_thresholds(thresholds)
        )
        self.device = resolve_device(device)
        self.weights = (
            None
            if checkpoint is None and model is None
            else choose_weights(
                checkpoint=checkpoint, model=model, arch=arch, stage=stage, offline=offline
            )
        )
        self.untrained = self.weights is None
        self.model = build_model_for(
            None if self.weights is None else self.weights.path,
            arch=arch,
            stage=stage,
            device=self.device,
            precision=precision,
        )
        self.detector = (
            FaceDetector(device=self.device, min_face_size=min_face_size, max_faces=max_faces)
            if detect_faces
            else None
        )
        self.pipeline = Pipeline(
            self.model,
            detector=self.detector,
            batch_size=batch_size,
            crop=crop_mode(exact_pixels=exact_pixels),
        )

    def present(self, face: FaceRecord) -> dict[str, bool]:
        """{'AU1': False, ..., 'AUR14': True}: each AU at or above its threshold."""
        if face.probs is None:
            return {}
        return dict(zip(face.aus, map(bool, self.thresholds.active(face.probs))))

    def predict(self, images: Sequence[ImageLike]) -> list[ImageResult]:
        """Paths (decoded with EXIF orientation), PIL images or uint8 RGB arrays -> results."""
        frames = []
        for n, image in enumerate(images):
            pil = load_image(image) if isinstance(image, (str, Path)) else as_pil(image)
            source = str(image) if isinstance(image, (str, Path)) else f"<image {n}>"
            if 0 in pil.size:  # nothing to crop or scale (a division by zero further on)
                raise ImageError(
                    f"has no pixels ({pil.width} x {pil.height})", param="images", value=source
                )
            frames.append(Frame.of(source, np.asarray(pil)))
        return [
            ImageResult(frame.size, [r for r in records if r.success])
            for frame, records in zip(frames, self.pipeline(frames))
        ]
