"""Finding every face in a frame with MTCNN, the detector the OpenGraphAU training crops came from.

Large frames are searched on a copy whose longer side is at most `max_side`; boxes come back in
the frame's own pixels. The crop itself is `faces.crop`'s job.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image

from ..errors import ConfigError
from ..records import Box

MTCNN_MIN_FACE = 12.0
"""P-Net's window is 12 px, so MTCNN cannot look for faces smaller than this."""


class Detection(NamedTuple):
    """Where a face is (x, y, w, h in the frame's pixels) and MTCNN's probability that it is one."""

    box: Box
    confidence: float


class _SearchCopy(NamedTuple):
    """A frame readied for MTCNN: the copy to search and the scale back to the frame."""

    image: Image.Image
    scale_x: float
    scale_y: float
    min_face: float


class FaceDetector:
    """MTCNN, loaded once: frames in, detections out, left to right."""

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
        min_face_size: smallest face to look for, in frame pixels (never below MTCNN's 12 px
            on the copy it actually searches).
        max_faces: keep only the N largest faces per frame (None: all).
        max_side: frames are searched on a copy whose longer side is at most this, because
            MTCNN's image pyramid costs grow with the pixel count while a face big enough to
            read action units from survives the downscale.
        threshold: drop detections whose O-Net probability is below this. MTCNN's own stage
            thresholds (0.6/0.7/0.7) admit anything above 0.7; 0.9 is the cut facenet-pytorch
            itself uses when it selects faces, and clear faces score above 0.99.
        """
        if max_faces is not None and max_faces < 1:
            raise ConfigError("must be None or at least 1", param="max_faces", value=max_faces)
        if min_face_size < 1:
            raise ConfigError(
                "must be at least 1 pixel", param="min_face_size", value=min_face_size
            )
        if max_side < MTCNN_MIN_FACE:
            raise ConfigError(
                f"must be at least {MTCNN_MIN_FACE:g}", param="max_side", value=max_side
            )
        self.min_face_size = min_face_size
        self.max_faces = max_faces
        self.max_side = max_side
        self.threshold = threshold
        from facenet_pytorch import MTCNN  # its weights load with it: only when detecting

        self._mtcnn = MTCNN(keep_all=True, min_face_size=min_face_size, device=device).eval()

    def detect(self, frames: Sequence[np.ndarray | Image.Image]) -> list[list[Detection]]:
        """Faces per frame (H x W x 3 uint8 RGB arrays or PIL images), in input order; within a
        frame left to right, [] when there is none.

        A frame smaller than the smallest face searched for cannot hold one (and MTCNN would
        fail on its empty pyramid), so it is skipped.
        """
        copies = [self._search_copy(frame) for frame in frames]
        groups: defaultdict[tuple[tuple[int, int], float], list[int]] = defaultdict(list)
        for index, copy in enumerate(copies):
            if min(copy.image.size) >= copy.min_face:
                groups[(copy.image.size, copy.min_face)].append(index)
        results: list[list[Detection]] = [[] for _ in copies]
        for (_, min_face), indices in groups.items():
            found = self._run_mtcnn([copies[i].image for i in indices], min_face)
            for index, rows in zip(indices, found):
                results[index] = self._select(copies[index], rows)
        return results

    def _search_copy(self, frame: np.ndarray | Image.Image) -> _SearchCopy:
        """The frame, downscaled so its longer side is <= max_side."""
        image = frame if isinstance(frame, Image.Image) else Image.fromarray(frame)
        image = image if image.mode == "RGB" else image.convert("RGB")
        scale = min(1.0, self.max_side / max(image.size))
        small = image
        if scale < 1.0:
            size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
            small = image.resize(size, Image.Resampling.BILINEAR)
        return _SearchCopy(
            small,
            image.width / small.width,
            image.height / small.height,
            max(MTCNN_MIN_FACE, self.min_face_size * small.width / image.width),
        )

    def _run_mtcnn(self, images: list[Image.Image], min_face: float) -> list[np.ndarray]:
        """(N, 5) arrays of x1, y1, x2, y2, probability per image, from one batched MTCNN pass."""
        from facenet_pytorch.models.utils.detect_face import detect_face

        m = self._mtcnn
        with torch.inference_mode():
            batch, _ = detect_face(
                images, min_face, m.pnet, m.rnet, m.onet, m.thresholds, m.factor, m.device
            )
        return [np.asarray(rows, dtype=np.float64).reshape(-1, 5) for rows in batch]

    def _select(self, copy: _SearchCopy, rows: np.ndarray) -> list[Detection]:
        """Back to frame pixels; threshold, the largest `max_faces`, then left to right."""
        rows = rows[rows[:, 4] >= self.threshold]
        found = [
            Detection(
                (
                    x1 * copy.scale_x,
                    y1 * copy.scale_y,
                    (x2 - x1) * copy.scale_x,
                    (y2 - y1) * copy.scale_y,
                ),
                float(p),
            )
            for x1, y1, x2, y2, p in rows.tolist()
        ]
        if self.max_faces is not None:
            found = sorted(found, key=lambda d: d.box[2] * d.box[3], reverse=True)[: self.max_faces]
        return sorted(found, key=lambda d: d.box[0])
