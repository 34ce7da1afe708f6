"""The command line: the reference demo's flags and ours, turned into `Options`.

The only module that knows flags. Library errors name parameters (`output_dir`); `flag_for`
gives the flag a user typed for it (`--output-dir`), so a message blames only what was given.
Importing this loads no PyTorch, so `--help` is instant.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from ..model.variants import ARCHS
from ..options import ENGINES, PRECISIONS, SMOOTH_MODES, Options
from ..schema import FORMATS
from ..sinks.previous import fresh_folder, latest_folder
from ..weights import CHECKPOINT_DIR, DEFAULT_MODEL

#: `Options` fields whose flag's argparse name differs.
_DESTS = {
    "arch": "arc",
    "checkpoint": "resume",
    "draw": "draw_text",
    "formats": "format",
    "inputs": "input",
    "detect": "no_detect",
}


class Parser(argparse.ArgumentParser):
    """The parser of every command (main and subcommands alike)."""

    def error(self, message: str) -> NoReturn:
        """One line instead of argparse's usage block."""
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = Parser(
        prog=prog,
        description="Predict 41 facial action units with OpenGraphAU. Other commands: "
        f"`{prog} models` lists the official models, `{prog} download [NAME ...]` fetches them.",
        usage=f"{prog} [INPUT ...] [options]  |  {prog} COMMAND ...",
    )
    p.add_argument(
        "inputs",
        nargs="*",
        metavar="INPUT",
        help="images, folders, globs, @list.txt files, videos or webcam:N (as --input; a "
        "first INPUT named like a COMMAND runs that command: write ./NAME for a file)",
    )
    ref = p.add_argument_group("reference demo flags")
    ref.add_argument("--arc", choices=ARCHS, help="backbone; default: what the checkpoint holds")
    ref.add_argument(
        "--stage",
        type=int,
        choices=(1, 2),
        help="1 = ANFL, 2 = MEFL; default: what the checkpoint holds",
    )
    ref.add_argument(
        "--resume",
        metavar="FILE",
        default="",
        help="checkpoint file; default: --model, else the one in --checkpoint-dir",
    )
    ref.add_argument(
        "--model",
        metavar="NAME",
        help=f"an official model by name, fetched and cached on first use (`opengraphau models` "
        f"lists them); default: the file in --checkpoint-dir, else {DEFAULT_MODEL}",
    )
    ref.add_argument(
        "--input",
        nargs="+",
        metavar="PATH",
        default=[],
        help="images, folders, globs, @list.txt files, videos or webcam:N",
    )
    ref.add_argument(
        "--draw_text",
        action="store_true",
        help="write annotated pictures (and videos) to the output folder",
    )
    kinds = ref.add_mutually_exclusive_group()
    kinds.add_argument(
        "--images-only", action="store_true", help="leave out the videos found in folders and lists"
    )
    kinds.add_argument(
        "--videos-only", action="store_true", help="leave out the images found in folders and lists"
    )
    ref.add_argument(
        "--exp-name",
        default="demo",
        help="output folder name under results/ (numbered demo2, demo3, ... when it holds files)",
    )
    out = p.add_argument_group("outputs")
    out.add_argument("--output-dir", metavar="DIR", help="default: results/<exp-name>")
    out.add_argument(
        "--format",
        default="csv",
        metavar="LIST",
        help=f"comma-separated output formats: {', '.join(FORMATS)} (default: csv)",
    )
    out.add_argument(
        "--threshold",
        type=float,
        default=0.5,
        help="probability at or above which an AU counts as present (default 0.5)",
    )
    out.add_argument(
        "--thresholds",
        metavar="FILE",
        help="per-AU thresholds (JSON, as `evaluate --calibrate` writes); AUs it leaves out "
        "keep --threshold",
    )
    out.add_argument(
        "--skip-existing",
        action="store_true",
        help="continue an interrupted run: skip inputs already completed in DIR",
    )
    out.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the results DIR holds (its pictures too); without this or "
        "--skip-existing a named DIR that holds files is refused, and the default folder "
        "becomes results/<exp-name>2, 3, ...",
    )
    out.add_argument("--save-crops", action="store_true", help="write each face crop to DIR/crops/")
    out.add_argument("--quiet", action="store_true", help="no progress bar and no AU tables")
    out.add_argument(
        "--tables",
        action="store_true",
        help="print each face's AU table for every image (default: only for a single image)",
    )
    run = p.add_argument_group("model and speed")
    run.add_argument(
        "--device",
        default=Options.device,
        help=f"auto | cpu | cuda | cuda:N (default {Options.device})",
    )
    run.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=Options.precision,
        help="fp32 (default); bf16 on CUDA or CPUs with native bf16; fp16 on CUDA",
    )
    run.add_argument(
        "--export-onnx",
        metavar="FILE",
        type=Path,
        help="write the loaded model as ONNX (dynamic batch), checked with onnxruntime",
    )
    run.add_argument(
        "--batch-size",
        type=int,
        default=Options.batch_size,
        metavar="N",
        help="frames (faces) per model call (default 16 on a CPU, 64 on a GPU)",
    )
    run.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="image decoding processes (default: half the cores for a GPU; for a CPU model 1, "
        "or 0 on 2 cores or fewer, where decoding between batches is faster; at most the "
        "cores)",
    )
    run.add_argument(
        "--exact-pixels",
        action="store_true",
        help="on a GPU too, decode, search and crop with Pillow on the CPU: exactly the "
        "reference's and the CPU's pixels, slower (by default a GPU does that work itself, "
        "within a grey level)",
    )
    run.add_argument(
        "--checkpoint-dir",
        type=Path,
        default=Path(CHECKPOINT_DIR),
        metavar="DIR",
        help="where to look when --resume is not given (default: checkpoints/)",
    )
    run.add_argument(
        "--offline",
        action="store_true",
        default=None,
        help="never touch the network: a model not in the cache is an error "
        "(also OPENGRAPHAU_OFFLINE=1)",
    )
    run.add_argument(
        "--untrained",
        action="store_true",
        help="random weights, for smoke tests without a checkpoint",
    )
    run.add_argument(
        "--engine",
        choices=ENGINES,
        default="local",
        help="local (default) or ray: the same job on Ray Data",
    )
    run.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="Ray cluster to join (default: start a local Ray on this machine)",
    )
    vid = p.add_argument_group("video and webcam")
    vid.add_argument("--every", type=int, default=1, metavar="N", help="keep every Nth frame")
    vid.add_argument("--start", type=float, metavar="SEC", help="skip frames before this time")
    vid.add_argument("--end", type=float, metavar="SEC", help="stop after this time")
    vid.add_argument(
        "--max-frames",
        type=int,
        metavar="N",
        help="stop each video or webcam after N processed frames",
    )
    vid.add_argument(
        "--smooth",
        type=int,
        default=0,
        metavar="K",
        help="temporal smoothing over K frames per face track (default off)",
    )
    vid.add_argument("--smooth-mode", choices=SMOOTH_MODES, default="median")
    vid.add_argument(
        "--show", action="store_true", help="live preview window (q quits) when a display exists"
    )
    faces = p.add_argument_group("faces")
    faces.add_argument(
        "--no-detect",
        action="store_true",
        help="use the whole image as the face crop (the reference's behaviour)",
    )
    faces.add_argument(
        "--min-confidence",
        type=float,
        default=Options.min_confidence,
        metavar="P",
        help=f"drop detected faces below this face probability (default "
        f"{Options.min_confidence}; clear faces score above 0.99, so 0.98 removes most false "
        "faces in patterns)",
    )
    faces.add_argument("--max-faces", type=int, metavar="N", help="keep the N largest faces")
    faces.add_argument(
        "--min-face-size",
        type=int,
        default=Options.min_face_size,
        metavar="PX",
        help=f"smallest face to detect, in pixels (default {Options.min_face_size}); 40 halves "
        "detection's cost, but boxes move a little",
    )
    faces.add_argument(
        "--detect-every",
        type=int,
        default=Options.detect_every,
        metavar="K",
        help=f"videos: search whole frames every K frames and, between, only around the faces "
        f"found, with the full search's boxes (default {Options.detect_every}; 1: every frame; a "
        "new face waits at most K-1 frames)",
    )
    return p


def to_options(args: argparse.Namespace, argv: Sequence[str]) -> Options:
    """The parsed flags as `Options` (ConfigError, naming the parameter, for a bad value)."""
    return Options(
        inputs=(*args.input, *args.inputs),
        command=(sys.argv[0], *argv),
        output_dir=_output_dir(args),
        checkpoint=Path(args.resume) if args.resume else None,
        model=args.model,
        checkpoint_dir=args.checkpoint_dir,
        untrained=args.untrained,
        offline=args.offline,
        arch=args.arc,
        stage=args.stage,
        formats=tuple(args.format.split(",")),
        threshold=args.threshold,
        thresholds=args.thresholds,
        skip_existing=args.skip_existing,
        overwrite=args.overwrite,
        draw=args.draw_text,
        save_crops=args.save_crops,
        device=args.device,
        precision=args.precision,
        batch_size=args.batch_size,
        workers=args.workers,
        exact_pixels=args.exact_pixels,
        detect=not args.no_detect,
        max_faces=args.max_faces,
        min_face_size=args.min_face_size,
        detect_every=args.detect_every,
        min_confidence=args.min_confidence,
        only="images" if args.images_only else "videos" if args.videos_only else None,
        every=args.every,
        start=args.start,
        end=args.end,
        max_frames=args.max_frames,
        smooth=args.smooth,
        smooth_mode=args.smooth_mode,
        show=args.show,
        engine=args.engine,
        ray_address=args.ray_address,
    )


def _output_dir(args: argparse.Namespace) -> Path:
    """--output-dir as given; else results/<exp-name>, numbered (demo2, demo3, ...) so a second
    run keeps the first one's results, and the latest of those for --skip-existing/--overwrite."""
    if args.output_dir:
        return Path(args.output_dir)
    base = Path("results") / args.exp_name
    return latest_folder(base) if args.skip_existing or args.overwrite else fresh_folder(base)


def flag_for(parser: argparse.ArgumentParser, param: str | None, argv: Sequence[str]) -> str | None:
    """The flag of `param` if the user typed it (so a message never blames a default)."""
    dest = _DESTS.get(param or "", param)
    for action in parser._actions:
        if action.dest == dest and action.option_strings:
            flag = action.option_strings[0]
            if any(a == flag or a.startswith(flag + "=") for a in argv):
                return flag
    return None
