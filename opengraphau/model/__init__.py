"""OpenGraphAU models: 7 backbones x 2 graph heads, and strict loading of the official files.

Names are imported on first use, so `opengraphau.model.variants` (the variant table) can be
read without loading PyTorch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .checkpoint import checkpoint_filter_fn, detect_arch_stage, load_model
    from .opengraphau import OpenGraphAU, build_model, untrained_model
    from .optimize import InferenceModel, optimize_for_inference
    from .transforms import EvalTransform
    from .variants import ARCHS, STAGES, VARIANTS, Variant

_HOMES = {
    "checkpoint_filter_fn": "checkpoint",
    "detect_arch_stage": "checkpoint",
    "load_model": "checkpoint",
    "OpenGraphAU": "opengraphau",
    "build_model": "opengraphau",
    "untrained_model": "opengraphau",
    "InferenceModel": "optimize",
    "optimize_for_inference": "optimize",
    "EvalTransform": "transforms",
    "ARCHS": "variants",
    "STAGES": "variants",
    "VARIANTS": "variants",
    "Variant": "variants",
}
__all__ = [
    "ARCHS",
    "EvalTransform",
    "InferenceModel",
    "OpenGraphAU",
    "STAGES",
    "VARIANTS",
    "Variant",
    "build_model",
    "checkpoint_filter_fn",
    "detect_arch_stage",
    "load_model",
    "optimize_for_inference",
    "untrained_model",
]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
