"""Whole-run throughput and peak memory of `demo.py` on folders of N images.

    .venv/bin/python -m benchmarks.bench_batch --sizes 1000 10000 --arch resnet18

For each N: writes N synthetic 160x160 JPEGs to a temporary folder, runs demo.py on it (random
weights, --no-detect, --quiet) in a child process, and reports images/s and the child's peak
RSS. "model alone" times the same network on random tensors in this process, so the gap between
the two is the cost of decoding, preprocessing and writing. Flat peak RSS across N is the point:
nothing keeps all images or rows in memory.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmarks.machine import describe, label
from opengraphau.model import optimize_for_inference
from opengraphau.model.opengraphau import untrained_model

ROOT = Path(__file__).resolve().parents[1]


def make_images(folder: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (160, 160, 3), dtype=np.uint8)
    for i in range(n):
        sub = folder / f"{i // 1000:03d}"
        sub.mkdir(exist_ok=True)
        Image.fromarray(np.roll(base, i, axis=1)).save(sub / f"{i:06d}.jpg", quality=90)


_CHILD = """
import json, resource, runpy, sys
sys.argv = sys.argv[1:]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit:
    pass
print(json.dumps({"self": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "workers": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""


def run_cli(folder: Path, out: Path, arch: str, batch: int, workers: int | None) -> dict:
    """demo.py in a fresh interpreter that reports its own peak RSS and its workers' peak."""
    cmd = [
        sys.executable,
        "-c",
        _CHILD,
        str(ROOT / "demo.py"),
        "--untrained",
        "--arc",
        arch,
        "--no-detect",
        "--quiet",
        "--batch-size",
        str(batch),
        "--input",
        str(folder),
        "--output-dir",
        str(out),
        "--overwrite",  # repeats write into the same folder
    ]
    if workers is not None:
        cmd += ["--workers", str(workers)]
    start = time.perf_counter()
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    peaks = json.loads(done.stdout.strip().splitlines()[-1])
    rows = sum(1 for _ in open(out / "predictions.csv")) - 1
    return {
        "seconds": elapsed,
        "images_per_s": rows / elapsed,
        "rows": rows,
        "peak_rss_mib": peaks["self"] / 1024,
        "worker_peak_rss_mib": peaks["workers"] / 1024,
    }


def model_alone(arch: str, batch: int, iters: int) -> dict:
    model = optimize_for_inference(untrained_model(arch, 1), inplace=True)  # what the CLI runs
    x = torch.randn(batch, 3, 224, 224)
    with torch.inference_mode():
        model(x)
        start = time.perf_counter()
        for _ in range(iters):
            model(x)
        elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"images_per_s": batch * iters / elapsed, "peak_rss_mib": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    results = {"machine": describe(), "arch": args.arch, "batch_size": args.batch_size, "runs": []}
    print(label(results["machine"]), flush=True)
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "images"
            folder.mkdir()
            make_images(folder, n)
            run = run_cli(folder, Path(tmp) / "out", args.arch, args.batch_size, args.workers)
            results["runs"].append({"images": n, **run})
            print(
                f"{n:>6} images: {run['images_per_s']:7.1f} images/s, peak RSS "
                f"{run['peak_rss_mib']:5.0f} MiB (decoding worker "
                f"{run['worker_peak_rss_mib']:4.0f} MiB), {run['seconds']:.0f} s",
                flush=True,
            )
    alone = model_alone(args.arch, args.batch_size, 10)
    results["model_alone"] = alone
    print(
        f"model alone ({args.arch}, batch {args.batch_size}): "
        f"{alone['images_per_s']:.1f} images/s, peak RSS {alone['peak_rss_mib']:.0f} MiB"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
