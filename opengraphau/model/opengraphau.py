"""The whole OpenGraphAU network: backbone tokens -> global LinearBlock -> ANFL or MEFL head."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from .anfl import ANFLHead
from .blocks import LinearBlock
from .mefl import MEFLHead
from .transforms import EvalTransform
from .variants import STAGES, get_variant


class OpenGraphAU(nn.Module):
    """Normalised images (B, 3, 224, 224) -> 41 AU probabilities (B, 41), in `aus.AU_IDS` order."""

    def __init__(self, *, arch: str, stage: int) -> None:
        super().__init__()
        variant = get_variant(arch)
        if stage not in STAGES:
            raise ConfigError("choose 1 (ANFL) or 2 (MEFL)", param="stage", value=stage)
        self.arch, self.stage = arch, stage
        self.backbone = variant.family_module().build(variant)
        self.global_linear = LinearBlock(variant.num_features, variant.channels)
        self.head = ANFLHead(variant.channels) if stage == 1 else MEFLHead(variant.channels)
        #: The preprocessing these weights expect; it travels with the model.
        self.preprocess = EvalTransform()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.global_linear(self.backbone(x)))


def build_model(*, arch: str, stage: int) -> OpenGraphAU:
    """A randomly initialised model in eval mode (load weights with `load_model`)."""
    return OpenGraphAU(arch=arch, stage=stage).eval()


def untrained_model(arch: str | None = None, stage: int | None = None) -> OpenGraphAU:
    """Random weights (seeded, so runs repeat) for smoke tests without a checkpoint."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build_model(arch=arch or "resnet50", stage=stage or 1)
