"""Export an OpenGraphAU model to ONNX and check the file against PyTorch before trusting it.

    python export.py checkpoints/OpenGprahAU-ResNet50_first_stage.pth resnet50_s1.onnx

The file takes normalised images `images` (B, 3, 224, 224), B free, and gives `probs` (B, 41).
"""
from __future__ import annotations

import argparse
import copy
import sys
import warnings
from pathlib import Path

import torch

from model import CheckpointError, InferenceModel, OpenGraphAU, load_model

#: Largest |probability difference| between onnxruntime and PyTorch accepted as a good export.
TOLERANCE = 1e-4


class ExportError(RuntimeError):
    """The export ran but the file does not reproduce the model; one line."""


def export_onnx(model: OpenGraphAU, path: str | Path, *, opset: int = 17) -> float:
    """Write `model` (the plain fp32 eager one) to `path` with a dynamic batch axis.

    The file is then run by onnxruntime (CPU) on a random batch of 2, and of 3 to prove the
    batch axis free, and compared with PyTorch; returns the largest |difference|, or raises
    ExportError when it exceeds 1e-4.
    """
    if isinstance(model, InferenceModel):
        raise TypeError("export needs the plain model: load it with "
                        "load_model(path, optimize=False)")
    import onnxruntime as ort  # only exporting needs it

    if model.training or any(p.device.type != "cpu" or p.dtype != torch.float32
                             for p in model.parameters()):
        model = copy.deepcopy(model).eval().float().cpu()  # the caller's model stays as it is
    path = Path(path)
    generator = torch.Generator().manual_seed(0)
    batches = [torch.randn(n, 3, 224, 224, generator=generator) for n in (2, 3)]
    with torch.no_grad(), warnings.catch_warnings():
        # The TorchScript-based exporter: the dynamo one needs onnxscript, not a dependency here.
        # Its deprecation notice, and the tracer's note on the head's chunk sizes (fixed by N
        # and D, not by the batch, and checked below), would only alarm users.
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(model, (batches[0],), str(path), dynamo=False, opset_version=opset,
                          input_names=["images"], output_names=["probs"],
                          dynamic_axes={"images": {0: "batch"}, "probs": {0: "batch"}})
        expected = [model(images) for images in batches]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    diffs = []
    for images, want in zip(batches, expected):
        try:
            (got,) = session.run(["probs"], {"images": images.numpy()})
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidArgument types
            raise ExportError(f"{path}: onnxruntime cannot run it on a batch of "
                              f"{len(images)}: {str(exc).splitlines()[0]}") from None
        diffs.append(float((torch.from_numpy(got) - want).abs().max()))
    bad = [d for d in diffs if not d <= TOLERANCE]  # NaN counts as bad
    if bad:
        raise ExportError(f"{path}: onnxruntime differs from PyTorch by {bad[0]:.2e} "
                          f"(> {TOLERANCE:g}); the file is not usable")
    return max(diffs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="an official OpenGraphAU checkpoint")
    parser.add_argument("output", type=Path, help="the .onnx file to write")
    parser.add_argument("--arc", help="backbone; default: what the checkpoint holds")
    parser.add_argument("--stage", type=int, choices=(1, 2))
    parser.add_argument("--opset", type=int, default=17)
    args = parser.parse_args()
    if not args.output.parent.is_dir():
        sys.exit(f"error: {args.output}: folder {args.output.parent} does not exist")
    try:
        model = load_model(args.checkpoint, arch=args.arc, stage=args.stage, optimize=False)
        diff = export_onnx(model, args.output, opset=args.opset)
    except (CheckpointError, ExportError) as exc:
        sys.exit(f"error: {exc}")
    print(f"wrote {args.output} ({model.arch} stage {model.stage}); onnxruntime vs PyTorch: "
          f"max |dp| {diff:.1e}")


if __name__ == "__main__":
    main()
