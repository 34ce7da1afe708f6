"""The GPU's road, run on the CPU where it can be: JPEG bytes read where files are read and
decoded on the model's device (torchvision's decoder, libjpeg-turbo here: Pillow's pixels to the
bit), EXIF orientation applied there, the whole-frame crop made by torch, and the pipeline fed
bytes giving what it gives for pixels. Tests marked cuda run the same on a GPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from factories import iou
from opengraphau.engines.local import Decode
from opengraphau.errors import ImageError
from opengraphau.faces.detector import FaceDetector
from opengraphau.model import load_model
from opengraphau.model.transforms import EvalTransform
from opengraphau.pipeline import Pipeline
from opengraphau.records import Encoded, Frame
from opengraphau.sources.images import decode_jpegs, load_image, read_jpeg
from opengraphau.sources.inputs import InputItem

CPU = torch.device("cpu")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def photo(width: int = 160, height: int = 120, seed: int = 0) -> Image.Image:
    """A picture with structure in every direction, so any turn or flip shows."""
    rng = np.random.default_rng(seed)
    smooth = Image.fromarray(rng.integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8))
    return smooth.resize((width, height), Image.Resampling.BICUBIC)


def save_jpeg(image: Image.Image, path: Path, orientation: int | None = None, **options) -> Path:
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        options["exif"] = exif.tobytes()
    image.save(path, quality=90, **options)
    return path


def jpeg_bytes(path: Path) -> Encoded:
    """The bytes of a JPEG that the device's decoder takes."""
    jpeg = read_jpeg(path)
    assert jpeg is not None, path
    return jpeg[0]


def decoded(path: Path) -> np.ndarray:
    jpeg = read_jpeg(path)
    assert jpeg is not None, path
    (image,) = decode_jpegs([jpeg[0]], CPU)
    assert tuple(jpeg[1]) == (image.shape[1], image.shape[0])
    return image.numpy()


@pytest.mark.parametrize("orientation", [None, 1, 2, 3, 4, 5, 6, 7, 8])
def test_device_decoding_gives_pillows_upright_pixels(
    orientation: int | None, tmp_path: Path
) -> None:
    path = save_jpeg(photo(), tmp_path / "x.jpg", orientation)
    assert np.array_equal(decoded(path), np.asarray(load_image(path)))


def test_grey_and_subsampled_jpegs_decode_as_pillow_does(tmp_path: Path) -> None:
    grey = save_jpeg(photo().convert("L"), tmp_path / "grey.jpg")
    full = save_jpeg(photo(seed=1), tmp_path / "444.jpg", subsampling=0)
    odd = save_jpeg(photo(101, 67, seed=2), tmp_path / "odd.jpg")
    for path in (grey, full, odd):
        assert np.array_equal(decoded(path), np.asarray(load_image(path))), path.name


def test_a_batch_decodes_like_its_files_one_by_one(tmp_path: Path) -> None:
    paths = [
        save_jpeg(photo(80 + 16 * n, 60 + 8 * n, seed=n), tmp_path / f"{n}.jpg", n % 8 + 1)
        for n in range(6)
    ]
    batch = decode_jpegs([jpeg_bytes(p) for p in paths], CPU)
    for path, image in zip(paths, batch):
        assert np.array_equal(image.numpy(), np.asarray(load_image(path))), path.name


def test_jpegs_the_device_should_not_decode_are_left_to_pillow(tmp_path: Path) -> None:
    image = photo()
    progressive = save_jpeg(image, tmp_path / "p.jpg", progressive=True)
    cmyk = save_jpeg(image.convert("CMYK"), tmp_path / "cmyk.jpg")
    png = tmp_path / "x.png"
    image.save(png)
    whole = save_jpeg(image, tmp_path / "whole.jpg").read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(whole[: len(whole) // 2])
    for path in (progressive, cmyk, png, cut):
        assert read_jpeg(path) is None, path.name
    with pytest.raises(ImageError, match="cannot be decoded"):
        load_image(cut)


def test_files_read_for_the_device_fail_with_pillows_reasons(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ImageError, match="no such file"):
        read_jpeg(tmp_path / "missing.jpg")
    (tmp_path / "folder.jpg").mkdir()
    with pytest.raises(ImageError, match="is a folder"):
        read_jpeg(tmp_path / "folder.jpg")
    big = save_jpeg(photo(), tmp_path / "big.jpg")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(ImageError, match="decompression bomb"):
        read_jpeg(big)
    noise = tmp_path / "noise.jpg"
    noise.write_bytes(b"\xff\xd8\xff" + np.random.default_rng(0).bytes(3000) + b"\xff\xd9")
    with pytest.raises(ImageError, match="not an image"):
        read_jpeg(noise)


def test_damaged_exif_is_read_as_load_image_reads_it(tmp_path: Path) -> None:
    picture = photo(24, 20)
    exif = Image.Exif()
    exif[0x0112] = 99  # an orientation that does not exist
    picture.save(tmp_path / "orientation.jpg", exif=exif)
    picture.save(tmp_path / "noise.jpg", exif=b"Exif\x00\x00" + np.random.default_rng(1).bytes(300))
    picture.save(tmp_path / "cut.jpg", exif=b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x05")
    for name in ("orientation.jpg", "noise.jpg", "cut.jpg"):
        jpeg = read_jpeg(tmp_path / name)
        if jpeg is not None:  # else load_image decodes it, as on the CPU
            (image,) = decode_jpegs([jpeg[0]], CPU)
            assert np.array_equal(image.numpy(), np.asarray(load_image(tmp_path / name))), name


def test_a_jpeg_the_decoder_refuses_falls_back_to_pillow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """nvJPEG may refuse a file Pillow reads (or a batch for one such file): the batch is
    decoded file by file, and the refused file by Pillow, upright like the rest."""
    import torchvision.io

    good = save_jpeg(photo(), tmp_path / "good.jpg", 3)
    odd = save_jpeg(photo(seed=5), tmp_path / "odd.jpg", 6)
    refused = jpeg_bytes(odd).data
    real = torchvision.io.decode_jpeg
    calls = []

    def picky(input, *args, **kwargs):
        calls.append(len(input) if isinstance(input, list) else 1)
        inputs = input if isinstance(input, list) else [input]
        if any(bytes(t.numpy()) == refused for t in inputs):
            raise RuntimeError("nvjpeg: unsupported")
        return real(input, *args, **kwargs)

    monkeypatch.setattr(torchvision.io, "decode_jpeg", picky)
    first, second = decode_jpegs([jpeg_bytes(good), jpeg_bytes(odd)], CPU)
    assert calls == [2, 1, 1]
    assert np.array_equal(first.numpy(), np.asarray(load_image(good)))
    assert np.array_equal(second.numpy(), np.asarray(load_image(odd)))


def test_decode_hands_over_bytes_for_jpegs_and_pixels_for_the_rest(tmp_path: Path) -> None:
    jpeg = save_jpeg(photo(), tmp_path / "a.jpg", 6)
    png = tmp_path / "b.png"
    photo().save(png)
    items = [
        InputItem(str(jpeg), "image"),
        InputItem(str(png), "image"),
        InputItem(str(tmp_path / "gone.jpg"), "image"),
    ]
    dataset = Decode(items, EvalTransform(), pixels=True, prepare=False, encoded=True)
    (_, a, _), (_, b, _), (_, gone, why) = dataset[0], dataset[1], dataset[2]
    assert a is not None and b is not None
    assert a.encoded is not None and a.image is None and a.size == (120, 160)
    assert b.encoded is None and b.image is not None and b.image.shape == (120, 160, 3)
    assert gone is None and why == "no such file"


@pytest.mark.parametrize("size", [(320, 480), (640, 300), (256, 256), (100, 90), (2000, 3)])
def test_whole_frame_crop_on_the_device_is_pillows_within_a_grey_level(size) -> None:
    image = (
        photo(*size)
        if min(size) >= 8
        else Image.fromarray(
            np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        )
    )
    want = EvalTransform().pixels(image).int()
    got = EvalTransform().tensor_pixels(torch.from_numpy(np.array(image)).permute(2, 0, 1))
    assert got.shape == want.shape == (3, 224, 224) and got.dtype == torch.uint8
    assert (got.int() - want).abs().max() <= 1


@pytest.fixture(scope="module")
def jpeg_photos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The astronaut, turned by EXIF, beside a two-face composite, the faceless cat and the
    astronaut at 1300 px (searched on a smaller copy)."""
    folder = tmp_path_factory.mktemp("jpegs")
    astronaut = Image.fromarray(data.astronaut())
    head = astronaut.crop((130, 10, 330, 210))
    pair = Image.new("RGB", (400, 230), (128, 128, 128))
    pair.paste(head.resize((120, 120)), (10, 60))
    pair.paste(head.transpose(Image.Transpose.FLIP_LEFT_RIGHT), (190, 15))
    return [
        save_jpeg(astronaut.transpose(Image.Transpose.ROTATE_90), folder / "turned.jpg", 6),
        save_jpeg(pair, folder / "pair.jpg"),
        save_jpeg(Image.fromarray(data.chelsea()), folder / "cat.jpg"),
        save_jpeg(astronaut.resize((1300, 1300)), folder / "large.jpg"),
    ]


def frames_of(paths: list[Path], *, encoded: bool) -> list[Frame]:
    items = [InputItem(str(p), "image") for p in paths]
    dataset = Decode(items, EvalTransform(), pixels=True, prepare=False, encoded=encoded)
    frames = []
    for i, path in enumerate(paths):
        frame = dataset[i][1]
        assert frame is not None, path
        frames.append(frame)
    return frames


@pytest.mark.parametrize("detect", [True, False])
def test_the_pipeline_fed_bytes_gives_what_it_gives_for_pixels(
    detect: bool, resnet18_s2: Path, jpeg_photos: list[Path]
) -> None:
    model = load_model(resnet18_s2)
    pipeline = Pipeline(model, detector=FaceDetector() if detect else None, crop="tensor")
    from_bytes = pipeline(frames_of(jpeg_photos, encoded=True))
    from_pixels = pipeline(frames_of(jpeg_photos, encoded=False))
    assert [len(r) for r in from_bytes] == ([1, 2, 1, 1] if detect else [1, 1, 1, 1])
    for got, want in zip(from_bytes, from_pixels):
        for a, b in zip(got, want):
            assert a.box == b.box
            if a.probs is not None:
                np.testing.assert_array_equal(a.probs, b.probs)


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("detect", [True, False])
def test_the_gpu_road_agrees_with_the_cpus(
    detect: bool, resnet18_s2: Path, jpeg_photos: list[Path]
) -> None:
    """Decoded by nvJPEG, searched, cropped and resized on the GPU: the CPU's faces, with
    probabilities within what a grey level of the pixels moves."""
    cpu = Pipeline(load_model(resnet18_s2), detector=FaceDetector() if detect else None)
    gpu = Pipeline(
        load_model(resnet18_s2, device="cuda"),
        detector=FaceDetector(device="cuda") if detect else None,
    )
    want = cpu(frames_of(jpeg_photos, encoded=False))
    for frames in (frames_of(jpeg_photos, encoded=True), frames_of(jpeg_photos, encoded=False)):
        got = gpu(frames)
        assert [len(r) for r in got] == [len(r) for r in want]
        for a_frame, b_frame in zip(got, want):
            for a, b in zip(a_frame, b_frame):
                if a.box is not None:
                    assert b.box is not None and iou(a.box, b.box) >= 0.98
                if a.probs is not None:
                    assert np.abs(a.probs - b.probs).max() < 0.02
