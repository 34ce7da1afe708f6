"""Decoding images for the models: full decode, EXIF orientation, 8-bit RGB, one-line failures.

On a GPU, plain JPEGs are decoded there, a batch at once (nvJPEG): `read_jpeg` reads a file's
bytes and checks them as Pillow would, where the files are read, and `decode_jpegs` decodes
them on the model's device, orientation applied; anything else takes `load_image`.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import stat
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, TypeVar

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import ConfigError, ImageError
from ..records import Encoded

if TYPE_CHECKING:
    import torch

T = TypeVar("T")

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")

#: What Pillow may decode, whatever a file's name says: still raster formats read in-process.
#: Left out: PostScript (EPS, which Pillow hands to Ghostscript, an external program), vector
#: WMF, and the stubs (BUFR, GRIB, HDF5, MPEG) and metadata (IPTC) that are no pictures.
DECODE_FORMATS: tuple[str, ...] = (
    *("JPEG", "PNG", "BMP", "DIB", "WEBP", "TIFF", "GIF", "JPEG2000", "AVIF", "PPM", "TGA"),
    *("ICO", "CUR", "ICNS", "PCX", "DCX", "SGI", "SUN", "PSD", "QOI", "DDS", "BLP", "FTEX"),
    *("GBR", "IM", "IMT", "MCIDAS", "MSP", "PCD", "PIXAR", "SPIDER", "XBM", "XPM", "XVTHUMB"),
    *("FITS", "FLI"),
)

#: Modes whose samples are wider than 8 bits, and the largest value their range reaches.
_WIDE_MODES = {"I;16": 65535, "I;16L": 65535, "I;16B": 65535, "I;16N": 65535}


def is_image_path(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def special_file_reason(path: str | Path) -> str | None:
    """Why `path` must not be opened as a file (a pipe would block for ever), or None.

    Follows links: a link to a regular file is a regular file.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "is a symbolic link to a missing file" if os.path.islink(path) else "no such file"
    except PermissionError:
        return "permission denied"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "is a symbolic link that loops (it leads back to itself)"
        return f"cannot be read ({exc.strerror or exc})"
    reason = _mode_reason(mode)
    return f"{reason}; skipped without opening it" if reason and "folder" not in reason else reason


def _mode_reason(mode: int) -> str | None:
    """Why a file of this `st_mode` is not read as an image, or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "is a folder"
    kind = (
        "a named pipe"
        if stat.S_ISFIFO(mode)
        else "a socket"
        if stat.S_ISSOCK(mode)
        else "a device"
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
        else "a special file"
    )
    return f"is {kind}, not a regular file"


def open_input(path: str | Path) -> BinaryIO:
    """`path` opened for reading, only when what was opened is a regular file.

    The name is checked before (`special_file_reason`), but it may be swapped for a named pipe
    between that check and the open, and a pipe's open or read blocks for ever: so it is opened
    without blocking, and the descriptor itself is checked.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        reason = _mode_reason(os.fstat(fd).st_mode)
        if reason:
            raise ImageError(f"{reason} (it was replaced after the inputs were listed)")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def to_rgb(image: Image.Image) -> Image.Image:
    """Any mode Pillow decodes as 8-bit RGB; samples wider than 8 bits are scaled, not clipped.

    Pillow's own `convert("RGB")` clips 16-bit gray at 255 (nearly white) and has no route
    from some modes; 16-bit images are divided by 257, 32-bit integer ones by their range,
    float ones mapped from [0, 1] (or their own range when they exceed it).
    """
    if image.mode == "RGB":
        return image
    wide = _WIDE_MODES.get(image.mode)
    if wide is not None or image.mode in ("I", "F"):
        array = np.asarray(image, dtype=np.float64)
        top = float(wide) if wide is not None else 0.0
        if wide is None:
            low, high = float(array.min(initial=0.0)), float(array.max(initial=0.0))
            if image.mode == "F" and low >= 0.0 and high <= 1.0:
                top = 1.0
            elif low >= 0.0 and high <= 255.0:
                top = 255.0
            else:
                array, top = array - min(low, 0.0), max(high - min(low, 0.0), 1.0)
        gray = np.clip(np.rint(array * (255.0 / top)), 0, 255).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    try:
        return image.convert("RGB")
    except ValueError as exc:
        raise ImageError(
            f"its colour mode {image.mode} cannot be converted to RGB ({exc})"
        ) from None


def load_image(source: str | Path | BinaryIO) -> Image.Image:
    """Fully decoded 8-bit RGB image, rotated upright by its EXIF orientation.

    The reference ignores EXIF, so phone photos reach its model sideways; this is the one
    deliberate difference from its preprocessing. Truncated files and decompression bombs are
    errors rather than half-grey or gigantic images, and anything that is not a regular file
    (a pipe, a device) is refused before it is opened. `source` may also be an open file.
    """
    if isinstance(source, (str, Path)):
        reason = special_file_reason(source)
        if reason:
            raise ImageError(reason)

    def decode() -> Image.Image:
        with contextlib.ExitStack() as stack:
            if isinstance(source, (str, Path)):  # the caller's own file stays open
                file: BinaryIO = stack.enter_context(open_input(source))
            else:
                file = source
            image = stack.enter_context(Image.open(file, formats=DECODE_FORMATS))
            image.load()
            return to_rgb(ImageOps.exif_transpose(image))

    return _guarded(decode)


def image_pixels(path: str | Path) -> int:
    """The pixel count an image file's header gives, without decoding it; 0 when it gives
    none (the file then fails where it is decoded, with its reason)."""
    if special_file_reason(path):
        return 0
    try:
        with warnings.catch_warnings(), open_input(path) as file:
            warnings.simplefilter("ignore")
            with Image.open(file, formats=DECODE_FORMATS) as image:
                return int(image.width) * int(image.height)
    except Exception:  # noqa: BLE001 - whatever is wrong with it is decoding's to say
        return 0


_ORIENTATION = 0x0112
"""The EXIF tag of how the picture is turned (1 upright ... 8)."""

_JPEG_START = b"\xff\xd8\xff"


def read_jpeg(path: str | Path) -> tuple[Encoded, tuple[int, int]] | None:
    """A JPEG file's bytes, and its (width, height) once upright, when a GPU's decoder reads it
    as Pillow would: a complete baseline JPEG, in colour (YCbCr) or grey. None for any other
    file (progressive, CMYK, Adobe RGB, PNG, ...), which `load_image` then decodes.

    The checks Pillow makes before decoding (a pipe, a missing file, a decompression bomb, a
    header it cannot read) fail here alike, with `load_image`'s reasons; a file cut short (no
    end-of-image marker) goes to `load_image`, which says so.
    """
    reason = special_file_reason(path)
    if reason:
        raise ImageError(reason)

    def check() -> tuple[Encoded, tuple[int, int]] | None:
        with open_input(path) as file:
            if file.read(3) != _JPEG_START:
                return None
            data = _JPEG_START + file.read()
        if not data.rstrip(b"\0").endswith(b"\xff\xd9"):
            return None
        with Image.open(io.BytesIO(data), formats=["JPEG"]) as image:
            plain = image.format == "JPEG" and image.mode in ("RGB", "L")
            if not plain or "progressive" in image.info or "adobe" in image.info:
                return None
            width, height = image.size
            try:
                orientation = int(image.getexif().get(_ORIENTATION, 1))
            except Exception:  # noqa: BLE001 - damaged EXIF: load_image's own rules apply
                return None
        if orientation not in range(1, 9):
            orientation = 1
        return Encoded(data, orientation), (height, width) if orientation > 4 else (width, height)

    return _guarded(check)


def decode_jpegs(encoded: list[Encoded], device: torch.device) -> list[torch.Tensor]:
    """`read_jpeg`'s files as (H, W, 3) uint8 RGB tensors on `device`, upright: one batched
    call of torchvision's decoder (nvJPEG on CUDA, libjpeg-turbo on the CPU, where it gives
    Pillow's pixels). A batch it refuses is decoded file by file, and a file it refuses alone
    by `load_image`, so a damaged file fails with Pillow's reason."""
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg

    if not encoded:
        return []
    datas = [torch.frombuffer(bytearray(e.data), dtype=torch.uint8) for e in encoded]
    with warnings.catch_warnings():  # torchvision 0.29 deprecates its decoders for TorchCodec
        warnings.simplefilter("ignore")
        try:
            planes = decode_jpeg(datas, mode=ImageReadMode.RGB, device=device)
        except RuntimeError:
            if len(encoded) > 1:
                return [image for e in encoded for image in decode_jpegs([e], device)]
            image = load_image(io.BytesIO(encoded[0].data))
            return [torch.from_numpy(np.array(image, np.uint8)).to(device)]
    return [_upright(p, e.orientation).permute(1, 2, 0) for p, e in zip(planes, encoded)]


def _upright(planes: torch.Tensor, orientation: int) -> torch.Tensor:
    """(3, H, W) turned as EXIF `orientation` says (Pillow's `exif_transpose`): a view for 1
    and 5, a copy (torch's flip) for the others."""
    if orientation >= 5:  # 5-8 swap the axes first
        planes = planes.transpose(1, 2)
    flips = {2: (2,), 3: (1, 2), 4: (1,), 6: (2,), 7: (1, 2), 8: (1,)}.get(orientation)
    return planes.flip(flips) if flips else planes


def _guarded(read: Callable[[], T]) -> T:
    """read(), with Pillow's and the file system's failures as ImageError with a one-line
    reason; a damaged file's warnings silenced (they would break stderr's lines), decompression
    bombs raised."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return read()
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError("no such file") from None
    except IsADirectoryError:
        raise ImageError("is a folder") from None
    except PermissionError:
        raise ImageError("permission denied") from None
    except UnidentifiedImageError:
        raise ImageError(
            "not an image Pillow can read (corrupt, empty or another format)"
        ) from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise ImageError(
            f"too large (over {Image.MAX_IMAGE_PIXELS} pixels: possible decompression bomb)"
        ) from None
    except MemoryError:
        raise ImageError("too large to decode in the memory available") from None
    except Exception as exc:  # noqa: BLE001 - plugins raise anything on hostile files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ImageError(f"cannot be decoded ({reason})") from None


def as_pil(image: Image.Image | np.ndarray) -> Image.Image:
    """PIL images pass through (as RGB); NumPy arrays are H x W x 3 uint8 RGB or H x W gray."""
    if isinstance(image, Image.Image):
        return to_rgb(image)
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise ConfigError("NumPy images must be uint8", param="images", value=str(array.dtype))
    if array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4)):
        return Image.fromarray(array).convert("RGB")
    raise ConfigError(
        "NumPy images must be HxW or HxWx3 (RGB)", param="images", value=f"shape {array.shape}"
    )
