"""Turning `--input` arguments into the list of things to process.

Arguments may mix image files, video files, folders (walked recursively in sorted order),
glob patterns, `@list.txt` files (one argument per line, relative to the list's folder) and
`webcam:N`. Other files inside folders are skipped silently; an explicit path that is missing
or of an unknown kind is reported, not fatal.
"""
from __future__ import annotations

import glob
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath

from ..errors import VideoError
from .images import is_image_path
from .video import is_video_path, parse_webcam

_GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class InputItem:
    """One thing to process. `path` is what the outputs' `file` column shows."""

    path: str
    kind: str  # "image" | "video" | "webcam"
    stem: PurePath = PurePath("input")
    """Where its pictures go, relative to the output folder and without a suffix (`a/face`
    gives `a/face_pred.jpg`); unique within a run."""


@dataclass
class InputPlan:
    items: list[InputItem]
    problems: list[tuple[str, str]]  # (argument, reason) for arguments that gave nothing usable


def _kind(path: str) -> str | None:
    return "image" if is_image_path(path) else "video" if is_video_path(path) else None


def _walk(folder: str) -> list[str]:
    """Every file below `folder`, sorted by path components (a/deep/x before a/y before b/z)."""
    found = [os.path.join(root, name) for root, _, files in os.walk(folder) for name in files]
    return sorted(found, key=lambda p: Path(p).parts)


def _expand(spec: str, problems: list[tuple[str, str]],
            seen_lists: set[str]) -> Iterator[tuple[str, str]]:
    try:
        camera = parse_webcam(spec)
    except VideoError as exc:
        problems.append((spec, str(exc)))
        return
    if camera is not None:
        yield spec, "webcam"
    elif spec.startswith("@"):
        list_path = spec[1:]
        key = os.path.realpath(list_path)
        if key in seen_lists:
            problems.append((spec, "list file includes itself"))
            return
        seen_lists.add(key)
        try:
            lines = Path(list_path).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            problems.append((spec, f"cannot read list file ({exc.strerror or exc})"))
            return
        except UnicodeDecodeError:
            problems.append((spec, "cannot read list file (it is not UTF-8 text)"))
            return
        base = os.path.dirname(list_path)
        for line in lines:
            line = line.strip()
            if line and not line.startswith("#"):
                keep = os.path.isabs(line) or line.startswith("webcam:")
                entry = line if keep else os.path.join(base, line)
                yield from _expand(entry, problems, seen_lists)
    elif os.path.isdir(spec):
        found = False
        for path in _walk(spec):
            kind = _kind(path)
            if kind:
                found = True
                yield path, kind
        if not found:
            problems.append((spec, "folder holds no images or videos"))
    elif os.path.exists(spec):
        kind = _kind(spec)
        if kind:
            yield spec, kind
        else:
            problems.append((spec, "not an image or video file (unknown extension)"))
    elif _GLOB_CHARS & set(spec):
        matches = sorted(glob.glob(spec, recursive=True))
        if not matches:
            problems.append((spec, "pattern matches nothing"))
        for match in matches:
            if os.path.isdir(match):
                yield from _expand(match, problems, seen_lists)
            elif kind := _kind(match):
                yield match, kind
    else:
        problems.append((spec, "no such file or folder"))


def _mirror_paths(paths: list[str]) -> list[PurePath]:
    """Paths relative to the inputs' common folder, so equal names in different folders differ."""
    if not paths:
        return []
    parents = [os.path.dirname(os.path.abspath(p)) for p in paths]
    common = os.path.commonpath(parents)
    return [PurePath(os.path.relpath(os.path.abspath(p), common)) for p in paths]


def collect_inputs(specs: Sequence[str], *, exclude: str | Path | None = None) -> InputPlan:
    """Expand the arguments, dropping repeats of the same file (the first one wins).

    Files inside `exclude` (the output folder) are never inputs: reading our own pictures back
    would feed results in as data. When that leaves an argument with nothing, it says so.
    """
    problems: list[tuple[str, str]] = []
    seen: set[str] = set()
    found: list[tuple[str, str]] = []
    inside = os.path.realpath(exclude) + os.sep if exclude is not None else None
    for spec in specs:
        excluded = 0
        kept = len(found)
        for path, kind in _expand(spec, problems, set()):
            key = path if kind == "webcam" else os.path.realpath(path)
            if inside and kind != "webcam" and key.startswith(inside):
                excluded += 1
            elif key not in seen:
                seen.add(key)
                found.append((path, kind))
        if excluded and len(found) == kept:
            problems.append((spec, f"all {excluded} files found are inside the output folder "
                                   f"{exclude}, whose files are never read as inputs; choose "
                                   "an output folder outside the inputs"))
    files = [p for p, k in found if k != "webcam"]
    stems = dict(zip(files, _output_stems(_mirror_paths(files))))
    items = [InputItem(p, k, stems.get(p, PurePath(p.replace(":", "")))) for p, k in found]
    return InputPlan(items, problems)


def _output_stems(rels: list[PurePath]) -> list[PurePath]:
    """`folder/name` for each input, or `folder/name_ext` where two inputs share a folder and
    name (a.jpg and a.png), so no picture overwrites another. Compared case-insensitively, as
    some file systems are."""
    plain = [rel.parent / rel.stem for rel in rels]
    counts: dict[str, int] = {}
    for stem in plain:
        counts[str(stem).lower()] = counts.get(str(stem).lower(), 0) + 1
    return [stem if counts[str(stem).lower()] == 1
            else stem.parent / f"{stem.name}_{rel.suffix.lstrip('.')}"
            for stem, rel in zip(plain, rels)]
