"""The one pipeline: the same records from every way of feeding it, crops on the device equal to
Pillow's within rounding, and the GPU formulation of stage 2's pair scores equal to the CPU's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from factories import iou
from opengraphau.errors import DeviceError
from opengraphau.faces.crop import CROP_SIZE, crop_faces, square_crop
from opengraphau.faces.detector import FaceDetector
from opengraphau.model import load_model
from opengraphau.model.mefl import _batched_pair_softmax_mean, _pair_softmax_mean
from opengraphau.pipeline import Pipeline, crop_mode, default_batch_size
from opengraphau.predictor import AUPredictor
from opengraphau.records import FaceRecord, Frame


@pytest.fixture(scope="module")
def photos() -> list[Frame]:
    """The astronaut, a smaller two-face composite and a faceless cat."""
    astronaut = data.astronaut()
    head = Image.fromarray(astronaut).crop((130, 10, 330, 210))
    pair = Image.new("RGB", (400, 230), (128, 128, 128))
    pair.paste(head.resize((120, 120)), (10, 60))
    pair.paste(head.transpose(Image.Transpose.FLIP_LEFT_RIGHT), (190, 15))
    return [
        Frame.of("astronaut", astronaut),
        Frame.of("pair", np.asarray(pair)),
        Frame.of("cat", data.chelsea()),
    ]


def pixels(frame: Frame) -> np.ndarray:
    """The picture of one of `photos`, which are all made from pixels."""
    assert frame.image is not None
    return frame.image


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector()


def test_records_per_frame(resnet18_s2: Path, photos: list[Frame], detector: FaceDetector) -> None:
    pipeline = Pipeline(load_model(resnet18_s2), detector=detector, batch_size=2)
    records = pipeline(photos)
    assert [len(r) for r in records] == [1, 2, 1]
    assert [r.success for r in records[2]] == [False]
    left, right = records[1]
    assert left.box is not None and right.box is not None
    assert (left.face_id, right.face_id) == (0, 1) and left.box[0] < right.box[0]
    for face in (*records[0], left, right):
        assert face.probs is not None and face.embedding is not None
        assert face.probs.shape == (41,) and face.embedding.shape == (512,)
        assert np.linalg.norm(face.embedding) == pytest.approx(1.0, abs=1e-5)
    # The two views of the same head look alike to the backbone, the cat is not there at all.
    assert left.embedding is not None and right.embedding is not None
    assert float(left.embedding @ right.embedding) > 0.5
    assert pipeline.times.detect > 0 and pipeline.times.model > 0


def test_submit_then_result_equals_a_call(
    resnet18_s1: Path, photos: list[Frame], detector: FaceDetector
) -> None:
    pipeline = Pipeline(load_model(resnet18_s1), detector=detector)
    first, second = pipeline.submit(photos[:2]), pipeline.submit(photos[2:])
    together = first.result() + second.result()
    for got, want in zip(together, pipeline(photos)):
        for a, b in zip(got, want):
            assert a.box == b.box and (a.probs is None) == (b.probs is None)
            if a.probs is not None and b.probs is not None:
                np.testing.assert_allclose(a.probs, b.probs, atol=1e-6)


def test_whole_frame_from_pixels_or_prepared_crop(resnet18_s1: Path, photos: list[Frame]) -> None:
    """Without detection a decoding worker may hand over only the model's crop."""
    pipeline = Pipeline(load_model(resnet18_s1))
    prepared = [
        Frame(
            f.source, 0, 0.0, None, f.size, pipeline.preprocess.pixels(Image.fromarray(pixels(f)))
        )
        for f in photos
    ]
    for frame, a, b in zip(photos, pipeline(photos), pipeline(prepared)):
        assert a[0].box == b[0].box == (0.0, 0.0, float(frame.size[0]), float(frame.size[1]))
        np.testing.assert_array_equal(a[0].probs, b[0].probs)


def test_tensor_crops_match_pillow_within_rounding(photos: list[Frame]) -> None:
    image = pixels(photos[0])
    boxes = [(180.0, 72.0, 90.0, 106.0), (-30.0, -20.0, 120.0, 100.0), (450.0, 400.0, 90, 150)]
    got = crop_faces(torch.from_numpy(image).permute(2, 0, 1), boxes)
    assert got.shape == (3, 3, CROP_SIZE, CROP_SIZE) and got.dtype == torch.uint8
    for crop, box in zip(got, boxes):
        want = np.asarray(square_crop(Image.fromarray(image), box)).astype(int)
        diff = np.abs(crop.permute(1, 2, 0).numpy().astype(int) - want)
        assert diff.max() <= 2 and diff.mean() < 0.2


def test_tensor_crop_mode_gives_nearly_the_pillow_numbers(
    resnet18_s2: Path, photos: list[Frame], detector: FaceDetector
) -> None:
    """The GPU's crop path, run on the CPU: same boxes, probabilities within rounding."""
    model = load_model(resnet18_s2)
    pil = Pipeline(model, detector=detector, crop="pil")(photos)
    tensor = Pipeline(model, detector=detector, crop="tensor")(photos)
    for a_frame, b_frame in zip(pil, tensor):
        for a, b in zip(a_frame, b_frame):
            assert a.box == b.box
            if a.probs is not None:
                assert np.abs(a.probs - b.probs).max() < 5e-3


def assert_same_face(got: FaceRecord, want: FaceRecord) -> None:
    """Two records of one found face: the same box and probabilities, within rounding."""
    assert got.box is not None and want.box is not None
    assert got.probs is not None and want.probs is not None
    assert iou(got.box, want.box) == pytest.approx(1.0)
    np.testing.assert_allclose(got.probs, want.probs, atol=1e-6)


def test_predictor_is_a_thin_caller(resnet18_s1: Path, photos: list[Frame]) -> None:
    predictor = AUPredictor(resnet18_s1, device="cpu", detect_faces=True)
    results = predictor.predict([pixels(f) for f in photos])
    direct = predictor.pipeline(photos)
    assert [len(r.faces) for r in results] == [1, 2, 0]
    for result, records in zip(results, direct):
        for face, record in zip(result.faces, records):
            assert_same_face(face, record)


def test_a_batch_too_large_for_the_device_is_split_until_it_fits(
    resnet18_s1: Path, photos: list[Frame], detector: FaceDetector, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = Pipeline(load_model(resnet18_s1), detector=detector)
    frames = photos * 2
    expected = pipeline(frames)
    locate, sizes = Pipeline.locate, []

    def tight(self, batch, images=None):  # a device that holds two frames at most
        sizes.append(len(batch))
        if len(batch) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return locate(self, batch, images)

    monkeypatch.setattr(Pipeline, "locate", tight)
    split = pipeline(frames)
    assert sizes == [6, 3, 2, 2, 2] and pipeline.frames_that_fit == 2
    assert [len(r) for r in split] == [len(r) for r in expected] == [1, 2, 1, 1, 2, 1]
    for got, want in zip(sum(split, []), sum(expected, [])):
        assert (got.source, got.face_id, got.success) == (want.source, want.face_id, want.success)
        if want.success:
            assert_same_face(got, want)
    sizes.clear()
    assert [len(r) for r in pipeline(photos)] == [1, 2, 1] and sizes == [2, 1]
    cat = photos[2]  # a part without faces joins one with faces
    records = pipeline([cat, cat, *photos[:2]])
    assert [[r.success for r in frame] for frame in records] == [
        [False],
        [False],
        [True],
        [True, True],
    ]
    got_probs, want_probs = records[2][0].probs, expected[0][0].probs
    assert got_probs is not None and want_probs is not None
    np.testing.assert_allclose(got_probs, want_probs, atol=1e-6)
    # A frame too large on its own fails alone; the batches keep the size that fitted.
    monkeypatch.setattr(Pipeline, "locate", lambda self, batch, images=None: tight(self, batch * 3))
    with pytest.raises(DeviceError, match=r"on cpu for this frame alone \(512x512 px\)"):
        pipeline(photos[:1])
    assert pipeline.frames_that_fit == 2


def test_defaults_follow_the_device(resnet18_s1: Path) -> None:
    assert default_batch_size(torch.device("cpu")) == 16
    assert default_batch_size(torch.device("cuda", 1)) == 64
    assert crop_mode(exact_pixels=True) == "pil" and crop_mode(exact_pixels=False) == "auto"
    pipeline = AUPredictor(resnet18_s1, device="cpu").pipeline
    assert (pipeline.batch_size, pipeline.crop) == (16, "pil")
    assert AUPredictor(resnet18_s1, device="cpu", batch_size=3).pipeline.batch_size == 3


@pytest.mark.parametrize("budget", [1 << 28, 2 * 27 * 27 * 49 * 49, 27 * 49 * 49 * 5, 1])
def test_gpu_pair_scores_equal_the_cpu_blocks(budget: int) -> None:
    """Whole images per call, several images, chunks of query AUs, one AU at a time."""
    gen = torch.Generator().manual_seed(0)
    n, d = 27, 49
    attn = torch.softmax(torch.randn(3, n, d, d, generator=gen), dim=-1)
    left = torch.randn(3, n, d, d, generator=gen)
    want = _pair_softmax_mean(left, attn)
    got = _batched_pair_softmax_mean(left, attn, budget)
    assert got.shape == (3, n, n, d)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
