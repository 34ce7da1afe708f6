"""Finding every face in a frame with MTCNN, the detector the OpenGraphAU training crops came from.

Large frames are searched on a copy whose longer side is at most `max_side`; boxes come back in
the frame's own pixels. The crop itself is `faces.crop`'s job. Frames may be NumPy arrays or
PIL images (the copy is made by Pillow, on the CPU) or (H, W, 3) tensors on the detector's
device (the copy is made there by torch, within a grey level of Pillow's).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import NamedTuple, cast

import numpy as np
import torch
from PIL import Image

from ..errors import ConfigError
from ..model.transforms import resize_pixels
from ..records import Box

MTCNN_MIN_FACE = 12.0
"""P-Net's window is 12 px, so MTCNN cannot look for faces smaller than this."""

_SMALLEST_CHANGE = 0.7
"""`FaceDetector.follow` looks for faces down to this share of a known face's size (a face that
shrinks faster is searched in full, `faces.keyframes`); smaller faces would cost most of the
search in candidates that are parts of the face."""
_CANDIDATES = 2
"""R-Net's most probable boxes per square that O-Net sees in `follow`: a square holds its face,
perhaps one passing by; O-Net on all of R-Net's boxes would cost more than the rest."""
_SAME_FACE = 0.7
"""Two boxes found by `follow` in overlapping squares are one face when their intersection
covers this share of the smaller box: MTCNN's O-Net stage merges its boxes by this rule."""


class Detection(NamedTuple):
    """Where a face is (x, y, w, h in the frame's pixels) and MTCNN's probability that it is one."""

    box: Box
    confidence: float


def _device_shape(frame: np.ndarray | Image.Image | torch.Tensor) -> torch.Size | None:
    """The shape of a frame held on a device (a GPU), None for one held on the host."""
    if isinstance(frame, torch.Tensor) and frame.device.type != "cpu":
        return frame.shape
    return None


class _SearchCopy(NamedTuple):
    """A frame readied for MTCNN: the copy to search (H x W x 3 uint8) and the scale back."""

    pixels: torch.Tensor
    scale_x: float
    scale_y: float
    min_face: float


class _Region(NamedTuple):
    """A square `FaceDetector.follow` searches: its frame, its pixels (at the search copy's
    scale), the least face size there, and how its pixels map to the frame's (x = left + x' *
    scale_x)."""

    frame: int
    pixels: torch.Tensor
    min_face: float
    left: float
    top: float
    scale_x: float
    scale_y: float


def _host_pixels(frame: np.ndarray | Image.Image | torch.Tensor) -> np.ndarray:
    if isinstance(frame, torch.Tensor):
        return frame.numpy()
    if isinstance(frame, Image.Image):
        return np.asarray(frame if frame.mode == "RGB" else frame.convert("RGB"))
    return frame


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

    def detect(
        self, frames: Sequence[np.ndarray | Image.Image | torch.Tensor]
    ) -> list[list[Detection]]:
        """Faces per frame (H x W x 3 uint8 RGB arrays, PIL images or tensors), in input order;
        within a frame left to right, [] when there is none.

        Frames of any sizes share one batched MTCNN pass; one smaller than the smallest face
        searched for cannot hold a face and gets [].
        """
        copies = self._search_copies(frames)
        if not copies:
            return []
        found = self._mtcnn.detect([c.pixels for c in copies], [c.min_face for c in copies])
        # One copy to the host for the whole batch (on a GPU each copy waits for the device).
        rows = torch.cat(found).double().cpu().numpy()
        ends = np.cumsum([len(boxes) for boxes in found])
        return [self._select(copy, part) for copy, part in zip(copies, np.split(rows, ends[:-1]))]

    def follow(
        self,
        frames: Sequence[np.ndarray | Image.Image | torch.Tensor],
        near: Sequence[Sequence[tuple[Box, float]]],
    ) -> list[list[Detection]]:
        """Faces per frame found only near known ones: `near[i]` lists, for frame i, face boxes
        (frame pixels) and how far around each to look (half the side of the square searched,
        in face sizes). The cheap search between key frames of a video (`faces.keyframes`).

        Each square is cut from the frame's search copy (as `detect` searches it) and searched
        for faces from half the known face's size up, all squares of all frames in one batched
        MTCNN pass on the detector's device; boxes found twice (squares overlap) count once, by
        the O-Net stage's own overlap rule. Selected as `detect` selects (threshold,
        `max_faces`, left to right).
        """
        regions: list[_Region] = []
        on_device = any(_device_shape(frame) is not None for frame in frames)
        # Squares of host frames are cut from the frame and shrunk alone, not from a shrunk copy
        # of the whole frame: that copy would cost more than the search of the squares.
        copies = self._search_copies(frames) if on_device else [None] * len(frames)
        for n, (frame, copy, faces) in enumerate(zip(frames, copies, near)):
            if copy is None:
                pixels = _host_pixels(frame)
                height, width = pixels.shape[:2]
                small_w, small_h = self._copy_size(width, height)
                scale_x, scale_y = width / small_w, height / small_h
                min_face = max(MTCNN_MIN_FACE, self.min_face_size / scale_x)
            else:
                small_h, small_w = int(copy.pixels.shape[0]), int(copy.pixels.shape[1])
                scale_x, scale_y, min_face = copy.scale_x, copy.scale_y, copy.min_face
            for (x, y, w, h), reach in faces:
                side = math.sqrt(w / scale_x * h / scale_y)
                cx, cy = (x + w / 2) / scale_x, (y + h / 2) / scale_y
                half = reach * side
                left, top = max(0, math.floor(cx - half)), max(0, math.floor(cy - half))
                right, bottom = (
                    min(small_w, math.ceil(cx + half)),
                    min(small_h, math.ceil(cy + half)),
                )
                least = max(min_face, _SMALLEST_CHANGE * side)
                if min(right - left, bottom - top) < least:
                    continue  # the face has left the picture
                if copy is not None:
                    crop = copy.pixels[top:bottom, left:right]
                    regions.append(
                        _Region(n, crop, least, left * scale_x, top * scale_y, scale_x, scale_y)
                    )
                    continue
                x0, y0 = math.floor(left * scale_x), math.floor(top * scale_y)
                x1, y1 = (
                    min(width, math.ceil(right * scale_x)),
                    min(height, math.ceil(bottom * scale_y)),
                )
                cut = pixels[y0:y1, x0:x1]
                size = (right - left, bottom - top)
                if size != (x1 - x0, y1 - y0):
                    cut = np.asarray(Image.fromarray(cut).resize(size, Image.Resampling.BILINEAR))
                crop = torch.from_numpy(np.require(cut, np.uint8, ["C", "W"]))
                regions.append(
                    _Region(n, crop, least, x0, y0, (x1 - x0) / size[0], (y1 - y0) / size[1])
                )
        rows: list[list[np.ndarray]] = [[] for _ in frames]
        if regions:
            found = self._mtcnn.detect(
                [r.pixels for r in regions], [r.min_face for r in regions], most=_CANDIDATES
            )
            host = torch.cat(found).double().cpu().numpy()
            ends = np.cumsum([len(boxes) for boxes in found])
            for r, part in zip(regions, np.split(host, ends[:-1])):
                scale = np.array([r.scale_x, r.scale_y, r.scale_x, r.scale_y, 1.0])
                rows[r.frame].append(part * scale + np.array([r.left, r.top, r.left, r.top, 0.0]))
        out = []
        unit = _SearchCopy(torch.empty(0), 1.0, 1.0, 0.0)  # rows are in frame pixels already
        for parts in rows:
            merged = np.concatenate(parts) if parts else np.zeros((0, 5))
            out.append(self._select(unit, merged[_merged(merged)]))
        return out

    def _search_copies(
        self, frames: Sequence[np.ndarray | Image.Image | torch.Tensor]
    ) -> list[_SearchCopy]:
        """Each frame as RGB pixels, downscaled (bilinear) so its longer side is at most
        max_side: by Pillow for host pixels; by torch for tensors on a device, a run of
        same-size frames (a video's) in one call."""
        copies: list[_SearchCopy] = []
        for shape, run in itertools.groupby(frames, key=_device_shape):
            if shape is None:
                copies += [self._host_copy(frame) for frame in run]
            else:
                copies += self._device_copies(cast(list[torch.Tensor], list(run)))
        return copies

    def _host_copy(self, frame: np.ndarray | Image.Image | torch.Tensor) -> _SearchCopy:
        frame = _host_pixels(frame)
        height, width = frame.shape[:2]
        size = self._copy_size(width, height)
        if size != (width, height):
            frame = np.asarray(Image.fromarray(frame).resize(size, Image.Resampling.BILINEAR))
        pixels = torch.from_numpy(np.require(frame, np.uint8, ["C", "W"]))
        return self._copy(pixels, width, height)

    def _device_copies(self, frames: list[torch.Tensor]) -> list[_SearchCopy]:
        height, width = int(frames[0].shape[0]), int(frames[0].shape[1])
        size = self._copy_size(width, height)
        if size == (width, height):
            return [self._copy(frame, width, height) for frame in frames]
        planes = torch.stack([frame.permute(2, 0, 1) for frame in frames])
        small = resize_pixels(planes, (size[1], size[0])).permute(0, 2, 3, 1)
        return [self._copy(pixels, width, height) for pixels in small.unbind(0)]

    def _copy_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) of the copy searched for a frame of this size."""
        scale = min(1.0, self.max_side / max(width, height))
        if scale == 1.0:
            return width, height
        return max(1, round(width * scale)), max(1, round(height * scale))

    def _copy(self, pixels: torch.Tensor, width: int, height: int) -> _SearchCopy:
        small_w = int(pixels.shape[1])
        return _SearchCopy(
            pixels,
            width / small_w,
            height / int(pixels.shape[0]),
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


def _merged(rows: np.ndarray) -> np.ndarray:
    """Indices of the boxes (x1, y1, x2, y2, probability) kept when each overlapping a more
    probable one by `_SAME_FACE` of the smaller box's area is dropped, most probable first."""
    order = np.argsort(-rows[:, 4], kind="stable")
    kept: list[int] = []
    for i in order:
        x1, y1, x2, y2 = rows[i, :4]
        area = (x2 - x1) * (y2 - y1)
        for j in kept:
            a1, b1, a2, b2 = rows[j, :4]
            inter = max(0.0, min(x2, a2) - max(x1, a1)) * max(0.0, min(y2, b2) - max(y1, b1))
            if inter > _SAME_FACE * min(area, (a2 - a1) * (b2 - b1)):
                break
        else:
            kept.append(int(i))
    return np.array(sorted(kept), np.int64)
