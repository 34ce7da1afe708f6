"""Whole runs against the model alone, on real photos: what everything around the model costs.

    .venv/bin/python -m benchmarks.bench_pipeline --sizes 96 192 --arch resnet50 --stage 2
    python3 -m benchmarks.bench_pipeline --device cuda --precision fp16 --batch-size 256 \\
        --sizes 10000 20000 --arch resnet50 --stage 2

Photos: N JPEGs of 480-800 px made from skimage's public-domain astronaut (random zoom, crop,
mirror and brightness), one face each; the first 512 differ, the rest are copies of them. The
model: random weights in the official file layout with BatchNorm statistics set from real faces
(`tests.factories`), so its numbers depend on the image as a trained one's do.

* Whole runs: `python -m opengraphau` in a child process on each of --sizes, with face
  detection and with --no-detect, the fastest of --repeats runs (taking turns, so a busy
  moment of the machine hits them alike). The steady cost per photo is the extra seconds of the
  larger folder over its extra photos, so start-up (imports, model, workers) cancels; start-up
  is what is left of the smaller run.
* Model alone, in this process: the same network on the crops the pipeline cuts from the same
  photos, and on uniform noise crops, `--batch-size` at a time (CUDA synchronised).
* Detector alone: the batched MTCNN on the same photos, and facenet-pytorch's MTCNN photo by
  photo.

The ratio "whole / model" is the steady cost per photo over the model's time per face. On a
CPU each figure also comes in CPU time (all threads and child processes together): on a shared
machine, where other tenants steal cycles, wall-clock times swing by 2x from run to run while
CPU times hold, so the "cpu" ratio is the one to compare between sessions.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from facenet_pytorch import MTCNN
from PIL import Image, ImageEnhance, ImageOps
from skimage import data

from benchmarks.machine import describe, label
from opengraphau.device import resolve_device
from opengraphau.records import Frame
from opengraphau.spec import PipelineSpec
from tests.factories import write_official_checkpoint


def make_photos(folder: Path, n: int, *, distinct: int = 512, seed: int = 0) -> list[Path]:
    """`n` single-face JPEGs, 480-800 px a side: `distinct` different ones, then copies of them
    under their own names (tens of thousands of photos are then written in seconds)."""
    rng = np.random.default_rng(seed)
    astronaut = Image.fromarray(data.astronaut())
    paths: list[Path] = []
    for i in range(n):
        paths.append(folder / f"{i // 1000:03d}" / f"{i:06d}.jpg")
        paths[-1].parent.mkdir(exist_ok=True)
        if i >= distinct:
            shutil.copyfile(paths[i % distinct], paths[-1])
            continue
        side = int(rng.integers(480, 801))
        photo = astronaut.resize((side, side), Image.Resampling.BILINEAR)
        width = int(rng.integers(side * 3 // 4, side + 1))
        left = int(rng.integers(0, side - width + 1))
        photo = photo.crop((left, 0, left + width, side))
        photo = ImageEnhance.Brightness(photo).enhance(float(rng.uniform(0.8, 1.2)))
        if i % 2:
            photo = ImageOps.mirror(photo)
        photo.save(paths[-1], quality=90)
    return paths


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def whole_run(
    folder: Path, out: Path, args: argparse.Namespace, detect: bool
) -> tuple[float, float]:
    """Seconds of one whole command, start-up included: wall clock, and CPU time."""
    cmd = [
        sys.executable,
        "-m",
        "opengraphau",
        "--resume",
        str(args.checkpoint),
        "--input",
        str(folder),
        "--output-dir",
        str(out),
        "--overwrite",  # repeats write into the same folder
        "--quiet",
        "--batch-size",
        str(args.batch_size),
        "--device",
        args.device,
        "--precision",
        args.precision,
    ]
    cmd += ["--min-face-size", str(args.min_face_size)] if detect else ["--no-detect"]
    start, cpu = time.perf_counter(), children_cpu()
    done = subprocess.run(cmd, capture_output=True, text=True)
    seconds, cpu = time.perf_counter() - start, children_cpu() - cpu
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr[-500:]}")
    return seconds, cpu


def timed(fn: Callable[[], object], device: torch.device, rounds: int) -> tuple[float, float]:
    """Median seconds of `fn` over `rounds` calls after one warm-up (CUDA synchronised): wall
    clock, and CPU time of this process."""

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    fn()
    sync()
    times, cpu = [], []
    for _ in range(rounds):
        start, used = time.perf_counter(), time.process_time()
        fn()
        sync()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - used)
    return statistics.median(times), statistics.median(cpu)


def alone(paths: list[Path], args: argparse.Namespace, device: torch.device) -> dict[str, float]:
    """ms per face of the model on the pipeline's crops and on noise; ms per photo of MTCNN."""
    pipeline = PipelineSpec(
        str(args.checkpoint),
        device=str(device),
        precision=args.precision,
        batch_size=args.batch_size,
        min_face_size=args.min_face_size,
    ).build()
    detector = pipeline.detector
    assert detector is not None
    images = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    frames = [Frame.of(str(p), image) for p, image in zip(paths, images)]
    located = pipeline.locate(frames)
    crops = pipeline.pixels(frames, located)[: args.batch_size]
    noise = torch.randint(0, 256, crops.shape, dtype=torch.uint8, device=device)
    with torch.inference_mode():
        real_s, real_cpu = timed(lambda: pipeline.infer(crops), device, args.rounds)
        noise_s, noise_cpu = timed(lambda: pipeline.infer(noise), device, args.rounds)
    sample = images[: args.batch_size]
    detect_s, detect_cpu = timed(lambda: detector.detect(sample), device, args.rounds)
    # Its own loops, photo by photo: 16 photos tell its rate (a GPU's batch would take long).
    facenet = MTCNN(keep_all=True, device=device, min_face_size=args.min_face_size)
    few = sample[:16]
    facenet_s, facenet_cpu = timed(lambda: [facenet.detect(i) for i in few], device, args.rounds)
    return {
        "model_ms_per_face": real_s / len(crops) * 1000,
        "model_noise_ms_per_face": noise_s / len(noise) * 1000,
        "detect_ms_per_photo": detect_s / len(sample) * 1000,
        "facenet_ms_per_photo": facenet_s / len(few) * 1000,
        "facenet_cpu_ms_per_photo": facenet_cpu / len(few) * 1000,
        "model_cpu_ms_per_face": real_cpu / len(crops) * 1000,
        "model_noise_cpu_ms_per_face": noise_cpu / len(noise) * 1000,
        "detect_cpu_ms_per_photo": detect_cpu / len(sample) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[96, 192], metavar=("N1", "N2"))
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--stage", type=int, choices=(1, 2), default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument(
        "--min-face-size",
        type=int,
        default=20,
        help="smallest face MTCNN looks for, in pixels (the tool's default: 20)",
    )
    parser.add_argument("--rounds", type=int, default=5, help="timed calls of the model alone")
    parser.add_argument("--repeats", type=int, default=3, help="whole runs per size (fastest)")
    parser.add_argument("--only", choices=("detect", "no-detect"), help="one kind of whole run")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    device = resolve_device(args.device)
    small, large = sorted(args.sizes)
    machine = describe(device)
    report: dict[str, object] = {
        "machine": machine,
        "arch": args.arch,
        "stage": args.stage,
        "device": str(device),
        "precision": args.precision,
        "batch_size": args.batch_size,
        "min_face_size": args.min_face_size,
        "sizes": [small, large],
    }
    print(label(machine), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        args.checkpoint = write_official_checkpoint(
            args.arch, args.stage, root / "model.pth", calibrate=True
        )
        folders = {}
        for n in (small, large):
            folders[n] = root / f"photos{n}"
            folders[n].mkdir()
            paths = make_photos(folders[n], n)
        timings = alone(paths[: max(args.batch_size, 16)], args, device)
        report.update(timings)
        model_ms = timings["model_ms_per_face"]
        print(
            f"{args.arch} stage {args.stage} {args.precision} on {device}, batch {args.batch_size}",
            flush=True,
        )
        print(
            f"model alone: {model_ms:.2f} ms/face ({1000 / model_ms:.0f} faces/s) on the "
            f"pipeline's crops, "
            f"{report['model_noise_ms_per_face']:.2f} on noise; MTCNN alone "
            f"{report['detect_ms_per_photo']:.2f} ms/photo (facenet-pytorch's, photo by "
            f"photo: {report['facenet_ms_per_photo']:.2f})",
            flush=True,
        )
        if device.type == "cpu":
            print(
                f"  CPU time: model {report['model_cpu_ms_per_face']:.1f} ms/face, on noise "
                f"{report['model_noise_cpu_ms_per_face']:.1f}, MTCNN "
                f"{report['detect_cpu_ms_per_photo']:.1f} ms/photo (facenet-pytorch's "
                f"{report['facenet_cpu_ms_per_photo']:.1f})",
                flush=True,
            )
        kinds = [args.only == "detect"] if args.only else [True, False]
        for detect in kinds:
            name = "detect" if detect else "no-detect"
            runs: dict[int, list[tuple[float, float]]] = {small: [], large: []}
            for _ in range(args.repeats):
                for n in (small, large):
                    runs[n].append(whole_run(folders[n], root / f"out-{name}-{n}", args, detect))
            seconds = {n: min(wall for wall, _ in times) for n, times in runs.items()}
            cpu = {n: min(used for _, used in times) for n, times in runs.items()}
            steady = (seconds[large] - seconds[small]) / (large - small)
            steady_cpu = (cpu[large] - cpu[small]) / (large - small)
            row = {
                "seconds": seconds,
                "all_seconds": runs,
                "steady_ms_per_photo": steady * 1000,
                "steady_photos_per_s": 1 / steady,
                "startup_s": seconds[small] - small * steady,
                "whole_over_model": steady * 1000 / model_ms,
                "cpu_seconds": cpu,
                "steady_cpu_ms_per_photo": steady_cpu * 1000,
                "cpu_whole_over_model": steady_cpu * 1000 / report["model_cpu_ms_per_face"],
            }
            report[name] = row
            print(
                f"{name:>9}: {small} photos {seconds[small]:.1f} s, {large} photos "
                f"{seconds[large]:.1f} s -> {row['steady_photos_per_s']:.1f} photos/s steady "
                f"({row['steady_ms_per_photo']:.1f} ms each = {row['whole_over_model']:.2f}x "
                f"the model), start-up {row['startup_s']:.1f} s",
                flush=True,
            )
            if device.type == "cpu":
                print(
                    f"{'':>9}  CPU time: {row['steady_cpu_ms_per_photo']:.1f} ms per photo = "
                    f"{row['cpu_whole_over_model']:.2f}x the model's",
                    flush=True,
                )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
