"""MTCNN face detection as batched tensor work, with facenet-pytorch's P-, R- and O-Nets.

facenet-pytorch's `detect_face` builds one image pyramid per call (so a batch must share one
size), then crops and area-resizes every candidate box for R-Net and O-Net in a Python loop.
`BatchedMTCNN` computes the same numbers with batched tensor work:

* every area resize (pyramid levels, 24x24 and 48x48 box crops) is read from the images'
  integral images, all held in one tensor: the same bin edges and the same float32
  `sum / kh / kw` as `F.interpolate(mode="area")`, bit for bit, because sums of uint8 pixels
  are exact integers; one gather of bin corners fills a whole P-Net canvas, or every crop;
* pyramid levels of any size, from any image, share P-Net calls: each level is padded into a
  canvas and the windows that reach into the padding are dropped;
* so the number of operations grows with the number of P-Net calls, not with the number of
  images or boxes: on a GPU, where each operation costs a kernel launch, a batch of hundreds
  of photos takes a few hundred launches (calls are sized per device: cache-sized on a CPU,
  large on a GPU);
* on a CPU each of torch's threads searches its own share of the images (with fewer images
  than threads, a share has several threads): these small operations share cores better by
  images than by pixels;
* candidate generation, box regression and every NMS run on all boxes of all images at once,
  per image, with facenet's arithmetic and order of operations, so an image gets in a batch
  what facenet gives it alone (up to the last bits of the convolutions, which depend on the
  batch shape in any implementation).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple, TypeVar

import torch
import torch.nn.functional as F
from facenet_pytorch.models.mtcnn import ONet, PNet, RNet
from torch import Tensor
from torchvision.ops import batched_nms, nms


class _Tuning(NamedTuple):
    """How work is cut up on one kind of device: the same numbers come out whatever these are."""

    pnet_pixels: int
    """Canvas pixels per P-Net call. On a CPU P-Net's big levels are memory bound: a call whose
    activations stay in cache runs ~2.5x faster per pixel than one 16-image call (measured on 2
    cores). On a GPU few large calls are what counts (16 M pixels: ~1 GB of activations)."""

    pad_waste: float
    """Largest share of a shared canvas a smaller pyramid level may leave as padding. On a GPU
    the padded pixels cost less than the calls they save: 256 photos of 480-800 px take 14 P-Net
    calls at 0.75 (1.72x the pixels), 1,189 at 0.25 (1.09x), without `pad_slack`."""

    pad_slack: int
    """Padding pixels a level may leave in a shared canvas whatever their share: a small level
    costs more as a call of its own than as padded pixels in another. On a CPU, at 8,192, the
    162 levels of `bench_pipeline`'s first 16 photos take 29 P-Net calls instead of 94 (most
    small levels were calls of one), for 1.17x their pixels instead of 1.12x, and detection
    0.92-0.98x the time (paired rounds, 16 and 48 photos, 1 and 2 threads). On a GPU, at 4,096,
    those 256 photos take 11 calls instead of 14 (1.75x the pixels instead of 1.72x): a guess,
    not yet timed there."""

    crop_batch: int
    """Boxes per R-Net/O-Net call: facenet-pytorch's 512 on a CPU, more on a GPU; bounds the
    memory of a huge batch."""

    nms_grid: int
    """Largest images x candidates^2 grid the dense per-image NMS (`_greedy_nms`) builds at once.
    On a CPU none: torchvision's per-image loops are faster there (10 vs 39 ms for 16 photos'
    P-Net candidates); on a GPU a few dense calls replace one NMS launch per image."""

    thread_shares: bool
    """Whether each of torch's threads searches a share of a batch's images on its own (see
    `BatchedMTCNN._shares`): on a CPU, yes; a GPU runs one batch at a time."""


_TUNING = {
    "cpu": _Tuning(
        pnet_pixels=1 << 18,
        pad_waste=0.25,
        pad_slack=1 << 13,
        crop_batch=512,
        nms_grid=0,
        thread_shares=True,
    ),
    "cuda": _Tuning(
        pnet_pixels=1 << 24,
        pad_waste=0.75,
        pad_slack=1 << 12,
        crop_batch=1 << 14,
        nms_grid=1 << 26,
        thread_shares=False,
    ),
}

_CANVAS_STEP = 16
"""P-Net canvases are rounded up to a multiple of this many pixels a side, so that their shapes
recur between batches: a convolution's first call on a new shape costs 1-4 ms more on CPU
(oneDNN builds its kernel), as much as a small level's whole P-Net pass."""

_REACH = 2
"""Two P-Net windows of one pyramid level overlap with IoU > 0.5 only if they are at most this
many steps apart on the level's grid (rows and columns alike). A window at scale s <= 1 spans
floor((2c + 1) / s) .. floor((2c + 12) / s), 11 / s +- 1 pixels, and its neighbour 3 steps on
starts at least 6 / s - 1 pixels later: their IoU is at most (5 + s) / (17 - 3s) <= 0.43."""


class Cut(NamedTuple):
    """An image that is a part of a larger frame, searched as the frame's own search sees that
    part: the same pyramid scales, pixels and window grid, so that the windows it finds are
    those of the frame's search that lie inside it, with the same probabilities, and R-Net and
    O-Net see the same crops (boxes that reach past the part are clipped to it). Its boxes are
    in the frame's pixels. The cheap search around known faces (`FaceDetector.follow`)."""

    top: int
    left: int
    """Where the image's first pixel is in the frame."""
    height: int
    width: int
    """The frame's size."""
    least: float
    """The smallest face looked for (levels of smaller windows are left out), >= min_face:
    P-Net's regression grows windows of a face's parts (eyes, mouth) into boxes that win at
    O-Net, so this must stay well below the face's size for the frame's boxes to come out."""


class _Level(NamedTuple):
    """One pyramid level of one image, or the rows and columns of it that lie inside a `Cut`:
    the unit P-Net sees."""

    image: int
    scale: float
    height: int
    width: int
    """Rows and columns P-Net sees."""
    row: int = 0
    col: int = 0
    """The whole level's row and column (even: P-Net's stride) these start at."""
    whole: tuple[int, int] | None = None
    """The whole level's height and width, when these are part of it."""

    def windows(self) -> tuple[int, int]:
        """P-Net windows per column and per row that are the whole level's: those reading
        rows (columns) past the level's end are padding, and in a part of a level, those
        reading past the part are not the whole level's (the last, ceil_mode pooled, one)."""
        height, width = self.whole or (self.height, self.width)

        def count(size: int, start: int, whole: int) -> int:
            return (size - 1) // 2 - 4 if start + size == whole else (size - 10) // 2

        return count(self.height, self.row, height), count(self.width, self.col, width)


T = TypeVar("T")


def _threads_each(search: Callable[[list[int]], T], shares: list[list[int]]) -> list[T]:
    """`search` over every share at once, each in a Python thread of its own that uses an equal
    part of torch's CPU threads (one each when there are as many shares as threads); torch's
    thread count, which is process-wide, is back as it was afterwards."""
    threads = torch.get_num_threads()
    parts = [threads // len(shares) + (k < threads % len(shares)) for k in range(len(shares))]

    def alone(k: int) -> T:
        torch.set_num_threads(parts[k])
        return search(shares[k])

    try:
        with ThreadPoolExecutor(len(shares)) as pool:
            return list(pool.map(alone, range(len(shares))))
    finally:
        torch.set_num_threads(threads)


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
        kind = "cuda" if self.device.type == "cuda" else "cpu"
        self.tuning = _TUNING[kind]

    @torch.inference_mode()
    def detect(
        self,
        images: Sequence[Tensor],
        min_face: Sequence[float] | float,
        cuts: Sequence[Cut] | None = None,
    ) -> list[Tensor]:
        """images: uint8 RGB tensors (H, W, 3) of any, differing, sizes (the search copies), on
        any device. min_face: the minimum face size per image (or one for all).

        Returns per image an (N, 5) float32 tensor x1, y1, x2, y2, probability on `device`: the
        boxes facenet's `detect_face` returns for that image, in its order (probability, highest
        first). An image too small to hold `min_face` has none (facenet fails on it).

        cuts: per image, the part of a larger frame it is (`Cut`; min_face is then the frame's):
        boxes are then in the frame's pixels.
        """
        return [boxes for boxes, _ in self.detect_with_landmarks(images, min_face, cuts)]

    @torch.inference_mode()
    def detect_with_landmarks(
        self,
        images: Sequence[Tensor],
        min_face: Sequence[float] | float,
        cuts: Sequence[Cut] | None = None,
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
        if cuts is not None and len(cuts) != len(images):
            raise ValueError(f"{len(cuts)} cuts for {len(images)} images")
        shares = self._shares(images)
        if len(shares) < 2:
            return self._search(images, min_faces, cuts)
        found = _threads_each(
            lambda share: self._search(
                [images[i] for i in share],
                [min_faces[i] for i in share],
                None if cuts is None else [cuts[i] for i in share],
            ),
            shares,
        )
        by_image = dict(zip(itertools.chain(*shares), itertools.chain(*found)))
        return [by_image[i] for i in range(len(images))]

    def _shares(self, images: list[Tensor]) -> list[list[int]]:
        """The images searched apart, one share per CPU thread (fewer when there are fewer
        images), balanced by pixel count (largest first, each to the least loaded share); on a
        GPU, or with one thread, one share.

        MTCNN is many small, memory-bound operations, which two cores share far better by
        images than by pixels: 16 photos of 480-800 px take 0.85x the wall clock and 0.82x
        the CPU time so (measured on 2 cores)."""
        count = min(len(images), torch.get_num_threads()) if self.tuning.thread_shares else 1
        if count < 2:
            return [list(range(len(images)))]
        pixels = [image.shape[0] * image.shape[1] for image in images]
        shares: list[list[int]] = [[] for _ in range(count)]
        load = [0] * count
        for i in sorted(range(len(images)), key=lambda i: -pixels[i]):
            least = load.index(min(load))
            shares[least].append(i)
            load[least] += pixels[i]
        return [sorted(share) for share in shares]

    @torch.inference_mode()
    def _search(
        self, images: list[Tensor], min_faces: list[float], cuts: Sequence[Cut] | None = None
    ) -> list[tuple[Tensor, Tensor]]:
        """The three stages over `images`, in this thread."""
        if not images:
            return []
        frames = None if cuts is None else [(c.top, c.left, c.height, c.width) for c in cuts]
        tables = _integrals(images, frames)
        boxes, image_of = self._propose(tables, min_faces, cuts)
        boxes, image_of = self._refine(boxes, image_of, tables)
        boxes, points, image_of = self._output(boxes, image_of, tables)
        counts = torch.bincount(image_of, minlength=len(images)).tolist()
        return list(zip(boxes.split(counts), points.split(counts)))

    def _checked(self, image: Tensor) -> Tensor:
        if image.dtype != torch.uint8 or image.dim() != 3 or image.shape[2] != 3:
            raise ValueError(
                f"images must be uint8 (H, W, 3) tensors, got {image.dtype} {tuple(image.shape)}"
            )
        return image.to(self.device)

    # -- stage 1: P-Net over the pyramids ------------------------------------------------------

    def _propose(
        self, tables: _Tables, min_faces: list[float], cuts: Sequence[Cut] | None = None
    ) -> tuple[Tensor, Tensor]:
        """P-Net candidates, NMS within each level (IoU 0.5) then within each image (IoU 0.7),
        regressed and squared: (N, 5) boxes + probability, and their images; per image in
        facenet's order (probability, ties by level, row, column)."""
        levels = [
            level
            for index, ((height, width), min_face) in enumerate(zip(tables.shapes, min_faces))
            for level in (
                [
                    _Level(index, scale, int(height * scale + 1), int(width * scale + 1))
                    for scale in _pyramid(height, width, min_face, self.factor)
                ]
                if cuts is None
                else _cut_levels(index, cuts[index], height, width, min_face, self.factor)
            )
        ]
        found = [
            self._pnet_candidates(bucket, shape, levels, tables)
            for bucket, shape in _buckets(levels, self.tuning)
        ]
        if not found:
            nothing = torch.empty(0, 5, device=self.device)
            return nothing, torch.empty(0, dtype=torch.long, device=self.device)
        level_of, y, x, score, reg = (torch.cat(parts) for parts in zip(*found))
        # facenet's candidate order: image, level, then row-major within the level. Keys leave
        # a margin of _REACH around each level, so that neighbours' keys never wrap.
        most = max(max(lv.height, lv.width) for lv in levels) + 2 * _REACH
        key = (level_of * most + y + _REACH) * most + x + _REACH
        key, order = torch.sort(key)
        level_of, score, reg = level_of[order], score[order], reg[order]
        # Windows of a part of a level are the whole level's from its first row and column on.
        start = torch.tensor([(lv.col // 2, lv.row // 2) for lv in levels], device=self.device)
        corner = (torch.stack([x[order], y[order]], dim=1) + start[level_of]).to(score.dtype)
        # Divided by each level's scale as facenet does; one tensor of divisors for all levels,
        # so on CUDA a box may differ from facenet's by a pixel once in a while (CUDA divides by
        # a Python number as a multiplication by its reciprocal).
        scale = torch.tensor([lv.scale for lv in levels], device=self.device)[level_of, None]
        boxes = torch.cat(
            [((2 * corner + 1) / scale).floor(), ((2 * corner + 12) / scale).floor()], 1
        )
        image_of = torch.tensor([lv.image for lv in levels], device=self.device)[level_of]
        keep = torch.nonzero(_level_nms(key, most, boxes, score, 0.5)).squeeze(1)
        keep = keep[
            _nms(boxes[keep], score[keep], image_of[keep], 0.7, self.tuning.nms_grid).sort().values
        ]
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
        self, bucket: list[int], shape: tuple[int, int], levels: list[_Level], tables: _Tables
    ) -> tuple[Tensor, ...]:
        """Run P-Net once on the levels `bucket`, each resized into its slot of one canvas of
        `shape` (height, width); return the windows facenet would see above threshold: level,
        row, column, probability, regression (N, 4)."""
        height, width = shape
        slots = [levels[i] for i in bucket]
        image, level_h, level_w, whole_h, whole_w, row, col, rows, cols = torch.tensor(
            [
                (lv.image, lv.height, lv.width, *(lv.whole or (lv.height, lv.width)))
                + (lv.row, lv.col, *lv.windows())
                for lv in slots
            ],
            device=self.device,
        ).unbind(1)
        top, left, frame_h, frame_w = tables.frame[image].unbind(1)
        canvas = torch.empty(len(bucket), height, width, 3, device=self.device)
        # The whole level's bins of the whole frame, from the level's row and column on.
        _area_resize(
            tables,
            image,
            (-top, -left, frame_h, frame_w),
            (whole_h, whole_w),
            canvas,
            first=(row, col),
            count=(level_h, level_w),
        )
        p = self.pnet
        features = p.prelu1(p.conv1(canvas.permute(0, 3, 1, 2)))
        # A level of odd height (width) ends with a max-pool window (ceil_mode) holding one conv1
        # row (column) only; in a taller canvas the next row exists: -inf keeps it out of the max.
        odd_h = [
            (n, lv.height - 2) for n, lv in enumerate(slots) if lv.height % 2 and lv.height < height
        ]
        odd_w = [
            (n, lv.width - 2) for n, lv in enumerate(slots) if lv.width % 2 and lv.width < width
        ]
        if odd_h:
            n, row = torch.tensor(odd_h, device=self.device).unbind(1)
            features[n, :, row, :] = float("-inf")
        if odd_w:
            n, col = torch.tensor(odd_w, device=self.device).unbind(1)
            features[n, :, :, col] = float("-inf")
        features = _max_pool(features, 2)
        features = p.prelu3(p.conv3(p.prelu2(p.conv2(features))))
        # The 1x1 heads as products over the channels-last windows (a 1x1 convolution of 32
        # channels takes the CPU's slow im2col path): both logits of every window, laid out
        # class by class so that the softmax runs along windows; the regression of the
        # windows that pass only.
        windows = features.permute(0, 2, 3, 1)
        logits = torch.addmm(
            p.conv4_1.bias[:, None], p.conv4_1.weight.flatten(1), windows.flatten(0, 2).t()
        )
        probability = torch.softmax(logits, dim=0)[1].view(windows.shape[:3])
        # Window (r, c) reads input rows 2r..2r+11: only `_Level.windows` are the level's own.
        out_rows = torch.arange(probability.shape[1], device=self.device)
        out_cols = torch.arange(probability.shape[2], device=self.device)
        inside = (out_rows < rows[:, None])[:, :, None] & (out_cols < cols[:, None])[:, None, :]
        hit, y, x = torch.nonzero((probability >= self.thresholds[0]) & inside, as_tuple=True)
        level_of = torch.tensor(bucket, device=self.device)[hit]
        regression = F.linear(windows[hit, y, x], p.conv4_2.weight.flatten(1), p.conv4_2.bias)
        return level_of, y, x, probability[hit, y, x], regression

    # -- stage 2: R-Net ------------------------------------------------------------------------

    def _refine(self, boxes: Tensor, image_of: Tensor, tables: _Tables) -> tuple[Tensor, Tensor]:
        """R-Net on 24x24 crops; keep probability > threshold, NMS (IoU 0.7) per image, regress,
        square."""
        boxes, image_of, crops = _crops(boxes, image_of, tables, 24)
        regression, probability = _batched(_rnet, self.rnet, crops, self.tuning.crop_batch)
        score = probability[:, 1]
        passed = score > self.thresholds[1]
        boxes = torch.cat([boxes[passed, :4], score[passed, None]], dim=1)
        image_of, regression = image_of[passed], regression[passed]
        keep = _greedy_nms(boxes[:, :4], boxes[:, 4], image_of, 0.7, minimum=False)
        return _square(_regress(boxes[keep], regression[keep])), image_of[keep]

    # -- stage 3: O-Net ------------------------------------------------------------------------

    def _output(
        self, boxes: Tensor, image_of: Tensor, tables: _Tables
    ) -> tuple[Tensor, Tensor, Tensor]:
        """O-Net on 48x48 crops; keep probability > threshold, landmarks, regress, NMS by
        intersection over the smaller box (0.7) per image: boxes, landmarks, images."""
        boxes, image_of, crops = _crops(boxes, image_of, tables, 48)
        regression, marks, probability = _batched(_onet, self.onet, crops, self.tuning.crop_batch)
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


def _cut_levels(
    image: int, cut: Cut, height: int, width: int, min_face: float, factor: float
) -> list[_Level]:
    """The parts inside `cut` (an image of `height` x `width`) of the frame's pyramid levels
    whose windows are at least `cut.least`: the rows (columns) of a level whose bins lie in the
    cut, from an even one on, so that P-Net's windows there are the whole level's."""
    levels = []
    for scale in _pyramid(cut.height, cut.width, min_face, factor):
        if 12.0 / scale < cut.least * (1 - 1e-9):
            continue
        whole_h, whole_w = int(cut.height * scale + 1), int(cut.width * scale + 1)

        def span(start: int, size: int, frame: int, whole: int) -> tuple[int, int]:
            """First (even) and end of the level's lines whose bins [floor(i * frame / whole),
            ceil((i + 1) * frame / whole)) lie within start..start + size."""
            first = -(-start * whole // frame)
            return first + first % 2, (start + size) * whole // frame

        row, row_end = span(cut.top, height, cut.height, whole_h)
        col, col_end = span(cut.left, width, cut.width, whole_w)
        level = _Level(image, scale, row_end - row, col_end - col, row, col, (whole_h, whole_w))
        if min(level.height, level.width) >= 12 and min(level.windows()) > 0:
            levels.append(level)
    return levels


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


def _buckets(levels: list[_Level], tuning: _Tuning) -> list[tuple[list[int], tuple[int, int]]]:
    """Group pyramid levels into P-Net calls, each with its canvas (height, width): largest
    first, a level opens a canvas of its size rounded up to `_CANVAS_STEP` or joins one that
    holds it leaving as padding at most `tuning.pad_waste` of it or `tuning.pad_slack` pixels,
    while the call stays within `tuning.pnet_pixels` (one level at least)."""
    order = sorted(range(len(levels)), key=lambda i: -levels[i].height * levels[i].width)
    buckets: list[list[int]] = []
    shapes: list[tuple[int, int]] = []
    for i in order:
        h, w = levels[i].height, levels[i].width
        for bucket, (bh, bw) in zip(buckets, shapes):
            allowed = max(tuning.pad_waste * bh * bw, tuning.pad_slack)
            fits = h <= bh and w <= bw and bh * bw - h * w <= allowed
            if fits and (len(bucket) + 1) * bh * bw <= tuning.pnet_pixels:
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


class _Tables(NamedTuple):
    """The summed-area tables of a batch's images in one tensor, so that one gather reads from
    every image: image k's (H + 1, W + 1, 3) table is `data[start[k] : start[k] + H + 1,
    : W + 1]`, with a zero first row and column. Integers, so every box sum is exact: int32
    while 255 * H * W fits, int64 beyond (never float32, which rounds)."""

    data: Tensor
    start: Tensor
    heights: Tensor
    widths: Tensor
    shapes: list[tuple[int, int]]
    """(H, W) of each image, on the host."""
    frame: Tensor
    """(N, 4) top, left, height, width of the frame each image is a part of (`Cut`), in the
    frame's pixels: 0, 0, H, W for a whole image."""


def _integrals(
    images: list[Tensor], frames: list[tuple[int, int, int, int]] | None = None
) -> _Tables:
    """The `_Tables` of uint8 (H, W, 3) images on one device (`frames`: see `_Tables.frame`;
    None: whole images). A run of images of one size (the frames of a video) is written and
    summed as one block: the work grows with the number of distinct sizes, not of images."""
    shapes = [(int(image.shape[0]), int(image.shape[1])) for image in images]
    device = images[0].device
    dtype = torch.int32 if max(255 * h * w for h, w in shapes) < 2**31 else torch.int64
    starts = [0]
    for height, _ in shapes:
        starts.append(starts[-1] + height + 1)
    wide = max(width for _, width in shapes) + 1
    # Columns past an image's own width are never read: only each table is written.
    data = torch.empty(starts[-1], wide, 3, dtype=dtype, device=device)
    first = 0
    for (height, width), run in itertools.groupby(shapes):
        count = len(list(run))
        last = first + count
        block = data[starts[first] : starts[last]].view(count, height + 1, wide, 3)
        table = block[:, :, : width + 1]
        table[:, 0] = 0
        table[:, 1:, 0] = 0
        table[:, 1:, 1:] = torch.stack(images[first:last]) if count > 1 else images[first]
        table.cumsum_(1).cumsum_(2)
        first = last
    sizes = torch.tensor(shapes, device=device)
    if frames is None:
        frames = [(0, 0, height, width) for height, width in shapes]
    return _Tables(
        data,
        torch.tensor(starts[:-1], device=device),
        sizes[:, 0],
        sizes[:, 1],
        shapes,
        torch.tensor(frames, device=device),
    )


def _bins(
    offset: Tensor,
    length: Tensor,
    out: Tensor,
    size: int,
    first: Tensor | None = None,
    count: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Adaptive average pooling's bins of `length` (N,) pixels from `offset` (N,) on into `out`
    (N,) bins, `count` (N,) of them (all when None) from bin `first` (N,) on (0 when None),
    padded to `size`: bin ends offset + ceil((i + 1) * length / out) and starts offset +
    floor(i * length / out), stacked (N, 2, size), and bin lengths (N, size); padding bins are
    empty (at 0) with length 1."""
    i = torch.arange(size, device=length.device)
    valid = i < (out if count is None else count)[:, None]
    if first is not None:
        i = i + first[:, None]
    start = (i * length[:, None]) // out[:, None]
    end = ((i + 1) * length[:, None] + out[:, None] - 1) // out[:, None]
    start = torch.where(valid, start + offset[:, None], 0)
    end = torch.where(valid, end + offset[:, None], 0)
    return torch.stack([end, start], dim=1), torch.where(valid, end - start, 1)


def _area_resize(
    tables: _Tables,
    image: Tensor,
    region: tuple[Tensor, Tensor, Tensor, Tensor],
    out_size: tuple[Tensor, Tensor],
    out: Tensor,
    first: tuple[Tensor, Tensor] | None = None,
    count: tuple[Tensor, Tensor] | None = None,
) -> None:
    """Write into `out` (N, H, W, 3) float32 the normalized area resizes of N regions (top,
    left, height, width) of `image` (N,), region n to out_size[n] (height, width) pixels at the
    top left of out[n] (with `first` and `count`, rows and columns: the `count` (height, width)
    of them from `first` on); the rest of out[n] is padding (black: empty bins). One gather of
    every bin corner, from the tables."""
    top, left, height, width = region
    size_h, size_w = out.shape[1], out.shape[2]
    (first_h, first_w), (count_h, count_w) = first or (None, None), count or (None, None)
    rows, bin_h = _bins(top, height, out_size[0], size_h, first_h, count_h)
    cols, bin_w = _bins(left, width, out_size[1], size_w, first_w, count_w)
    rows = (rows + tables.start[image][:, None, None]) * tables.data.shape[1]
    index = rows[:, :, :, None, None] + cols[:, None, None, :, :]  # (N, 2, H, 2, W)
    corners = tables.data.view(-1, 3).index_select(0, index.view(-1))
    corners = corners.view(len(image), 2, size_h, 2, size_w, 3)
    sums = corners[:, 0, :, 0] - corners[:, 0, :, 1]
    sums -= corners[:, 1, :, 0]
    sums += corners[:, 1, :, 1]
    _normalized(sums, bin_h, bin_w, out)


def _normalized(sums: Tensor, bin_h: Tensor, bin_w: Tensor, out: Tensor) -> None:
    """out (N, H, W, 3) = (sums / kh / kw - 127.5) * 0.0078125 in float32, with bin_h (N, H)
    and bin_w (N, W): adaptive average pooling's own arithmetic (its running sums of integers
    are exact too), then MTCNN's input scaling."""
    n, height, width, channels = out.shape
    out.copy_(sums)
    out.div_(bin_h[:, :, None, None])
    # Each bin width once per channel, so that the division runs along whole rows.
    rows = out.view(n, height, width * channels)
    rows.div_(bin_w.repeat_interleave(channels, dim=1)[:, None, :]).sub_(127.5).mul_(0.0078125)


def _crops(
    boxes: Tensor, image_of: Tensor, tables: _Tables, size: int
) -> tuple[Tensor, Tensor, Tensor]:
    """facenet's crops: each box truncated to integers and clipped to its image, rows y-1..ey-1
    and columns x-1..ex-1, area-resized to size x size and normalized. Boxes with nothing inside
    the image are dropped (facenet would misalign its outputs on them). Returns the boxes and
    images kept and their (N, 3, size, size) crops."""
    corners = boxes[:, :4].trunc().to(torch.int32).long()
    # Boxes are in the frame's pixels; the image is the part from origin on (`Cut`).
    origin_y, origin_x = tables.frame[image_of, 0], tables.frame[image_of, 1]
    x = torch.maximum(corners[:, 0], origin_x + 1)
    y = torch.maximum(corners[:, 1], origin_y + 1)
    ex = torch.minimum(corners[:, 2], origin_x + tables.widths[image_of])
    ey = torch.minimum(corners[:, 3], origin_y + tables.heights[image_of])
    inside = (ey > y - 1) & (ex > x - 1)
    boxes, image_of = boxes[inside], image_of[inside]
    origin_y, origin_x = origin_y[inside], origin_x[inside]
    top, left = y[inside] - 1 - origin_y, x[inside] - 1 - origin_x
    # Channels-last, as R-/O-Net run fastest (1.5x on CPU); the pixels are written in that order.
    crops = torch.empty(len(boxes), size, size, 3, device=boxes.device)
    sides = torch.full_like(top, size)
    region = (top, left, ey[inside] - origin_y - top, ex[inside] - origin_x - left)
    _area_resize(tables, image_of, region, (sides, sides), crops)
    return boxes, image_of, crops.permute(0, 3, 1, 2)


def _batched(
    forward: Callable[[Any, Tensor], tuple[Tensor, ...]],
    net: torch.nn.Module,
    crops: Tensor,
    most: int,
) -> tuple[Tensor, ...]:
    """forward(net, crops) for all crops, `most` at a time (none gives empty outputs)."""
    if crops.shape[0] == 0:
        dummy = torch.zeros(1, *crops.shape[1:], device=crops.device)
        return tuple(t[:0] for t in forward(net, dummy))
    starts = range(0, crops.shape[0], most)
    parts = [forward(net, crops[i : i + most]) for i in starts]
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

    The greedy result is `_fixed_point`'s, one batched boolean reduction per pass.
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
    kept = _fixed_point(lambda kept: valid & ~(suppresses & kept[:, :, None]).any(1), valid)
    return order[kept[group, rank]]


def _level_nms(key: Tensor, most: int, boxes: Tensor, score: Tensor, threshold: float) -> Tensor:
    """Greedy IoU NMS within each pyramid level of P-Net's windows, all levels at once: the mask
    of windows torchvision's `batched_nms` keeps, by level.

    `key` (ascending) places each window on its level's grid, `most` apart per row. Only windows
    within `_REACH` steps can suppress each other, so each is compared with its 24 neighbours
    (found by binary search among the keys) rather than with every window of its level: the
    work grows with the number of windows, and a batch of hundreds of photos is one pass.
    The IoU is torchvision's, in float32, and a window ranks above another of equal probability
    when it comes first in row-major order, as torchvision's stable sort orders them.
    """
    steps = range(-_REACH, _REACH + 1)
    offsets = torch.tensor([dy * most + dx for dy in steps for dx in steps if dy or dx])
    wanted = key[:, None] + offsets.to(key.device)
    at = torch.searchsorted(key, wanted).clamp_(max=max(len(key) - 1, 0))
    found = key[at] == wanted
    mine, theirs = boxes[:, None, :], boxes[at]
    width = (
        torch.minimum(mine[..., 2], theirs[..., 2]) - torch.maximum(mine[..., 0], theirs[..., 0])
    ).clamp(min=0)
    height = (
        torch.minimum(mine[..., 3], theirs[..., 3]) - torch.maximum(mine[..., 1], theirs[..., 1])
    ).clamp(min=0)
    inter = width * height
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    overlaps = inter / (area[:, None] + area[at] - inter) > threshold
    first = torch.arange(len(key), device=key.device)[:, None]
    above = (score[at] > score[:, None]) | ((score[at] == score[:, None]) & (at < first))
    suppressors = found & above & overlaps
    everything = torch.ones(len(key), dtype=torch.bool, device=key.device)
    return _fixed_point(lambda kept: ~(suppressors & kept[at]).any(1), everything)


def _fixed_point(step: Callable[[Tensor], Tensor], kept: Tensor) -> Tensor:
    """Greedy NMS's kept mask as the fixed point of `step` (kept -> not suppressed by a kept box
    ranked higher), iterated from `kept` (all boxes): each pass settles at least one more rank, in
    practice all of them within a few passes."""
    while True:
        again = step(kept)
        if torch.equal(again, kept):
            return kept
        kept = again


def _nms(boxes: Tensor, score: Tensor, image_of: Tensor, threshold: float, grid: int) -> Tensor:
    """The indices torchvision's `batched_nms` keeps, by image. Images go through the dense
    `_greedy_nms` in runs whose images x candidates^2 grid stays within `grid`: a few calls
    instead of one NMS per image (on a GPU, per-image launches); an image too large for the
    grid alone, or every image when `grid` is 0, through torchvision's."""
    if len(boxes) == 0:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    if grid == 0:
        return batched_nms(boxes, score, image_of, threshold)
    order = torch.argsort(image_of, stable=True)
    counts = torch.bincount(image_of).tolist()
    parts, start = [], 0
    for first, last in _runs(counts, grid):
        end = start + sum(counts[first:last])
        index = order[start:end]
        if last - first == 1 and counts[first] ** 2 > grid:
            kept = nms(boxes[index], score[index], threshold)
        else:
            kept = _greedy_nms(
                boxes[index], score[index], image_of[index], threshold, minimum=False
            )
        parts.append(index[kept])
        start = end
    return torch.cat(parts)


def _runs(counts: list[int], grid: int) -> list[tuple[int, int]]:
    """Consecutive ranges of images whose dense grid (images x the most candidates^2) stays
    within `grid`; an image beyond it alone is a range of its own."""
    runs, first, widest = [], 0, 0
    for n, count in enumerate(counts):
        wider = max(widest, count)
        if n > first and wider**2 * (n + 1 - first) > grid:
            runs.append((first, n))
            first, wider = n, count
        widest = wider
    runs.append((first, len(counts)))
    return runs


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
