"""The crop rule: each face is cut out the way OpenGraphAU's training crops framed faces.

The models were trained on square 256x256 face crops made with MTCNN, so a face is cut out as a
square around MTCNN's box, widened by `MARGIN`, and resized to `CROP_SIZE`; the model's
`EvalTransform` then takes it from there. `square_crop` is the exact (Pillow) form; `crop_faces`
the batched tensor form for GPUs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image

from ..model.transforms import resize_pixels
from ..records import Box

CROP_SIZE = 256
"""Side of every crop: the size of the training crops, which EvalTransform expects."""

MARGIN = 0.45
"""How much wider than MTCNN's box the square crop is: side = max(w, h) * (1 + MARGIN).

Measured, not guessed: on the reference's six framed demo faces plus skimage's astronaut
framed the same way, the crop square overlaps the original frame best (mean IoU 0.844,
flat from 0.43 to 0.45) at this margin, so a well-framed crop comes out nearly unchanged.
"""


def crop_box(box: Box, margin: float = MARGIN) -> Box:
    """The square (x, y, side, side) centred on `box`, side = max(w, h) * (1 + margin).

    Square because the training crops were square: stretching a non-square box would
    distort the face geometry the action-unit heads learned.
    """
    x, y, w, h = box
    side = max(w, h) * (1.0 + margin)
    cx, cy = x + w / 2.0, y + h / 2.0
    return (cx - side / 2.0, cy - side / 2.0, side, side)


def _pixel_square(box: Box, margin: float) -> tuple[int, int, int]:
    """`crop_box` snapped to whole pixels (at most half a pixel off): left, top, side."""
    left, top, side, _ = crop_box(box, margin)
    return round(left), round(top), max(1, round(side))


def square_crop(
    image: Image.Image, box: Box, margin: float = MARGIN, size: int = CROP_SIZE
) -> Image.Image:
    """Cut `crop_box(box, margin)` out of `image` and resize it to size x size (bilinear).

    The square is snapped to whole pixels so the result is an exact crop of the original.
    Whatever part of it lies outside the image is black: a constant carries no facial
    structure, while replicating the edge row smears hair or skin into stripes the network
    could read as wrinkles or shadows; black is also what facenet-pytorch's own `extract_face`
    produces for faces at the border.
    """
    left, top, side = _pixel_square(box, margin)
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    canvas = Image.new("RGB", (side, side), (0, 0, 0))
    inside = (max(left, 0), max(top, 0), min(left + side, rgb.width), min(top + side, rgb.height))
    if inside[0] < inside[2] and inside[1] < inside[3]:
        canvas.paste(rgb.crop(inside), (inside[0] - left, inside[1] - top))
    return canvas.resize((size, size), Image.Resampling.BILINEAR)


def crop_faces(
    image: torch.Tensor, boxes: Sequence[Box], margin: float = MARGIN, size: int = CROP_SIZE
) -> torch.Tensor:
    """`square_crop` for a (3, H, W) uint8 tensor on any device: (N, 3, size, size) uint8.

    The same pixel squares and black outside; the resize is torch's antialiased bilinear, which
    follows Pillow's filter to within rounding (one grey level), so on a GPU the crops never
    leave the device.
    """
    _, height, width = image.shape
    out = image.new_zeros((len(boxes), 3, size, size))
    for n, box in enumerate(boxes):
        left, top, side = _pixel_square(box, margin)
        x0, y0 = max(left, 0), max(top, 0)
        x1, y1 = min(left + side, width), min(top + side, height)
        if x0 >= x1 or y0 >= y1:
            continue
        canvas = image.new_zeros((3, side, side))
        canvas[:, y0 - top : y1 - top, x0 - left : x1 - left] = image[:, y0:y1, x0:x1]
        out[n] = resize_pixels(canvas, (size, size))
    return out
