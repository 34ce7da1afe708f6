"""ResNet-18/50/101 backbones: torchvision's ResNet, returning the last feature map as 49 tokens.

The official checkpoints use torchvision's key layout (without `fc`), so no conversion is needed.
"""

from __future__ import annotations

import re

import torch
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from .variants import Variant

_BLOCKS: dict[str, type[BasicBlock] | type[Bottleneck]] = {
    "basic": BasicBlock,
    "bottleneck": Bottleneck,
}


class ResNetTokens(ResNet):
    """torchvision ResNet without pooling and classifier: (B, 3, H, W) -> (B, HW/1024, C)."""

    def __init__(self, block: str, layers: tuple[int, ...]) -> None:
        super().__init__(_BLOCKS[block], list(layers))
        self.num_features = self.fc.in_features
        del self.fc, self.avgpool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return x.flatten(2).transpose(1, 2)


def build(variant: Variant) -> ResNetTokens:
    return ResNetTokens(variant.config["block"], variant.config["layers"])


def matches(variant: Variant, state: dict[str, torch.Tensor]) -> bool:
    """Whether the backbone keys of `state` (official layout) are this variant's."""
    if "backbone.conv1.weight" not in state:
        return False
    bottleneck = "backbone.layer1.0.conv3.weight" in state
    blocks = {m.group(1) for k in state if (m := re.match(r"backbone\.layer3\.(\d+)\.", k))}
    return (
        bottleneck == (variant.config["block"] == "bottleneck")
        and len(blocks) == variant.config["layers"][2]
    )


def checkpoint_filter_fn(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official ResNet backbone keys are torchvision's already."""
    return dict(state_dict)
