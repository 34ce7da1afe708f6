"""Random hostile cases of the kinds `test_hostile.py` builds one by one (issue #11), for a long
run by hand. Not collected by pytest (no `test_` prefix).

    .venv/bin/python tests/hostile_fuzz.py --minutes 10            # as many rounds as fit
    .venv/bin/python tests/hostile_fuzz.py --seed 1234 --rounds 1  # replay one round

Each round makes a folder of random inputs (real images of random Pillow modes, sizes and formats,
cut off or with bytes flipped, random bytes, videos cut off or damaged, all under random image
and video extensions), with names of random odd bytes (line breaks, bytes that are not UTF-8,
escape sequences, quotes, the text \\xNN) and now and then special files (pipes, links to a
device, dangling and looping links, folders named like images); and sometimes links planted in
the output folder. Every fourth round is a broken checkpoint instead (random bytes, a real one
cut off, a tensor of the wrong kind, NaN, sparse or meta, keys dropped or added, pickles of
other things).

It runs the command line in this process (untrained model, no face detection) and checks:

- main returns 0 or 1 (2 for a broken checkpoint or a planted link), never raises;
- stderr (fd 2, so FFmpeg's and libjpeg's own prints count) holds only our one-line messages,
  and never "Traceback";
- every input is in predictions.csv once (videos: once per frame) or in errors.csv, never
  lost; a damaged video may be in both;
- a second run with --skip-existing leaves the rows as they were: nothing lost, nothing twice;
- the inputs' tree, and any file a planted link points to, are byte-identical (hash, mtime).

A failing round prints its seed, the assertion and the round's folder (kept); the summary line
counts rounds, inputs and failures.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import io
import json
import os
import random
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import cv2
import numpy as np
import torch
from PIL import Image

# tests/ is the script's folder
from factories import fast_with, run_main, write_official_checkpoint
from opengraphau.context import UNTRAINED_BANNER
from opengraphau.records import display_name

IMAGE_EXT = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".JPG", ".Png")
VIDEO_EXT = (".mp4", ".avi", ".mkv", ".mov", ".webm")
MODES = {  # mode: formats Pillow writes it in
    "1": ("PNG", "BMP", "TIFF"),
    "L": ("PNG", "JPEG", "BMP", "TIFF", "WEBP"),
    "LA": ("PNG", "TIFF"),
    "P": ("PNG", "BMP", "TIFF"),
    "RGB": ("PNG", "JPEG", "BMP", "TIFF", "WEBP"),
    "RGBA": ("PNG", "TIFF", "WEBP"),
    "CMYK": ("JPEG", "TIFF"),
    "I;16": ("PNG", "TIFF"),
    "I": ("PNG", "TIFF"),
    "F": ("TIFF",),
    "YCbCr": ("JPEG", "TIFF"),
    "LAB": ("TIFF",),
}
ODD = [
    b"\n",
    b"\r",
    b"\r\n",
    b"\xff",
    b"\xe9",
    b"\x80",
    b"\\x",
    b"\\xff",
    b"\x1b[31m",
    b'"',
    b",",
    b" ",
    b"-",
    b"\t",
    "é".encode(),
    "😀".encode(),
    b"#",
    b"@",
    b"*",
    b"?",
    b"[",
    b":",
]
PREFIX = "demo.py: error: "
OUR_LINE = ("error: ", "warning: ", PREFIX)


def _name(rng: random.Random, taken: set[str], ext: str) -> bytes:
    """A new random name; none displays like another (`\\xff` the text and 0xff the byte do)."""
    while True:
        parts = [
            rng.choice(ODD)
            if rng.random() < 0.3
            else bytes(rng.choices(b"abcxyz019_", k=rng.randint(1, 6)))
            for _ in range(rng.randint(1, 6))
        ]
        stem = b"".join(parts)
        if rng.random() < 0.05:
            stem = stem * (200 // max(1, len(stem)))
        name = stem[:240] + ext.encode()
        shown = display_name(os.fsdecode(name)).lower()
        if shown not in taken and not name.startswith(b"@"):
            taken.add(shown)
            return name


def _picture(rng: random.Random) -> bytes:
    mode = rng.choice(list(MODES))
    fmt = rng.choice(MODES[mode])
    if rng.random() < 0.1:
        size = rng.choice([(rng.randint(2000, 9000), 1), (1, rng.randint(2000, 9000))])
    else:
        size = (rng.randint(1, 120), rng.randint(1, 120))
    pixels = np.random.default_rng(rng.randrange(2**32)).integers(
        0, 256, (size[1], size[0], 3), dtype=np.uint8
    )
    image = Image.fromarray(pixels).convert(mode)
    if mode == "P" and rng.random() < 0.5:
        image.info["transparency"] = 0
    buffer = io.BytesIO()
    try:
        exif = None
        if fmt == "JPEG" and rng.random() < 0.3:
            exif = b"Exif\x00\x00" + rng.randbytes(rng.randint(0, 200))
        image.save(buffer, format=fmt, **({"exif": exif} if exif else {}))
    except (OSError, ValueError):  # a mode this format cannot hold after all
        Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _clip(rng: random.Random, folder: Path) -> bytes:
    path = folder / f".clip{rng.randrange(10**9)}.avi"
    size = (rng.randint(8, 64) * 2, rng.randint(8, 48) * 2)
    # OpenCV's own MJPEG writer, not FFmpeg's: FFmpeg reads its log level once per process, so
    # the first use of it must be the tool's, as in a user's run, or its complaints about the
    # damaged videos below would reach stderr (the tool silences it where it first opens one).
    writer = cv2.VideoWriter(
        str(path), cv2.CAP_OPENCV_MJPEG, cv2.VideoWriter.fourcc(*"MJPG"), 10, size
    )
    for _ in range(rng.randint(1, 8)):
        writer.write(
            np.random.default_rng(rng.randrange(2**32)).integers(
                0, 256, (size[1], size[0], 3), dtype=np.uint8
            )
        )
    writer.release()
    data = path.read_bytes()
    path.unlink()
    return data


def _damage(rng: random.Random, data: bytes) -> bytes:
    kind = rng.random()
    if kind < 0.45 or not data:
        return data
    if kind < 0.65:
        return data[: rng.randrange(len(data))]
    if kind < 0.8:
        raw = bytearray(data)
        for _ in range(rng.randint(1, 20)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        return bytes(raw)
    if kind < 0.9:
        return rng.randbytes(rng.randint(0, 3000))
    return rng.randbytes(rng.randint(1, 16)) + data


def _special(rng: random.Random, path: bytes) -> None:
    kind = rng.choice(["fifo", "device", "dangling", "loop", "folder", "socket"])
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":
        os.symlink(rng.choice([b"/dev/null", b"/dev/zero", b"/dev/urandom"]), path)
    elif kind == "dangling":
        os.symlink(path + b".gone", path)
    elif kind == "loop":
        os.symlink(path, path)
    elif kind == "socket":
        server = socket.socket(socket.AF_UNIX)
        try:
            server.bind(path)
        except OSError:  # the path is too long for a socket
            os.mkfifo(path)
        server.close()
    else:
        os.mkdir(path)


def _tree(root: bytes) -> dict[bytes, tuple]:
    found: dict[bytes, tuple] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    found[path] = ("file", hashlib.sha256(f.read()).hexdigest(), st.st_mtime_ns)
            elif stat.S_ISLNK(st.st_mode):
                found[path] = ("link", os.readlink(path))
            else:
                found[path] = (stat.S_IFMT(st.st_mode), st.st_mtime_ns)
    return found


@contextlib.contextmanager
def _captured() -> Iterator[dict[str, str]]:
    """stdout and stderr at the descriptors, so C libraries' prints are caught too."""
    got: dict[str, str] = {}
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        try:
            yield got
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            for name, f in (("out", out), ("err", err)):
                f.seek(0)
                got[name] = f.read().decode("utf-8", "replace")


def _main(*args: str) -> tuple[int, list[str]]:
    with _captured() as got:
        try:
            code = run_main(*args)
        except BaseException:  # noqa: BLE001 - what must never happen, reported as such
            code = -1
            traceback.print_exc()
    lines = [ln for ln in got["err"].splitlines() if ln != f"*** {UNTRAINED_BANNER} ***"]
    return code, lines


def _csv(path: Path) -> list[list[str]]:
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))[1:]


class Failure(AssertionError):
    pass


def _check(condition: bool, text: str) -> None:
    if not condition:
        raise Failure(text)


def _check_lines(code: int, err: list[str], allowed: set[int]) -> None:
    _check(code in allowed, f"exit status {code}, expected one of {sorted(allowed)}: {err}")
    _check(not any("Traceback" in ln for ln in err), "a traceback:\n" + "\n".join(err))
    strays = [ln for ln in err if not ln.startswith(OUR_LINE)]
    _check(not strays, f"lines that are not ours: {strays[:5]}")
    if code == 2:
        _check(len(err) == 1 and err[0].startswith(PREFIX), f"exit 2 needs one line: {err}")


def image_round(rng: random.Random, root: Path) -> int:
    """One folder of random inputs, run and resumed; returns how many inputs it held."""
    data, out = os.fsencode(root / "data"), root / "out"
    os.makedirs(data)
    taken: set[str] = set()
    inputs: dict[str, str] = {}  # display name -> "image" | "video" | "special"
    same: dict[bytes, list[str]] = {}  # links to one file are one input: the first one found
    for _ in range(rng.randint(1, 12)):
        folder = data
        if rng.random() < 0.2:
            folder = os.path.join(data, _name(rng, taken, ""))
            os.makedirs(folder, exist_ok=True)
        video = rng.random() < 0.15
        path = os.path.join(
            folder, _name(rng, taken, rng.choice(VIDEO_EXT if video else IMAGE_EXT))
        )
        if rng.random() < 0.08:
            _special(rng, path)
            kind = "special" if not os.path.isdir(path) else "folder"
        else:
            content = _clip(rng, root) if video else _picture(rng)
            with open(path, "wb") as f:
                f.write(_damage(rng, content))
            kind = "video" if video else "image"
        if kind != "folder":
            inputs[display_name(os.fsdecode(path))] = kind
            same.setdefault(os.path.realpath(path), []).append(display_name(os.fsdecode(path)))
    outside = root / "outside.bin"
    outside.write_bytes(b"not yours")
    planted = rng.random() < 0.15
    if planted:
        out.mkdir()
        target = rng.choice(
            ["predictions.csv", "errors.csv", "completed.csv", "x_pred.jpg", ".opengraphau.lock"]
        )
        os.symlink(outside, out / target)
    guarded = {**_tree(data), **_tree(os.fsencode(outside))}
    flags = [
        "--untrained",
        "--arc",
        "resnet18",
        "--no-detect",
        "--quiet",
        "--workers",
        rng.choice(["0", "0", "1"]),
        "--batch-size",
        str(rng.randint(1, 5)),
        "--output-dir",
        str(out),
    ]
    if rng.random() < 0.5:
        flags.append("--draw_text")
    if rng.random() < 0.3:
        flags += ["--format", "csv,jsonl"]
    code, err = _main(*flags, "--input", os.fsdecode(data))
    _check_lines(code, err, {2} if not inputs else {0, 1, 2} if planted else {0, 1})
    if code == 2:
        _check(
            _tree(data) == {k: v for k, v in guarded.items() if k.startswith(data)},
            "inputs changed",
        )
        return len(inputs)
    rows = _csv(out / "predictions.csv")
    errors = {r[0] for r in _csv(out / "errors.csv")}
    per_file: dict[str, int] = {}
    for row in rows:
        per_file[row[0]] = per_file.get(row[0], 0) + 1
    for names in same.values():
        seen = [n for n in names if n in per_file or n in errors]
        _check(len(seen) == 1, f"one file, {len(names)} names, {len(seen)} used: {names}")
        for name in set(names) - set(seen):
            del inputs[name]
    for name, kind in inputs.items():
        if kind == "image":
            _check(
                (per_file.get(name) == 1) != (name in errors),
                f"{name!r}: {per_file.get(name)} rows, in errors.csv: {name in errors}",
            )
        elif kind == "video":
            _check(name in per_file or name in errors, f"video {name!r} lost")
        else:
            _check(name in errors and name not in per_file, f"special file {name!r} not refused")
    _check(set(per_file) <= set(inputs), f"rows of no input: {set(per_file) - set(inputs)}")
    if "--format" in flags:
        lines = (out / "predictions.jsonl").read_text(encoding="utf-8").splitlines()
        _check(
            sorted(json.loads(ln)["file"] for ln in lines) == sorted(r[0] for r in rows),
            "predictions.jsonl differs from predictions.csv",
        )
    code, err = _main(*flags, "--skip-existing", "--input", os.fsdecode(data))
    _check_lines(code, err, {0, 1})
    again = _csv(out / "predictions.csv")
    _check(
        sorted(map(tuple, again)) == sorted(map(tuple, rows)),
        f"resuming changed the rows: {len(rows)} -> {len(again)}",
    )
    done = {tuple(r[:2]) for r in _csv(out / "completed.csv")}
    for name in per_file:
        if inputs[name] == "image":
            _check(any(k[0] == name for k in done), f"{name!r} has rows but is not completed")
    _check(
        _tree(data) == {k: v for k, v in guarded.items() if k.startswith(data)}, "inputs changed"
    )
    _check(outside.read_bytes() == b"not yours", "written through a planted link")
    return len(inputs)


FAST = ["--untrained", "--arc", "resnet18", "--no-detect", "--quiet", "--workers", "0"]


def _plain_images(rng: random.Random, folder: Path, count: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for n in range(count):
        path = folder / f"p{n}_{rng.randrange(10**6)}.png"
        Image.new("RGB", (rng.randint(4, 40), rng.randint(4, 40)), (n, 3 * n, 90)).save(path)
        paths.append(str(path))
    return paths


def _rows_once(out: Path, expected: list[str]) -> None:
    files = sorted(r[0] for r in _csv(out / "predictions.csv"))
    _check(files == sorted(expected), f"rows {len(files)} != inputs {len(expected)}")


def _deep(rng: random.Random, root: Path) -> int:
    """Folders nested ~1,000 deep, pictures drawn (their mirrored path may pass 4 kB)."""
    try:
        return _deep_tree(rng, root)
    finally:  # shutil.rmtree recurses once a level, too deep for this tree
        subprocess.run(["rm", "-rf", str(root / "data"), str(root / "out")], check=True)


def _deep_tree(rng: random.Random, root: Path) -> int:
    folder = root / "data"
    folder.mkdir()
    for _ in range(rng.randint(700, 1300)):
        folder = folder / rng.choice(["d", "dd", "\xff", "é"])
        folder.mkdir()
    images = _plain_images(rng, folder, 2) + _plain_images(rng, root / "data", 1)
    code, err = _main(
        *FAST, "--draw_text", "--output-dir", str(root / "out"), "--input", str(root / "data")
    )
    _check_lines(code, err, {0})
    _rows_once(root / "out", images)
    _check(len(list((root / "out").rglob("*_pred.jpg"))) == 3, "a picture is missing")
    return 3


def _lists(rng: random.Random, root: Path) -> int:
    """@lists naming @lists (relative or absolute, cycles now and then)."""
    images = _plain_images(rng, root / "img", rng.randint(1, 6))
    lists = [root / f"l{n}" / "list.txt" for n in range(rng.randint(1, 6))]
    for path in lists:
        path.parent.mkdir()
    links: dict[int, list[int]] = {n: [] for n in range(len(lists))}
    reached: set[str] = set()
    for n, path in enumerate(lists):
        lines = []
        for image in rng.sample(images, rng.randint(0, len(images))):
            lines.append(os.path.relpath(image, path.parent) if rng.random() < 0.5 else image)
        for other in rng.sample(range(len(lists)), rng.randint(0, min(2, len(lists)))):
            links[n].append(other)
            target = lists[other]
            lines.append(
                "@" + (os.path.relpath(target, path.parent) if rng.random() < 0.5 else str(target))
            )
        path.write_text("\n".join(rng.sample(lines, len(lines))) + "\n")
    pending, seen = [0], {0}
    while pending:  # what list 0 reaches, as a plain search over the graph
        n = pending.pop()
        reached |= {
            os.path.realpath(i) for i in images if os.path.basename(i) in lists[n].read_text()
        }
        for other in links[n]:
            if other not in seen:
                seen.add(other)
                pending.append(other)
    code, err = _main(*FAST, "--output-dir", str(root / "out"), "--input", f"@{lists[0]}")
    if not reached:
        _check_lines(code, err, {2})
        return 1
    _check_lines(code, err, {0, 1})
    files = sorted(os.path.realpath(r[0]) for r in _csv(root / "out" / "predictions.csv"))
    _check(files == sorted(reached), f"lists reached {len(files)}, expected {len(reached)}")
    return len(images)


def _export(rng: random.Random, root: Path) -> int:
    """--export-onnx onto a pipe, a device node (as root), a socket or a folder."""
    kind = rng.choice(["fifo", "device", "socket", "folder"])
    target = root / "m.onnx"
    if kind == "device" and os.geteuid() == 0:
        os.mknod(target, stat.S_IFCHR | 0o666, os.makedev(1, 7))
    elif kind == "socket":
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(target))
        server.close()
    elif kind == "folder":
        target.mkdir()
    else:
        os.mkfifo(target)
    before = os.lstat(target)
    code, err = _main("--untrained", "--arc", "resnet18", "--export-onnx", str(target))
    _check_lines(code, err, {2})
    after = os.lstat(target)
    _check((after.st_mode, after.st_ino) == (before.st_mode, before.st_ino), "target replaced")
    _check(sorted(p.name for p in root.iterdir()) == ["m.onnx"], "a file was left beside it")
    return 1


def _race(rng: random.Random, root: Path) -> int:
    """Inputs swapped for named pipes (and back) while the run reads them: never a hang."""
    images = _plain_images(rng, root / "data", rng.randint(5, 30))
    stop = threading.Event()

    def swap() -> None:
        while not stop.is_set():
            path = rng.choice(images)
            with contextlib.suppress(OSError):
                data = Path(path).read_bytes()
                os.unlink(path)
                os.mkfifo(path)
                time.sleep(0.001)
                os.unlink(path)
                Path(path).write_bytes(data)

    thread = threading.Thread(target=swap, daemon=True)
    thread.start()
    signal.alarm(120)  # a hang fails the round
    try:
        code, err = _main(*FAST, "--output-dir", str(root / "out"), "--input", str(root / "data"))
    finally:
        signal.alarm(0)
        stop.set()
        thread.join()
    _check_lines(code, err, {0, 1, 2})
    if code != 2:
        rows = {r[0] for r in _csv(root / "out" / "predictions.csv")}
        errors = {r[0] for r in _csv(root / "out" / "errors.csv")}
        _check(rows | errors <= set(images), "rows or errors of no input")
        _check(not rows & errors, "an input both done and failed")
    return len(images)


def _close_all(fds: tuple[int, ...]) -> None:
    for fd in fds:
        os.close(fd)


def _streams(rng: random.Random, root: Path) -> int:
    """stdout/stderr closed, full or gone: every row, the usual exit code, no noise."""
    images = _plain_images(rng, root / "data", rng.randint(1, 12))
    flags = [f for f in FAST if f != "--quiet" or rng.random() < 0.5]
    kind = rng.choice(["stderr closed", "stdout closed", "stdout gone", "stdout full", "both"])
    close = {"stderr closed": (2,), "stdout closed": (1,), "both": (1, 2)}.get(kind, ())
    stdout: int | IO[str] = subprocess.DEVNULL
    if kind == "stdout gone":
        reader, stdout = os.pipe()
        os.close(reader)
    elif kind == "stdout full":
        stdout = open("/dev/full", "w")  # noqa: SIM115
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    process = subprocess.run(
        [
            sys.executable,
            "-m",
            "opengraphau",
            *flags,
            "--output-dir",
            str(root / "out"),
            "--input",
            str(root / "data"),
        ],
        stdout=stdout,
        stderr=subprocess.PIPE,
        env=env,
        timeout=300,
        preexec_fn=lambda: _close_all(close),
    )
    if isinstance(stdout, int):
        if stdout > 2:
            os.close(stdout)
    else:
        stdout.close()
    _check(process.returncode == 0, f"exit {process.returncode} with {kind}")
    _check(
        b"Exception ignored" not in process.stderr and b"error" not in process.stderr,
        f"noise: {process.stderr[-300:]!r}",
    )
    _rows_once(root / "out", images)
    return len(images)


def _full_disk(rng: random.Random, root: Path) -> int:
    """A small tmpfs filled but for a few kB: whole rows only, then an exact resume."""
    disk = root / "disk"
    disk.mkdir()
    if (
        os.geteuid()
        or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True
        ).returncode
    ):
        return _lists(rng, root)  # no tmpfs here: another kind instead
    try:
        images = _plain_images(rng, root / "data", rng.randint(5, 40))
        filler = disk / "filler"
        with open(filler, "wb", buffering=0) as f, contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * 4096)
        os.truncate(filler, max(0, filler.stat().st_size - rng.randint(0, 40_000)))
        out = disk / "out"
        flags = [
            *FAST,
            "--batch-size",
            str(rng.randint(1, 6)),
            "--output-dir",
            str(out),
            "--format",
            rng.choice(["csv", "csv,jsonl", "jsonl,csv,parquet"]),
        ]
        code, err = _main(*flags, "--input", str(root / "data"))
        _check_lines(code, err, {0, 2})
        for name in ("predictions.csv", "completed.csv", "errors.csv", "predictions.jsonl"):
            if (out / name).exists() and (out / name).stat().st_size:
                _check((out / name).read_bytes().endswith(b"\n"), f"{name} ends in a cut row")
        filler.unlink()
        code, err = _main(*flags, "--skip-existing", "--input", str(root / "data"))
        _check_lines(code, err, {0})
        _rows_once(out, images)
        return len(images)
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


ROUND3 = {
    "deep": _deep,
    "lists": _lists,
    "export": _export,
    "race": _race,
    "streams": _streams,
    "full disk": _full_disk,
}


def round3(rng: random.Random, root: Path) -> int:
    """One case of the third round's kinds (issue #31)."""
    return ROUND3[rng.choice(sorted(ROUND3))](rng, root)


def _mutations(state: dict[str, torch.Tensor], rng: random.Random) -> str:
    key = rng.choice(sorted(state))
    value = state[key]
    kind = rng.choice(
        [
            "int",
            "bool",
            "complex",
            "nan",
            "inf",
            "sparse",
            "meta",
            "shape",
            "drop",
            "add",
            "half",
            "none",
        ]
    )
    if kind == "int":
        state[key] = value.long()
    elif kind == "bool":
        state[key] = value > 0
    elif kind == "complex" and value.is_floating_point():
        state[key] = value.to(torch.complex64)
    elif kind in ("nan", "inf") and value.is_floating_point() and value.numel():
        value = value.clone()
        value.view(-1)[rng.randrange(value.numel())] = float(kind)
        state[key] = value
    elif kind == "sparse" and value.dim():
        state[key] = value.to_sparse()
    elif kind == "meta":
        state[key] = value.to("meta")
    elif kind == "shape":
        state[key] = torch.zeros([s + 1 for s in value.shape] or [1], dtype=value.dtype)
    elif kind == "drop":
        del state[key]
    elif kind == "add":
        state[f"module.extra.{rng.randrange(100)}"] = torch.zeros(3)
    elif kind == "half":
        state[key] = value.half() if value.is_floating_point() else value
    else:
        state[key] = value.clone()
    return f"{kind} {key}"


def checkpoint_round(rng: random.Random, root: Path, real: Path) -> int:
    path = root / rng.choice(
        [
            "c.pth",
            "c.pt",
            "weird\nname.pth",
            "bad\xff.pth".encode("utf-8", "surrogateescape").decode("utf-8", "surrogateescape"),
        ]
    )
    kind = rng.choice(["bytes", "cut", "flip", "tensor", "pickle", "zip"])
    data = real.read_bytes()
    if kind == "bytes":
        path.write_bytes(rng.randbytes(rng.randint(0, 4000)))
    elif kind == "cut":
        path.write_bytes(data[: rng.randrange(len(data))])
    elif kind == "flip":
        raw = bytearray(data)
        for _ in range(rng.randint(1, 50)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        path.write_bytes(bytes(raw))
    elif kind == "tensor":
        obj = torch.load(real, weights_only=True)
        for _ in range(rng.randint(1, 3)):
            _mutations(obj["state_dict"], rng)
        torch.save(obj, path)
    elif kind == "pickle":
        junk = rng.choice(
            [
                [1, 2, "x"],
                {"state_dict": {"a": 1}},
                "text",
                {"state_dict": None},
                {"state_dict": {1: torch.zeros(1)}},
                torch.zeros(3),
                {},
            ]
        )
        torch.save(junk, path)
    else:
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("archive/data.pkl", rng.randbytes(100))
    image = root / "a.png"
    Image.new("RGB", (16, 16), (1, 2, 3)).save(image)
    before = _tree(os.fsencode(root))
    code, err = _main(
        *fast_with(path),
        "--output-dir",
        str(root / "out"),
        "--input",
        str(image),
    )
    _check_lines(code, err, {0, 2})
    if code == 2:
        _check(
            err[0].startswith(f"{PREFIX}--resume {display_name(str(path))}".replace("\n", "\\n")),
            f"the message does not name the file: {err[0]}",
        )
    after = {
        k: v
        for k, v in _tree(os.fsencode(root)).items()
        if not k.startswith(os.fsencode(root / "out"))
    }
    _check(after == before, "the checkpoint or the image changed")
    return 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=None, help="stop after this many rounds")
    parser.add_argument("--seed", type=int, default=None, help="first round's seed")
    parser.add_argument(
        "--keep",
        type=Path,
        default=Path(tempfile.gettempdir()) / "hostile-fuzz",
        help="where failing rounds are kept",
    )
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(10**6)
    work = Path(tempfile.mkdtemp(prefix="hostile-fuzz-"))
    real = write_official_checkpoint("resnet18", 1, work / "real.pth")
    deadline = time.monotonic() + 60 * args.minutes
    rounds = inputs = 0
    failures: list[tuple[int, str]] = []
    start = time.monotonic()
    while time.monotonic() < deadline and (args.rounds is None or rounds < args.rounds):
        round_seed = seed + rounds
        rng = random.Random(round_seed)
        root = work / f"round-{round_seed}"
        root.mkdir()
        try:
            if round_seed % 4 == 3:
                inputs += checkpoint_round(rng, root, real)
            elif round_seed % 4 == 1:
                inputs += round3(rng, root)
            else:
                inputs += image_round(rng, root)
        except Failure as exc:
            kept = args.keep / root.name
            shutil.rmtree(kept, ignore_errors=True)
            shutil.copytree(
                root,
                kept,
                symlinks=True,
                ignore_dangling_symlinks=True,
                copy_function=lambda s, d: shutil.copy2(s, d) if os.path.isfile(s) else None,
            )
            failures.append((round_seed, str(exc)))
            print(f"FAIL seed {round_seed}: {exc} (kept in {kept})", flush=True)
        shutil.rmtree(root, ignore_errors=True)
        rounds += 1
    shutil.rmtree(work, ignore_errors=True)
    print(
        f"{rounds} rounds ({inputs} inputs and checkpoints) from seed {seed} in "
        f"{time.monotonic() - start:.0f} s: {len(failures)} failed"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
