"""`opengraphau download [NAME ...] [--all]`: fetch official models into the cache ahead of use
(on a cluster's shared disk, before going offline)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..errors import OpenGraphAUError
from ..weights import (
    DEFAULT_MODEL,
    OFFICIAL_CHECKPOINTS,
    ModelCache,
    official_by_name,
    offline_from_env,
)
from .args import Parser
from .main import guarded
from .report import terminal_text


def main(argv: Sequence[str], *, prog: str) -> int:
    parser = Parser(
        prog=prog,
        description="Fetch official models into the model cache ($OPENGRAPHAU_HOME, else the "
        "user cache folder), checked and resumable; OPENGRAPHAU_MIRROR (a base URL or a folder) "
        "is tried before Google Drive. `opengraphau models` lists the names.",
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"default: {DEFAULT_MODEL}")
    parser.add_argument("--all", action="store_true", help="every model with a public link")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    return guarded(prog, lambda: _download(args, prog))


def _download(args: argparse.Namespace, prog: str) -> int:
    if args.all and args.names:
        raise OpenGraphAUError("give model names or --all, not both")
    names = (
        [row.name for row in OFFICIAL_CHECKPOINTS if row.drive_id]
        if args.all
        else args.names or [DEFAULT_MODEL]
    )
    for name in names:
        official_by_name(name)  # every name checked before anything is fetched
    cache = ModelCache()
    failed = 0
    for name in names:
        try:
            model = cache.get(
                name,
                offline=offline_from_env(),
                progress=not args.quiet,
                say=lambda text: print(terminal_text(text), file=sys.stderr),
            )
        except OpenGraphAUError as exc:
            print(f"{prog}: error: {terminal_text(str(exc))}", file=sys.stderr)
            failed += 1
            continue
        except KeyboardInterrupt:
            print(
                f"{prog}: {name}: interrupted; run the same command again to resume",
                file=sys.stderr,
            )
            return 130
        print(
            f"{name}: {terminal_text(str(model.path))} ({model.bytes / (1 << 20):.1f} MB, "
            f"sha256 {model.sha256[:16]}...)"
        )
    return 2 if failed else 0
