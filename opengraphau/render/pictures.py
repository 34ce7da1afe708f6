"""Annotated pictures as pure functions: image + predictions in, new PIL image out.

Text is rendered at a fixed pixel size and the photo is scaled to the panel, so the listing is
equally legible for a 100-pixel crop and a 6000-pixel photo (the reference scales its font with
the image width instead).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..aus import AU_IDS, AU_NAMES
from ..records import UNCONFIRMED, FaceRecord
from ..thresholds import ThresholdLike, as_thresholds

FONT_PX = 18
LINE_PX = 24
PAD = 12
ROWS = 21  # AUs per column: 41 AUs in two columns, as in the reference's picture
BLACK, RED, WHITE = (0, 0, 0), (220, 0, 0), (255, 255, 255)
#: Face colours, told apart at a glance (no red: red marks active AUs).
BOX_COLORS = (
    (0, 200, 0),
    (0, 120, 255),
    (255, 160, 0),
    (200, 0, 200),
    (0, 200, 200),
    (140, 90, 40),
    (255, 105, 180),
    (90, 40, 160),
    (180, 180, 0),
    (0, 110, 70),
    (120, 170, 255),
    (60, 60, 60),
)
MAX_PHOTO_WIDTH = 4000
"""The photo beside the panels is never wider than this, however long and thin it is."""


@functools.lru_cache(maxsize=8)
def _font(size: int = FONT_PX) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def au_label(index: int, prob: float) -> str:
    return f"{AU_NAMES[index]} -- AU{AU_IDS[index]}: {prob:.2f}"


def _panel(
    face: FaceRecord, probs: np.ndarray, threshold: ThresholdLike, header: str | None
) -> Image.Image:
    """White block listing all 41 AUs in two columns, those at or above their threshold in
    red."""
    active = as_thresholds(threshold).active(probs)
    font = _font()
    labels = [au_label(i, float(p)) for i, p in enumerate(probs)]
    col_w = int(max(font.getlength(s) for s in labels)) + 2 * PAD
    top = PAD + (LINE_PX + PAD // 2 if header else 0)
    panel = Image.new("RGB", (2 * col_w, top + ROWS * LINE_PX + PAD), WHITE)
    draw = ImageDraw.Draw(panel)
    if header:
        draw.text((PAD, PAD), header, fill=BOX_COLORS[face.face_id % len(BOX_COLORS)], font=font)
    for i, (label, on) in enumerate(zip(labels, active)):
        col, row = divmod(i, ROWS)
        draw.text(
            (col * col_w + PAD, top + row * LINE_PX),
            label,
            font=font,
            fill=RED if on else BLACK,
        )
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


def annotate_image(
    image: Image.Image,
    faces: Sequence[FaceRecord],
    *,
    threshold: ThresholdLike = 0.5,
    title: str | None = None,
    show_boxes: bool = True,
) -> Image.Image:
    """The photo (boxes and ids drawn) with an AU panel per face beside it.

    Panels are laid out in a grid of at most two rows; the photo is scaled to the panels' height.
    `show_boxes` False (the whole image is the face) draws neither boxes nor face headers.
    `title` (e.g. an untrained-weights warning) is printed in red above everything.
    """
    faces = [f for f in faces if f.success]
    panels = [
        _panel(f, f.probs, threshold, f"face {f.face_id}" if show_boxes else None)
        for f in faces
        if f.probs is not None
    ]
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
    photo = image.convert("RGB").resize(
        (max(1, round(image.width * scale)), max(1, round(image.height * scale))),
        Image.Resampling.BILINEAR,
    )
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


Rect = tuple[int, int, int, int]
"""x0, y0, x1, y1 in pixels, x1 and y1 excluded."""

FRAME_BOX_PX = 2
"""Width of a confirmed face's box in a video frame; a face not yet confirmed gets a 1-pixel grey
one and no label."""
UNCONFIRMED_COLOR = (150, 150, 150)
LABEL_PAD = 3
_GAP = 2  # pixels between a box and its label
_CELL = 4  # pixels per cell of the grid searched when no place beside the box is free
_TITLE_AT = 6  # the title's distance from the frame's corner


@dataclass(frozen=True)
class FrameLabel:
    """A face's label in a video frame: its rectangle (all its text is inside), its header
    ("face N") and its AUs, most probable first."""

    face: FaceRecord
    rect: Rect
    aus: tuple[int, ...]
    line_px: int
    named: bool = False
    """Its AU lines carry the AUs' names (where there was room), not only their codes."""


def _font_px(height: int) -> int:
    return max(12, min(22, height // 30))


def track_colors(faces: Sequence[FaceRecord]) -> dict[int, tuple[int, int, int]]:
    """A colour per confirmed face of one frame, different for each while the palette lasts:
    a track keeps its own (`BOX_COLORS[id % n]`) unless a face already on screen has it, then
    it takes the next free one."""
    colors: dict[int, tuple[int, int, int]] = {}
    used: set[int] = set()
    ids = sorted({f.face_id for f in faces if f.face_id != UNCONFIRMED})
    for face_id in ids:
        n = len(BOX_COLORS)
        index = next((k % n for k in range(face_id, face_id + n) if k % n not in used), face_id % n)
        used.add(index)
        colors[face_id] = BOX_COLORS[index]
    return colors


def _color(face: FaceRecord, colors: dict[int, tuple[int, int, int]]) -> tuple[int, int, int]:
    if face.face_id == UNCONFIRMED:
        return UNCONFIRMED_COLOR
    return colors.get(face.face_id, BOX_COLORS[face.face_id % len(BOX_COLORS)])


def _au_text(index: int, prob: float, named: bool = False) -> str:
    name = f" {AU_NAMES[index]}" if named else ""
    return f"AU{AU_IDS[index]}{name} {prob:.2f}"


def _intersects(a: Rect, b: Rect) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _box_rect(face: FaceRecord) -> Rect:
    assert face.box is not None
    x, y, w, h = face.box
    return (math.floor(x), math.floor(y), math.ceil(x + w), math.ceil(y + h))


def _free_cell(
    size: tuple[int, int], taken: list[Rect], faces: list[Rect], box: Rect, width: int, height: int
) -> Rect | None:
    """The free place for a width x height label nearest to `box`, preferring one that covers no
    face, on a grid of _CELL pixels (cells touched by a taken rectangle count as taken)."""
    cols, rows = size[0] // _CELL, size[1] // _CELL
    w, h = math.ceil(width / _CELL), math.ceil(height / _CELL)
    if w > cols or h > rows:
        return None

    def counts(rects: list[Rect]) -> np.ndarray:
        """Per top-left cell, how many taken cells a label there would cover."""
        grid = np.zeros((rows + 1, cols + 1), np.int32)
        for x0, y0, x1, y1 in rects:
            grid[
                max(0, y0 // _CELL) + 1 : max(0, -(-y1 // _CELL)) + 1,
                max(0, x0 // _CELL) + 1 : max(0, -(-x1 // _CELL)) + 1,
            ] = 1
        total = grid.cumsum(0).cumsum(1)
        return total[h:, w:] - total[:-h, w:] - total[h:, :-w] + total[:-h, :-w]

    free = counts(taken) == 0
    if not free.any():
        return None
    ys, xs = np.mgrid[0 : rows - h + 1, 0 : cols - w + 1]
    centre_x, centre_y = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    distance = np.hypot((xs + w / 2) * _CELL - centre_x, (ys + h / 2) * _CELL - centre_y)
    score = np.where(free, distance + (counts(faces) > 0) * 1e9, np.inf)
    row, col = np.unravel_index(int(np.argmin(score)), score.shape)
    x0, y0 = int(col) * _CELL, int(row) * _CELL
    return (x0, y0, x0 + width, y0 + height)


def _place(
    size: tuple[int, int], taken: list[Rect], faces: list[Rect], box: Rect, width: int, height: int
) -> Rect | None:
    """Where a width x height label of `box` goes: below, above, right or left of it (moved
    inside the frame), the first on no other label, preferring one on no face; else the nearest
    free place; None when there is none."""
    if width > size[0] or height > size[1]:
        return None
    x0, y0, x1, y1 = box
    corners = [
        (x0, y1 + _GAP),
        (x1 - width, y1 + _GAP),
        (x0, y0 - _GAP - height),
        (x1 - width, y0 - _GAP - height),
        (x1 + _GAP, y0),
        (x0 - _GAP - width, y0),
        (x1 + _GAP, y1 - height),
        (x0 - _GAP - width, y1 - height),
    ]
    options: list[tuple[bool, int, Rect]] = []  # (covers a face, preference, where)
    for x, y in corners:
        x, y = min(max(0, x), size[0] - width), min(max(0, y), size[1] - height)
        rect = (x, y, x + width, y + height)
        if not any(_intersects(rect, other) for other in taken):
            options.append((any(_intersects(rect, face) for face in faces), len(options), rect))
    if options and not min(options)[0]:
        return min(options)[2]
    return _free_cell(size, taken, faces, box, width, height) or (
        min(options)[2] if options else None
    )


def frame_labels(
    faces: Sequence[FaceRecord], size: tuple[int, int], *, top: int = 6, taken: Sequence[Rect] = ()
) -> list[FrameLabel]:
    """Labels of the confirmed faces of a `size` (width, height) frame: each beside its face if
    it can, never on another label or on `taken`, wholly inside the frame. Larger faces are
    placed first; a label that fits nowhere loses AU lines, down to its header, or is left out.
    AU lines name their AU ("AU12 Lip corner puller 0.83") when the whole label fits so, else
    show codes only.
    """
    font = _font(_font_px(size[1]))
    placed: list[Rect] = list(taken)
    boxes = [_box_rect(f) for f in faces if f.box is not None]
    labels = []
    shown = [
        f for f in faces if f.box is not None and f.probs is not None and f.face_id != UNCONFIRMED
    ]
    for face in sorted(shown, key=lambda f: -(f.box[2] * f.box[3]) if f.box else 0):
        assert face.probs is not None
        order = tuple(int(i) for i in np.argsort(-face.probs)[:top])
        for named in (True, False):
            texts = [
                f"face {face.face_id}",
                *(_au_text(i, float(face.probs[i]), named) for i in order),
            ]
            extents = [font.getbbox(t) for t in texts]
            line_px = math.ceil(max(e[3] for e in extents)) + 2
            width = math.ceil(max(e[2] for e in extents)) + 2 * LABEL_PAD
            fewest = len(texts) if named else 1  # names only on a whole label
            label = None
            for lines in range(len(texts), fewest - 1, -1):
                rect = _place(
                    size, placed, boxes, _box_rect(face), width, lines * line_px + 2 * LABEL_PAD
                )
                if rect is not None:
                    label = FrameLabel(face, rect, order[: lines - 1], line_px, named)
                    break
            if label is not None:
                placed.append(label.rect)
                labels.append(label)
                break
    return labels


def title_rect(title: str, size: tuple[int, int]) -> Rect:
    """The white block at the top left of a `size` (width, height) frame that holds `title`."""
    right, bottom = _font(_font_px(size[1])).getbbox(title)[2:]
    return (
        0,
        0,
        min(size[0], math.ceil(right) + 2 * _TITLE_AT),
        min(size[1], math.ceil(bottom) + 2 * _TITLE_AT),
    )


def annotate_frame(
    frame: np.ndarray,
    faces: Sequence[FaceRecord],
    *,
    threshold: ThresholdLike = 0.5,
    top: int = 6,
    title: str | None = None,
) -> np.ndarray:
    """A video frame (H x W x 3 RGB) with face boxes and, beside each confirmed face, a label:
    its id and its `top` most probable AUs as bars (active ones in red). Labels never overlap
    each other and their text stays on their own background. Same size as the input frame."""
    image = Image.fromarray(frame)
    height, width = frame.shape[:2]
    font = _font(_font_px(height))
    draw = ImageDraw.Draw(image)
    taken = [title_rect(title, (width, height))] if title else []
    colors = track_colors(faces)
    for face in faces:
        if face.box is not None and face.probs is not None:
            draw.rectangle(
                _box_rect(face),
                outline=_color(face, colors),
                width=1 if face.face_id == UNCONFIRMED else FRAME_BOX_PX,
            )
    for label in frame_labels(faces, (width, height), top=top, taken=taken):
        _draw_label(draw, font, label, threshold, _color(label.face, colors))
    if title:
        draw.rectangle((0, 0, taken[0][2] - 1, taken[0][3] - 1), fill=WHITE)
        draw.text((_TITLE_AT, _TITLE_AT), title, fill=RED, font=font)
    return np.asarray(image)


def _draw_label(
    draw: ImageDraw.ImageDraw,
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
    label: FrameLabel,
    threshold: ThresholdLike,
    color: tuple[int, int, int],
) -> None:
    x0, y0, x1, y1 = label.rect
    draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=WHITE)
    row = y0 + LABEL_PAD
    draw.rectangle((x0, y0, x1 - 1, row + label.line_px - 1), fill=color)
    dark = sum(c * w for c, w in zip(color, (0.299, 0.587, 0.114))) < 140
    draw.text(
        (x0 + LABEL_PAD, row),
        f"face {label.face.face_id}",
        font=font,
        fill=WHITE if dark else BLACK,
    )
    assert label.face.probs is not None
    for index in label.aus:
        row += label.line_px
        prob = float(label.face.probs[index])
        active = prob >= as_thresholds(threshold).values[index]
        draw.rectangle(
            (x0, row + 1, x0 + round((x1 - x0 - 1) * prob), row + label.line_px - 2),
            fill=(255, 200, 200) if active else (225, 225, 225),
        )
        draw.text(
            (x0 + LABEL_PAD, row),
            _au_text(index, prob, label.named),
            font=font,
            fill=RED if active else (70, 70, 70),
        )
