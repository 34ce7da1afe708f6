"""Find every face in a photo and crop it the way the OpenGraphAU models saw faces in training.

The models were trained on square 256x256 face crops that MTCNN produced, so the same detector
is used here and each face is cut out as a square around MTCNN's box, widened by `MARGIN`, and
resized to `CROP_SIZE`; `model.transforms.EvalTransform` then takes it from there.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from facenet_pytorch import MTCNN
from facenet_pytorch.models.utils.detect_face import detect_face
from PIL import Image

Box = tuple[float, float, float, float]

CROP_SIZE = 256
"""Side of every crop: the size of the training crops, which EvalTransform expects."""

MARGIN = 0.45
"""How much wider than MTCNN's box the square crop is: side = max(w, h) * (1 + MARGIN).

Measured, not guessed: on the reference's six framed demo faces plus skimage's astronaut
framed the same way, the crop square overlaps the original frame best (mean IoU 0.844,
flat from 0.43 to 0.45) at this margin, so a well-framed crop comes out nearly unchanged.
"""

MTCNN_MIN_FACE = 12.0
"""P-Net's window is 12 px, so MTCNN cannot look for faces smaller than this."""


@dataclass(frozen=True)
class Face:
    """One detected face: where MTCNN found it and the crop to feed the model."""

    box: Box
    """x, y, w, h of the detector's box, in original image pixels (may reach past the edges)."""
    confidence: float
    """MTCNN's final-stage (O-Net) face probability."""
    crop: Image.Image
    """RGB, CROP_SIZE x CROP_SIZE, cut from the full-resolution original."""


def crop_box(box: Box, margin: float = MARGIN) -> Box:
    """The square (x, y, side, side) centred on `box`, side = max(w, h) * (1 + margin).

    Square because the training crops were square: stretching a non-square box would
    distort the face geometry the action-unit heads learned.
    """
    x, y, w, h = box
    side = max(w, h) * (1.0 + margin)
    cx, cy = x + w / 2.0, y + h / 2.0
    return (cx - side / 2.0, cy - side / 2.0, side, side)


def square_crop(image: Image.Image, box: Box, margin: float = MARGIN, size: int = CROP_SIZE) -> Image.Image:
    """Cut `crop_box(box, margin)` out of `image` and resize it to size x size (bilinear).

    The square is snapped to whole pixels (at most half a pixel off) so the result is an
    exact crop of the original. Whatever part of it lies outside the image is black: a
    constant carries no facial structure, while replicating the edge row smears hair or skin
    into stripes the network could read as wrinkles or shadows; black is also what
    facenet-pytorch's own `extract_face` produces for faces at the border.
    """
    left, top, side, _ = crop_box(box, margin)
    left, top, side = round(left), round(top), max(1, round(side))
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    canvas = Image.new("RGB", (side, side), (0, 0, 0))
    inside = (max(left, 0), max(top, 0), min(left + side, rgb.width), min(top + side, rgb.height))
    if inside[0] < inside[2] and inside[1] < inside[3]:
        canvas.paste(rgb.crop(inside), (inside[0] - left, inside[1] - top))
    return canvas.resize((size, size), Image.Resampling.BILINEAR)


@dataclass(frozen=True)
class _Prepared:
    """An image readied for MTCNN: the RGB original, the copy to detect on, and the way back."""

    original: Image.Image
    small: Image.Image
    scale_x: float
    scale_y: float
    min_face: float


class FaceDetector:
    """MTCNN, loaded once, turning photos into per-face crops ready for EvalTransform."""

    def __init__(
        self,
        *,
        device: str | torch.device = "cpu",
        min_face_size: int = 20,
        max_faces: int | None = None,
        max_side: int = 1024,
        threshold: float = 0.9,
    ) -> None:
        """
        min_face_size: smallest face to look for, in original pixels (never below MTCNN's 12 px
            on the copy it actually searches).
        max_faces: keep only the N largest faces per image (None: all).
        max_side: photos are searched on a copy whose longer side is at most this, because
            MTCNN's image pyramid costs grow with the pixel count while a face big enough to
            read action units from survives the downscale.
        threshold: drop detections whose O-Net probability is below this. MTCNN's own stage
            thresholds (0.6/0.7/0.7) admit anything above 0.7; 0.9 is the cut facenet-pytorch
            itself uses when it selects faces, and clear faces score above 0.99.
        """
        if max_faces is not None and max_faces < 1:
            raise ValueError(f"max_faces must be None or >= 1, got {max_faces}")
        if max_side < MTCNN_MIN_FACE:
            raise ValueError(f"max_side must be >= {MTCNN_MIN_FACE:g}, got {max_side}")
        self.min_face_size = min_face_size
        self.max_faces = max_faces
        self.max_side = max_side
        self.threshold = threshold
        self._mtcnn = MTCNN(keep_all=True, min_face_size=min_face_size, device=device).eval()

    def detect(self, images: Sequence[Image.Image]) -> list[list[Face]]:
        """Faces per image, in input order; within an image left to right, [] when there is none.

        Images whose search copies have the same size (and so the same pyramid) go through
        MTCNN in one batched call; the rest go one by one. An image smaller than the smallest
        face searched for cannot hold one, and MTCNN would fail on its empty pyramid, so it is
        skipped.
        """
        prepared = [self._prepare(image) for image in images]
        groups: defaultdict[tuple[tuple[int, int], float], list[int]] = defaultdict(list)
        for index, item in enumerate(prepared):
            if min(item.small.size) >= item.min_face:
                groups[(item.small.size, item.min_face)].append(index)
        results: list[list[Face]] = [[] for _ in prepared]
        for (_, min_face), indices in groups.items():
            detections = self._run_mtcnn([prepared[i].small for i in indices], min_face)
            for index, rows in zip(indices, detections):
                results[index] = self._faces(prepared[index], rows)
        return results

    def _prepare(self, image: Image.Image) -> _Prepared:
        """RGB original plus its search copy, downscaled so the longer side is <= max_side."""
        original = image if image.mode == "RGB" else image.convert("RGB")
        scale = min(1.0, self.max_side / max(original.size))
        small = original
        if scale < 1.0:
            size = (max(1, round(original.width * scale)), max(1, round(original.height * scale)))
            small = original.resize(size, Image.Resampling.BILINEAR)
        return _Prepared(
            original=original,
            small=small,
            scale_x=original.width / small.width,
            scale_y=original.height / small.height,
            min_face=max(MTCNN_MIN_FACE, self.min_face_size * small.width / original.width),
        )

    def _run_mtcnn(self, images: list[Image.Image], min_face: float) -> list[np.ndarray]:
        """(N, 5) arrays of x1, y1, x2, y2, probability per image, from one batched MTCNN pass.

        Calls MTCNN's detection function with this detector's loaded nets rather than
        `MTCNN.detect`, because the minimum face size differs per group (it is scaled with
        the downscale) and mutating the shared model for each call would not be safe.
        """
        m = self._mtcnn
        with torch.inference_mode():
            batch, _ = detect_face(images, min_face, m.pnet, m.rnet, m.onet, m.thresholds, m.factor, m.device)
        return [np.asarray(rows, dtype=np.float64).reshape(-1, 5) for rows in batch]

    def _faces(self, item: _Prepared, rows: np.ndarray) -> list[Face]:
        """Map detections back to original pixels, apply threshold/max_faces, crop, order by x."""
        rows = rows[rows[:, 4] >= self.threshold]
        boxes = [
            (
                (x1 * item.scale_x, y1 * item.scale_y, (x2 - x1) * item.scale_x, (y2 - y1) * item.scale_y),
                float(p),
            )
            for x1, y1, x2, y2, p in rows.tolist()
        ]
        if self.max_faces is not None:
            boxes = sorted(boxes, key=lambda b: b[0][2] * b[0][3], reverse=True)[: self.max_faces]
        boxes.sort(key=lambda b: b[0][0])
        return [Face(box=box, confidence=p, crop=square_crop(item.original, box)) for box, p in boxes]
