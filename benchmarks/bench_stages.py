"""Where a batch's time goes, stage by stage, in one process, on any device.

    .venv/bin/python -m benchmarks.bench_stages --photos 32 --batch-size 16
    python3 -m benchmarks.bench_stages --device cuda --precision fp16 --batch-size 256 --profile

Each stage of the pipeline is timed alone on the same photos as `bench_pipeline` (480-800 px
JPEGs of skimage's astronaut, one face each), the device synchronised around it, median of
--rounds calls after a warm-up:

* decode: Pillow (`sources.images.load_image`) on one core, with and without the model's
  whole-frame crop; `torchvision.io.decode_jpeg` on the device, batched, and how far its pixels
  are from Pillow's;
* detect: the batched MTCNN, and its three stages (P-Net over the pyramids, R-Net, O-Net);
* crops: the face crops the pipeline cuts for the model;
* model: backbone and head of each --stages, on those crops.

`--profile` prints PyTorch's profiler table for one detection batch and one model batch: the
operators by device time and by host time, and how many kernels were launched.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmarks.bench_pipeline import make_photos, timed
from benchmarks.machine import describe, label
from opengraphau.device import resolve_device
from opengraphau.faces.detector import FaceDetector
from opengraphau.model.transforms import EvalTransform
from opengraphau.records import Frame
from opengraphau.sources.images import load_image
from opengraphau.spec import PipelineSpec
from tests.factories import write_official_checkpoint


class Clock:
    """Median seconds of a call, the device synchronised before and after it."""

    def __init__(self, device: torch.device, rounds: int) -> None:
        self.device, self.rounds = device, rounds

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def __call__(self, fn: Callable[[], object], rounds: int | None = None) -> float:
        return timed(fn, self.device, rounds or self.rounds)[0]


def decode_stages(paths: list[Path], clock: Clock) -> dict[str, float]:
    """ms per photo of each way to decode."""
    preprocess = EvalTransform()
    out = {
        "read_bytes_ms": clock(lambda: [p.read_bytes() for p in paths], 1) / len(paths) * 1e3,
        "pillow_decode_ms": clock(lambda: [load_image(p) for p in paths], 1) / len(paths) * 1e3,
        "pillow_decode_crop_ms": clock(lambda: [preprocess.pixels(load_image(p)) for p in paths], 1)
        / len(paths)
        * 1e3,
    }
    try:
        from torchvision.io import decode_jpeg
    except ImportError:
        return out
    device = clock.device
    datas = [torch.frombuffer(bytearray(p.read_bytes()), dtype=torch.uint8) for p in paths]
    try:
        decoded = decode_jpeg(datas, device=device)
    except RuntimeError as exc:
        print(f"decode_jpeg on {device}: {exc}")
        return out
    out["decode_jpeg_ms"] = clock(lambda: decode_jpeg(datas, device=device)) / len(paths) * 1e3
    diffs = [
        (image.cpu().permute(1, 2, 0).int() - torch.from_numpy(np.asarray(load_image(p))).int())
        .abs()
        .float()
        for image, p in zip(decoded, paths)
    ]
    out["decode_jpeg_vs_pillow_max"] = max(float(d.max()) for d in diffs)
    out["decode_jpeg_vs_pillow_mean"] = statistics.mean(float(d.mean()) for d in diffs)
    return out


def detect_stages(detector: FaceDetector, frames: list[np.ndarray], clock: Clock) -> dict:
    """ms per photo of the whole detector and of each MTCNN stage inside it."""
    mtcnn = detector._mtcnn
    spent: dict[str, list[float]] = {}

    def timed(name: str, fn: Callable) -> Callable:
        def wrapper(*args, **kwargs):
            clock.sync()
            start = time.perf_counter()
            result = fn(*args, **kwargs)
            clock.sync()
            spent.setdefault(name, []).append(time.perf_counter() - start)
            return result

        return wrapper

    whole = clock(lambda: detector.detect(frames))
    for name in ("_propose", "_refine", "_output"):
        setattr(mtcnn, name, timed(name, getattr(mtcnn, name)))
    clock(lambda: detector.detect(frames))
    for name in ("_propose", "_refine", "_output"):
        delattr(mtcnn, name)
    n = len(frames)
    out = {"detect_ms": whole / n * 1e3}
    out.update({f"{k[1:]}_ms": statistics.median(v) / n * 1e3 for k, v in spent.items()})
    return out


def model_stages(model, crops: torch.Tensor, clock: Clock) -> dict[str, float]:
    """ms per face of the whole model, its backbone and its head, on uint8 crops."""
    x = model.preprocess.normalize(crops).to(model.dtype)
    n = len(crops)
    with torch.inference_mode():
        tokens = model.backbone(x)
        pooled = model.global_linear(tokens).float()
        return {
            "model_ms": clock(lambda: model.predict(x)) / n * 1e3,
            "backbone_ms": clock(lambda: model.global_linear(model.backbone(x))) / n * 1e3,
            "head_ms": clock(lambda: model.head(pooled)) / n * 1e3,
        }


def profile(name: str, fn: Callable[[], object], device: torch.device) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    fn()
    with torch_profile(activities=activities) as prof:
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    table = prof.key_averages()
    launches = sum(e.count for e in table if e.key in ("cudaLaunchKernel", "cuLaunchKernel"))
    print(f"\n== profile: {name} ({launches} kernel launches) ==")
    if device.type == "cuda":
        print(table.table(sort_by="self_device_time_total", row_limit=14, max_name_column_width=60))
    print(table.table(sort_by="self_cpu_time_total", row_limit=14, max_name_column_width=60))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, help="photos to time (default: --batch-size)")
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--stages", type=int, nargs="+", choices=(1, 2), default=[1, 2])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    device = resolve_device(args.device)
    clock = Clock(device, args.rounds)
    count = args.photos or args.batch_size
    machine = describe(device)
    report: dict[str, object] = {
        "machine": machine,
        "device": str(device),
        "precision": args.precision,
        "batch_size": args.batch_size,
        "photos": count,
    }
    print(label(machine), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        paths = make_photos(root, count)
        report["decode"] = decode_stages(paths, clock)
        print("decode", json.dumps(report["decode"]), flush=True)
        frames = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
        detector = FaceDetector(device=device)
        report["detect"] = detect_stages(detector, frames, clock)
        print("detect", json.dumps(report["detect"]), flush=True)
        if args.profile:
            profile("detect", lambda: detector.detect(frames), device)
        for stage in args.stages:
            checkpoint = write_official_checkpoint(
                args.arch, stage, root / f"s{stage}.pth", calibrate=True
            )
            pipeline = PipelineSpec(
                str(checkpoint),
                device=str(device),
                precision=args.precision,
                batch_size=args.batch_size,
            ).build()
            model = pipeline.model
            wrapped = [Frame.of(str(p), f) for p, f in zip(paths, frames)]
            located = pipeline.locate(wrapped)
            crops_s = clock(partial(pipeline.pixels, wrapped, located))
            crops = pipeline.pixels(wrapped, located)[: args.batch_size]
            row = {"crops_ms": crops_s / count * 1e3, **model_stages(model, crops, clock)}
            row["model_faces_per_s"] = 1e3 / row["model_ms"]
            report[f"stage{stage}"] = row
            print(f"{args.arch} stage {stage}", json.dumps(row), flush=True)
            if args.profile:
                x = model.preprocess.normalize(crops)
                with torch.inference_mode():
                    profile(f"{args.arch} stage {stage}", partial(model.predict, x), device)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
