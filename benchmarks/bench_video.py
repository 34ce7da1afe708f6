"""Frames per second of `demo.py` on a video: decoding, face detection and the model together;
and the key-frame search (`--detect-every K`) against a full search of every frame.

    .venv/bin/python -m benchmarks.bench_video --seconds 10 --arch resnet50 [--stage 2] [--every 5]
    .venv/bin/python -m benchmarks.bench_video --keyframes 1 3 5 8 [--size 1280 720]

Writes a synthetic clip at 25 fps (640x480 unless --size; skimage's public-domain astronaut face
moving across a grey background), runs demo.py on it with and without face detection (random
weights), and reports frames/s with the detection and model times from demo.py's summary, and
with --every N how many seconds of video each second of running covers.

With --keyframes: a clip of five people made from skimage's astronaut and cameraman photos,
walking, entering, leaving and crossing (`people_clip`), run through `opengraphau.run` with a
calibrated random-weight ResNet-18 for each K; per K: detection and model seconds per frame, the
whole run against the model's own time, and against K = 1 on the same frames: recall (faces of
K = 1 found at K, matched by IoU >= 0.5), box IoU (min, median), the AU probabilities' absolute
difference (median, max over the 41 AUs of a face), frames late for faces entering, and per
person (by the drawn boxes) the ids given and id switches.
"""

from __future__ import annotations

import argparse
import json
import math
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
from tests.factories import Actor, face_sprites, iou, render_clip, write_clip

ROOT = Path(__file__).resolve().parents[1]
FPS = 25.0


def make_clip(path: Path, seconds: float, size: tuple[int, int] = (640, 480)) -> int:
    face = np.ascontiguousarray(data.astronaut()[20:240, 120:340][..., ::-1])
    frames = int(seconds * FPS)
    width, height = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), FPS, size)
    for i in range(frames):
        frame = np.full((height, width, 3), 170, np.uint8)
        x = 20 + (3 * i) % (width - 260)
        top = (height - 220) // 2
        frame[top : top + 220, x : x + 220] = face
        writer.write(frame)
    writer.release()
    return frames


def run(clip: Path, out: Path, args: argparse.Namespace, extra: list[str]) -> dict:
    cmd = [
        sys.executable,
        str(ROOT / "demo.py"),
        "--untrained",
        "--arc",
        args.arch,
        "--stage",
        str(args.stage),
        "--quiet",
        "--device",
        args.device,
        "--precision",
        args.precision,
        "--batch-size",
        str(args.batch_size),
        "--every",
        str(args.every),
        "--input",
        str(clip),
        "--output-dir",
        str(out),
        "--overwrite",  # repeats write into the same folder
        *extra,
    ]
    start = time.perf_counter()
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    summary = " ".join(done.stdout.split())  # the summary may wrap onto two lines
    counted = re.search(r"\((\d+) frames\)", summary)
    timed = re.search(r"model ([\d.]+) s", summary)
    assert counted and timed, f"no frame count or model time in the summary: {summary}"
    frames, model = int(counted.group(1)), float(timed.group(1))
    detect = re.search(r"detection ([\d.]+) s", summary)
    return {
        "frames": frames,
        "seconds": elapsed,
        "frames_per_s": frames / elapsed,
        "video_s_per_s": frames * args.every / FPS / elapsed,
        "model_s": model,
        "detection_s": float(detect.group(1)) if detect else 0.0,
    }


def people_clip(size: tuple[int, int], frames: int) -> tuple[list[np.ndarray], list]:
    """Five faces over `frames` frames of `size`: two walking across each other, one entering
    from the left, one leaving to the right, one standing still and one arriving midway."""
    faces = face_sprites()
    width, height = size
    unit = height / 720  # sizes and speeds scale with the picture

    def walk(x0: float, speed: float, y: float, start: int = 0):
        return lambda t: None if t < start else (x0 + speed * unit * (t - start), y * unit)

    def person(name: str, tall: float, path) -> Actor:
        from tests.factories import SPRITE_FACES

        return Actor(faces[name], round(tall * unit), path, SPRITE_FACES[name])

    return render_clip(
        [
            person("astronaut", 260, walk(250 * unit, 9, 260)),
            person("cameraman", 240, walk(width - 250 * unit, -9, 300)),
            person("astronaut", 200, walk(-60 * unit, 7, 520, start=frames // 4)),
            person("cameraman", 220, walk(width * 0.7, 8, 520)),
            person(
                "astronaut",
                180,
                lambda t: (
                    (width * 0.5 + 6 * math.sin(t / 6), 150 * unit) if t >= frames // 2 else None
                ),
            ),
        ],
        frames,
        size,
    )


def _rows(folder: Path) -> dict[int, list[dict]]:
    import csv

    rows: dict[int, list[dict]] = {}
    with open(folder / "predictions.csv", newline="") as f:
        for r in csv.DictReader(f):
            if r["success"] == "1":
                rows.setdefault(int(r["frame"]), []).append(r)
    return rows


def _box(r: dict) -> tuple[float, ...]:
    return tuple(float(r[c]) for c in "xywh")


def keyframes(args: argparse.Namespace) -> None:
    """The --keyframes measurements (see the module's docstring)."""
    from opengraphau import Options
    from opengraphau import run as run_job
    from opengraphau.aus import AU_COLUMNS
    from tests.factories import write_official_checkpoint

    print(label(describe("cpu")), flush=True)
    frames = int(args.seconds * FPS)
    images, truth = people_clip(tuple(args.size), frames)
    with tempfile.TemporaryDirectory() as tmp:
        clip = write_clip(Path(tmp) / "people.mp4", images, FPS)
        checkpoint = write_official_checkpoint("resnet18", 1, Path(tmp) / "r18.pth", calibrate=True)
        found: dict[int, dict[int, list[dict]]] = {}
        for k in args.keyframes:
            out = Path(tmp) / f"k{k}"
            start = time.perf_counter()
            stats = run_job(
                Options(
                    inputs=(str(clip),),
                    output_dir=out,
                    checkpoint=checkpoint,
                    detect_every=k,
                    workers=0,
                    batch_size=args.batch_size,
                )
            )
            elapsed = time.perf_counter() - start
            found[k] = _rows(out)
            n = stats.frames
            print(
                f"K={k}: {n} frames, detection {1000 * stats.detect_s / n:.1f} ms/frame, model "
                f"{1000 * stats.model_s / n:.1f} ms/frame, run {elapsed:.1f} s = "
                f"{elapsed / stats.model_s:.2f}x the model's time",
                flush=True,
            )
        base = found[args.keyframes[0]]
        for k in args.keyframes[1:]:
            hits = total = 0
            ious, diffs = [], []
            for t, rows in base.items():
                for r in rows:
                    total += 1
                    best = max(
                        found[k].get(t, []), key=lambda o: iou(_box(r), _box(o)), default=None
                    )
                    if best is not None and iou(_box(r), _box(best)) >= 0.5:
                        hits += 1
                        ious.append(iou(_box(r), _box(best)))
                        diffs.append(max(abs(float(r[c]) - float(best[c])) for c in AU_COLUMNS))
            late = []
            for a in range(len(truth[0])):
                first = [t for t in range(frames) if truth[t][a] is not None]
                seen = [
                    t
                    for t in sorted(found[k])
                    if truth[t][a] is not None
                    and any(iou(_box(o), truth[t][a]) >= 0.3 for o in found[k][t])
                ]
                seen0 = [
                    t
                    for t in sorted(base)
                    if truth[t][a] is not None
                    and any(iou(_box(o), truth[t][a]) >= 0.3 for o in base[t])
                ]
                if first and first[0] > 0 and seen and seen0:
                    late.append(seen[0] - seen0[0])
            per_person, switches = [], 0
            for a in range(len(truth[0])):
                ids = [
                    o["face_id"]
                    for t in sorted(found[k])
                    for o in found[k][t]
                    if truth[t][a] is not None and iou(_box(o), truth[t][a]) >= 0.3
                ]
                per_person.append(len(set(ids) - {"-1"}))
                switches += sum(x != y for x, y in zip(ids, ids[1:]))
            print(
                f"K={k} vs K={args.keyframes[0]}: recall {hits / total:.4f} ({hits}/{total}), "
                f"IoU min {min(ious):.3f} median {np.median(ious):.3f}, AU |diff| median "
                f"{np.median(diffs):.4f} max {max(diffs):.4f}, frames late entering {late}, "
                f"ids per person {per_person}, id switches {switches}",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--stage", type=int, default=1, choices=(1, 2))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    parser.add_argument("--size", type=int, nargs=2, default=[640, 480], metavar=("W", "H"))
    parser.add_argument("--batch-size", type=int, default=16, help="frames per model call")
    parser.add_argument("--every", type=int, default=1, help="keep every Nth frame")
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--keyframes",
        type=int,
        nargs="+",
        metavar="K",
        help="measure --detect-every K against the first K given (1)",
    )
    args = parser.parse_args()
    if args.keyframes:
        keyframes(args)
        return
    results = {
        "machine": describe(args.device),
        "arch": args.arch,
        "device": args.device,
        "every": args.every,
        "precision": args.precision,
        "size": args.size,
        "batch_size": args.batch_size,
        "runs": {},
    }
    print(label(results["machine"]), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "clip.mp4"
        make_clip(clip, args.seconds, tuple(args.size))
        for name, extra in (("detect", []), ("no-detect", ["--no-detect"])):
            r = run(clip, Path(tmp) / name, args, extra)
            results["runs"][name] = r
            print(
                f"{name:>9}: {r['frames']} frames in {r['seconds']:.1f} s = "
                f"{r['frames_per_s']:.1f} frames/s (detection {r['detection_s']:.1f} s, "
                f"model {r['model_s']:.1f} s, the rest is start-up, decoding and writing); "
                f"{r['video_s_per_s']:.2f} s of video per second"
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
