"""The evaluation preprocessing the OpenGraphAU models were trained with, as a small object."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

_MAX_RESIZED_PIXELS = 1 << 24
"""Above this the resize before the centre crop is skipped (see `_crop_then_resize`)."""


@dataclass(frozen=True)
class EvalTransform:
    """RGB PIL image -> normalised (3, crop, crop) tensor.

    Shorter side to `resize` with Pillow's bilinear filter, centre crop, ImageNet mean/std:
    exactly the reference's `image_eval`, so the same image gives the same numbers. It comes in
    two halves so the pixels can travel as bytes: `pixels` (uint8, wherever the image is
    decoded) and `normalize` (on the model's device, a quarter of the bytes to copy there).
    `tensor_pixels` is `pixels` for an image already on a device (decoded on a GPU): the same
    torchvision calls on a tensor, within a grey level of Pillow's.
    """

    resize: int = 256
    crop: int = 224
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.normalize(self.pixels(image))

    def pixels(self, image: Image.Image) -> torch.Tensor:
        """The resized, centre-cropped image as a uint8 (3, crop, crop) tensor."""
        if image.mode != "RGB":
            image = image.convert("RGB")
        if self._too_large(*image.size):
            image = self._crop_then_resize(image)
        else:
            image = TF.resize(image, self.resize, interpolation=InterpolationMode.BILINEAR)
            image = TF.center_crop(image, self.crop)
        return torch.from_numpy(np.array(image, np.uint8)).permute(2, 0, 1).contiguous()

    def tensor_pixels(self, image: torch.Tensor) -> torch.Tensor:
        """`pixels` of a (3, H, W) uint8 tensor, on its device."""
        if self._too_large(int(image.shape[2]), int(image.shape[1])):
            host = Image.fromarray(image.permute(1, 2, 0).cpu().numpy())
            return self.pixels(host).to(image.device)
        resized = TF.resize(
            image, self.resize, interpolation=InterpolationMode.BILINEAR, antialias=True
        )
        return TF.center_crop(resized, self.crop)

    def _too_large(self, width: int, height: int) -> bool:
        """Whether the resize before the centre crop would exceed `_MAX_RESIZED_PIXELS`."""
        short = min(width, height)
        return int(self.resize * max(width, height) / short) * self.resize > _MAX_RESIZED_PIXELS

    def _crop_then_resize(self, image: Image.Image) -> Image.Image:
        """The same crop of the same resize, made by resizing only the source region the crop
        keeps: a strip of 70000 x 2 pixels would otherwise be resized whole to 8960000 x 256
        (7 GB) first. Equal to the long road within one grey level."""
        width, height = image.size
        if width <= height:
            out_w, out_h = self.resize, int(self.resize * height / width)
        else:
            out_w, out_h = int(self.resize * width / height), self.resize
        top, left = round((out_h - self.crop) / 2), round((out_w - self.crop) / 2)
        sx, sy = width / out_w, height / out_h
        box = (left * sx, top * sy, (left + self.crop) * sx, (top + self.crop) * sy)
        return image.resize((self.crop, self.crop), Image.Resampling.BILINEAR, box=box)

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 (..., 3, H, W) on any device -> float32, the operations of torchvision's
        to_tensor and normalize in their order, so the numbers are theirs to the last bit."""
        mean = torch.tensor(self.mean, device=pixels.device).view(3, 1, 1)
        std = torch.tensor(self.std, device=pixels.device).view(3, 1, 1)
        return pixels.to(torch.float32).div_(255).sub_(mean).div_(std)


def resize_pixels(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(3, H, W) or (N, 3, H, W) uint8 -> (..., 3, size[0], size[1]) uint8, on its device:
    torchvision's antialiased bilinear, which follows Pillow's BILINEAR to within a grey level."""
    return TF.resize(image, list(size), interpolation=InterpolationMode.BILINEAR, antialias=True)
