"""`opengraphau` / `python demo.py`: parse the flags, run, and say in one line what went wrong.

`opengraphau COMMAND ...` runs a subcommand instead (`SUBCOMMANDS`): each lives in a module of
its own under `cli/` with a `main(argv, prog=...)`, and shares `guarded` for its one-line errors.

Exit status: 0 every input succeeded, 1 some inputs failed (listed on stderr and in errors.csv),
2 a usage problem (bad flag, no inputs, bad checkpoint, unusable output folder) or a failure
of this program itself (one line, never a traceback), 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import importlib
import logging
import multiprocessing
import os
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from ..errors import (
    ConfigError,
    OpenGraphAUError,
    ResultsExistError,
    UntrainedWarning,
    describe,
)
from .args import build_parser, flag_for, to_options

if TYPE_CHECKING:
    import torch

    from ..sources.video import CaptureFactory
    from .report import TerminalReporter


#: `opengraphau NAME ...`: the module under `cli/` whose `main(argv, prog=...)` runs NAME.
SUBCOMMANDS: dict[str, str] = {
    "models": "models",
    "download": "download",
    "evaluate": "evaluate",
}


def main(
    argv: Sequence[str] | None = None,
    *,
    prog: str = "opengraphau",
    capture_factory: CaptureFactory | None = None,
) -> int:
    """Run the command line `argv` (default: sys.argv[1:]); returns the exit status.

    `capture_factory` opens videos and cameras instead of OpenCV (tests pass a fake camera).
    """
    with _sturdy_streams():
        return _main(list(sys.argv[1:] if argv is None else argv), prog, capture_factory)


def _main(argv: list[str], prog: str, capture_factory: CaptureFactory | None) -> int:
    if argv and argv[0] in SUBCOMMANDS:
        command = importlib.import_module(f".{SUBCOMMANDS[argv[0]]}", __package__)
        return int(command.main(argv[1:], prog=f"{prog} {argv[0]}"))
    parser = build_parser(prog)
    args = parser.parse_intermixed_args(argv)

    # Pillow logs what it finds wrong in a hostile file ("More samples per pixel than can be
    # decoded") before raising, matplotlib that it cannot make its cache folder under an odd
    # HOME or TMPDIR (and makes one elsewhere); with no handler Python would print those lines
    # on stderr, beside ours. The file's one-line reason comes from the exception. The library
    # announces random weights with a warning and a log line for API users; the terminal
    # reporter says it in its own words.
    for name in ("PIL", "matplotlib", "opengraphau"):
        library = logging.getLogger(name)
        if not library.handlers:
            library.addHandler(logging.NullHandler())

    return guarded(prog, lambda: _command(args, argv, capture_factory), parser=parser, argv=argv)


def _command(
    args: argparse.Namespace, argv: Sequence[str], capture_factory: CaptureFactory | None
) -> int:
    if args.untrained and (args.resume or args.model):
        raise UsageError(
            f"--untrained and {'--resume' if args.resume else '--model'} exclude each other"
        )
    if args.resume and args.model:
        raise UsageError("--resume FILE and --model NAME exclude each other; give one")
    if args.export_onnx:
        return _export(args, argv)
    if not args.input and not args.inputs:
        raise UsageError(
            "no inputs: give images, folders, globs, @lists, videos or webcam:N "
            "(after the command or after --input)"
        )
    return _run(args, argv, capture_factory)


@contextlib.contextmanager
def _sturdy_streams() -> Iterator[None]:
    """Standard streams that are closed, full or gone never stop a run nor change its exit
    status: a reader that left (`| head -1`) is not a failure of the run.

    Closed descriptors 0-2 are opened on the null device first, so no output file of the run
    takes their number (a library's message to "stderr" would land in it); writes that fail
    are dropped from then on, quietly (no "Exception ignored" at exit)."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:  # the lowest free number: this one, once the lower ones are open
            os.open(os.devnull, os.O_RDWR)
    saved = sys.stdout, sys.stderr
    # A name's UTF-8 text on a terminal of another locale (Latin-1) is escaped, not an error.
    errors = [getattr(stream, "errors", None) for stream in saved]
    for stream in saved:
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]
    sys.stdout, sys.stderr = _Sturdy(sys.stdout), _Sturdy(sys.stderr)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stdout, sys.stderr = saved
        for stream, error in zip(saved, errors):
            with contextlib.suppress(AttributeError, ValueError, TypeError):
                stream.reconfigure(errors=error)  # type: ignore[union-attr]


class _Sturdy:
    """A text stream whose failing writes (EPIPE, ENOSPC, a closed stream) end its output
    quietly instead of the run."""

    def __init__(self, stream: TextIO | None) -> None:
        self._stream = stream if stream is not None else open(os.devnull, "w")  # noqa: SIM115
        self.gone = False

    def write(self, text: str) -> int:
        if not self.gone:
            try:
                return self._stream.write(text)
            except (OSError, ValueError):
                self._leave()
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            try:
                self._stream.flush()
            except (OSError, ValueError):
                self._leave()

    def _leave(self) -> None:
        """No more output; what the stream still buffers goes to the null device, where
        Python's own flush at exit can put it without complaint."""
        self.gone = True
        with contextlib.suppress(OSError, ValueError, AttributeError):
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, self._stream.fileno())
            os.close(null)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class UsageError(Exception):
    """A problem only the command line can have."""


def guarded(
    prog: str,
    body: Callable[[], int],
    *,
    parser: argparse.ArgumentParser | None = None,
    argv: Sequence[str] = (),
) -> int:
    """`body()`'s exit status, with every error as one line on stderr: a library error (exit 2)
    as its message (with the flag the user typed for its parameter, given the `parser` and
    `argv`), Ctrl-C as 130, anything else as an internal error (exit 2), no traceback. For
    subcommands too: the main command is one."""
    from .report import terminal_text

    try:
        return body()
    except UsageError as exc:
        print(f"{prog}: error: {terminal_text(str(exc))}", file=sys.stderr)
        return 2
    except OpenGraphAUError as exc:
        text = str(exc) if parser is None else _one_line(parser, exc, argv)
        print(f"{prog}: error: {terminal_text(text)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C while loading or summing up: what was written stays
        return 130
    except Exception as exc:  # noqa: BLE001 - a bug of ours still gets one line, not a traceback
        print(
            f"{prog}: error: internal error ({terminal_text(describe(exc))}); the results "
            "written so far are kept; please report this with the command line",
            file=sys.stderr,
        )
        return 2


def _one_line(parser: argparse.ArgumentParser, exc: OpenGraphAUError, argv: Sequence[str]) -> str:
    """The library's message, with the flag the user typed for its parameter in front."""
    from ..weights import CheckpointNotFound, DownloadError, model_names

    flag = flag_for(parser, exc.param, argv)
    if isinstance(exc, ResultsExistError):
        return (
            f"{exc.value}: already holds an earlier run's results; add --skip-existing to "
            "continue that run, or --overwrite to replace its results"
        )
    if isinstance(exc, CheckpointNotFound):
        return (
            f"no checkpoint given; {exc.value}: {exc.reason}; choose one with --resume FILE "
            "(or narrow with --arc/--stage)"
        )
    if (
        exc.param == "checkpoint"
        and str(exc.value) in model_names()
        and not os.path.exists(str(exc.value))
    ):
        return (
            f"--resume {exc.value}: no such file; for the official model of that name, "
            f"give --model {exc.value}"
        )
    if isinstance(exc, DownloadError) and flag is None:
        return f"no checkpoint; {exc}"
    if flag is None:
        return str(exc)
    if isinstance(exc, ConfigError) or exc.value is None:
        value = f" {exc.value}" if exc.value is not None else ""
        return f"{flag}{value}: {exc.reason}"
    return f"{flag} {exc}"


def _run(
    args: argparse.Namespace, argv: Sequence[str], capture_factory: CaptureFactory | None
) -> int:
    from ..jobs import run
    from .report import TerminalReporter, format_summary

    reporter = TerminalReporter(quiet=args.quiet, tables=args.tables)
    with ctrl_c(reporter), warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedWarning)
        options = to_options(args, argv)
        stats = run(options, reporter, capture_factory=capture_factory)
        print(format_summary(stats))
    return 130 if stats.interrupted else 1 if stats.failed else 0


@contextlib.contextmanager
def ctrl_c(reporter: TerminalReporter) -> Iterator[None]:
    """Ctrl-C while inputs are processed asks the run to stop after its current batch, where
    what was written is whole (a KeyboardInterrupt raised just anywhere can land in a worker's
    start or a library's clean-up, and be lost there or print a traceback); before that, it
    interrupts at once. A second one ends the process at once, quietly, with 130. Without a
    Ctrl-C the previous handler comes back (main may run inside a bigger program)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    pressed = False

    def first(signum: int, frame: object) -> None:
        nonlocal pressed
        pressed = True
        signal.signal(signal.SIGINT, _exit_now)
        # At exit Python resets handlers of its own to the default, which would kill the
        # process by the signal (not 130) in its last moments; an ignored one stays ignored.
        atexit.register(signal.signal, signal.SIGINT, signal.SIG_IGN)
        if reporter.processing:
            reporter.request_interrupt()
        else:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, first)
    try:
        yield
    finally:
        if not pressed and previous is not None:
            signal.signal(signal.SIGINT, previous)


def _exit_now(signum: int, frame: object) -> None:
    """The second Ctrl-C: no clean-up and no output. Decoding workers go first, before they can
    complain on stderr of a parent that vanished in the middle of a transfer."""
    for child in multiprocessing.active_children():
        with contextlib.suppress(OSError):
            child.kill()
    os._exit(130)


def _export(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """--export-onnx: the plain fp32 model to ONNX, verified with onnxruntime before success."""
    from ..context import UNTRAINED_BANNER
    from ..export import export_onnx
    from ..model.checkpoint import load_model
    from ..model.opengraphau import untrained_model
    from ..sinks.files import special_reason
    from ..weights import choose_weights

    if not args.export_onnx.parent.is_dir():  # before loading: a large model takes seconds
        raise UsageError(
            f"--export-onnx {args.export_onnx}: folder {args.export_onnx.parent} does not exist"
        )
    reason = special_reason(args.export_onnx)
    if reason:
        raise UsageError(f"--export-onnx {args.export_onnx}: {reason}")
    model: torch.nn.Module
    if args.untrained:
        model = untrained_model(args.arc, args.stage)
    else:
        weights = choose_weights(
            checkpoint=args.resume or None,
            model=args.model,
            checkpoint_dir=args.checkpoint_dir,
            arch=args.arc,
            stage=args.stage,
            offline=args.offline,
            progress=not args.quiet,
        )
        model = load_model(weights.path, arch=args.arc, stage=args.stage, optimize=False)
    diff = export_onnx(model, args.export_onnx)
    note = f" ({UNTRAINED_BANNER})" if args.untrained else ""
    print(
        f"wrote {args.export_onnx}: {model.arch} stage {model.stage}, input 'images' "
        f"(B, 3, 224, 224), output 'probs' (B, 41); onnxruntime matches PyTorch to "
        f"{diff:.1e}{note}"
    )
    return 0
