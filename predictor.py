"""Load once, predict many: the Python API that the CLI is built on.

    from predictor import AUPredictor
    predictor = AUPredictor("checkpoints/OpenGprahAU-ResNet50_first_stage.pth", detect_faces=True)
    for result in predictor.predict(["a.jpg", "b.png"]):
        for face in result.faces:
            print(face.box, face.aus["AU12"])
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence, Union

import numpy as np
import torch
from PIL import Image

from conf import AU_COLUMNS
from images import as_pil, load_image
from model import OpenGraphAU, build_model, load_model
from model.optimize import optimize_for_inference
from utils import resolve_device

if TYPE_CHECKING:
    from faces import FaceDetector

ImageLike = Union[str, Path, Image.Image, np.ndarray]


@dataclass(frozen=True)
class FaceResult:
    """The 41 AU probabilities of one face; `box` is x, y, w, h in the image's pixels."""

    face_id: int
    box: tuple[float, float, float, float]
    confidence: float
    probs: np.ndarray

    @property
    def aus(self) -> dict[str, float]:
        """{'AU1': p, ..., 'AUR14': p} in the models' order."""
        return dict(zip(AU_COLUMNS, map(float, self.probs)))


@dataclass(frozen=True)
class ImageResult:
    size: tuple[int, int]
    faces: list[FaceResult] = field(default_factory=list)  # empty: no face found


def untrained_model(arch: str | None, stage: int | None) -> OpenGraphAU:
    """Random weights (seeded, so runs repeat) for smoke tests without a checkpoint."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build_model(arch=arch or "resnet50", stage=stage or 1)


class AUPredictor:
    """Holds the model (and the face detector when asked) and predicts on batches."""

    def __init__(self, checkpoint: str | Path | None = None, *, arch: str | None = None,
                 stage: int | None = None, device: str = "auto", detect_faces: bool = False,
                 min_face_size: int = 20, max_faces: int | None = None,
                 batch_size: int = 16, precision: str = "fp32") -> None:
        """`checkpoint` None means random weights (`untrained` is then True).

        `precision` fp32 (default) | bf16 (CUDA, or CPUs with native bf16) | fp16 (CUDA); one
        that cannot run on the device raises ValueError.
        """
        self.device = resolve_device(device)
        self.untrained = checkpoint is None
        if checkpoint is None:
            self.model = optimize_for_inference(untrained_model(arch, stage), precision=precision,
                                                device=self.device, inplace=True)
        else:
            self.model = load_model(checkpoint, arch=arch, stage=stage, device=self.device,
                                    precision=precision)
        self.preprocess = self.model.preprocess
        self.batch_size = batch_size
        self.detector: FaceDetector | None = None
        if detect_faces:
            from faces import FaceDetector  # facenet-pytorch is only needed with detection
            self.detector = FaceDetector(device=self.device, min_face_size=min_face_size,
                                         max_faces=max_faces)

    @torch.inference_mode()
    def predict_tensors(self, batch: torch.Tensor) -> np.ndarray:
        """Normalised (B, 3, 224, 224) -> (B, 41) probabilities, in chunks of `batch_size`."""
        out = []
        cuda = self.device.type == "cuda"
        for chunk in batch.split(self.batch_size):
            if cuda:  # pinned host memory lets the copy run asynchronously
                chunk = chunk.pin_memory()
            chunk = chunk.to(self.device, non_blocking=cuda)
            out.append(self.model(chunk).float().cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, len(AU_COLUMNS)), np.float32)

    def find_faces(self, pils: Sequence[Image.Image]) -> list[list[tuple]]:
        """Per image: [(crop, box, confidence)], the detected faces or, without a detector,
        the whole image with confidence 1."""
        if self.detector is None:
            return [[(p, (0.0, 0.0, float(p.width), float(p.height)), 1.0)] for p in pils]
        return [[(f.crop, f.box, f.confidence) for f in faces]
                for faces in self.detector.detect(pils)]

    def predict(self, images: Sequence[ImageLike]) -> list[ImageResult]:
        """Paths (decoded with EXIF orientation), PIL images or uint8 RGB arrays -> results."""
        pils = [load_image(x) if isinstance(x, (str, Path)) else as_pil(x) for x in images]
        crops = self.find_faces(pils)
        flat = [c for per_image in crops for c in per_image]
        probs = self.predict_tensors(torch.stack([self.preprocess(c[0]) for c in flat])) \
            if flat else np.zeros((0, len(AU_COLUMNS)), np.float32)
        results, k = [], 0
        for pil, per_image in zip(pils, crops):
            faces = []
            for face_id, (_, box, conf) in enumerate(per_image):
                faces.append(FaceResult(face_id, box, conf, probs[k]))
                k += 1
            results.append(ImageResult((pil.width, pil.height), faces))
        return results
