"""MTCNN face detection as batched tensor work, with facenet-pytorch's P-, R- and O-Nets.

facenet-pytorch's `detect_face` builds one image pyramid per call (so a batch must share one
size), then crops and area-resizes every candidate box for R-Net and O-Net in a Python loop.
`BatchedMTCNN` computes the same numbers with batched tensor work:

* every area resize (pyramid levels, 24x24 and 48x48 box crops) is read from one integral
  image per image: the same bin edges and the same float32 `sum / kh / kw` as
  `F.interpolate(mode="area")`, bit for bit, because sums of uint8 pixels are exact integers;
* pyramid levels of any size, from any image, share P-Net calls: each level is padded into a
  canvas and the windows that reach into the padding are dropped;
* candidate generation, box regression and every NMS run on all boxes of all images at once,
  per image, with facenet's arithmetic and order of operations, so an image gets in a batch
  what facenet gives it alone (up to the last bits of the convolutions, which depend on the
  batch shape in any implementation).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
from facenet_pytorch.models.mtcnn import ONet, PNet, RNet
from torch import Tensor
from torchvision.ops import batched_nms

_PNET_PIXELS = 1 << 18
"""Canvas pixels per P-Net call. P-Net's big levels are memory bound: a call whose activations
stay in cache runs ~2.5x faster per pixel than one 16-image call (measured on 2 CPU cores)."""

_PAD_WASTE = 0.25
"""Largest share of a shared canvas a smaller pyramid level may leave as padding."""

_CANVAS_STEP = 16
"""P-Net canvases are rounded up to a multiple of this many pixels a side, so that their shapes
recur between batches: a convolution's first call on a new shape costs 1-4 ms more on CPU
(oneDNN builds its kernel), as much as a small level's whole P-Net pass."""

_CROP_BATCH = 512
"""Boxes per R-Net/O-Net call, as in facenet-pytorch: bounds the memory of a huge batch."""


class _Level(NamedTuple):
    """One pyramid level of one image: the unit P-Net sees."""

    image: int
    scale: float
    height: int
    width: int


class BatchedMTCNN(torch.nn.Module):
    """MTCNN that batches images of any sizes and vectorizes every per-box step."""

    def __init__(
        self,
        *,
        thresholds: Sequence[float] = (0.6, 0.7, 0.7),
        factor: float = 0.709,
        device: str | torch.device = "cpu",
    ) -> None:
        """thresholds: P-, R- and O-Net face probabilities a box must pass (facenet's defaults).
        factor: ratio between pyramid levels (facenet's default).
        device: where the networks live and the work is done; images are moved there.
        """
        super().__init__()
        if len(thresholds) != 3:
            raise ValueError(f"thresholds must be 3 numbers (P-, R-, O-Net), got {thresholds}")
        self.device = torch.device(device)
        # Channels-last canvases and crops: the small convolutions run 1.5-1.7x faster so (CPU),
        # and change the probabilities by ~1e-6 at most.
        last = torch.channels_last
        self.pnet = PNet(pretrained=True).eval().to(self.device, memory_format=last)
        self.rnet = RNet(pretrained=True).eval().to(self.device, memory_format=last)
        self.onet = ONet(pretrained=True).eval().to(self.device, memory_format=last)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.factor = float(factor)

    @torch.inference_mode()
    def detect(self, images: Sequence[Tensor], min_face: Sequence[float] | float) -> list[Tensor]:
        """images: uint8 RGB tensors (H, W, 3) of any, differing, sizes (the search copies), on
        any device. min_face: the minimum face size per image (or one for all).

        Returns per image an (N, 5) float32 tensor x1, y1, x2, y2, probability on `device`: the
        boxes facenet's `detect_face` returns for that image, in its order (probability, highest
        first). An image too small to hold `min_face` has none (facenet fails on it).
        """
        return [boxes for boxes, _ in self.detect_with_landmarks(images, min_face)]

    @torch.inference_mode()
    def detect_with_landmarks(
        self, images: Sequence[Tensor], min_face: Sequence[float] | float
    ) -> list[tuple[Tensor, Tensor]]:
        """`detect`, plus per image the (N, 5, 2) x, y of O-Net's five landmarks (eyes, nose,
        mouth corners), which O-Net computes anyway."""
        images = [self._checked(image) for image in images]
        if isinstance(min_face, (int, float)):
            min_faces = [float(min_face)] * len(images)
        else:
            min_faces = [float(m) for m in min_face]
            if len(min_faces) != len(images):
                raise ValueError(f"{len(min_faces)} min_face values for {len(images)} images")
        if any(not m > 0 for m in min_faces):
            raise ValueError(f"min_face must be > 0, got {min_faces}")
        if not images:
            return []
        tables = [_integral(image) for image in images]
        sizes = torch.tensor([image.shape[:2] for image in images], device=self.device)
        boxes, image_of = self._propose(tables, min_faces)
        boxes, image_of = self._refine(boxes, image_of, sizes, tables)
        boxes, points, image_of = self._output(boxes, image_of, sizes, tables)
        counts = torch.bincount(image_of, minlength=len(images)).tolist()
        return list(zip(boxes.split(counts), points.split(counts)))

    def _checked(self, image: Tensor) -> Tensor:
        if image.dtype != torch.uint8 or image.dim() != 3 or image.shape[2] != 3:
            raise ValueError(
                f"images must be uint8 (H, W, 3) tensors, got {image.dtype} {tuple(image.shape)}"
            )
        return image.to(self.device)

    # -- stage 1: P-Net over the pyramids ------------------------------------------------------

    def _propose(self, tables: list[Tensor], min_faces: list[float]) -> tuple[Tensor, Tensor]:
        """P-Net candidates, NMS within each level (IoU 0.5) then within each image (IoU 0.7),
        regressed and squared: (N, 5) boxes + probability, and their images; per image in
        facenet's order (probability, ties by level, row, column)."""
        sizes = [(table.shape[0] - 1, table.shape[1] - 1) for table in tables]
        levels = [
            _Level(index, scale, int(height * scale + 1), int(width * scale + 1))
            for index, ((height, width), min_face) in enumerate(zip(sizes, min_faces))
            for scale in _pyramid(height, width, min_face, self.factor)
        ]
        bins: dict[tuple[int, ...], tuple[Tensor, Tensor, Tensor, Tensor]] = {}
        found = [
            self._pnet_candidates(bucket, shape, levels, tables, bins)
            for bucket, shape in _buckets(levels)
        ]
        if not found:
            nothing = torch.empty(0, 5, device=self.device)
            return nothing, torch.empty(0, dtype=torch.long, device=self.device)
        level_of, y, x, score, reg = (torch.cat(parts) for parts in zip(*found))
        # facenet's candidate order: image, level, then row-major within the level.
        most = max(max(lv.height, lv.width) for lv in levels)
        order = torch.argsort((level_of * most + y) * most + x)
        level_of, y, x, score, reg = level_of[order], y[order], x[order], score[order], reg[order]
        corner = torch.stack([x, y], dim=1).to(score.dtype)
        top_left, bottom_right = torch.empty_like(corner), torch.empty_like(corner)
        # Divided by each level's scale as a Python number, as facenet does: the kernel for a
        # scalar divisor differs by device (CUDA multiplies by its reciprocal).
        for indices, scale in _distinct([lv.scale for lv in levels]):
            on = torch.isin(level_of, torch.tensor(indices, device=self.device))[:, None]
            top_left = torch.where(on, ((2 * corner + 1) / scale).floor(), top_left)
            bottom_right = torch.where(on, ((2 * corner + 12) / scale).floor(), bottom_right)
        boxes = torch.cat([top_left, bottom_right], dim=1)
        image_of = torch.tensor([lv.image for lv in levels], device=self.device)[level_of]
        # The boxes are whole numbers: batched_nms' per-group coordinate offsets are exact here.
        keep = batched_nms(boxes, score, level_of, 0.5).sort().values
        keep = keep[batched_nms(boxes[keep], score[keep], image_of[keep], 0.7).sort().values]
        keep = keep[_by_image_then_score(image_of[keep], score[keep], ties_last_first=False)]
        boxes, score, reg, image_of = boxes[keep], score[keep], reg[keep], image_of[keep]
        width, height = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        regressed = torch.stack(
            [
                boxes[:, 0] + reg[:, 0] * width,
                boxes[:, 1] + reg[:, 1] * height,
                boxes[:, 2] + reg[:, 2] * width,
                boxes[:, 3] + reg[:, 3] * height,
            ],
            dim=1,
        )
        return torch.cat([_square(regressed), score[:, None]], dim=1), image_of

    def _pnet_candidates(
        self,
        bucket: list[int],
        shape: tuple[int, int],
        levels: list[_Level],
        tables: list[Tensor],
        bins: dict[tuple[int, ...], tuple[Tensor, Tensor, Tensor, Tensor]],
    ) -> tuple[Tensor, ...]:
        """Run P-Net once on the levels `bucket`, each resized into its slot of one canvas of
        `shape` (height, width); return the windows facenet would see above threshold: level,
        row, column, probability, regression (N, 4)."""
        height, width = shape
        padded = any(levels[i].height != height or levels[i].width != width for i in bucket)
        fill = torch.zeros if padded else torch.empty
        canvas = fill(len(bucket), height, width, 3, device=self.device)
        for slot, i in enumerate(bucket):
            table, level = tables[levels[i].image], levels[i]
            key = (table.shape[0], table.shape[1], level.height, level.width)
            if key not in bins:
                bins[key] = _level_bins(key[0] - 1, key[1] - 1, *key[2:], self.device)
            _resize_level(table, *bins[key], canvas[slot, : level.height, : level.width])
        p = self.pnet
        features = p.prelu1(p.conv1(canvas.permute(0, 3, 1, 2)))
        # A level of odd height (width) ends with a max-pool window (ceil_mode) holding one conv1
        # row (column) only; in a taller canvas the next row exists: -inf keeps it out of the max.
        for slot, i in enumerate(bucket):
            if levels[i].height % 2 and levels[i].height < height:
                features[slot, :, levels[i].height - 2, :] = float("-inf")
            if levels[i].width % 2 and levels[i].width < width:
                features[slot, :, :, levels[i].width - 2] = float("-inf")
        features = _max_pool(features, 2)
        features = p.prelu3(p.conv3(p.prelu2(p.conv2(features))))
        probability = p.softmax4_1(p.conv4_1(features))[:, 1]
        regression = p.conv4_2(features)
        # Window (r, c) reads input rows 2r..2r+11: those past the level's own size are padding.
        rows = torch.tensor([(levels[i].height - 1) // 2 - 4 for i in bucket], device=self.device)
        cols = torch.tensor([(levels[i].width - 1) // 2 - 4 for i in bucket], device=self.device)
        out_rows = torch.arange(probability.shape[1], device=self.device)
        out_cols = torch.arange(probability.shape[2], device=self.device)
        inside = (out_rows < rows[:, None])[:, :, None] & (out_cols < cols[:, None])[:, None, :]
        hit, y, x = torch.nonzero((probability >= self.thresholds[0]) & inside, as_tuple=True)
        level_of = torch.tensor(bucket, device=self.device)[hit]
        return level_of, y, x, probability[hit, y, x], regression[hit, :, y, x]

    # -- stage 2: R-Net ------------------------------------------------------------------------

    def _refine(
        self, boxes: Tensor, image_of: Tensor, sizes: Tensor, tables: list[Tensor]
    ) -> tuple[Tensor, Tensor]:
        """R-Net on 24x24 crops; keep probability > threshold, NMS (IoU 0.7) per image, regress,
        square."""
        boxes, image_of, crops = _crops(boxes, image_of, sizes, tables, 24)
        regression, probability = _batched(_rnet, self.rnet, crops)
        score = probability[:, 1]
        passed = score > self.thresholds[1]
        boxes = torch.cat([boxes[passed, :4], score[passed, None]], dim=1)
        image_of, regression = image_of[passed], regression[passed]
        keep = _greedy_nms(boxes[:, :4], boxes[:, 4], image_of, 0.7, minimum=False)
        return _square(_regress(boxes[keep], regression[keep])), image_of[keep]

    # -- stage 3: O-Net ------------------------------------------------------------------------

    def _output(
        self, boxes: Tensor, image_of: Tensor, sizes: Tensor, tables: list[Tensor]
    ) -> tuple[Tensor, Tensor, Tensor]:
        """O-Net on 48x48 crops; keep probability > threshold, landmarks, regress, NMS by
        intersection over the smaller box (0.7) per image: boxes, landmarks, images."""
        boxes, image_of, crops = _crops(boxes, image_of, sizes, tables, 48)
        regression, marks, probability = _batched(_onet, self.onet, crops)
        score = probability[:, 1]
        passed = score > self.thresholds[2]
        boxes = torch.cat([boxes[passed, :4], score[passed, None]], dim=1)
        image_of, regression, marks = image_of[passed], regression[passed], marks[passed]
        width = boxes[:, 2:3] - boxes[:, 0:1] + 1
        height = boxes[:, 3:4] - boxes[:, 1:2] + 1
        x = width * marks[:, :5] + boxes[:, 0:1] - 1
        y = height * marks[:, 5:] + boxes[:, 1:2] - 1
        points = torch.stack([x, y], dim=2)
        boxes = _regress(boxes, regression)
        keep = _greedy_nms(boxes[:, :4], boxes[:, 4], image_of, 0.7, minimum=True)
        return boxes[keep], points[keep], image_of[keep]


def _pyramid(height: int, width: int, min_face: float, factor: float) -> list[float]:
    """facenet's scales, float for float: the smallest face maps to P-Net's 12 px window and
    levels shrink by `factor` while the shorter side still holds a window."""
    scale = 12.0 / min_face
    shorter = min(height, width) * scale
    scales = []
    while shorter >= 12:
        scales.append(scale)
        scale *= factor
        shorter *= factor
    return scales


def _distinct(values: list[float]) -> list[tuple[list[int], float]]:
    """(indices, value) per distinct value, in first-seen order."""
    groups: dict[float, list[int]] = defaultdict(list)
    for index, value in enumerate(values):
        groups[value].append(index)
    return [(indices, value) for value, indices in groups.items()]


def _buckets(levels: list[_Level]) -> list[tuple[list[int], tuple[int, int]]]:
    """Group pyramid levels into P-Net calls, each with its canvas (height, width): largest
    first, a level opens a canvas of its size rounded up to `_CANVAS_STEP` or joins one that
    holds it with little padding while the call stays within `_PNET_PIXELS` (one level at
    least)."""
    order = sorted(range(len(levels)), key=lambda i: -levels[i].height * levels[i].width)
    buckets: list[list[int]] = []
    shapes: list[tuple[int, int]] = []
    for i in order:
        h, w = levels[i].height, levels[i].width
        for bucket, (bh, bw) in zip(buckets, shapes):
            fits = h <= bh and w <= bw and bh * bw - h * w <= _PAD_WASTE * bh * bw
            if fits and (len(bucket) + 1) * bh * bw <= _PNET_PIXELS:
                bucket.append(i)
                break
        else:
            buckets.append([i])
            shapes.append((_round_up(h, _CANVAS_STEP), _round_up(w, _CANVAS_STEP)))
    return list(zip(buckets, shapes))


def _round_up(n: int, step: int) -> int:
    return -(-n // step) * step


def _max_pool(x: Tensor, size: int) -> Tensor:
    """MTCNN's nn.MaxPool2d(size, 2, ceil_mode=True), separably, as elementwise maxima of
    strided views: the same values in the input's memory layout, 3-10x faster on CPU than the
    pooling kernel, whose index bookkeeping costs more than the convolutions around it."""
    return _max_pool_axis(_max_pool_axis(x, 2, size), 3, size)


def _max_pool_axis(x: Tensor, dim: int, size: int) -> Tensor:
    """Max over windows of `size` at stride 2 along `dim`, with ceil_mode's partial last window."""
    n = x.shape[dim]
    full = (n - size) // 2 + 1
    count = full + ((n - size) % 2 == 1 and 2 * full < n)
    shape = list(x.shape)
    shape[dim] = count
    layout = torch.contiguous_format if x.is_contiguous() else torch.channels_last
    out = torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=layout)
    head = out.narrow(dim, 0, full)

    def tap(t: int) -> Tensor:
        return x.narrow(dim, t, 2 * full - 1).unfold(dim, 1, 2).squeeze(-1)

    torch.maximum(tap(0), tap(1), out=head)
    for t in range(2, size):
        torch.maximum(head, tap(t), out=head)
    if count > full:  # one or two lines left
        last = out.narrow(dim, full, 1)
        if n - 2 * full == 1:
            last.copy_(x.narrow(dim, n - 1, 1))
        else:
            torch.maximum(x.narrow(dim, n - 2, 1), x.narrow(dim, n - 1, 1), out=last)
    return out


def _integral(image: Tensor) -> Tensor:
    """(H+1, W+1, 3) summed-area table of a uint8 image, zero first row and column. Integers,
    so every box sum is exact: int32 while 255 * H * W fits, int64 beyond (never float32, which
    rounds). One table per image keeps each allocation small enough to be reused between calls."""
    height, width = image.shape[:2]
    dtype = torch.int32 if 255 * height * width < 2**31 else torch.int64
    table = torch.empty(height + 1, width + 1, 3, dtype=dtype, device=image.device)
    table[0] = 0
    table[1:, 0] = 0
    table[1:, 1:] = image
    return table.cumsum_(0).cumsum_(1)


def _bin_edges(n: Tensor, out: int) -> tuple[Tensor, Tensor]:
    """Adaptive average pooling's bins of lengths n (N,) into `out`: starts floor(i * n / out),
    ends ceil((i + 1) * n / out), each (N, out)."""
    i = torch.arange(out, device=n.device)
    return (i * n[:, None]) // out, ((i + 1) * n[:, None] + out - 1) // out


def _level_bins(
    height: int, width: int, out_h: int, out_w: int, device: torch.device
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """What `_resize_level` reads to shrink a height x width image to out_h x out_w: table rows
    (bin ends, then starts), table columns (likewise), bin heights (out_h, 1, 1) and widths
    (1, out_w, 1)."""
    r0, r1 = _bin_edges(torch.tensor([height], device=device), out_h)
    c0, c1 = _bin_edges(torch.tensor([width], device=device), out_w)
    rows, cols = torch.cat([r1, r0], dim=1)[0], torch.cat([c1, c0], dim=1)[0]
    return rows, cols, (r1 - r0)[0, :, None, None], (c1 - c0)[0, None, :, None]


def _resize_level(
    table: Tensor, rows: Tensor, cols: Tensor, bin_h: Tensor, bin_w: Tensor, out: Tensor
) -> None:
    """Write into `out` (oh, ow, 3) the normalized area resize of a whole image from its table,
    `_level_bins` giving the bins: rows, then columns, each a gather of whole table lines."""
    oh, ow = bin_h.shape[0], bin_w.shape[1]
    lines = table.index_select(0, rows)
    strips = lines[:oh] - lines[oh:]
    corners = strips.index_select(1, cols)
    _normalized(corners[:, :ow] - corners[:, ow:], bin_h, bin_w, out)


def _resize_boxes(
    table: Tensor, top: Tensor, left: Tensor, height: Tensor, width: Tensor, out: Tensor
) -> None:
    """Write into `out` (N, size, size, 3) the normalized area resizes of the N regions
    (top, left, height, width) of one image, from its table: one gather of all bin corners."""
    size = out.shape[1]
    r0, r1 = _bin_edges(height, size)
    c0, c1 = _bin_edges(width, size)
    rows = (torch.cat([r1, r0], dim=1) + top[:, None]) * table.shape[1]
    cols = torch.cat([c1, c0], dim=1) + left[:, None]
    pixels = (rows[:, :, None] + cols[:, None, :]).reshape(-1)
    corners = table.view(-1, 3).index_select(0, pixels).view(len(top), 2 * size, 2 * size, 3)
    sums = corners[:, :size, :size] - corners[:, :size, size:]
    sums -= corners[:, size:, :size]
    sums += corners[:, size:, size:]
    _normalized(sums, (r1 - r0)[:, :, None, None], (c1 - c0)[:, None, :, None], out)


def _normalized(sums: Tensor, bin_h: Tensor, bin_w: Tensor, out: Tensor) -> None:
    """out = (sums / kh / kw - 127.5) * 0.0078125 in float32: adaptive average pooling's own
    arithmetic (its running sums of integers are exact too), then MTCNN's input scaling."""
    out.copy_(sums)
    out.div_(bin_h).div_(bin_w).sub_(127.5).mul_(0.0078125)


def _crops(
    boxes: Tensor, image_of: Tensor, sizes: Tensor, tables: list[Tensor], size: int
) -> tuple[Tensor, Tensor, Tensor]:
    """facenet's crops: each box truncated to integers and clipped to its image, rows y-1..ey-1
    and columns x-1..ex-1, area-resized to size x size and normalized. Boxes with nothing inside
    the image are dropped (facenet would misalign its outputs on them). Returns the boxes and
    images kept and their (N, 3, size, size) crops."""
    corners = boxes[:, :4].trunc().to(torch.int32).long()
    x = corners[:, 0].clamp(min=1)
    y = corners[:, 1].clamp(min=1)
    ex = torch.minimum(corners[:, 2], sizes[image_of, 1])
    ey = torch.minimum(corners[:, 3], sizes[image_of, 0])
    inside = (ey > y - 1) & (ex > x - 1)
    boxes, image_of = boxes[inside], image_of[inside]
    x, y, ex, ey = x[inside], y[inside], ex[inside], ey[inside]
    # Channels-last, as R-/O-Net run fastest (1.5x on CPU); the pixels are written in that order.
    crops = torch.empty(len(boxes), size, size, 3, device=boxes.device).permute(0, 3, 1, 2)
    # Boxes come grouped by image: one gather per image, from its own table.
    start = 0
    for image, count in enumerate(torch.bincount(image_of, minlength=len(tables)).tolist()):
        if count:
            part = slice(start, start + count)
            top, left = y[part] - 1, x[part] - 1
            out = crops[part].permute(0, 2, 3, 1)
            _resize_boxes(tables[image], top, left, ey[part] - top, ex[part] - left, out)
            start += count
    return boxes, image_of, crops


def _batched(
    forward: Callable[[Any, Tensor], tuple[Tensor, ...]], net: torch.nn.Module, crops: Tensor
) -> tuple[Tensor, ...]:
    """forward(net, crops) for all crops, `_CROP_BATCH` at a time (none gives empty outputs)."""
    if crops.shape[0] == 0:
        dummy = torch.zeros(1, *crops.shape[1:], device=crops.device)
        return tuple(t[:0] for t in forward(net, dummy))
    starts = range(0, crops.shape[0], _CROP_BATCH)
    parts = [forward(net, crops[i : i + _CROP_BATCH]) for i in starts]
    return tuple(torch.cat(outputs) for outputs in zip(*parts))


def _flatten(x: Tensor) -> Tensor:
    """facenet's R-/O-Net flattening order (x, y, channel), which their dense weights expect."""
    return x.permute(0, 3, 2, 1).contiguous().view(x.shape[0], -1)


def _rnet(net: RNet, x: Tensor) -> tuple[Tensor, Tensor]:
    """RNet.forward with `_max_pool` for its pooling: regression (N, 4), probabilities (N, 2)."""
    x = _max_pool(net.prelu1(net.conv1(x)), 3)
    x = _max_pool(net.prelu2(net.conv2(x)), 3)
    x = net.prelu4(net.dense4(_flatten(net.prelu3(net.conv3(x)))))
    return net.dense5_2(x), net.softmax5_1(net.dense5_1(x))


def _onet(net: ONet, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """ONet.forward with `_max_pool` for its pooling: regression (N, 4), landmarks (N, 10),
    probabilities (N, 2)."""
    x = _max_pool(net.prelu1(net.conv1(x)), 3)
    x = _max_pool(net.prelu2(net.conv2(x)), 3)
    x = _max_pool(net.prelu3(net.conv3(x)), 2)
    x = net.prelu5(net.dense5(_flatten(net.prelu4(net.conv4(x)))))
    return net.dense6_2(x), net.dense6_3(x), net.softmax6_1(net.dense6_1(x))


def _by_image_then_score(image_of: Tensor, score: Tensor, *, ties_last_first: bool) -> Tensor:
    """Permutation sorting by image, then probability (highest first). Ties keep their order,
    as torchvision's stable sort does, or reverse it (`ties_last_first`), as facenet's final
    numpy argsort read from its end does."""
    if ties_last_first:
        order = torch.argsort(score, stable=True).flip(0)
    else:
        order = torch.argsort(score, stable=True, descending=True)
    return order[torch.argsort(image_of[order], stable=True)]


def _greedy_nms(
    boxes: Tensor, score: Tensor, image_of: Tensor, threshold: float, *, minimum: bool
) -> Tensor:
    """Greedy NMS within each image, all images at once; indices kept, by image then rank.

    minimum=False: torchvision's IoU on (x2 - x1) sides, suppress when IoU > threshold.
    minimum=True: facenet's numpy 'Min' method on (x2 - x1 + 1) sides, overlap over the smaller
    box, keep when overlap <= threshold. Both in float32 with the reference's operation order,
    within one image: facenet's batched coordinate offsets round coordinates and can let images
    touch; one image alone never does.

    The greedy result is the fixed point of "kept = not suppressed by a kept box ranked
    higher": iterating that from "all kept" settles at least one more rank per pass, in
    practice all within a few passes of one batched boolean reduction each.
    """
    if boxes.shape[0] == 0:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    order = _by_image_then_score(image_of, score, ties_last_first=minimum)
    counts = torch.unique_consecutive(image_of[order], return_counts=True)[1]
    width = int(counts.max())
    device = boxes.device
    group = torch.repeat_interleave(torch.arange(len(counts), device=device), counts)
    first = torch.repeat_interleave(counts.cumsum(0) - counts, counts)
    rank = torch.arange(len(order), device=device) - first
    valid = torch.zeros(len(counts), width, dtype=torch.bool, device=device)
    valid[group, rank] = True
    grid = torch.zeros(len(counts), width, 4, dtype=boxes.dtype, device=device)
    grid[group, rank] = boxes[order]
    x1, y1, x2, y2 = (c.unsqueeze(2) for c in grid.unbind(2))
    one = 1 if minimum else 0
    area = (x2 - x1 + one) * (y2 - y1 + one)
    pair = (0, 2, 1)

    def overlap(low: Tensor, high: Tensor) -> Tensor:
        inner = torch.minimum(high, high.permute(pair)) - torch.maximum(low, low.permute(pair))
        return (inner + one).clamp(min=0)

    inter = overlap(x1, x2) * overlap(y1, y2)
    if minimum:
        suppresses = ~(inter / torch.minimum(area, area.permute(pair)) <= threshold)
    else:
        suppresses = inter / (area + area.permute(pair) - inter) > threshold
    later = torch.ones(width, width, dtype=torch.bool, device=device).triu(1)
    suppresses &= later & valid[:, :, None] & valid[:, None, :]
    kept = valid
    while True:
        again = valid & ~(suppresses & kept[:, :, None]).any(1)
        if torch.equal(again, kept):
            break
        kept = again
    return order[kept[group, rank]]


def _regress(boxes: Tensor, reg: Tensor) -> Tensor:
    """R-/O-Net box regression on (x2 - x1 + 1) sides; column 4 (probability) passes through."""
    width = boxes[:, 2] - boxes[:, 0] + 1
    height = boxes[:, 3] - boxes[:, 1] + 1
    moved = torch.stack(
        [
            boxes[:, 0] + reg[:, 0] * width,
            boxes[:, 1] + reg[:, 1] * height,
            boxes[:, 2] + reg[:, 2] * width,
            boxes[:, 3] + reg[:, 3] * height,
        ],
        dim=1,
    )
    return torch.cat([moved, boxes[:, 4:]], dim=1)


def _square(boxes: Tensor) -> Tensor:
    """Grow each box to a square of its longer side about its centre (facenet's `rerec`)."""
    width = boxes[:, 2] - boxes[:, 0]
    height = boxes[:, 3] - boxes[:, 1]
    side = torch.maximum(width, height)
    x1 = boxes[:, 0] + width * 0.5 - side * 0.5
    y1 = boxes[:, 1] + height * 0.5 - side * 0.5
    return torch.cat([torch.stack([x1, y1, x1 + side, y1 + side], dim=1), boxes[:, 4:]], dim=1)
