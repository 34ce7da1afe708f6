"""Preprocessing: the reference's eval transform, any image mode, EXIF orientation, bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from opengraphau.model import EvalTransform
from opengraphau.sources.images import ImageError, as_pil, load_image

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def _independent(image: Image.Image) -> np.ndarray:
    """Shorter side to 256 (Pillow bilinear), centre 224 crop, ImageNet normalisation, CHW."""
    w, h = image.size
    if w <= h:
        size = (256, int(256 * h / w))
    else:
        size = (int(256 * w / h), 256)
    resized = image.resize(size, Image.Resampling.BILINEAR)
    left = int(round((size[0] - 224) / 2.0))
    top = int(round((size[1] - 224) / 2.0))
    crop = np.asarray(resized.crop((left, top, left + 224, top + 224)), np.float32) / 255.0
    return ((crop - MEAN) / STD).transpose(2, 0, 1)


@pytest.mark.parametrize("size", [(320, 480), (640, 300), (256, 256), (100, 90)])
def test_eval_transform_matches_the_reference_recipe(size: tuple[int, int]) -> None:
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    out = EvalTransform()(image)
    assert out.shape == (3, 224, 224) and out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), _independent(image), atol=1e-6)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK", "LA", "I;16"])
def test_any_mode_becomes_rgb(mode: str, tmp_path: Path) -> None:
    rgb = Image.fromarray(np.random.default_rng(1).integers(0, 256, (60, 80, 3), dtype=np.uint8))
    image = rgb.convert(mode) if mode != "I;16" else rgb.convert("L").convert("I;16")
    suffix = ".tif" if mode in ("CMYK", "I;16") else ".png"
    image.save(tmp_path / f"x{suffix}")
    loaded = load_image(tmp_path / f"x{suffix}")
    assert loaded.mode == "RGB" and loaded.size == (80, 60)
    assert EvalTransform()(loaded).shape == (3, 224, 224)


def test_gray_image_gives_equal_channels(tmp_path: Path) -> None:
    gray = Image.fromarray(np.tile(np.arange(200, dtype=np.uint8), (100, 1)))
    gray.save(tmp_path / "g.png")
    loaded = np.asarray(load_image(tmp_path / "g.png"))
    assert (loaded[..., 0] == loaded[..., 1]).all() and (loaded[..., 1] == loaded[..., 2]).all()


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    """Orientation 6 means 'rotate 90° clockwise to view': a wide file shows tall."""
    pixels = np.zeros((40, 100, 3), np.uint8)
    pixels[:, :10] = 255  # white band on the stored image's left edge
    image = Image.fromarray(pixels)
    exif = Image.Exif()
    exif[0x0112] = 6
    image.save(tmp_path / "phone.jpg", exif=exif.tobytes(), quality=100)
    loaded = np.asarray(load_image(tmp_path / "phone.jpg"))
    assert loaded.shape[:2] == (100, 40)
    assert loaded[:10].mean() > 200 and loaded[20:].mean() < 30  # left edge became the top


def test_truncated_and_corrupt_images_are_errors(tmp_path: Path) -> None:
    rgb = Image.fromarray(np.random.default_rng(2).integers(0, 256, (200, 200, 3), dtype=np.uint8))
    rgb.save(tmp_path / "full.jpg")
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="cannot be decoded"):
        load_image(tmp_path / "cut.jpg")
    (tmp_path / "noise.jpg").write_bytes(np.random.default_rng(3).bytes(5000))
    with pytest.raises(ImageError, match="not an image"):
        load_image(tmp_path / "noise.jpg")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageError):
        load_image(tmp_path / "empty.png")
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "missing.png")


def test_numpy_inputs() -> None:
    array = np.random.default_rng(4).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    assert np.array_equal(np.asarray(as_pil(array)), array)
    assert as_pil(array[..., 0]).mode == "RGB"
    with pytest.raises(ValueError):
        as_pil(array.astype(np.float32))
