"""`opengraphau models`: the official models, their scores, and whether they are cached."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ..weights import DEFAULT_MODEL, OFFICIAL_CHECKPOINTS, ModelCache
from .args import Parser
from .main import guarded


def main(argv: Sequence[str], *, prog: str) -> int:
    parser = Parser(
        prog=prog,
        description="The official OpenGraphAU models: name (for --model and download), backbone, "
        "stage, the reference's F1 and accuracy (%, its hybrid test set), and the cache.",
    )
    args = parser.parse_args(argv)
    return guarded(prog, lambda: _show(args))


def _show(args: argparse.Namespace) -> int:
    cache = ModelCache()
    recorded = cache.entries()
    rows: list[tuple[str, ...]] = [("name", "backbone", "stage", "F1", "Acc.", "cached")]
    for row in OFFICIAL_CHECKPOINTS:
        path = cache.path_of(row)
        entry = recorded.get(row.name)
        if path.is_file() and entry is not None and entry.get("bytes") == path.stat().st_size:
            cached = f"yes, {entry['bytes'] / (1 << 20):.0f} MB"
        elif path.is_file():
            cached = "not checked yet"
        elif path.with_name(path.name + ".part").is_file():
            cached = "partly (resumes)"
        else:
            cached = "no" if row.drive_id else "no (no public link)"
        name = f"{row.name}*" if row.name == DEFAULT_MODEL else row.name
        scores = [f"{v:.2f}" if v is not None else "-" for v in (row.f1, row.acc)]
        rows.append((name, row.arch, str(row.stage), *scores, cached))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    print(f"* the default model. Cache: {cache.root} (OPENGRAPHAU_HOME sets it)")
    return 0
