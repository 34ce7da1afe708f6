"""BatchedMTCNN against facenet-pytorch's own `detect_face`, with the same loaded networks, on
real photos (skimage's public-domain astronaut and cat) and on the edge cases facenet fails on."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from facenet_pytorch.models.utils import detect_face as facenet
from PIL import Image
from skimage import data
from torchvision.ops import batched_nms, box_iou, nms

from opengraphau.faces import mtcnn
from opengraphau.faces.mtcnn import BatchedMTCNN

MIN_IOU = 0.98
MAX_DP = 1e-3


def image(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(array))


def resized(array: np.ndarray, width: int, height: int) -> np.ndarray:
    return np.asarray(Image.fromarray(array).resize((width, height), Image.Resampling.BILINEAR))


@pytest.fixture(scope="module")
def det() -> BatchedMTCNN:
    return BatchedMTCNN()


@pytest.fixture(scope="module")
def photos() -> dict[str, torch.Tensor]:
    astronaut = data.astronaut()
    head = astronaut[20:260, 120:330]
    two_faces = np.full((480, 640, 3), 128, np.uint8)
    two_faces[120:291, 60:210] = resized(head, 150, 171)
    two_faces[200:337, 400:520] = resized(head[:, ::-1], 120, 137)
    return {
        "astronaut": image(astronaut),
        "cat": image(data.chelsea()),
        "two_faces": image(two_faces),
        "astronaut_1024x768": image(resized(astronaut, 1024, 768)),
        "head_30x40": image(resized(head, 30, 40)),
        "tiny_8x8": image(resized(astronaut, 8, 8)),
    }


@pytest.fixture(scope="module")
def reference(det, photos):
    """facenet's boxes (N, 5) and landmarks (N, 5, 2) for one photo, with det's networks."""
    cache: dict[tuple[str, float], tuple[torch.Tensor, torch.Tensor]] = {}

    def run(name: str, min_face: float) -> tuple[torch.Tensor, torch.Tensor]:
        if (name, min_face) not in cache:
            with torch.inference_mode():
                boxes, points = facenet.detect_face(
                    photos[name],
                    min_face,
                    det.pnet,
                    det.rnet,
                    det.onet,
                    list(det.thresholds),
                    det.factor,
                    "cpu",
                )
            cache[name, min_face] = (
                torch.as_tensor(np.asarray(boxes[0], np.float32).reshape(-1, 5)),
                torch.as_tensor(np.asarray(points[0], np.float32).reshape(-1, 5, 2)),
            )
        return cache[name, min_face]

    return run


@pytest.fixture(scope="module")
def alone(det, photos):
    """det's result for one photo detected on its own (memoized)."""
    cache: dict[tuple[str, float], tuple[torch.Tensor, torch.Tensor]] = {}

    def run(name: str, min_face: float) -> tuple[torch.Tensor, torch.Tensor]:
        if (name, min_face) not in cache:
            cache[name, min_face] = det.detect_with_landmarks([photos[name]], min_face)[0]
        return cache[name, min_face]

    return run


def assert_same_faces(got: torch.Tensor, want: torch.Tensor) -> None:
    """Same count; each face matches a reference face (best IoU) within MIN_IOU and MAX_DP."""
    assert got.shape == want.shape, f"{len(got)} faces, facenet finds {len(want)}"
    if len(want) == 0:
        return
    iou = box_iou(got[:, :4].double(), want[:, :4].double())
    best, match = iou.max(1)
    assert match.unique().numel() == len(want), "two faces matched the same reference face"
    assert best.min() >= MIN_IOU, best
    assert (got[:, 4] - want[match, 4]).abs().max() <= MAX_DP


@pytest.mark.parametrize(
    ("name", "min_face", "faces"),
    [
        ("astronaut", 20, 1),
        ("cat", 20, 0),
        ("two_faces", 20, 2),
        ("astronaut_1024x768", 40, 1),
        ("head_30x40", 12, 1),
    ],
)
def test_matches_facenet(reference, alone, name, min_face, faces):
    got, marks = alone(name, min_face)
    want, want_marks = reference(name, min_face)
    assert_same_faces(got, want)
    assert len(got) == faces
    if faces:
        assert got.dtype == torch.float32 and (got[:-1, 4] >= got[1:, 4]).all(), "by probability"
        assert torch.allclose(marks, want_marks, atol=0.05)


def test_mixed_sizes_in_one_batch(det, photos, reference, alone):
    """Differently sized images, each with its own min_face, in one call: what facenet finds
    per image, and what the same detector finds one image at a time."""
    names = ["astronaut", "tiny_8x8", "two_faces", "cat", "head_30x40", "astronaut_1024x768"]
    min_faces = [20, 20, 24, 20, 12, 40]
    batch = det.detect([photos[n] for n in names], min_faces)
    assert len(batch) == len(names)
    for name, min_face, got in zip(names, min_faces, batch):
        single = alone(name, min_face)[0]
        assert got.shape == single.shape, name
        # R-/O-Net's last bits depend on how many crops share a call.
        torch.testing.assert_close(got, single, atol=1e-3, rtol=0)
        if name != "tiny_8x8":  # facenet cannot build a pyramid for it
            assert_same_faces(got, reference(name, min_face)[0])


def test_same_size_batch_equals_one_by_one(det, photos, alone):
    """The video case: frames of one size share every P-Net call."""
    mirrored = image(data.astronaut()[:, ::-1])
    batch = det.detect([photos["astronaut"], mirrored, photos["astronaut"]], 20)
    torch.testing.assert_close(batch[0], alone("astronaut", 20)[0], atol=1e-3, rtol=0)
    torch.testing.assert_close(batch[2], batch[0], atol=1e-3, rtol=0)
    torch.testing.assert_close(batch[1], det.detect([mirrored], 20)[0], atol=1e-3, rtol=0)


def test_cpu_threads_search_shares_of_the_batch(det, photos, monkeypatch):
    """On a CPU each of torch's threads searches its own share of a batch (largest images
    first, each to the least loaded share): every image gets what its share gets searched alone
    on one thread, in input order; with fewer images than threads the threads are dealt out;
    torch's thread count is kept."""
    names = ["astronaut", "two_faces", "cat", "head_30x40", "astronaut_1024x768"]
    images = [photos[n] for n in names]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        # 1024x768 alone (786,432 px), the other four together (705,844 px).
        by_share = det.detect_with_landmarks(images[:4], 20) + det.detect_with_landmarks(
            images[4:], 20
        )
        searched: list[tuple[int, int]] = []
        search = BatchedMTCNN._search

        def spy(self, share, min_faces, most=None):
            searched.append((torch.get_num_threads(), len(share)))
            return search(self, share, min_faces, most)

        monkeypatch.setattr(BatchedMTCNN, "_search", spy)
        torch.set_num_threads(2)
        shared = det.detect_with_landmarks(images, 20)
        assert torch.get_num_threads() == 2
        assert sorted(searched) == [(1, 1), (1, 4)]
        # Fewer images than threads: the threads are dealt out among the shares.
        searched.clear()
        torch.set_num_threads(3)
        pair = det.detect_with_landmarks(images[:2], 20)
        assert torch.get_num_threads() == 3
        assert sorted(searched) == [(1, 1), (2, 1)]
    finally:
        torch.set_num_threads(threads)
    for name, got, want in zip(names, shared, by_share):
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1]), name
    for got, want in zip(pair, shared):
        torch.testing.assert_close(got[0], want[0], atol=1e-3, rtol=0)


def test_no_images(det):
    assert det.detect([], 20) == []
    assert det.detect_with_landmarks([], []) == []


@pytest.mark.parametrize(("height", "width", "min_face"), [(8, 8, 12), (11, 40, 12), (30, 40, 40)])
def test_image_too_small_for_a_face(det, height, width, min_face):
    """No pyramid level holds a 12 px window: no faces (facenet raises on an empty pyramid)."""
    img = torch.full((height, width, 3), 128, dtype=torch.uint8)
    ((boxes, marks),) = det.detect_with_landmarks([img], min_face)
    assert boxes.shape == (0, 5) and marks.shape == (0, 5, 2)


def test_rejects_bad_input(det, photos):
    with pytest.raises(ValueError):
        det.detect([photos["astronaut"].float()], 20)
    with pytest.raises(ValueError):
        det.detect([photos["astronaut"]], [20, 30])
    with pytest.raises(ValueError):
        det.detect([photos["astronaut"]], 0)


def test_crops_are_facenets_imresample(photos):
    """Box crops from the integral images equal, bit for bit, facenet's pad() + per-box
    imresample, for boxes inside, across and (dropped) outside the image edges, of several
    images of different sizes at once."""
    images = [photos["astronaut"], photos["cat"], photos["head_30x40"]]
    tables = mtcnn._integrals(images)
    gen = torch.Generator().manual_seed(0)
    parts: list[torch.Tensor] = []  # each image's kept boxes, then its dropped ones
    owners: list[int] = []
    want: dict[int, list[torch.Tensor]] = {24: [], 48: []}
    for k, img in enumerate(images):
        h, w = img.shape[:2]
        x1 = torch.rand(100, generator=gen) * w - w / 8
        y1 = torch.rand(100, generator=gen) * h - h / 8
        side = torch.rand(100, generator=gen) * min(300, h) + 0.5
        mine = torch.stack([x1, y1, x1 + side, y1 + side, torch.rand(100, generator=gen)], 1)
        mine = torch.cat([mine, torch.tensor([[w + 5.0, 10, w + 40, 50, 0.9]])])  # off the image
        planes = img.permute(2, 0, 1)[None].float()
        y, ey, x, ex = facenet.pad(mine.clone(), w, h)
        inside = [n for n in range(len(mine)) if ey[n] > y[n] - 1 and ex[n] > x[n] - 1]
        assert len(mine) - 1 - 40 < len(inside) < len(mine), len(inside)
        parts.append(mine[inside])
        owners += [k] * len(inside)
        for size in want:
            want[size] += [
                facenet.imresample(planes[:, :, y[n] - 1 : ey[n], x[n] - 1 : ex[n]], (size, size))
                for n in inside
            ]
        parts.append(mine[[n for n in range(len(mine)) if n not in inside]])
        owners += [k] * (len(mine) - len(inside))
    boxes, image_of = torch.cat(parts), torch.tensor(owners)
    # The dropped boxes came after each image's kept ones: sort them back into image order.
    order = torch.argsort(image_of, stable=True)
    boxes, image_of = boxes[order], image_of[order]
    for size in (24, 48):
        kept, kept_of, crops = mtcnn._crops(boxes, image_of, tables, size)
        assert len(kept) == len(want[size])
        assert torch.equal(kept_of, torch.sort(kept_of).values)
        assert torch.equal(crops, (torch.cat(want[size]) - 127.5) * 0.0078125)


def test_pnet_windows_are_facenets_pnet(det, photos):
    """Two pyramid levels of odd and even sizes in one canvas: the windows above P-Net's
    threshold, their probabilities and regressions are those of facenet's own PNet.forward on
    each level alone (its 1x1 convolutions and softmax), to float rounding."""
    img = photos["astronaut"]
    height, width = img.shape[:2]
    tables = mtcnn._integrals([img])
    scales = mtcnn._pyramid(height, width, 20.0, det.factor)[1:3]
    levels = [mtcnn._Level(0, s, int(height * s + 1), int(width * s + 1)) for s in scales]
    assert levels[0].height % 2 == 0 and levels[1].height % 2 == 1, levels
    canvas = (mtcnn._round_up(levels[0].height, 16), mtcnn._round_up(levels[0].width, 16))
    with torch.inference_mode():
        level_of, y, x, score, reg = det._pnet_candidates([0, 1], canvas, levels, tables)
        planes = img.permute(2, 0, 1)[None].float()
        for k, lv in enumerate(levels):
            level = F.interpolate(planes, (lv.height, lv.width), mode="area")
            want_reg, want_p = det.pnet((level - 127.5) * 0.0078125)
            want_y, want_x = torch.nonzero(want_p[0, 1] >= det.thresholds[0], as_tuple=True)
            mine = level_of == k
            assert len(want_y) > 10
            assert torch.equal(y[mine], want_y) and torch.equal(x[mine], want_x)
            want_score, want_box = want_p[0, 1, want_y, want_x], want_reg[0, :, want_y, want_x]
            torch.testing.assert_close(score[mine], want_score, rtol=0, atol=1e-5)
            torch.testing.assert_close(reg[mine], want_box.T, rtol=0, atol=1e-5)


@pytest.mark.parametrize(("out_h", "out_w"), [(289, 385), (145, 194), (14, 18), (13, 13)])
def test_pyramid_levels_are_area_interpolation(photos, out_h, out_w):
    """A level read into a larger canvas, beside a level of another image: its own pixels are
    F.interpolate's area resize to the bit."""
    img, other = photos["cat"], photos["astronaut"]
    tables = mtcnn._integrals([other, img])
    h, w = img.shape[:2]
    canvas = torch.empty(2, out_h + 16, out_w + 16, 3)
    sizes = tables.heights, tables.widths
    zero = torch.zeros(2, dtype=torch.long)
    mtcnn._area_resize(
        tables,
        torch.tensor([0, 1]),
        (zero, zero, *sizes),
        (torch.tensor([20, out_h]), torch.tensor([30, out_w])),
        canvas,
    )
    want = F.interpolate(img.permute(2, 0, 1)[None].float(), (out_h, out_w), mode="area")
    assert torch.equal(canvas[1, :out_h, :out_w].permute(2, 0, 1), (want[0] - 127.5) * 0.0078125)


@pytest.mark.parametrize("kind", ["cpu", "cuda"])
def test_buckets_share_calls_within_their_padding_limits(kind):
    """Every pyramid level of 16 photos of 480-800 px goes into exactly one P-Net call; a level
    that joins a canvas fits in it, leaves at most the allowed padding there (a share of the
    canvas, or the slack in pixels) and keeps the call within its pixel budget; a level opens a
    canvas (its size rounded up) only when it fits none before."""
    tuning = mtcnn._TUNING[kind]
    rng = np.random.default_rng(1)
    levels = []
    for n in range(16):
        height, width = (int(v) for v in rng.integers(480, 801, size=2))
        levels += [
            mtcnn._Level(n, s, int(height * s + 1), int(width * s + 1))
            for s in mtcnn._pyramid(height, width, 20.0, 0.709)
        ]
    buckets = mtcnn._buckets(levels, tuning)
    assert sorted(i for bucket, _ in buckets for i in bucket) == list(range(len(levels)))

    def allowed(level, shape, count):
        height, width = shape
        padding = height * width - level.height * level.width
        return (
            level.height <= height
            and level.width <= width
            and padding <= max(tuning.pad_waste * height * width, tuning.pad_slack)
            and (count + 1) * height * width <= tuning.pnet_pixels
        )

    area = [level.height * level.width for level in levels]
    rank = {i: r for r, i in enumerate(sorted(range(len(levels)), key=lambda i: -area[i]))}
    step = mtcnn._CANVAS_STEP
    for k, (bucket, shape) in enumerate(buckets):
        opener = levels[bucket[0]]
        assert shape == (mtcnn._round_up(opener.height, step), mtcnn._round_up(opener.width, step))
        for joined, i in enumerate(bucket[1:], start=1):
            assert allowed(levels[i], shape, joined)
        # The earlier canvases as they were when the opener came (largest levels first).
        then = [(s, sum(rank[j] < rank[bucket[0]] for j in b)) for b, s in buckets[:k]]
        assert not any(allowed(opener, s, count) for s, count in then), k
    # The slack is what lets the many small levels share calls.
    without = mtcnn._buckets(levels, tuning._replace(pad_slack=0))
    assert len(buckets) < len(without)
    if kind == "cpu":
        assert 2 * len(buckets) < len(without)


@pytest.mark.parametrize("size", [2, 3])
@pytest.mark.parametrize("channels_last", [False, True])
def test_max_pool_is_ceil_mode_max_pool(size, channels_last):
    pool = torch.nn.MaxPool2d(size, 2, ceil_mode=True)
    for h in range(size, 12):
        for w in (size, size + 1, 11, 12):
            x = torch.randn(2, 5, h, w)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            assert torch.equal(mtcnn._max_pool(x, size), pool(x)), (h, w)


def test_greedy_nms_matches_torchvision_and_facenet():
    """Per image, IoU NMS keeps what torchvision.ops.nms keeps and 'Min' NMS what facenet's
    numpy NMS keeps, in the same order."""
    gen = torch.Generator().manual_seed(1)
    xy = torch.rand(400, 2, generator=gen) * 200
    boxes = torch.cat([xy, xy + 10 + torch.rand(400, 2, generator=gen) * 60], 1)
    score = torch.rand(400, generator=gen)
    image_of = torch.randint(0, 3, (400,), generator=gen)
    for threshold in (0.5, 0.7):
        keep = mtcnn._greedy_nms(boxes, score, image_of, threshold, minimum=False)
        keep_min = mtcnn._greedy_nms(boxes, score, image_of, threshold, minimum=True)
        for i in range(3):
            index = torch.nonzero(image_of == i).squeeze(1)
            one, scores, zeros = boxes[index], score[index], torch.zeros_like(index)
            want = index[nms(one, scores, threshold)]
            assert torch.equal(keep[image_of[keep] == i], want)
            want = index[facenet.batched_nms_numpy(one, scores, zeros, threshold, "Min")]
            assert torch.equal(keep_min[image_of[keep_min] == i], want)


@pytest.mark.parametrize("grid", [0, 30 * 30, 60 * 60 * 2, 1 << 26])
def test_nms_by_image_keeps_what_torchvision_keeps(grid):
    """Per-image IoU NMS, dense over runs of images (a grid of 900 sends the image with 40
    boxes to torchvision alone) or torchvision's throughout: the same boxes kept."""
    gen = torch.Generator().manual_seed(2)
    counts = [5, 40, 0, 17, 29, 1, 23]
    image_of = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    image_of = image_of[torch.randperm(len(image_of), generator=gen)]
    xy = torch.rand(len(image_of), 2, generator=gen) * 100
    boxes = torch.cat([xy, xy + 10 + torch.rand(len(image_of), 2, generator=gen) * 40], 1)
    score = torch.rand(len(image_of), generator=gen)
    want = torch.sort(batched_nms(boxes, score, image_of, 0.7)).values
    assert 0 < len(want) < len(boxes)
    assert torch.equal(torch.sort(mtcnn._nms(boxes, score, image_of, 0.7, grid)).values, want)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(photos, alone):
    names = ["astronaut", "two_faces", "cat", "tiny_8x8"]
    gpu = BatchedMTCNN(device="cuda").detect([photos[n].cuda() for n in names], 20)
    for name, got in zip(names, gpu):
        assert got.device.type == "cuda"
        assert_same_faces(got.cpu(), alone(name, 20)[0])


@pytest.mark.parametrize("scale", [1.0, 0.709, 0.6, 0.31, 0.05])
def test_level_nms_keeps_what_torchvision_keeps(scale):
    """P-Net's windows of a level, packed densely and with tied probabilities (the worst case
    for the neighbourhood bound): the grid NMS keeps exactly torchvision's windows."""
    gen = torch.Generator().manual_seed(int(scale * 100))
    side = 40
    y, x = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    levels = torch.arange(3).repeat_interleave(side * side)
    y, x = y.flatten().repeat(3), x.flatten().repeat(3)
    chosen = torch.rand(len(y), generator=gen) < 0.7
    levels, y, x = levels[chosen], y[chosen], x[chosen]
    score = torch.tensor([0.7, 0.8, 0.9, 0.99, 1.0])[torch.randint(0, 5, (len(y),), generator=gen)]
    corner = torch.stack([x, y], 1).float()
    boxes = torch.cat([((2 * corner + 1) / scale).floor(), ((2 * corner + 12) / scale).floor()], 1)
    most = side + 2 * mtcnn._REACH
    key = (levels * most + y + mtcnn._REACH) * most + x + mtcnn._REACH
    kept = mtcnn._level_nms(key, most, boxes, score, 0.5)
    want = torch.zeros(len(key), dtype=torch.bool)
    for level in range(3):
        on = torch.nonzero(levels == level).squeeze(1)
        want[on[nms(boxes[on], score[on], 0.5)]] = True
    assert 0 < int(want.sum()) < len(key)
    assert torch.equal(kept, want)


def test_detection_work_does_not_grow_with_the_batch(photos):
    """Sized for a GPU (few large P-Net calls), 16 photos of several sizes take barely more
    operations than 4: each one would be a kernel launch there."""
    from torch.profiler import ProfilerActivity, profile

    det = BatchedMTCNN()
    det.tuning = mtcnn._TUNING["cuda"]
    base = [photos["astronaut"], photos["two_faces"], photos["cat"], photos["head_30x40"]]
    many = [image(resized(p.numpy(), 400 + 37 * n, 300 + 23 * n)) for n, p in enumerate(base * 4)]

    def operations(images):
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            det.detect(images, 20)
        return sum(1 for e in prof.events() if e.cpu_parent is None)

    det.detect(base, 20)
    few, more = operations(base), operations(many)
    assert more < 1.3 * few, (few, more)
