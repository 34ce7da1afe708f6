"""Facial action units with the OpenGraphAU models, for one image or a whole data set.

    python demo.py --arc resnet50 --stage 1 --resume checkpoints/FILE.pth --input face.jpg --draw_text

Accepts the reference demo's flags with their meanings, and many inputs at once: images,
folders, globs, @lists, videos and webcam:N. See README.md and `python demo.py --help`.
"""
from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, NoReturn, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from conf import ARCHS, AU_IDS, AU_NAMES, CHECKPOINT_DIR
from draw import FaceAnnotation, annotate_frame, annotate_image
from images import ImageError, load_image
from inputs import InputItem, collect_inputs
from model import CheckpointError
from outputs import FORMATS, ResultWriter, Row
from predictor import AUPredictor
from registry import find_checkpoint
from utils import UserError
from video import VideoError, VideoSource, VideoWriter

UNTRAINED_BANNER = "UNTRAINED: random weights, the numbers mean nothing (smoke test only)"
TABLE_LIMIT = 10  # print per-image tables for runs of at most this many images


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line instead of argparse's usage block."""
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="demo.py", description="Predict 41 facial action units with OpenGraphAU.")
    ref = p.add_argument_group("reference demo flags")
    ref.add_argument("--arc", choices=ARCHS, help="backbone; default: what the checkpoint holds")
    ref.add_argument("--stage", type=int, choices=(1, 2),
                     help="1 = ANFL, 2 = MEFL; default: what the checkpoint holds")
    ref.add_argument("--resume", metavar="FILE", default="",
                     help="checkpoint file; default: the one in --checkpoint-dir")
    ref.add_argument("--input", nargs="+", metavar="PATH", default=[],
                     help="images, folders, globs, @list.txt files, videos or webcam:N")
    ref.add_argument("--draw_text", action="store_true",
                     help="write annotated pictures (and videos) to the output folder")
    ref.add_argument("--exp-name", default="demo", help="output folder name under results/")
    out = p.add_argument_group("outputs")
    out.add_argument("--output-dir", metavar="DIR", help="default: results/<exp-name>")
    out.add_argument("--format", default="csv", metavar="LIST",
                     help="comma-separated output formats: csv, jsonl (default: csv)")
    out.add_argument("--threshold", type=float, default=0.5,
                     help="probability at or above which an AU counts as present (default 0.5)")
    out.add_argument("--skip-existing", action="store_true",
                     help="continue an interrupted run: skip inputs already completed in DIR")
    out.add_argument("--save-crops", action="store_true", help="write each face crop to DIR/crops/")
    out.add_argument("--quiet", action="store_true", help="no progress bar and no AU tables")
    run = p.add_argument_group("model and speed")
    run.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    run.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32",
                     help="fp32 (default); bf16 on CUDA or CPUs with native bf16; fp16 on CUDA")
    run.add_argument("--export-onnx", metavar="FILE", type=Path,
                     help="write the loaded model as ONNX (dynamic batch), checked with onnxruntime")
    run.add_argument("--batch-size", type=int, default=16, metavar="N", help="faces per model call")
    run.add_argument("--workers", type=int, default=None, metavar="N",
                     help="image decoding processes (default: half the CPU cores, at least 1)")
    run.add_argument("--checkpoint-dir", type=Path, default=Path(__file__).parent / CHECKPOINT_DIR,
                     metavar="DIR", help="where to look when --resume is not given "
                     "(default: checkpoints/ beside demo.py)")
    run.add_argument("--untrained", action="store_true",
                     help="random weights, for smoke tests without a checkpoint")
    vid = p.add_argument_group("video and webcam")
    vid.add_argument("--every", type=int, default=1, metavar="N", help="keep every Nth frame")
    vid.add_argument("--start", type=float, metavar="SEC", help="skip frames before this time")
    vid.add_argument("--end", type=float, metavar="SEC", help="stop after this time")
    vid.add_argument("--max-frames", type=int, metavar="N",
                     help="stop each video or webcam after N processed frames")
    vid.add_argument("--smooth", type=int, default=0, metavar="K",
                     help="temporal smoothing over K frames per face track (default off)")
    vid.add_argument("--smooth-mode", choices=("median", "ema"), default="median")
    vid.add_argument("--show", action="store_true",
                     help="live preview window (q quits) when a display exists")
    faces = p.add_argument_group("faces")
    faces.add_argument("--no-detect", action="store_true",
                       help="use the whole image as the face crop (the reference's behaviour)")
    faces.add_argument("--max-faces", type=int, metavar="N", help="keep the N largest faces")
    faces.add_argument("--min-face-size", type=int, default=20, metavar="PX",
                       help="smallest face to detect, in pixels (default 20)")
    return p


def _check_args(args: argparse.Namespace) -> list[str]:
    formats = [f.strip().lower() for f in args.format.split(",") if f.strip()]
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise UserError(f"--format {args.format!r}: choose from {', '.join(FORMATS)}")
    if not 0.0 <= args.threshold <= 1.0:
        raise UserError(f"--threshold {args.threshold}: must be between 0 and 1")
    for flag, value in (("--batch-size", args.batch_size), ("--max-faces", args.max_faces),
                        ("--min-face-size", args.min_face_size), ("--every", args.every),
                        ("--max-frames", args.max_frames)):
        if value is not None and value < 1:
            raise UserError(f"{flag} {value}: must be at least 1")
    if args.workers is not None and args.workers < 0:
        raise UserError(f"--workers {args.workers}: must be 0 or more")
    if args.smooth < 0:
        raise UserError(f"--smooth {args.smooth}: must be 0 (off) or more")
    if (args.start is not None and args.start < 0) or (
            args.end is not None and args.end < (args.start or 0.0)):
        raise UserError("--start/--end: need 0 <= start <= end (seconds)")
    if args.untrained and args.resume:
        raise UserError("--untrained and --resume exclude each other")
    return formats


@dataclass
class Stats:
    done: int = 0
    failed: int = 0
    no_face: int = 0
    faces: int = 0
    frames: int = 0
    skipped: int = 0
    videos: int = 0
    detect_s: float = 0.0
    model_s: float = 0.0


class _ImageDataset(Dataset):
    """Decodes (and without detection, preprocesses) images in DataLoader workers."""

    def __init__(self, items: Sequence[InputItem], preprocess, *, keep_image: bool,
                 to_tensor: bool) -> None:
        self.items, self.preprocess = items, preprocess
        self.keep_image, self.to_tensor = keep_image, to_tensor

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        try:
            image = load_image(self.items[i].path)
        except ImageError as exc:
            return {"index": i, "error": str(exc)}
        return {"index": i, "error": None, "size": image.size,
                "image": np.asarray(image) if self.keep_image else None,
                "tensor": self.preprocess(image) if self.to_tensor else None}


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)


def _as_list(batch: list[dict]) -> list[dict]:
    return batch


def format_table(title: str, probs: np.ndarray, threshold: float) -> str:
    lines = [title, f"  {'AU':<6} {'name':<26} {'prob':>6}"]
    for au, name, p in zip(AU_IDS, AU_NAMES, probs):
        mark = "  *" if p >= threshold else ""
        lines.append(f"  {'AU' + au:<6} {name:<26} {p:6.3f}{mark}")
    return "\n".join(lines)


def _chunks(iterator: Iterator, size: int) -> Iterator[list]:
    """Consecutive lists of up to `size` items, without reading ahead further."""
    while True:
        chunk = list(itertools.islice(iterator, size))
        if not chunk:
            return
        yield chunk


class _QuitKey:
    """For live cameras: typing q and Enter in the terminal stops the capture cleanly."""

    def __init__(self) -> None:
        import threading
        self.pressed = threading.Event()
        if sys.stdin is not None and sys.stdin.isatty():
            print("note: type q and Enter (or press Ctrl-C) to stop the camera", file=sys.stderr)
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in sys.stdin:
            if line.strip().lower() == "q":
                self.pressed.set()
                return


class _Preview:
    """Live window when a display exists; otherwise says so once and does nothing."""

    def __init__(self) -> None:
        import cv2
        self.cv2 = cv2
        self.enabled = bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
                            or sys.platform in ("win32", "darwin"))
        if not self.enabled:
            print("note: --show ignored, no display; running headless", file=sys.stderr)

    def show(self, frame_rgb: np.ndarray) -> bool:
        """Draw a frame; True when the user pressed q."""
        if not self.enabled:
            return False
        try:
            self.cv2.imshow("OpenGraphAU (q quits)", frame_rgb[..., ::-1])
            return (self.cv2.waitKey(1) & 0xFF) == ord("q")
        except self.cv2.error:
            print("note: --show failed to open a window; running headless", file=sys.stderr)
            self.enabled = False
            return False

    def close(self) -> None:
        if self.enabled:
            self.cv2.destroyAllWindows()


class Runner:
    """One CLI run: inputs -> model -> result files, with a summary at the end."""

    def __init__(self, args: argparse.Namespace, predictor: AUPredictor, writer: ResultWriter,
                 out_dir: Path, n_images: int) -> None:
        self.args, self.predictor, self.writer, self.out_dir = args, predictor, writer, out_dir
        self.stats = Stats()
        self.show_tables = not args.quiet and n_images <= TABLE_LIMIT
        self.title = UNTRAINED_BANNER if predictor.untrained else None

    # -- images ---------------------------------------------------------------------------------
    def _loader(self, items: Sequence[InputItem]) -> Iterator[list[dict]]:
        detect = self.predictor.detector is not None
        dataset = _ImageDataset(items, self.predictor.preprocess,
                                keep_image=detect or self.args.draw_text, to_tensor=not detect)
        workers = self.args.workers if self.args.workers is not None else max(1, (os.cpu_count() or 2) // 2)
        yield from DataLoader(dataset, batch_size=self.args.batch_size, num_workers=workers,
                              collate_fn=_as_list, worker_init_fn=_worker_init if workers else None,
                              prefetch_factor=2 if workers else None)

    def _detect(self, pils: list) -> list[list[tuple]]:
        """`AUPredictor.find_faces`, with the detection time counted for the summary."""
        start = time.perf_counter()
        found = self.predictor.find_faces(pils)
        if self.predictor.detector is not None:
            self.stats.detect_s += time.perf_counter() - start
        return found

    def _faces_of(self, batch: list[dict]) -> list[list[tuple]]:
        """Like `_detect`; without detection the workers have already made the tensors."""
        if self.predictor.detector is None:
            return [[(b["tensor"], (0.0, 0.0, float(b["size"][0]), float(b["size"][1])), 1.0)]
                    for b in batch]
        return self._detect([Image.fromarray(b["image"]) for b in batch])

    def process_images(self, items: Sequence[InputItem], progress) -> None:
        for batch in self._loader(items):
            ok = [b for b in batch if b["error"] is None]
            for b in batch:
                if b["error"] is not None:
                    self.fail(items[b["index"]].path, b["error"])
            if not ok:
                progress.update(len(batch))
                continue
            per_image = self._faces_of(ok)
            if self.args.save_crops and self.predictor.detector is not None:
                self._save_crops(items, ok, per_image)
            tensors = [c[0] if isinstance(c[0], torch.Tensor) else self.predictor.preprocess(c[0])
                       for faces in per_image for c in faces]
            start = time.perf_counter()
            probs = self.predictor.predict_tensors(torch.stack(tensors)) if tensors else None
            self.stats.model_s += time.perf_counter() - start
            rows, k = [], 0
            for b, faces in zip(ok, per_image):
                item = items[b["index"]]
                image_rows = []
                for face_id, (_, box, conf) in enumerate(faces):
                    image_rows.append(Row(item.path, 0, 0.0, face_id, True, conf, box, probs[k]))
                    k += 1
                if not faces:
                    image_rows.append(Row(item.path, 0, 0.0, 0, False, None, None, None))
                    self.stats.no_face += 1
                self.stats.faces += len(faces)
                rows.extend(image_rows)
                self._report(item, b, image_rows)
            self.writer.write(rows, completed=[items[b["index"]].path for b in ok])
            self.stats.done += len(ok)
            progress.update(len(batch))

    def _report(self, item: InputItem, decoded: dict, rows: list[Row]) -> None:
        if self.show_tables:
            for row in rows:
                where = "" if self.predictor.detector is None else \
                    (f"  face {row.face_id} box {tuple(round(v) for v in row.box)}" if row.success
                     else "  no face found")
                if row.success:
                    print(format_table(f"{item.path}{where}", row.probs, self.args.threshold))
                else:
                    print(f"{item.path}{where}")
        if self.args.draw_text:
            faces = [FaceAnnotation(r.face_id, r.box, r.probs, r.confidence) for r in rows
                     if r.success]
            picture = annotate_image(Image.fromarray(decoded["image"]), faces,
                                     threshold=self.args.threshold, title=self.title,
                                     show_boxes=self.predictor.detector is not None)
            target = self.out_dir / item.rel.parent / f"{item.rel.stem}_pred.jpg"
            target.parent.mkdir(parents=True, exist_ok=True)
            picture.save(target, quality=95)

    def _save_crops(self, items: Sequence[InputItem], ok: list[dict], per_image: list[list[tuple]]) -> None:
        for b, faces in zip(ok, per_image):
            rel = items[b["index"]].rel
            for face_id, (crop, _, _) in enumerate(faces):
                target = self.out_dir / "crops" / rel.parent / f"{rel.stem}_face{face_id}.jpg"
                target.parent.mkdir(parents=True, exist_ok=True)
                crop.save(target, quality=95)

    # -- videos and webcams -----------------------------------------------------------------
    def process_video(self, item: InputItem) -> None:
        """Frames are decoded ahead in a thread, batched for the model, written as they finish."""
        from tracking import FaceTracker, Smoother
        args = self.args
        try:
            source = VideoSource(item.path, every=args.every, start=args.start, end=args.end,
                                 max_frames=args.max_frames)
        except VideoError as exc:
            self.fail(item.path, str(exc).removeprefix(f"{item.path}: "))
            return
        tracker = FaceTracker()
        smoother = Smoother(args.smooth, args.smooth_mode) if args.smooth > 1 else None
        target = self.out_dir / item.rel.parent / item.rel.stem
        target.parent.mkdir(parents=True, exist_ok=True)
        video_out = VideoWriter(f"{target}_pred.mp4", source.fps / args.every) if args.draw_text else None
        times: list[float] = []
        tracks: dict[int, dict[int, np.ndarray]] = {}
        preview = _Preview() if args.show else None
        quit_key = _QuitKey() if source.is_camera else None
        try:
            with source:
                # A live camera goes frame by frame, so the preview and the rows keep up.
                for frames in _chunks(iter(source), 1 if source.is_camera else args.batch_size):
                    if self._video_batch(item, frames, tracker, smoother, video_out, times, tracks,
                                         preview) or (quit_key and quit_key.pressed.is_set()):
                        break
        except VideoError as exc:  # e.g. the annotated video cannot be written
            self.fail(item.path, str(exc))
        finally:
            if video_out is not None:
                video_out.close()
            if preview is not None:
                preview.close()
            if times:
                self._timeline(item, target, times, tracks)
        self.stats.videos += 1
        if source.error:
            self.fail(item.path, source.error)
        self.writer.mark_completed([item.path])

    def _video_batch(self, item: InputItem, frames: list, tracker, smoother, video_out, times,
                     tracks, preview) -> bool:
        """One batch of frames through detection and the model; True when the user quit."""
        per_frame = self._detect([Image.fromarray(f.image) for f in frames])
        crops = [self.predictor.preprocess(c[0]) for faces in per_frame for c in faces]
        start = time.perf_counter()
        probs = self.predictor.predict_tensors(torch.stack(crops)) if crops else None
        self.stats.model_s += time.perf_counter() - start
        rows, k = [], 0
        for frame, faces in zip(frames, per_frame):
            ids = tracker.update([c[1] for c in faces]) if self.predictor.detector is not None \
                else [0] * len(faces)
            if smoother is not None:
                for gone in tracker.dropped:
                    smoother.forget(gone)
            times.append(frame.timestamp)
            annotations = []
            for track_id, (_, box, conf) in zip(ids, faces):
                p = probs[k] if smoother is None else smoother(track_id, probs[k])
                k += 1
                rows.append(Row(item.path, frame.index, frame.timestamp, track_id, True, conf, box, p))
                tracks.setdefault(track_id, {})[len(times) - 1] = p
                annotations.append(FaceAnnotation(track_id, box, p, conf))
            if not faces:
                rows.append(Row(item.path, frame.index, frame.timestamp, 0, False, None, None, None))
            self.stats.frames += 1
            self.stats.faces += len(faces)
            if video_out is not None or preview is not None:
                drawn = annotate_frame(frame.image, annotations, threshold=self.args.threshold,
                                       title=self.title)
                if video_out is not None:
                    video_out.write(drawn)
                if preview is not None and preview.show(drawn):
                    self.writer.write(rows)
                    return True
        self.writer.write(rows)
        return False

    def _timeline(self, item: InputItem, target: Path, times: list[float],
                  tracks: dict[int, dict[int, np.ndarray]]) -> None:
        """Plot the face seen in the most frames (gaps where it is absent)."""
        from plots import plot_timeline
        if not tracks:
            return
        track_id, seen = max(tracks.items(), key=lambda kv: len(kv[1]))
        probs = np.full((len(times), len(AU_IDS)), np.nan)
        for i, p in seen.items():
            probs[i] = p
        title = f"{item.path} (face {track_id})" + (f" - {self.title}" if self.title else "")
        plot_timeline(np.asarray(times), probs, f"{target}_aus.png", threshold=self.args.threshold,
                      title=title)

    def fail(self, path: str, reason: str) -> None:
        print(f"error: {path}: {reason}", file=sys.stderr)
        self.writer.error(path, reason)
        self.stats.failed += 1

    def summary(self, elapsed: float, interrupted: bool) -> str:
        s = self.stats
        rate = (s.done + s.frames) / elapsed if elapsed > 0 else 0.0
        parts = [f"{'interrupted' if interrupted else 'done'}: {s.done} images"]
        if s.videos:
            parts.append(f"{s.videos} videos ({s.frames} frames)")
        parts.append(f"{s.failed} failed")
        if self.predictor.detector is not None:
            parts.append(f"{s.faces} faces, {s.no_face} without a face")
        if s.skipped:
            parts.append(f"{s.skipped} skipped (already done)")
        timing = f"model {s.model_s:.1f} s" + (f", detection {s.detect_s:.1f} s"
                                                if self.predictor.detector is not None else "")
        text = (f"{', '.join(parts)}; {elapsed:.1f} s, {rate:.2f} {'images' if not s.frames else 'images+frames'}/s ({timing}); "
                f"outputs in {self.out_dir}/")
        return (UNTRAINED_BANNER + "\n" + text) if self.predictor.untrained else text


def _exclude_outputs(items: list[InputItem], out_dir: Path) -> list[InputItem]:
    """Never read our own outputs back as inputs (output folder inside an input folder)."""
    root = os.path.realpath(out_dir) + os.sep
    return [i for i in items if i.kind == "webcam" or not os.path.realpath(i.path).startswith(root)]


def run(args: argparse.Namespace) -> int:
    formats = _check_args(args)
    if args.export_onnx:
        return export(args)
    if not args.input:
        raise UserError("--input is required (images, folders, globs, @lists, videos or webcam:N)")
    out_dir = Path(args.output_dir or Path("results") / args.exp_name)
    plan = collect_inputs(args.input)
    items = _exclude_outputs(plan.items, out_dir)
    if not items:
        reasons = "; ".join(f"{spec}: {why}" for spec, why in plan.problems) or "nothing given"
        raise UserError(f"no images found ({reasons})")
    checkpoint = None
    if not args.untrained:
        checkpoint = _checkpoint(args)
    try:
        predictor = AUPredictor(checkpoint, arch=args.arc, stage=args.stage, device=args.device,
                                detect_faces=not args.no_detect, min_face_size=args.min_face_size,
                                max_faces=args.max_faces, batch_size=args.batch_size,
                                precision=args.precision)
    except ValueError as exc:  # a precision this device cannot run
        raise UserError(f"--precision {args.precision}: {exc}") from None
    images = [i for i in items if i.kind == "image"]
    from tqdm import tqdm
    with ResultWriter(out_dir, formats=formats, threshold=args.threshold,
                      untrained=predictor.untrained, resume=args.skip_existing) as writer:
        if predictor.untrained:
            print(f"*** {UNTRAINED_BANNER} ***", file=sys.stderr)
        if not args.quiet:
            source = "random weights" if checkpoint is None else str(checkpoint)
            print(f"model: {predictor.model.arch} stage {predictor.model.stage} ({source}) on "
                  f"{predictor.device}", file=sys.stderr)
        runner = Runner(args, predictor, writer, out_dir, len(images))
        for spec, why in plan.problems:
            runner.fail(spec, why)
        todo = [i for i in images if i.path not in writer.completed]
        runner.stats.skipped = len(images) - len(todo)
        start = time.perf_counter()
        interrupted = False
        progress = tqdm(total=len(todo), unit="img", disable=args.quiet or not sys.stderr.isatty(),
                        file=sys.stderr)
        try:
            if todo:
                runner.process_images(todo, progress)
            for item in items:
                if item.kind != "image" and item.path not in writer.completed:
                    runner.process_video(item)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            progress.close()
        print(runner.summary(time.perf_counter() - start, interrupted))
    if interrupted:
        return 130
    return 1 if runner.stats.failed else 0


def _checkpoint(args: argparse.Namespace) -> Path:
    """--resume, or the checkpoint found in --checkpoint-dir for --arc/--stage."""
    return Path(args.resume) if args.resume else find_checkpoint(args.checkpoint_dir, args.arc,
                                                                 args.stage)


def export(args: argparse.Namespace) -> int:
    """--export-onnx: the plain fp32 model to ONNX, verified with onnxruntime before success."""
    from export import ExportError, export_onnx
    from model import load_model
    from predictor import untrained_model
    if not args.export_onnx.parent.is_dir():  # before loading: a large model takes seconds
        raise UserError(f"--export-onnx {args.export_onnx}: folder {args.export_onnx.parent} "
                        "does not exist")
    if args.untrained:
        model = untrained_model(args.arc, args.stage)
    else:
        checkpoint = _checkpoint(args)
        model = load_model(checkpoint, arch=args.arc, stage=args.stage, optimize=False)
    try:
        diff = export_onnx(model, args.export_onnx)
    except ExportError as exc:
        raise UserError(str(exc)) from None
    note = f" ({UNTRAINED_BANNER})" if args.untrained else ""
    print(f"wrote {args.export_onnx}: {model.arch} stage {model.stage}, input 'images' "
          f"(B, 3, 224, 224), output 'probs' (B, 41); onnxruntime matches PyTorch to "
          f"{diff:.1e}{note}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except (UserError, CheckpointError) as exc:
        print(f"demo.py: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
