"""Turning `--input` arguments into the list of things to process.

Arguments may mix image files, video files, folders (walked recursively in sorted order),
glob patterns, `@list.txt` files (one argument per line, relative to the list's folder, which
may name other lists, `@inner.txt`; a list naming itself, even through others, is refused) and
`webcam:N`. Other files inside folders are skipped silently; an explicit path that is missing
or of an unknown kind is reported, not fatal.
"""

from __future__ import annotations

import glob
import hashlib
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath

from ..errors import VideoError
from .images import is_image_path, special_file_reason
from .video import is_video_path, parse_webcam

_GLOB_CHARS = set("*?[")
#: How deep @lists may name @lists.
MAX_LIST_DEPTH = 50
#: What is trimmed around a list's lines: ASCII blanks only, as a name's bytes decoded as
#: Latin-1 may end in U+00A0 or U+0085, which str.strip would take for blanks too.
_BLANKS = " \t\r\n\f\v"


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


def _walk(folder: str, problems: list[tuple[str, str]]) -> list[str]:
    """Every file below `folder`, sorted by path components (a/deep/x before a/y before b/z);
    subfolders that cannot be listed are reported. Links to folders are not followed (as
    os.walk); iterative, so a folder nested thousands deep is no deeper a call stack."""
    found: list[str] = []
    pending = [folder]
    while pending:
        current = pending.pop()
        try:
            with os.scandir(current) as entries:
                for entry in entries:
                    if not _is_folder(entry):
                        found.append(entry.path)  # a link that loops too: refused by name
                    elif not entry.is_symlink():
                        pending.append(entry.path)
        except OSError as exc:
            problems.append((current, f"cannot list folder ({exc.strerror or exc})"))
    return sorted(found, key=lambda p: Path(p).parts)


def _is_folder(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _read_list(list_path: str) -> list[str]:
    """The lines of a list file, names of any bytes kept, decoded as `os` decodes file names;
    OSError or ValueError (why, in one line) for a device or a binary file."""
    mode = os.stat(list_path).st_mode  # a pipe is fine: --input @<(find ...)
    if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):
        raise ValueError(special_file_reason(list_path) or "not a regular file")
    data = Path(list_path).read_bytes()
    if b"\0" in data:
        raise ValueError("it is a binary file, not one path a line")
    # Split as bytes: str.splitlines would also break at U+0085 and U+2028, which file names
    # may hold (and, decoded as Latin-1, at every byte 0x85 of a UTF-8 name).
    return [os.fsdecode(line.removesuffix(b"\r")) for line in data.split(b"\n")]


def _glob_root(pattern: str) -> str:
    """The folder a glob pattern searches: its leading components without wildcards."""
    parts = Path(pattern).parts
    fixed = parts[: next((i for i, p in enumerate(parts) if _GLOB_CHARS & set(p)), len(parts))]
    return os.path.join(*fixed) if fixed else "."


def _expand(
    spec: str, problems: list[tuple[str, str]], open_lists: frozenset[str] = frozenset()
) -> Iterator[tuple[str, str, str]]:
    """(path, kind, where): `where` is the real path of the folder, file or pattern root named
    by the argument that reached it (what `collect_inputs` compares with the output folder).
    `open_lists`: the real paths of the @lists being read, which a list may not name again."""
    if "\0" in spec:
        problems.append((spec, "holds a NUL character, which no file name can"))
        return
    try:
        camera = parse_webcam(spec)
    except VideoError as exc:
        problems.append((spec, str(exc)))
        return
    if camera is not None:
        yield spec, "webcam", ""
    elif spec.startswith("@"):
        list_path = spec[1:]
        key = os.path.realpath(list_path)
        if key in open_lists:
            problems.append((spec, "list file includes itself (through the lists it names)"))
            return
        if len(open_lists) >= MAX_LIST_DEPTH:
            problems.append((spec, f"lists name lists more than {MAX_LIST_DEPTH} deep"))
            return
        try:
            lines = _read_list(list_path)
        except OSError as exc:
            problems.append((spec, f"cannot read list file ({exc.strerror or exc})"))
            return
        except ValueError as exc:
            problems.append((spec, f"cannot read list file ({exc})"))
            return
        base = os.path.dirname(list_path)
        for line in lines:
            line = line.strip(_BLANKS)
            if line and not line.startswith("#"):
                at = "@" if line.startswith("@") else ""  # a list naming a list
                name = line[len(at) :]
                keep = os.path.isabs(name) or line.startswith("webcam:")
                entry = at + (name if keep else os.path.join(base, name))
                yield from _expand(entry, problems, open_lists | {key})
    elif os.path.isdir(spec):
        found = False
        where = os.path.realpath(spec)
        for path in _walk(spec, problems):
            kind = _kind(path)
            if kind:
                found = True
                yield path, kind, where
        if not found:
            problems.append((spec, "folder holds no images or videos"))
    elif os.path.exists(spec):
        kind = _kind(spec)
        if kind:
            yield spec, kind, os.path.realpath(spec)
        else:
            problems.append((spec, "not an image or video file (unknown extension)"))
    elif os.path.lexists(spec):  # a link to nothing, or one that loops
        problems.append((spec, special_file_reason(spec) or "cannot be read"))
    elif _GLOB_CHARS & set(spec):
        matches = sorted(glob.glob(spec, recursive=True))
        if not matches:
            problems.append((spec, "pattern matches nothing"))
        where = os.path.realpath(_glob_root(spec))
        for match in matches:
            if os.path.isdir(match):
                for path, kind, _ in _expand(match, problems, open_lists):
                    yield path, kind, where
            elif kind := _kind(match):
                yield match, kind, where
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

    Files inside `exclude` (the output folder) are not inputs when an argument reaches them from
    outside it (a folder holding it, a pattern): reading our own pictures back would feed
    results in as data. Files, folders and patterns named inside it are taken as given. When
    that leaves an argument with nothing, it says so.
    """
    problems: list[tuple[str, str]] = []
    seen: set[str] = set()
    found: list[tuple[str, str]] = []
    inside = os.path.realpath(exclude) + os.sep if exclude is not None else None
    for spec in specs:
        excluded = 0
        kept = len(found)
        for path, kind, where in _expand(spec, problems):
            key = path if kind == "webcam" else os.path.realpath(path)
            if (
                inside
                and kind != "webcam"
                and key.startswith(inside)
                and not where.startswith(inside)
            ):
                excluded += 1
            elif key not in seen:
                seen.add(key)
                found.append((path, kind))
        if excluded and len(found) == kept:
            problems.append(
                (
                    spec,
                    f"all {excluded} files found are inside the output folder "
                    f"{exclude}, which is not searched for inputs; choose an output "
                    "folder outside the inputs (or name those files themselves)",
                )
            )
    files = [p for p, k in found if k != "webcam"]
    stems = dict(zip(files, _output_stems(_mirror_paths(files))))
    items = [InputItem(p, k, stems.get(p, PurePath(p.replace(":", "")))) for p, k in found]
    return InputPlan(items, problems)


#: Output names are `stem` plus at most ~30 bytes (`_face12.jpg`, a temporary name's suffix):
#: longer stems are cut and given a hash, as file names end at 255 bytes.
_MAX_STEM_BYTES = 200
#: Longest mirrored path of a picture below the output folder; deeper ones go to its top (paths
#: end at 4,096 bytes, and the output folder's own path counts too).
_MAX_REL_BYTES = 2048


def _fit(name: str) -> str:
    raw = os.fsencode(name)
    if len(raw) <= _MAX_STEM_BYTES:
        return name
    return f"{os.fsdecode(raw[: _MAX_STEM_BYTES - 11])}~{hashlib.sha1(raw).hexdigest()[:10]}"


def _fit_path(rel: PurePath) -> PurePath:
    """`rel`'s folder and fitted stem, or, where that path passes `_MAX_REL_BYTES`, the fitted
    stem alone with a hash of the whole path: a path too long for the file system would leave
    the input without pictures."""
    stem = rel.parent / _fit(rel.stem)
    if len(os.fsencode(str(stem))) <= _MAX_REL_BYTES:
        return stem
    return PurePath(f"{_fit(rel.stem)}~{hashlib.sha1(os.fsencode(str(rel))).hexdigest()[:10]}")


def _output_stems(rels: list[PurePath]) -> list[PurePath]:
    """`folder/name` for each input, or `folder/name_ext` where two inputs share a folder and
    name (a.jpg and a.png), and `_2`, `_3` where even that is taken (a_jpg.png beside them), so
    no picture overwrites another. Compared case-insensitively, as some file systems are."""
    plain = [_fit_path(rel) for rel in rels]
    counts: dict[str, int] = {}
    for stem in plain:
        counts[str(stem).lower()] = counts.get(str(stem).lower(), 0) + 1
    used: set[str] = set()
    stems = []
    for stem, rel in zip(plain, rels):
        if counts[str(stem).lower()] > 1:
            stem = stem.parent / _fit(f"{rel.stem}_{rel.suffix.lstrip('.')}")
        unique, n = stem, 1
        while str(unique).lower() in used:
            n += 1
            unique = stem.parent / f"{stem.name}_{n}"
        used.add(str(unique).lower())
        stems.append(unique)
    return stems
