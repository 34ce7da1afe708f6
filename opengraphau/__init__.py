"""OpenGraphAU: 41 facial action units per face, from photos, folders, videos and webcams.

    from opengraphau import AUPredictor
    predictor = AUPredictor("checkpoints/OpenGprahAU-ResNet50_first_stage.pth", detect_faces=True)
    results = predictor.predict(["a.jpg"])

Names are imported on first use, so `import opengraphau` (and the CLI's --help) is instant.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (
    BusyError,
    CheckpointError,
    ConfigError,
    DeviceError,
    ExportError,
    ImageError,
    InputError,
    OpenGraphAUError,
    OutputError,
    VideoError,
)
from .version import __version__

if TYPE_CHECKING:
    from .context import Reporter, RunStats
    from .evaluation import Evaluation, evaluate, read_label_lists, read_labels
    from .jobs import run
    from .model import load_model
    from .options import Options
    from .pipeline import Pipeline
    from .predictor import AUPredictor, ImageResult, VideoResult, to_dataframe
    from .records import FaceRecord, Frame
    from .sinks.results import read_results
    from .thresholds import Thresholds

_HOMES = {
    "AUPredictor": "predictor",
    "ImageResult": "predictor",
    "VideoResult": "predictor",
    "to_dataframe": "predictor",
    "load_model": "model",
    "Options": "options",
    "Pipeline": "pipeline",
    "FaceRecord": "records",
    "Frame": "records",
    "run": "jobs",
    "Reporter": "context",
    "RunStats": "context",
    "read_results": "sinks.results",
    "evaluate": "evaluation",
    "Evaluation": "evaluation",
    "read_labels": "evaluation",
    "read_label_lists": "evaluation",
    "Thresholds": "thresholds",
}

__all__ = [
    "AUPredictor",
    "BusyError",
    "CheckpointError",
    "ConfigError",
    "DeviceError",
    "Evaluation",
    "ExportError",
    "FaceRecord",
    "Frame",
    "ImageError",
    "ImageResult",
    "InputError",
    "OpenGraphAUError",
    "Options",
    "OutputError",
    "Pipeline",
    "Reporter",
    "RunStats",
    "Thresholds",
    "VideoError",
    "VideoResult",
    "__version__",
    "evaluate",
    "load_model",
    "read_label_lists",
    "read_labels",
    "read_results",
    "run",
    "to_dataframe",
]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
