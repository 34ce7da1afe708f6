"""OpenGraphAU models: 7 backbones x 2 graph heads, and strict loading of the official files."""
from .checkpoint import CheckpointError, checkpoint_filter_fn, detect_arch_stage, load_model
from .opengraphau import OpenGraphAU, build_model
from .optimize import InferenceModel, optimize_for_inference
from .transforms import EvalTransform

__all__ = ["CheckpointError", "EvalTransform", "InferenceModel", "OpenGraphAU", "build_model",
           "checkpoint_filter_fn", "detect_arch_stage", "load_model", "optimize_for_inference"]
