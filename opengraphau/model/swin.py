"""Swin-T/S/B backbones: timm's SwinTransformer, returning the last stage's 7x7 map as 49 tokens.

The official checkpoints use Microsoft's original layout; `checkpoint_filter_fn` converts it.
"""

from __future__ import annotations

import functools
import re

import torch
from torch import nn

from .variants import Variant


def build(variant: Variant) -> nn.Module:
    """timm Swin without classifier: (B, 3, 224, 224) -> (B, 49, C) after the final LayerNorm."""
    tokens = _swin_tokens()
    return tokens(img_size=224, patch_size=4, window_size=7, num_classes=0, **variant.config)


@functools.cache
def _swin_tokens() -> type[nn.Module]:
    """The backbone class, made on first use: timm loads only when a Swin is built, not when a
    checkpoint is merely told apart from the others (`matches`, `checkpoint_filter_fn`)."""
    from timm.models.swin_transformer import SwinTransformer

    class SwinTokens(SwinTransformer):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.forward_features(x).flatten(1, 2)

    return SwinTokens


def matches(variant: Variant, state: dict[str, torch.Tensor]) -> bool:
    """Whether the backbone keys of `state` (official layout) are this variant's."""
    patch = state.get("backbone.patch_embed.proj.weight")
    if patch is None or "backbone.layers.0.blocks.0.norm1.weight" not in state:
        return False
    third = re.compile(r"backbone\.layers\.2\.blocks\.(\d+)\.")
    blocks = {m.group(1) for k in state if (m := third.match(k))}
    return (
        patch.shape[0] == variant.config["embed_dim"] and len(blocks) == variant.config["depths"][2]
    )


_DOWNSAMPLE = re.compile(r"^layers\.(\d+)\.downsample\.")


def checkpoint_filter_fn(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Microsoft layout -> timm layout.

    The original code merges patches at the end of stage k, timm at the start of stage k + 1;
    `relative_position_index` and `attn_mask` are fixed buffers that timm recomputes.
    """
    out = {}
    for key, value in state_dict.items():
        if key.endswith(("relative_position_index", "attn_mask")):
            continue
        key = _DOWNSAMPLE.sub(lambda m: f"layers.{int(m.group(1)) + 1}.downsample.", key)
        out[key] = value
    return out
