"""Frames per second of `demo.py` on a video: decoding, face detection and the model together.

    .venv/bin/python -m benchmarks.bench_video --seconds 10 --arch resnet50

Writes a synthetic 640x480 clip at 25 fps (skimage's public-domain astronaut face moving across a
grey background), runs demo.py on it with and without face detection (random weights), and
reports frames/s with the detection and model times from demo.py's summary line.
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

ROOT = Path(__file__).resolve().parents[1]
FPS = 25.0


def make_clip(path: Path, seconds: float) -> int:
    face = np.ascontiguousarray(data.astronaut()[20:240, 120:340][..., ::-1])
    frames = int(seconds * FPS)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (640, 480))
    for i in range(frames):
        frame = np.full((480, 640, 3), 170, np.uint8)
        x = 20 + (3 * i) % 380
        frame[100:320, x:x + 220] = face
        writer.write(frame)
    writer.release()
    return frames


def run(clip: Path, out: Path, arch: str, device: str, extra: list[str]) -> dict:
    cmd = [sys.executable, str(ROOT / "demo.py"), "--untrained", "--arc", arch, "--quiet",
           "--device", device, "--input", str(clip), "--output-dir", str(out), *extra]
    start = time.perf_counter()
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    summary = done.stdout.strip().splitlines()[-1]
    frames = int(re.search(r"\((\d+) frames\)", summary).group(1))
    model = float(re.search(r"model ([\d.]+) s", summary).group(1))
    detect = re.search(r"detection ([\d.]+) s", summary)
    return {"frames": frames, "seconds": elapsed, "frames_per_s": frames / elapsed,
            "model_s": model, "detection_s": float(detect.group(1)) if detect else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = {"arch": args.arch, "device": args.device, "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "clip.mp4"
        make_clip(clip, args.seconds)
        for name, extra in (("detect", []), ("no-detect", ["--no-detect"])):
            r = run(clip, Path(tmp) / name, args.arch, args.device, extra)
            results["runs"][name] = r
            print(f"{name:>9}: {r['frames']} frames in {r['seconds']:.1f} s = "
                  f"{r['frames_per_s']:.1f} frames/s (detection {r['detection_s']:.1f} s, "
                  f"model {r['model_s']:.1f} s, the rest is start-up, decoding and writing)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
