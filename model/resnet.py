"""ResNet-18/50/101 backbones: torchvision's ResNet, returning the last feature map as 49 tokens.

The official checkpoints use torchvision's key layout (without `fc`), so no conversion is needed.
"""
from __future__ import annotations

import torch
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

_LAYOUTS: dict[str, tuple[type[BasicBlock] | type[Bottleneck], list[int]]] = {
    "resnet18": (BasicBlock, [2, 2, 2, 2]),
    "resnet50": (Bottleneck, [3, 4, 6, 3]),
    "resnet101": (Bottleneck, [3, 4, 23, 3]),
}


class ResNetTokens(ResNet):
    """torchvision ResNet without pooling and classifier: (B, 3, H, W) -> (B, HW/1024, C)."""

    def __init__(self, arch: str) -> None:
        block, layers = _LAYOUTS[arch]
        super().__init__(block, layers)
        self.num_features = self.fc.in_features
        del self.fc, self.avgpool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return x.flatten(2).transpose(1, 2)


def build_resnet(*, arch: str) -> ResNetTokens:
    return ResNetTokens(arch)


def checkpoint_filter_fn(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official ResNet backbone keys are torchvision's already."""
    return dict(state_dict)
