"""Inference-only ResNet with every BatchNorm folded into its convolution and ReLUs fused.

Eager PyTorch runs a ResNet convolution as conv -> BatchNorm -> (add) -> ReLU, four passes over
memory, and re-lays the weights out for oneDNN on every call. Here each convolution carries its
BatchNorm in its weights and bias; on CPU it runs through oneDNN's fused convolution with the
ReLU and the residual add done in the same kernel, on weights laid out for oneDNN once (the
layout oneDNN picks differs for a batch of one, so up to two copies are kept, made on first use).
Elsewhere (CUDA, or a PyTorch without those oneDNN ops) it is a plain channels-last conv2d.
The oneDNN ops are the ones torch.compile emits for this fusion; they are not public API, so
their presence is checked and the plain conv2d is the fallback.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torchvision.models.resnet import BasicBlock, Bottleneck

from .resnet import ResNetTokens


def onednn_fused_conv_available() -> bool:
    """Whether this PyTorch has oneDNN's fused convolution ops enabled (CPU only)."""
    return (
        torch.backends.mkldnn.is_available()
        and bool(torch.backends.mkldnn.enabled)
        and hasattr(torch.ops.mkldnn, "_convolution_pointwise")
        and hasattr(torch.ops.mkldnn, "_reorder_convolution_weight")
    )


class FusedConv(nn.Module):
    """Conv2d with its BatchNorm folded in, then optionally a residual add and a ReLU."""

    weight: torch.Tensor
    bias: torch.Tensor

    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d, *, relu: bool) -> None:
        super().__init__()
        fused = fuse_conv_bn_eval(conv.eval(), bn.eval())
        bias = fused.bias if fused.bias is not None else torch.zeros(fused.out_channels)
        self.register_buffer("weight", fused.weight.detach().clone())
        self.register_buffer("bias", bias.detach().clone())
        self.stride = [int(s) for s in fused.stride]
        self.padding = [int(p) for p in fused.padding]
        self.dilation, self.groups = [int(d) for d in fused.dilation], fused.groups
        self.relu = relu
        self._packed: dict[tuple[bool, torch.dtype], torch.Tensor] = {}

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        """ReLU?(conv(x) + bias (+ residual)). `residual` may be overwritten with the result."""
        if x.is_cpu and onednn_fused_conv_available():
            return self._onednn(x, residual)
        y = F.conv2d(
            x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups
        )
        if residual is not None:
            y += residual
        return F.relu(y, inplace=True) if self.relu else y

    def _onednn(self, x: torch.Tensor, residual: torch.Tensor | None) -> torch.Tensor:
        key = (x.shape[0] == 1, x.dtype)
        weight = self._packed.get(key)
        if weight is None:
            weight = torch.ops.mkldnn._reorder_convolution_weight(
                self.weight.to(x.dtype),
                self.padding,
                self.stride,
                self.dilation,
                self.groups,
                list(x.shape),
            )
            self._packed[key] = weight
        bias = self.bias.to(x.dtype)
        args = (self.padding, self.stride, self.dilation, self.groups)
        if residual is None:
            return torch.ops.mkldnn._convolution_pointwise(
                x, weight, bias, *args, "relu" if self.relu else "none", [], ""
            )
        return torch.ops.mkldnn._convolution_pointwise_.binary(
            residual, x, weight, bias, *args, "add", 1.0, "relu" if self.relu else None, [], ""
        )

    def _apply(self, fn: Any, recurse: bool = True) -> FusedConv:
        self._packed = {}  # laid out for the old device/dtype
        return super()._apply(fn, recurse)

    def __getstate__(self) -> dict[str, Any]:
        # oneDNN's laid-out weights cannot be copied or pickled; they are remade on first use.
        state = self.__dict__.copy()
        state["_packed"] = {}
        return state


class FusedBlock(nn.Module):
    """A torchvision BasicBlock or Bottleneck as FusedConvs; the last one adds the shortcut."""

    def __init__(self, block: BasicBlock | Bottleneck) -> None:
        super().__init__()
        pairs = [(block.conv1, block.bn1), (block.conv2, block.bn2)]
        if isinstance(block, Bottleneck):
            pairs.append((block.conv3, block.bn3))
        self.convs = nn.ModuleList(FusedConv(c, b, relu=True) for c, b in pairs)
        self.downsample = (
            FusedConv(block.downsample[0], block.downsample[1], relu=False)
            if block.downsample is not None
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The shortcut is overwritten by the last conv; x itself is not needed after conv 1.
        shortcut = self.downsample(x) if self.downsample is not None else x
        out = x
        for conv in self.convs[:-1]:
            out = conv(out)
        return self.convs[-1](out, shortcut)


class FusedResNetTokens(nn.Module):
    """`ResNetTokens` for inference: (B, 3, H, W) -> (B, HW/1024, C), channels-last inside."""

    def __init__(self, resnet: ResNetTokens) -> None:
        super().__init__()
        self.num_features = resnet.num_features
        self.stem = FusedConv(resnet.conv1, resnet.bn1, relu=True)
        self.maxpool = resnet.maxpool
        self.blocks = nn.Sequential(
            *(
                FusedBlock(block)
                for layer in (resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4)
                for block in layer
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x.contiguous(memory_format=torch.channels_last))
        x = self.blocks(self.maxpool(x))
        # Channels-last (B, C, H, W) flattened and transposed is already a contiguous (B, HW, C).
        return x.flatten(2).transpose(1, 2)
