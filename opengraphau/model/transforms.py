"""The evaluation preprocessing the OpenGraphAU models were trained with, as a small object."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF


@dataclass(frozen=True)
class EvalTransform:
    """RGB PIL image -> normalised (3, crop, crop) tensor.

    Shorter side to `resize` with Pillow's bilinear filter, centre crop, ImageNet mean/std:
    exactly the reference's `image_eval`, so the same image gives the same numbers.
    """

    resize: int = 256
    crop: int = 224
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        if image.mode != "RGB":
            image = image.convert("RGB")
        image = TF.resize(image, self.resize, interpolation=InterpolationMode.BILINEAR)
        image = TF.center_crop(image, self.crop)
        return TF.normalize(TF.to_tensor(image), self.mean, self.std)
