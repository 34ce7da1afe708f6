"""The one table of model variants: every backbone the official checkpoints use, and its sizes.

Each row names the module of `opengraphau.model` that builds its family (`resnet`, `swin`,
`mae`); that module provides `build(variant)`, `checkpoint_filter_fn(state)` and
`matches(variant, state)`. The table itself imports nothing heavy, so the CLI can list the
choices without loading PyTorch.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from ..errors import ConfigError

STAGES: tuple[int, ...] = (1, 2)
"""1 = ANFL (dynamic top-K graph), 2 = MEFL (edge features + gated GNN)."""


@dataclass(frozen=True, eq=False)
class Variant:
    """One backbone: how to build it and the widths of what it hands the graph head."""

    arch: str
    family: str
    num_features: int
    """Channels of the backbone's tokens."""
    channels: int
    """Channels of the AU node features (the global LinearBlock's output)."""
    config: dict[str, Any] = field(default_factory=dict)
    """What the family's `build` needs beyond the widths (block type, depths, heads)."""

    def family_module(self) -> ModuleType:
        """`opengraphau.model.<family>`, imported on first use."""
        return importlib.import_module(f"opengraphau.model.{self.family}")


VARIANTS: dict[str, Variant] = {
    v.arch: v
    for v in (
        Variant("resnet18", "resnet", 512, 128, {"block": "basic", "layers": (2, 2, 2, 2)}),
        Variant("resnet50", "resnet", 2048, 512, {"block": "bottleneck", "layers": (3, 4, 6, 3)}),
        Variant("resnet101", "resnet", 2048, 512, {"block": "bottleneck", "layers": (3, 4, 23, 3)}),
        Variant(
            "swin_transformer_tiny",
            "swin",
            768,
            384,
            {"embed_dim": 96, "depths": (2, 2, 6, 2), "num_heads": (3, 6, 12, 24)},
        ),
        Variant(
            "swin_transformer_small",
            "swin",
            768,
            384,
            {"embed_dim": 96, "depths": (2, 2, 18, 2), "num_heads": (3, 6, 12, 24)},
        ),
        Variant(
            "swin_transformer_base",
            "swin",
            1024,
            512,
            {"embed_dim": 128, "depths": (2, 2, 18, 2), "num_heads": (4, 8, 16, 32)},
        ),
        Variant("mae", "mae", 768, 384, {"depth": 12, "num_heads": 12}),
    )
}

ARCHS: tuple[str, ...] = tuple(VARIANTS)


def get_variant(arch: str) -> Variant:
    """The row for `arch`; ConfigError naming the choices when there is none."""
    try:
        return VARIANTS[arch]
    except KeyError:
        raise ConfigError(
            f"unknown backbone; choose one of {', '.join(ARCHS)}", param="arch", value=arch
        ) from None
