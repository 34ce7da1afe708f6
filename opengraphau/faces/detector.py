"""Finding every face in a frame with MTCNN, the detector the OpenGraphAU training crops came from.

Large frames are searched on a copy whose longer side is at most `max_side`; boxes come back in
the frame's own pixels. The crop itself is `faces.crop`'s job.
"""

from __future__ import annotations

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
    """A frame readied for MTCNN: the copy to search (H x W x 3 uint8) and the scale back."""

    pixels: np.ndarray
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
        from .mtcnn import BatchedMTCNN  # its weights load with it: only when detecting

        self._mtcnn = BatchedMTCNN(device=device)

    def detect(self, frames: Sequence[np.ndarray | Image.Image]) -> list[list[Detection]]:
        """Faces per frame (H x W x 3 uint8 RGB arrays or PIL images), in input order; within a
        frame left to right, [] when there is none.

        Frames of any sizes share one batched MTCNN pass; one smaller than the smallest face
        searched for cannot hold a face and gets [].
        """
        copies = [self._search_copy(frame) for frame in frames]
        if not copies:
            return []
        found = self._mtcnn.detect(
            [torch.from_numpy(copy.pixels) for copy in copies], [copy.min_face for copy in copies]
        )
        return [
            self._select(copy, rows.double().cpu().numpy()) for copy, rows in zip(copies, found)
        ]

    def _search_copy(self, frame: np.ndarray | Image.Image) -> _SearchCopy:
        """The frame as RGB pixels, downscaled (Pillow, bilinear) so its longer side is at most
        max_side."""
        if isinstance(frame, Image.Image):
            frame = np.asarray(frame if frame.mode == "RGB" else frame.convert("RGB"))
        height, width = frame.shape[:2]
        scale = min(1.0, self.max_side / max(width, height))
        pixels = frame
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            pixels = np.asarray(Image.fromarray(frame).resize(size, Image.Resampling.BILINEAR))
        small_w = pixels.shape[1]
        return _SearchCopy(
            np.require(pixels, np.uint8, ["C", "W"]),  # what torch.from_numpy takes without a copy
            width / small_w,
            height / pixels.shape[0],
            max(MTCNN_MIN_FACE, self.min_face_size * small_w / width),
        )

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
