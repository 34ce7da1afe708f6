"""MAE-ViT-Base/16 encoder: timm's VisionTransformer without class token, fixed sinusoid positions.

The official checkpoints hold the encoder of the MAE pre-training model (`encoder.*`, separate
`q_bias`/`v_bias`, no position table); `checkpoint_filter_fn` converts it.
"""

from __future__ import annotations

import functools
from functools import partial

import torch
from torch import nn

from .variants import Variant


def sinusoid_table(positions: int, dim: int) -> torch.Tensor:
    """The fixed (1, positions, dim) table: sin on even channels, cos on odd ones."""
    pos = torch.arange(positions, dtype=torch.float64).unsqueeze(1)
    exponent = 2 * (torch.arange(dim) // 2).to(torch.float64) / dim
    angles = pos / torch.pow(10000.0, exponent)
    table = torch.empty(positions, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(angles[:, 0::2])
    table[:, 1::2] = torch.cos(angles[:, 1::2])
    return table.to(torch.float32).unsqueeze(0)


def build(variant: Variant) -> nn.Module:
    """ViT-B/16 encoder: (B, 3, 224, 224) -> (B, 196, 768), positions from a fixed table."""
    return _mae_tokens()(variant.num_features, **variant.config)


@functools.cache
def _mae_tokens() -> type[nn.Module]:
    """The backbone class, made on first use: timm loads only when an MAE is built, not when a
    checkpoint is merely told apart from the others (`matches`, `checkpoint_filter_fn`)."""
    from timm.models.vision_transformer import VisionTransformer

    class MAETokens(VisionTransformer):
        def __init__(self, embed_dim: int = 768, depth: int = 12, num_heads: int = 12) -> None:
            super().__init__(
                img_size=224,
                patch_size=16,
                embed_dim=embed_dim,
                depth=depth,
                num_heads=num_heads,
                mlp_ratio=4.0,
                qkv_bias=True,
                class_token=False,
                global_pool="",
                num_classes=0,
                pos_embed="none",
                norm_layer=partial(nn.LayerNorm, eps=1e-6),
            )
            num_patches = self.patch_embed.num_patches
            self.register_buffer(
                "pos_table", sinusoid_table(num_patches, self.embed_dim), persistent=False
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
            x = self.patch_embed(x) + self.pos_table
            return self.norm(self.blocks(x))

    return MAETokens


def matches(variant: Variant, state: dict[str, torch.Tensor]) -> bool:
    """Whether `state` holds an MAE encoder (pre-training layout, or already timm's)."""
    return "backbone.encoder.patch_embed.proj.weight" in state or (
        "backbone.patch_embed.proj.weight" in state and "backbone.blocks.0.attn.qkv.weight" in state
    )


def checkpoint_filter_fn(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """MAE pre-training layout -> timm ViT: drop `encoder.`, merge q/v biases into `qkv.bias`.

    The key bias is zero in MAE; a q_bias without its v_bias (or the reverse) is kept as it is,
    so the strict load reports it.
    """
    sd = {key.removeprefix("encoder."): value for key, value in state_dict.items()}
    out = {}
    for key, value in sd.items():
        stem = key.rpartition(".")[0]
        if key.endswith("attn.q_bias") and stem + ".v_bias" in sd:
            v_bias = sd[stem + ".v_bias"]
            out[stem + ".qkv.bias"] = torch.cat([value, torch.zeros_like(value), v_bias])
        elif not (key.endswith("attn.v_bias") and stem + ".q_bias" in sd):
            out[key] = value
    return out
