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

_SMALLEST_CHANGE = 0.35
"""`FaceDetector.follow` searches the pyramid levels of windows down to this share of a known
face's size: the full search's box for a face can come from a window of a part of it (an eye,
the mouth) that P-Net's regression grew to the face's size. At 0.35 every face of
`bench_video`'s 720p clip of five people gets the full search's box (at 0.5, 37 of 265 differ
and 1 has IoU 0.53); smaller shares cost more P-Net and change nothing there."""
_EDGE = 0.1
"""A box `FaceDetector.follow` finds closer than this share of its side to the edge of its
square (where that is not the frame's edge) is dropped: the face is leaving the square, and its
box may be cut short there; a frame that so loses a face is searched in full
(`faces.keyframes`)."""
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


class _Square(NamedTuple):
    """A part of a frame's search copy that `FaceDetector.follow` searches: its frame, where it
    is (copy pixels, end exclusive), and the least face size there."""

    frame: int
    left: int
    top: int
    right: int
    bottom: int
    least: float

    def joined(self, other: _Square) -> _Square:
        """The rectangle around both (of one frame), for the smaller of their least faces."""
        return _Square(
            self.frame,
            min(self.left, other.left),
            min(self.top, other.top),
            max(self.right, other.right),
            max(self.bottom, other.bottom),
            min(self.least, other.least),
        )

    def holds(self, rows: np.ndarray, copy: _SearchCopy) -> np.ndarray:
        """Which boxes (x1, y1, x2, y2, ... in copy pixels) lie inside, `_EDGE` of their side
        away from each edge that is not the copy's."""
        height, width = copy.pixels.shape[:2]
        margin = _EDGE * np.sqrt((rows[:, 2] - rows[:, 0]) * (rows[:, 3] - rows[:, 1]))
        return (
            ((self.left == 0) | (rows[:, 0] >= self.left + margin))
            & ((self.top == 0) | (rows[:, 1] >= self.top + margin))
            & ((self.right == width) | (rows[:, 2] <= self.right - margin))
            & ((self.bottom == height) | (rows[:, 3] <= self.bottom - margin))
        )

    def meets(self, other: _Square) -> bool:
        return (
            self.left < other.right
            and other.left < self.right
            and self.top < other.bottom
            and other.top < self.bottom
        )


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
        in face sizes; one P-Net window more). The cheap search between key frames of a video
        (`faces.keyframes`).

        Each square (overlapping squares joined into one rectangle) is a part of the frame's
        search copy searched as `detect` searches the whole copy (`mtcnn.Cut`: the same pyramid
        levels, pixels and windows), from `_SMALLEST_CHANGE` of the known face's size up, so a
        face well inside its square gets `detect`'s box; all squares of all frames in one
        batched MTCNN pass on the detector's device. Selected as `detect` selects (threshold,
        `max_faces`, left to right).
        """
        from .mtcnn import Cut

        on_device = any(_device_shape(frame) is not None for frame in frames)
        # Host frames: only the squares are shrunk (by Pillow, as the copy's pixels), not the
        # whole frame, which would cost more than the search of the squares.
        copies = self._search_copies(frames) if on_device else [None] * len(frames)
        squares: list[_Square] = []
        pixels: list[torch.Tensor] = []
        cuts: list[Cut] = []
        searched: list[_SearchCopy] = []
        for n, (frame, copy, faces) in enumerate(zip(frames, copies, near)):
            host = _host_pixels(frame) if copy is None else None
            if host is not None:
                height, width = host.shape[:2]
                small_w, small_h = self._copy_size(width, height)
                # The copy's scales, without its pixels (an empty tensor of its size).
                copy = self._copy(torch.empty(small_h, small_w, 0), width, height)
            assert copy is not None
            small_h, small_w = int(copy.pixels.shape[0]), int(copy.pixels.shape[1])
            searched.append(copy)
            mine: list[_Square] = []
            for (x, y, w, h), reach in faces:
                side = math.sqrt(w / copy.scale_x * h / copy.scale_y)
                cx, cy = (x + w / 2) / copy.scale_x, (y + h / 2) / copy.scale_y
                half = reach * side + MTCNN_MIN_FACE
                # A face at the frame's edge is searched down to a share of its visible part:
                # its box there may be larger than the face that comes into the picture.
                seen = math.sqrt(
                    max(0.0, min(x + w, small_w * copy.scale_x) - max(x, 0.0))
                    / copy.scale_x
                    * max(0.0, min(y + h, small_h * copy.scale_y) - max(y, 0.0))
                    / copy.scale_y
                )
                square = _Square(
                    n,
                    max(0, math.floor(cx - half)),
                    max(0, math.floor(cy - half)),
                    min(small_w, math.ceil(cx + half)),
                    min(small_h, math.ceil(cy + half)),
                    max(copy.min_face, _SMALLEST_CHANGE * min(side, seen)),
                )
                if min(square.right - square.left, square.bottom - square.top) < square.least:
                    continue  # the face has left the picture
                # Overlapping squares are one rectangle: one search, and the frame's windows.
                while other := next((o for o in mine if square.meets(o)), None):
                    square = square.joined(other)
                    mine.remove(other)
                mine.append(square)
            for square in mine:
                if host is not None:
                    cut = _copy_part(host, (small_w, small_h), square)
                else:
                    cut = copy.pixels[square.top : square.bottom, square.left : square.right]
                squares.append(square)
                pixels.append(cut)
                cuts.append(Cut(square.top, square.left, small_h, small_w, square.least))
        rows: list[list[np.ndarray]] = [[] for _ in frames]
        if squares:
            min_faces = [searched[s.frame].min_face for s in squares]
            found = self._mtcnn.detect(pixels, min_faces, cuts)
            host_rows = torch.cat(found).double().cpu().numpy()
            ends = np.cumsum([len(boxes) for boxes in found])
            for square, part in zip(squares, np.split(host_rows, ends[:-1])):
                rows[square.frame].append(part[square.holds(part, searched[square.frame])])
        out = []
        for copy, parts in zip(searched, rows):
            merged = np.concatenate(parts) if parts else np.zeros((0, 5))
            out.append(self._select(copy, merged[_merged(merged)]))
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


def _copy_part(pixels: np.ndarray, size: tuple[int, int], square: _Square) -> torch.Tensor:
    """The pixels `square` covers of the frame's search copy of `size` (width, height), made
    from the frame's pixels near it alone: Pillow computes each copy pixel from its own place
    in the frame, so a part shrunk with the whole frame's scale and offsets is the same pixels
    (exactly when the scale is a binary fraction, as 1.25 for 1280 -> 1024 and 1.875 for 1920)."""
    height, width = pixels.shape[:2]
    if size == (width, height):
        part = pixels[square.top : square.bottom, square.left : square.right]
    else:
        scale_x, scale_y = width / size[0], height / size[1]
        # Bilinear reads up to one scale's width around a pixel's centre: a margin of more.
        margin_x, margin_y = math.ceil(scale_x) + 2, math.ceil(scale_y) + 2
        x0 = max(0, math.floor(square.left * scale_x) - margin_x)
        y0 = max(0, math.floor(square.top * scale_y) - margin_y)
        x1 = min(width, math.ceil(square.right * scale_x) + margin_x)
        y1 = min(height, math.ceil(square.bottom * scale_y) + margin_y)
        box = (
            square.left * scale_x - x0,
            square.top * scale_y - y0,
            square.right * scale_x - x0,
            square.bottom * scale_y - y0,
        )
        near = Image.fromarray(np.ascontiguousarray(pixels[y0:y1, x0:x1]))
        target = (square.right - square.left, square.bottom - square.top)
        part = np.asarray(near.resize(target, Image.Resampling.BILINEAR, box=box))
    return torch.from_numpy(np.require(part, np.uint8, ["C", "W"]))


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
