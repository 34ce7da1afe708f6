"""The whole OpenGraphAU network: backbone tokens -> global LinearBlock -> ANFL or MEFL head."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from conf import ARCHS, STAGES

from .anfl import ANFLHead
from .blocks import LinearBlock
from .mae import build_mae
from .mefl import MEFLHead
from .resnet import build_resnet
from .swin import build_swin
from .transforms import EvalTransform

_BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "resnet18": build_resnet, "resnet50": build_resnet, "resnet101": build_resnet,
    "swin_transformer_tiny": build_swin, "swin_transformer_small": build_swin,
    "swin_transformer_base": build_swin, "mae": build_mae,
}


class OpenGraphAU(nn.Module):
    """Normalised images (B, 3, 224, 224) -> 41 AU probabilities (B, 41), in `conf.AU_IDS` order."""

    def __init__(self, *, arch: str, stage: int) -> None:
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"unknown arch {arch!r}; choose one of {', '.join(ARCHS)}")
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; choose 1 or 2")
        self.arch, self.stage = arch, stage
        self.backbone = _BACKBONES[arch](arch=arch)
        in_channels = self.backbone.num_features
        channels = in_channels // 4 if arch.startswith("resnet") else in_channels // 2
        self.global_linear = LinearBlock(in_channels, channels)
        self.head = ANFLHead(channels) if stage == 1 else MEFLHead(channels)
        #: The preprocessing these weights expect; it travels with the model.
        self.preprocess = EvalTransform()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.global_linear(self.backbone(x)))


def build_model(*, arch: str, stage: int) -> OpenGraphAU:
    """A randomly initialised model in eval mode (load weights with `model.load_model`)."""
    return OpenGraphAU(arch=arch, stage=stage).eval()
