"""Face detection and cropping on real photos (skimage's public-domain astronaut and cat)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps
from skimage import data

from factories import iou
from opengraphau.faces.crop import CROP_SIZE, MARGIN, crop_box, square_crop
from opengraphau.faces.detector import FaceDetector
from opengraphau.faces.mtcnn import BatchedMTCNN

# Hand-measured on an 8x zoom of skimage.data.astronaut() (512x512), original pixels.
ASTRO_FACE = (180.0, 72.0, 90.0, 106.0)  # x, y, w, h: cheek to cheek, hairline to chin
ASTRO_EYES = ((203.1, 101.3), (245.0, 103.7))  # pupils
ASTRO_MOUTH = ((203.1, 140.0), (243.1, 141.3))  # mouth corners

# How the reference's demo images (1024x1024 aligned face crops) frame a face, as fractions of
# the image side, from MTCNN's landmarks on all six: inter-ocular distance, eye-line-to-mouth
# distance, and where the point between the eyes sits.
DEMO_IOD, DEMO_EYE_MOUTH, DEMO_EYE_X, DEMO_EYE_Y = 0.244, 0.255, 0.502, 0.477

BILINEAR = Image.Resampling.BILINEAR


def scaled(box: tuple[float, ...], factor: float) -> tuple[float, ...]:
    return tuple(v * factor for v in box)


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector()


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    return Image.fromarray(data.astronaut())


@pytest.fixture(scope="module")
def well_framed(astronaut: Image.Image) -> Image.Image:
    """The astronaut framed the way the reference's demo images frame faces, at 256x256.

    Side from the hand-measured eyes and mouth (mean of the two demo ratios), placed so the
    point between the eyes lands where it does in the demo images.
    """
    (lx, ly), (rx, ry) = ASTRO_EYES
    eye_x, eye_y = (lx + rx) / 2, (ly + ry) / 2
    mouth_y = (ASTRO_MOUTH[0][1] + ASTRO_MOUTH[1][1]) / 2
    iod = float(np.hypot(rx - lx, ry - ly))
    side = (iod / DEMO_IOD + (mouth_y - eye_y) / DEMO_EYE_MOUTH) / 2
    left, top = eye_x - DEMO_EYE_X * side, eye_y - DEMO_EYE_Y * side
    region = (round(left), round(top), round(left + side), round(top + side))
    return astronaut.crop(region).resize((CROP_SIZE, CROP_SIZE), BILINEAR)


@pytest.fixture(scope="module")
def two_faces(astronaut: Image.Image) -> Image.Image:
    """A small mirrored astronaut head on the left, a larger one on the right."""
    head = astronaut.crop((130, 10, 330, 210))
    canvas = Image.new("RGB", (380, 220), (128, 128, 128))
    canvas.paste(ImageOps.mirror(head).resize((120, 120), BILINEAR), (10, 50))
    canvas.paste(head, (170, 10))
    return canvas


@pytest.fixture(scope="module")
def no_face() -> Image.Image:
    """A gradient with noise on it: texture but nothing face-like."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:512, 0:512]
    gradient = np.stack([xx / 2, yy / 2, (xx + yy) / 4], axis=-1)
    noisy = np.clip(gradient + rng.normal(0, 25, gradient.shape), 0, 255)
    return Image.fromarray(noisy.astype(np.uint8))


# --- square_crop / crop_box: pure functions -------------------------------------------------


def test_crop_box_is_square_centred_on_box() -> None:
    x, y, side, side2 = crop_box((200.0, 100.0, 80.0, 100.0), 0.2)
    assert side == side2 == pytest.approx(120.0)
    assert (x + side / 2, y + side / 2) == pytest.approx((240.0, 150.0))


def test_square_crop_inside_image_is_exact_crop_and_resize(astronaut: Image.Image) -> None:
    got = square_crop(astronaut, (200.0, 100.0, 80.0, 100.0), margin=0.2)
    expected = astronaut.crop((180, 90, 300, 210)).resize((CROP_SIZE, CROP_SIZE), BILINEAR)
    assert got.size == (CROP_SIZE, CROP_SIZE)
    assert np.array_equal(np.asarray(got), np.asarray(expected))


def test_square_crop_pads_black_outside_image(astronaut: Image.Image) -> None:
    # Square (-20, -10) .. (40, 50): 20 columns left of and 10 rows above the image.
    got = np.asarray(square_crop(astronaut, (-20.0, -10.0, 60.0, 60.0), margin=0.0, size=60))
    assert not got[:, :20].any() and not got[:10].any()
    assert np.array_equal(got[10:, 20:], np.asarray(astronaut.crop((0, 0, 40, 50))))
    assert got[10:, 20:].any()


def test_square_crop_entirely_outside_is_black(astronaut: Image.Image) -> None:
    got = square_crop(astronaut, (600.0, 600.0, 50.0, 50.0))
    assert got.size == (CROP_SIZE, CROP_SIZE) and not np.asarray(got).any()


def test_square_crop_returns_rgb_for_other_modes(astronaut: Image.Image) -> None:
    got = square_crop(astronaut.convert("L"), (200.0, 100.0, 80.0, 100.0))
    assert got.mode == "RGB" and got.size == (CROP_SIZE, CROP_SIZE)


# --- detection on real photos -----------------------------------------------------------------


def test_astronaut_one_face_on_her_face(detector: FaceDetector, astronaut: Image.Image) -> None:
    (found,) = detector.detect([astronaut])
    assert len(found) == 1
    face = found[0]
    assert face.confidence > 0.9
    assert iou(face.box, ASTRO_FACE) > 0.6


def test_grayscale_photo_still_gives_rgb_crop(
    detector: FaceDetector, astronaut: Image.Image
) -> None:
    (found,) = detector.detect([astronaut.convert("L")])
    assert len(found) == 1 and iou(found[0].box, ASTRO_FACE) > 0.6


def test_two_faces_left_to_right_and_max_faces_keeps_larger(
    detector: FaceDetector, two_faces: Image.Image
) -> None:
    (found,) = detector.detect([two_faces])
    assert len(found) == 2
    small, large = found
    assert small.box[0] < large.box[0]
    assert small.box[0] + small.box[2] < 170 <= large.box[0] + large.box[2]  # one face per head
    assert small.box[2] * small.box[3] < large.box[2] * large.box[3]

    (only,) = FaceDetector(max_faces=1).detect([two_faces])
    assert len(only) == 1
    assert only[0].box == pytest.approx(large.box, abs=1.0)


@pytest.mark.parametrize("name", ["gradient_noise", "cat"])
def test_no_face_gives_empty_list(detector: FaceDetector, no_face: Image.Image, name: str) -> None:
    image = no_face if name == "gradient_noise" else Image.fromarray(data.chelsea())
    assert detector.detect([image]) == [[]]


def test_tiny_image_and_empty_input(detector: FaceDetector) -> None:
    assert detector.detect([Image.new("RGB", (8, 8))]) == [[]]
    assert detector.detect([]) == []


def test_large_photo_boxes_in_original_pixels(
    detector: FaceDetector, astronaut: Image.Image
) -> None:
    factor = 3000 / 512
    big = astronaut.resize((3000, 3000), Image.Resampling.BICUBIC)
    (small_faces,) = detector.detect([astronaut])
    (found,) = detector.detect([big])
    assert len(found) == 1
    face = found[0]
    assert iou(face.box, scaled(small_faces[0].box, factor)) > 0.8
    assert iou(face.box, scaled(ASTRO_FACE, factor)) > 0.6


def test_batched_matches_one_by_one(
    monkeypatch: pytest.MonkeyPatch,
    detector: FaceDetector,
    astronaut: Image.Image,
    well_framed: Image.Image,
    two_faces: Image.Image,
    no_face: Image.Image,
) -> None:
    images = [
        astronaut,
        two_faces,
        ImageOps.mirror(astronaut),
        well_framed,
        no_face,
        astronaut.resize((700, 700), BILINEAR),
    ]
    singles = [detector.detect([image])[0] for image in images]

    calls: list[list[tuple[int, ...]]] = []
    real_detect = BatchedMTCNN.detect

    def counting(
        self: BatchedMTCNN,
        imgs: Sequence[torch.Tensor],
        min_face: Sequence[float] | float,
        most: int | None = None,
    ) -> list[torch.Tensor]:
        calls.append([tuple(i.shape) for i in imgs])
        return real_detect(self, imgs, min_face, most)

    monkeypatch.setattr(BatchedMTCNN, "detect", counting)
    batched = detector.detect(images)

    assert len(calls) == 1 and len(calls[0]) == len(images)  # sizes differ, one MTCNN pass
    assert len({shape for shape in calls[0]}) > 1
    counts = [len(found) for found in batched]
    assert counts == [len(found) for found in singles] == [1, 2, 1, 1, 0, 1]
    for got, expected in zip(batched, singles):
        for a, b in zip(got, expected):
            assert a.box == pytest.approx(b.box, abs=1.0)
            assert a.confidence == pytest.approx(b.confidence, abs=1e-3)


# --- the margin: a well-framed face crop comes back nearly unchanged -----------------------------


def test_well_framed_crop_stays_nearly_unchanged(
    detector: FaceDetector, well_framed: Image.Image
) -> None:
    frame = (0.0, 0.0, float(CROP_SIZE), float(CROP_SIZE))
    (found,) = detector.detect([well_framed])
    assert len(found) == 1
    box = found[0].box

    square = crop_box(box, MARGIN)
    assert iou(square, frame) > 0.8
    assert 0.9 < square[2] / CROP_SIZE < 1.1  # same scale as the frame

    margins = np.arange(0.0, 1.001, 0.01)
    best = margins[int(np.argmax([iou(crop_box(box, m), frame) for m in margins]))]
    assert abs(best - MARGIN) <= 0.1  # MARGIN sits near the best-fitting margin for this crop

    # Cropping the crop again frames it the same way: the rule is stable.
    (again,) = detector.detect([square_crop(well_framed, box)])
    assert len(again) == 1 and iou(crop_box(again[0].box, MARGIN), frame) > 0.8


def test_same_faces_as_facenet_on_the_search_copy(
    detector: FaceDetector, astronaut: Image.Image, two_faces: Image.Image
) -> None:
    """The batched detector finds what facenet-pytorch's MTCNN finds on the copy it searches
    (so the boxes are those of the per-image detector it replaced), in frame pixels."""
    from facenet_pytorch import MTCNN

    big = astronaut.resize((1800, 1800), BILINEAR)  # searched on a 1024 px copy
    for image in (astronaut, two_faces, ImageOps.mirror(two_faces), big):
        (found,) = detector.detect([image])
        (copy,) = detector._search_copies([image])
        facenet = MTCNN(keep_all=True, min_face_size=copy.min_face)
        boxes, probs = facenet.detect(Image.fromarray(copy.pixels.numpy()))
        sx, sy = copy.scale_x, copy.scale_y
        want = [
            ((x1 * sx, y1 * sy, (x2 - x1) * sx, (y2 - y1) * sy), p)
            for (x1, y1, x2, y2), p in zip(boxes, probs)
            if p >= detector.threshold
        ]
        want.sort(key=lambda bp: bp[0][0])
        assert len(found) == len(want) > 0
        for got, (box, p) in zip(found, want):
            assert iou(got.box, box) >= 0.98
            assert abs(got.confidence - p) <= 1e-3
