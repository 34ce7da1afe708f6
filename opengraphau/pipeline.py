"""The one road from decoded frames to face records: find faces, crop, normalise, run the model.

Pure over a batch: it reads no file and writes none, so the same object runs in the CLI, behind
`AUPredictor`, in a Ray actor or a worker, on any device. `AUPredictor.predict`, the image and
video jobs of both engines all call it; none of them loops over faces.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from .aus import AU_COLUMNS
from .errors import ConfigError
from .faces.crop import CROP_SIZE, crop_faces, square_crop
from .faces.detector import Detection, FaceDetector
from .model.optimize import InferenceModel
from .records import FaceRecord, Frame

CROP_MODES = ("auto", "pil", "tensor")


@dataclass
class PipelineTimes:
    """Seconds spent so far, for the run's summary line."""

    detect: float = 0.0
    model: float = 0.0


class Pipeline:
    """Frames in, per-frame face records out.

    `detector` None means the whole frame is the face (the reference demo's behaviour).
    `crop` "pil" cuts faces with Pillow (`faces.crop.square_crop`, the exact rule), "tensor"
    on the model's device (`crop_faces`: the same squares, resized by torch within one grey
    level of Pillow); "auto" takes "tensor" on CUDA and "pil" elsewhere.
    """

    def __init__(self, model: InferenceModel, *, detector: FaceDetector | None = None,
                 batch_size: int = 16, crop: str = "auto") -> None:
        if batch_size < 1:
            raise ConfigError("must be at least 1", param="batch_size", value=batch_size)
        if crop not in CROP_MODES:
            raise ConfigError(f"choose one of {', '.join(CROP_MODES)}", param="crop", value=crop)
        self.model, self.detector, self.batch_size = model, detector, batch_size
        self.device = next(model.parameters()).device
        self.preprocess = model.preprocess
        self.crop = ("tensor" if self.device.type == "cuda" else "pil") if crop == "auto" else crop
        self.times = PipelineTimes()
        mean = torch.tensor(self.preprocess.mean, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(self.preprocess.std, device=self.device).view(1, 3, 1, 1)
        self._scale, self._shift = 1.0 / (255.0 * std), -mean / std

    def __call__(self, frames: Sequence[Frame]) -> list[list[FaceRecord]]:
        """Per frame its records: one per face, left to right, or one `success` False record."""
        located = self.locate(frames)
        inputs = self.model_inputs(frames, located)
        probs, embeddings = self.infer(inputs)
        results, k = [], 0
        for frame, found in zip(frames, located):
            records = []
            for face_id, (box, confidence) in enumerate(found):
                records.append(FaceRecord(frame.source, frame.index, frame.timestamp, face_id,
                                          box, confidence, probs[k], embeddings[k]))
                k += 1
            results.append(records or [FaceRecord(frame.source, frame.index, frame.timestamp,
                                                  0, None, None, None)])
        return results

    def locate(self, frames: Sequence[Frame]) -> list[list[Detection]]:
        """Per frame its faces, or the whole frame (confidence 1) without a detector."""
        if self.detector is None:
            return [[Detection((0.0, 0.0, float(f.size[0]), float(f.size[1])), 1.0)]
                    for f in frames]
        start = time.perf_counter()
        found = self.detector.detect([_pixels(f) for f in frames])
        self.times.detect += time.perf_counter() - start
        return found

    def model_inputs(self, frames: Sequence[Frame], located: Sequence[Sequence[Detection]]
                     ) -> torch.Tensor:
        """(faces, 3, 224, 224) normalised crops on the model's device, in record order."""
        if self.detector is None:
            whole = [f.prepared if f.prepared is not None
                     else self.preprocess(Image.fromarray(_pixels(f))) for f in frames]
            return self._to_device(whole)
        if self.crop == "pil":
            crops = [self.preprocess(square_crop(Image.fromarray(_pixels(f)), d.box))
                     for f, found in zip(frames, located) for d in found]
            return self._to_device(crops)
        parts = []
        for frame, found in zip(frames, located):
            if found:
                image = torch.from_numpy(_pixels(frame)).to(self.device, non_blocking=True)
                parts.append(crop_faces(image.permute(2, 0, 1), [d.box for d in found]))
        if not parts:
            return torch.empty(0, 3, 224, 224, device=self.device)
        offset = (CROP_SIZE - self.preprocess.crop) // 2
        inner = slice(offset, offset + self.preprocess.crop)
        return torch.cat(parts)[:, :, inner, inner].float() * self._scale + self._shift

    def _to_device(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        if not tensors:
            return torch.empty(0, 3, 224, 224, device=self.device)
        batch = torch.stack(tensors)
        if self.device.type == "cuda":  # pinned host memory lets the copy run asynchronously
            batch = batch.pin_memory()
        return batch.to(self.device, non_blocking=True)

    @torch.inference_mode()
    def infer(self, batch: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Normalised (N, 3, 224, 224) -> (N, 41) probabilities and (N, E) embeddings, in chunks
        of `batch_size`."""
        start = time.perf_counter()
        probs, embeddings = [], []
        for chunk in batch.split(self.batch_size):
            p, e = self.model.predict(chunk)
            probs.append(p.cpu())
            embeddings.append(e.cpu())
        self.times.model += time.perf_counter() - start
        if not probs:
            return np.zeros((0, len(AU_COLUMNS)), np.float32), np.zeros((0, 0), np.float32)
        return torch.cat(probs).numpy(), torch.cat(embeddings).numpy()


def _pixels(frame: Frame) -> np.ndarray:
    if frame.image is None:
        raise ConfigError("this step needs the frame's pixels, but only its prepared tensor was "
                          "kept", param="frames", value=frame.source)
    return frame.image
