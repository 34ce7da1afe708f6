"""Decoding images for the models: full decode, EXIF orientation, RGB, and one-line failure reasons."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


class ImageError(Exception):
    """An input that cannot be used as an image; the message is the reason, without the path."""


def is_image_path(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def load_image(path: str | Path) -> Image.Image:
    """Fully decoded RGB image, rotated upright by its EXIF orientation.

    The reference ignores EXIF, so phone photos reach its model sideways; this is the one
    deliberate difference from its preprocessing. Truncated files and decompression bombs are
    errors rather than half-grey or gigantic images.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()
                image = ImageOps.exif_transpose(image)
                return image.convert("RGB")
    except FileNotFoundError:
        raise ImageError("no such file") from None
    except IsADirectoryError:
        raise ImageError("is a folder") from None
    except PermissionError:
        raise ImageError("permission denied") from None
    except UnidentifiedImageError:
        raise ImageError("not an image Pillow can read (corrupt, empty or another format)") from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise ImageError(f"too large (over {Image.MAX_IMAGE_PIXELS} pixels: "
                         "possible decompression bomb)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        reason = str(exc).strip() or type(exc).__name__
        raise ImageError(f"cannot be decoded ({reason})") from None


def as_pil(image: Image.Image | np.ndarray) -> Image.Image:
    """PIL images pass through (as RGB); NumPy arrays are H x W x 3 uint8 RGB or H x W gray."""
    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise ValueError(f"NumPy images must be uint8, got {array.dtype}")
    if array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4)):
        return Image.fromarray(array).convert("RGB")
    raise ValueError(f"NumPy images must be HxW or HxWx3 (RGB), got shape {array.shape}")
