"""Annotated pictures as pure functions: image + predictions in, new PIL image out.

Text is rendered at a fixed pixel size and the photo is scaled to the panel, so the listing is
equally legible for a 100-pixel crop and a 6000-pixel photo (the reference scales its font with
the image width instead).
"""
from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..aus import AU_IDS, AU_NAMES
from ..records import FaceRecord

FONT_PX = 18
LINE_PX = 24
PAD = 12
ROWS = 21  # AUs per column: 41 AUs in two columns, as in the reference's picture
BLACK, RED, WHITE = (0, 0, 0), (220, 0, 0), (255, 255, 255)
BOX_COLORS = ((0, 200, 0), (0, 120, 255), (255, 160, 0), (200, 0, 200), (0, 200, 200))
MAX_PHOTO_WIDTH = 4000
"""The photo beside the panels is never wider than this, however long and thin it is."""


@functools.lru_cache(maxsize=8)
def _font(size: int = FONT_PX) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def au_label(index: int, prob: float) -> str:
    return f"{AU_NAMES[index]} -- AU{AU_IDS[index]}: {prob:.2f}"


def _panel(face: FaceRecord, probs: np.ndarray, threshold: float,
           header: str | None) -> Image.Image:
    """White block listing all 41 AUs in two columns, those at or above threshold in red."""
    font = _font()
    labels = [au_label(i, float(p)) for i, p in enumerate(probs)]
    col_w = int(max(font.getlength(s) for s in labels)) + 2 * PAD
    top = PAD + (LINE_PX + PAD // 2 if header else 0)
    panel = Image.new("RGB", (2 * col_w, top + ROWS * LINE_PX + PAD), WHITE)
    draw = ImageDraw.Draw(panel)
    if header:
        draw.text((PAD, PAD), header, fill=BOX_COLORS[face.face_id % len(BOX_COLORS)], font=font)
    for i, (label, prob) in enumerate(zip(labels, probs)):
        col, row = divmod(i, ROWS)
        draw.text((col * col_w + PAD, top + row * LINE_PX), label, font=font,
                  fill=RED if prob >= threshold else BLACK)
    return panel


def _draw_boxes(image: Image.Image, faces: Sequence[FaceRecord], scale: float) -> None:
    draw = ImageDraw.Draw(image)
    font = _font()
    for face in faces:
        if face.box is None:
            continue
        x, y, w, h = (v * scale for v in face.box)
        color = BOX_COLORS[face.face_id % len(BOX_COLORS)]
        draw.rectangle((x, y, x + w, y + h), outline=color, width=3)
        draw.text((x + 4, max(0.0, y - LINE_PX)), f"face {face.face_id}", fill=color, font=font)


def annotate_image(image: Image.Image, faces: Sequence[FaceRecord], *, threshold: float = 0.5,
                   title: str | None = None, show_boxes: bool = True) -> Image.Image:
    """The photo (boxes and ids drawn) with an AU panel per face beside it.

    Panels are laid out in a grid of at most two rows; the photo is scaled to the panels' height.
    `show_boxes` False (the whole image is the face) draws neither boxes nor face headers.
    `title` (e.g. an untrained-weights warning) is printed in red above everything.
    """
    faces = [f for f in faces if f.success]
    panels = [_panel(f, f.probs, threshold, f"face {f.face_id}" if show_boxes else None)
              for f in faces if f.probs is not None]
    if not panels:
        empty = Image.new("RGB", (2 * 240, ROWS * LINE_PX + 2 * PAD), WHITE)
        ImageDraw.Draw(empty).text((PAD, PAD), "no face found", fill=RED, font=_font())
        panels = [empty]
    rows = min(len(panels), 2)
    cols = math.ceil(len(panels) / rows)
    cell_w = max(p.width for p in panels)
    cell_h = max(p.height for p in panels)
    height = rows * cell_h
    scale = min(height / image.height, MAX_PHOTO_WIDTH / image.width)
    photo = image.convert("RGB").resize((max(1, round(image.width * scale)),
                                         max(1, round(image.height * scale))),
                                        Image.Resampling.BILINEAR)
    if show_boxes:
        _draw_boxes(photo, faces, scale)
    title_h = LINE_PX + PAD if title else 0
    canvas = Image.new("RGB", (photo.width + cols * cell_w, height + title_h), WHITE)
    canvas.paste(photo, (0, title_h))
    for i, panel in enumerate(panels):
        col, row = divmod(i, rows)
        canvas.paste(panel, (photo.width + col * cell_w, title_h + row * cell_h))
    if title:
        ImageDraw.Draw(canvas).text((PAD, PAD // 2), title, fill=RED, font=_font())
    return canvas


def annotate_frame(frame: np.ndarray, faces: Sequence[FaceRecord], *, threshold: float = 0.5,
                   top: int = 6, title: str | None = None) -> np.ndarray:
    """A video frame (H x W x 3 RGB) with face boxes and, under each, a compact bar panel of
    its `top` most probable AUs (active ones in red). Same size as the input frame."""
    faces = [f for f in faces if f.success]
    image = Image.fromarray(frame)
    scale_px = max(12, min(22, frame.shape[0] // 30))
    font = _font(scale_px)
    draw = ImageDraw.Draw(image)
    _draw_boxes(image, faces, 1.0)
    for face in faces:
        probs = face.probs
        if face.box is None or probs is None:
            continue
        x, y, w, h = face.box
        order = np.argsort(-probs)[:top]
        bar_w = max(60.0, w)
        y0 = min(y + h + 4, frame.shape[0] - top * (scale_px + 4) - 4)
        x0 = min(max(0.0, x), max(0.0, frame.shape[1] - bar_w - 4))
        draw.rectangle((x0, y0, x0 + bar_w, y0 + top * (scale_px + 4)), fill=(255, 255, 255))
        for k, idx in enumerate(order):
            prob = float(probs[idx])
            yy = y0 + k * (scale_px + 4)
            color = RED if prob >= threshold else (90, 90, 90)
            draw.rectangle((x0, yy + 2, x0 + bar_w * prob, yy + scale_px + 2), fill=(255, 200, 200)
                           if prob >= threshold else (220, 220, 220))
            draw.text((x0 + 2, yy + 1), f"AU{AU_IDS[idx]} {prob:.2f}", fill=color, font=font)
    if title:
        draw.text((8, 8), title, fill=RED, font=font)
    return np.asarray(image)
