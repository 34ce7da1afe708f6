"""Images/s of `--engine local` and `--engine ray` on the same folder, and what Ray costs.

    .venv/bin/python -m benchmarks.bench_engines --sizes 64 384 --arch resnet18

For each size N: writes N JPEGs of a real face (the astronaut's, shifted and mirrored so no two
are alike) to a temporary folder, then runs demo.py on it (random weights, --quiet) in a child
process with each engine, with face detection and without (--no-detect), the engines taking
turns, and reports images/s over the whole command, start-up included (the fastest of
--repeats runs). Two sizes give each engine's steady rate (the extra images over the extra
seconds) and its fixed start-up cost: Ray starts itself, its workers import PyTorch and its
actors load the model, once per run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.machine import describe, label
from tests.factories import FACE, ROOT

ENGINES = ("local", "ray")


def make_images(folder: Path, n: int) -> None:
    face = np.asarray(Image.open(FACE).convert("RGB"))
    for i in range(n):
        view = np.roll(face, (i % 7) * 3, axis=1)
        Image.fromarray(view[:, ::-1] if i % 2 else view).save(folder / f"{i:05d}.jpg", quality=90)


def run_cli(folder: Path, out: Path, engine: str, arch: str, batch: int, detect: bool) -> float:
    """Seconds of one demo.py run in a fresh interpreter."""
    cmd = [
        sys.executable,
        str(ROOT / "demo.py"),
        "--untrained",
        "--arc",
        arch,
        "--quiet",
        "--batch-size",
        str(batch),
        "--engine",
        engine,
        "--input",
        str(folder),
        "--output-dir",
        str(out),
        "--overwrite",  # repeats write into the same folder
    ] + ([] if detect else ["--no-detect"])
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[64, 384], metavar=("N1", "N2"))
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument(
        "--repeats",
        type=int,
        default=2,
        help="runs of each; the fastest counts (the engines take turns, so a "
        "busy spell of a shared machine hits both)",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    small, large = args.sizes
    results: list[dict] = []
    found = describe()
    print(label(found))
    print(
        "| faces | engine | "
        + " | ".join(f"{n} images/s" for n in args.sizes)
        + " | steady images/s | start-up s |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        folders = {}
        for n in args.sizes:
            folders[n] = Path(tmp) / f"images{n}"
            folders[n].mkdir()
            make_images(folders[n], n)
        for detect in (True, False):
            best: dict[tuple[str, int], float] = {}
            for n in args.sizes:
                for run in range(args.repeats):
                    for engine in ENGINES:
                        out = Path(tmp) / f"out-{engine}-{detect}-{n}-{run}"
                        seconds = run_cli(
                            folders[n], out, engine, args.arch, args.batch_size, detect
                        )
                        best[engine, n] = min(seconds, best.get((engine, n), seconds))
            for engine in ENGINES:
                by_size = {n: best[engine, n] for n in args.sizes}
                steady = (large - small) / (by_size[large] - by_size[small])
                startup = by_size[large] - large / steady
                results.append(
                    {
                        "detect": detect,
                        "engine": engine,
                        "seconds": by_size,
                        "steady_images_per_s": steady,
                        "startup_s": startup,
                    }
                )
                rates = " | ".join(f"{n / by_size[n]:.2f}" for n in args.sizes)
                print(
                    f"| {'MTCNN' if detect else 'whole image'} | {engine} | {rates} | "
                    f"{steady:.2f} | {startup:.1f} |",
                    flush=True,
                )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": found,
                    "arch": args.arch,
                    "batch_size": args.batch_size,
                    "runs": results,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
