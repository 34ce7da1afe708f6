"""Frames per second of `demo.py` on a video: decoding, face detection and the model together.

    .venv/bin/python -m benchmarks.bench_video --seconds 10 --arch resnet50 [--every 5]

Writes a synthetic clip at 25 fps (640x480 unless --size; skimage's public-domain astronaut face
moving across a grey background), runs demo.py on it with and without face detection (random
weights), and reports frames/s with the detection and model times from demo.py's summary, and
with --every N how many seconds of video each second of running covers.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from skimage import data

from benchmarks.machine import describe, label

ROOT = Path(__file__).resolve().parents[1]
FPS = 25.0


def make_clip(path: Path, seconds: float, size: tuple[int, int] = (640, 480)) -> int:
    face = np.ascontiguousarray(data.astronaut()[20:240, 120:340][..., ::-1])
    frames = int(seconds * FPS)
    width, height = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, size)
    for i in range(frames):
        frame = np.full((height, width, 3), 170, np.uint8)
        x = 20 + (3 * i) % (width - 260)
        top = (height - 220) // 2
        frame[top:top + 220, x:x + 220] = face
        writer.write(frame)
    writer.release()
    return frames


def run(clip: Path, out: Path, args: argparse.Namespace, extra: list[str]) -> dict:
    cmd = [sys.executable, str(ROOT / "demo.py"), "--untrained", "--arc", args.arch, "--quiet",
           "--device", args.device, "--precision", args.precision, "--batch-size",
           str(args.batch_size), "--every", str(args.every), "--input", str(clip),
           "--output-dir", str(out), *extra]
    start = time.perf_counter()
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    summary = " ".join(done.stdout.split())  # the summary may wrap onto two lines
    frames = int(re.search(r"\((\d+) frames\)", summary).group(1))
    model = float(re.search(r"model ([\d.]+) s", summary).group(1))
    detect = re.search(r"detection ([\d.]+) s", summary)
    return {"frames": frames, "seconds": elapsed, "frames_per_s": frames / elapsed,
            "video_s_per_s": frames * args.every / FPS / elapsed,
            "model_s": model, "detection_s": float(detect.group(1)) if detect else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    parser.add_argument("--size", type=int, nargs=2, default=[640, 480], metavar=("W", "H"))
    parser.add_argument("--batch-size", type=int, default=16, help="frames per model call")
    parser.add_argument("--every", type=int, default=1, help="keep every Nth frame")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = {"machine": describe(args.device), "arch": args.arch, "device": args.device,
               "every": args.every,
               "precision": args.precision, "size": args.size, "batch_size": args.batch_size,
               "runs": {}}
    print(label(results["machine"]), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "clip.mp4"
        make_clip(clip, args.seconds, tuple(args.size))
        for name, extra in (("detect", []), ("no-detect", ["--no-detect"])):
            r = run(clip, Path(tmp) / name, args, extra)
            results["runs"][name] = r
            print(f"{name:>9}: {r['frames']} frames in {r['seconds']:.1f} s = "
                  f"{r['frames_per_s']:.1f} frames/s (detection {r['detection_s']:.1f} s, "
                  f"model {r['model_s']:.1f} s, the rest is start-up, decoding and writing); "
                  f"{r['video_s_per_s']:.2f} s of video per second")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
