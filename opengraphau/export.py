"""Export an OpenGraphAU model to ONNX and check the file against PyTorch before trusting it.

    opengraphau --resume checkpoints/OpenGprahAU-ResNet50_first_stage.pth --export-onnx r50.onnx

The file takes normalised images `images` (B, 3, 224, 224), B free, and gives `probs` (B, 41).
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import torch

from .errors import ConfigError, ExportError, OutputError
from .model.opengraphau import OpenGraphAU
from .model.optimize import InferenceModel
from .sinks.files import replaced

#: Largest |probability difference| between onnxruntime and PyTorch accepted as a good export.
TOLERANCE = 1e-4


def export_onnx(model: OpenGraphAU, path: str | Path, *, opset: int = 17) -> float:
    """Write `model` (the plain fp32 eager one) to `path` with a dynamic batch axis.

    The file is then run by onnxruntime (CPU) on a random batch of 2, and of 3 to prove the
    batch axis free, and compared with PyTorch; returns the largest |difference|, or raises
    ExportError when it exceeds 1e-4.
    """
    if isinstance(model, InferenceModel):
        raise ConfigError(
            "export needs the plain model: load it with load_model(path, optimize=False)",
            param="model",
            value=type(model).__name__,
        )
    if model.training or any(
        p.device.type != "cpu" or p.dtype != torch.float32 for p in model.parameters()
    ):
        model = copy.deepcopy(model).eval().float().cpu()  # the caller's model stays as it is
    path = Path(path)
    if not path.parent.is_dir():
        raise ExportError(
            f"folder {path.parent} does not exist; create it or choose another path", value=path
        )
    try:
        with replaced(path, param="path") as temporary:
            diff = _export_and_check(model, temporary, path, opset)
    except OutputError as exc:
        raise ExportError(f"cannot be written ({exc.reason})", value=path) from None
    return diff


def _export_and_check(model: OpenGraphAU, temporary: Path, path: Path, opset: int) -> float:
    """Write to `temporary`, run it with onnxruntime, compare; errors name `path`."""
    import onnxruntime as ort  # only exporting needs it

    generator = torch.Generator().manual_seed(0)
    batches = [torch.randn(n, 3, 224, 224, generator=generator) for n in (2, 3)]
    with torch.no_grad(), warnings.catch_warnings():
        # The TorchScript-based exporter: the dynamo one needs onnxscript, not a dependency here.
        # Its deprecation notice, and the tracer's note on the head's chunk sizes (fixed by N
        # and D, not by the batch, and checked below), would only alarm users.
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(
            model,
            (batches[0],),
            str(temporary),
            dynamo=False,
            opset_version=opset,
            input_names=["images"],
            output_names=["probs"],
            dynamic_axes={"images": {0: "batch"}, "probs": {0: "batch"}},
        )
        expected = [model(images) for images in batches]
    session = ort.InferenceSession(str(temporary), providers=["CPUExecutionProvider"])
    diffs = []
    for images, want in zip(batches, expected):
        try:
            (got,) = session.run(["probs"], {"images": images.numpy()})
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises types of its own
            raise ExportError(
                f"onnxruntime cannot run it on a batch of {len(images)}: "
                f"{str(exc).splitlines()[0]}",
                value=path,
            ) from None
        diffs.append(float((torch.from_numpy(got) - want).abs().max()))
    bad = [d for d in diffs if not d <= TOLERANCE]  # NaN counts as bad
    if bad:
        raise ExportError(
            f"onnxruntime differs from PyTorch by {bad[0]:.2e} (> {TOLERANCE:g}); "
            "the file is not usable",
            value=path,
        )
    return max(diffs)
