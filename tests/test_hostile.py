"""A hostile user's corpus (issue #11): special files, odd bit depths, names of any bytes, broken
checkpoints, output folders that fight back, concurrent runs, Ctrl-C and kill -9.

Every case asserts the exit status, stderr's exact lines (never a traceback, never a hang),
the rows kept, and that the inputs are untouched. `hostile_fuzz.py` (run by hand) tries many
random cases of the same kinds against the same invariants.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import io
import json
import os
import signal
import socket
import stat
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from factories import BANNER, FAST, ROOT, Demo, probs_of, read_rows, run_main
from opengraphau.model.variants import VARIANTS
from opengraphau.records import display_name
from opengraphau.sources.images import load_image
from opengraphau.sources.video import opencv_path

PIPE = "is a named pipe, not a regular file; skipped without opening it"
DEVICE = "is a device, not a regular file; skipped without opening it"
SOCKET = "is a socket, not a regular file; skipped without opening it"
LOOP = "is a symbolic link that loops (it leads back to itself)"
DANGLING = "is a symbolic link to a missing file"


@pytest.fixture(autouse=True)
def no_hang() -> Iterator[None]:
    """A case that blocks (a pipe opened for reading) fails instead of hanging CI."""

    def timeout(*_: object) -> None:
        raise TimeoutError("hung")

    previous = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(240)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def _image(
    path: str | Path | bytes,
    seed: int = 0,
    size: tuple[int, int] = (24, 20),
    mode: str = "RGB",
    fmt: str = "PNG",
) -> str:
    """A small random picture at `path` (bytes paths for names that are not UTF-8)."""
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    with open(path, "wb") as f:
        image.convert(mode).save(f, format=fmt)
    return os.fsdecode(path)


def _tree(root: Path) -> dict[bytes, tuple]:
    """Every entry below `root` by its name's bytes: kind, and content hash and mtime for files,
    target for links. Equal before and after a run means the run left it untouched."""
    found: dict[bytes, tuple] = {}
    top = os.fsencode(root)
    for folder, dirs, files in os.walk(top):
        for name in dirs + files:
            path = os.path.join(folder, name)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                info: tuple = ("link", os.readlink(path))
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    info = ("file", hashlib.sha256(f.read()).hexdigest(), st.st_mtime_ns)
            else:
                info = (stat.S_IFMT(st.st_mode), st.st_mtime_ns)
            found[os.path.relpath(path, top)] = info
    return found


def _errors(out: Path) -> dict[str, str]:
    with open(out / "errors.csv", newline="", encoding="utf-8") as f:
        return {r["file"]: r["reason"] for r in csv.DictReader(f)}


def _files(out: Path) -> list[str]:
    return [r["file"] for r in read_rows(out)]


# -- files that are not images, or not files ---------------------------------------------------


def test_special_files_in_a_folder_are_refused_unopened(
    data: Path, demo: Demo, tmp_path: Path
) -> None:
    ok = _image(data / "ok.png")
    os.mkfifo(data / "pipe.jpg")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(data / "sock.png"))
    os.symlink("/dev/null", data / "null.jpg")
    os.symlink(data / "loop2.jpg", data / "loop1.jpg")
    os.symlink(data / "loop1.jpg", data / "loop2.jpg")
    os.symlink(data / "gone.png", data / "dangling.jpg")
    (data / "folder.jpg").mkdir()
    _image(data / "folder.jpg" / "inner.png", 1)
    before = _tree(data)
    result = demo(tmp_path / "out", data)
    server.close()
    assert result.code == 1
    expected = {
        "pipe.jpg": PIPE,
        "sock.png": SOCKET,
        "null.jpg": DEVICE,
        "loop1.jpg": LOOP,
        "loop2.jpg": LOOP,
        "dangling.jpg": DANGLING,
    }
    assert sorted(result.err) == sorted(f"error: {data / n}: {why}" for n, why in expected.items())
    assert _errors(tmp_path / "out") == {str(data / n): why for n, why in expected.items()}
    assert _files(tmp_path / "out") == [str(data / "folder.jpg" / "inner.png"), ok]
    assert _tree(data) == before


def test_special_files_named_on_the_command_line(demo: Demo, tmp_path: Path) -> None:
    ok = _image(tmp_path / "ok.png")
    os.mkfifo(tmp_path / "pipe.mp4")
    os.mkfifo(tmp_path / "list.txt")  # a list from a pipe is read; nobody writes: not used here
    os.symlink(tmp_path / "l2.png", tmp_path / "l1.png")
    os.symlink(tmp_path / "l1.png", tmp_path / "l2.png")
    os.symlink(tmp_path / "nothing.png", tmp_path / "dangling.png")
    os.symlink("/dev/zero", tmp_path / "zero.jpg")
    (tmp_path / "dir.jpg").mkdir()
    (tmp_path / "binary.txt").write_bytes(b"a.png\n\x00\x01\x02")
    before = _tree(tmp_path)
    result = demo(
        tmp_path / "out",
        ok,
        "/dev/null",
        tmp_path / "pipe.mp4",
        tmp_path / "l1.png",
        tmp_path / "dangling.png",
        tmp_path / "zero.jpg",
        tmp_path / "dir.jpg",
        "@/dev/zero",
        f"@{tmp_path / 'binary.txt'}",
        f"@{tmp_path / 'missing.txt'}",
    )
    assert result.code == 1
    assert result.err == [
        "error: /dev/null: not an image or video file (unknown extension)",
        f"error: {tmp_path / 'l1.png'}: {LOOP}",
        f"error: {tmp_path / 'dangling.png'}: {DANGLING}",
        f"error: {tmp_path / 'dir.jpg'}: folder holds no images or videos",
        f"error: @/dev/zero: cannot read list file ({DEVICE})",
        f"error: @{tmp_path / 'binary.txt'}: cannot read list file (it is a binary file, not one "
        "path a line)",
        f"error: @{tmp_path / 'missing.txt'}: cannot read list file (No such file or directory)",
        f"error: {tmp_path / 'zero.jpg'}: {DEVICE}",
        f"error: {tmp_path / 'pipe.mp4'}: {PIPE}",
    ]
    assert _files(tmp_path / "out") == [ok]
    before.pop(b"out", None)
    after = _tree(tmp_path)
    assert {k: v for k, v in after.items() if not k.startswith(b"out")} == before


def _tiff_with_samples_per_pixel(count: int) -> bytes:
    """A little-endian TIFF from Pillow whose SamplesPerPixel tag (277) says `count`."""
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, format="TIFF")
    raw = bytearray(buffer.getvalue())
    ifd = struct.unpack_from("<I", raw, 4)[0]
    for entry in range(struct.unpack_from("<H", raw, ifd)[0]):
        at = ifd + 2 + 12 * entry
        if struct.unpack_from("<H", raw, at)[0] == 277:
            struct.pack_into("<HIHH", raw, at + 2, 3, 1, count, 0)  # 1 SHORT, inline
            return bytes(raw)
    raise AssertionError("Pillow wrote no SamplesPerPixel tag")


def test_bad_image_files_are_listed_and_the_run_goes_on(
    data: Path, demo: Demo, tmp_path: Path
) -> None:
    good = _image(data / "good.jpg", fmt="JPEG")
    raw = Path(good).read_bytes()
    (data / "empty.png").write_bytes(b"")
    (data / "half.jpg").write_bytes(raw[: len(raw) // 2])
    (data / "noise.webp").write_bytes(np.random.default_rng(0).bytes(3000))
    (data / "text.tif").write_text("II*\0 not really a tiff")
    (data / "png-header.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\xff" * 64)
    (data / "samples.tif").write_bytes(_tiff_with_samples_per_pixel(2048))  # Pillow logs it
    before = _tree(data)
    result = demo(tmp_path / "out", data)
    assert result.code == 1
    errors = _errors(tmp_path / "out")
    assert sorted(Path(f).name for f in errors) == [
        "empty.png",
        "half.jpg",
        "noise.webp",
        "png-header.png",
        "samples.tif",
        "text.tif",
    ]
    assert len(result.err) == 6 and all(ln.startswith("error: ") for ln in result.err)
    assert _files(tmp_path / "out") == [good]
    assert _tree(data) == before


# -- bit depths and colour modes ---------------------------------------------------------------


def test_wide_samples_are_scaled_not_clipped(tmp_path: Path) -> None:
    gradient = np.array([[0, 257, 32896, 65535]], np.uint16).repeat(3, axis=0)
    Image.fromarray(gradient).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode == "I;16"
    assert load_image(tmp_path / "g16.png").getpixel((2, 1)) == (128, 128, 128)
    np.testing.assert_array_equal(
        np.asarray(load_image(tmp_path / "g16.png"))[0, :, 0], [0, 1, 128, 255]
    )
    Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32)).save(tmp_path / "f.tif")
    np.testing.assert_array_equal(
        np.asarray(load_image(tmp_path / "f.tif"))[0, :, 1], [0, 128, 255]
    )
    Image.fromarray(np.array([[-1.0, 0.0, 3.0]], np.float32)).save(tmp_path / "wide.tif")
    np.testing.assert_array_equal(
        np.asarray(load_image(tmp_path / "wide.tif"))[0, :, 0], [0, 64, 255]
    )
    Image.fromarray(np.array([[0, 1000, 70000]], np.int32)).save(tmp_path / "i32.tif")
    np.testing.assert_array_equal(
        np.asarray(load_image(tmp_path / "i32.tif"))[0, :, 2], [0, 4, 255]
    )
    rgb16 = np.zeros((2, 3, 3), np.uint16)
    rgb16[..., 2] = [[0, 32896, 65535]] * 2  # OpenCV writes BGR: this is red
    cv2.imwrite(str(tmp_path / "rgb16.png"), rgb16)
    np.testing.assert_array_equal(
        np.asarray(load_image(tmp_path / "rgb16.png"))[0, :, 0], [0, 128, 255]
    )


def test_every_mode_runs_and_16_bit_matches_its_8_bit_twin(
    data: Path, demo: Demo, tmp_path: Path
) -> None:
    rng = np.random.default_rng(3)
    gray8 = rng.integers(0, 256, (40, 48), dtype=np.uint8)
    Image.fromarray(gray8).save(data / "gray8.png")
    Image.fromarray(gray8.astype(np.uint16) * 257).save(data / "gray16.png")
    base = Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8))
    base.convert("1").save(data / "bits1.png")
    base.convert("LA").save(data / "la.png")
    base.convert("RGBA").save(data / "rgba.png")
    base.convert("CMYK").save(data / "cmyk.jpg")
    base.convert("YCbCr").save(data / "ycbcr.tif")
    base.convert("I").save(data / "i32.tif")
    base.convert("F").save(data / "float.tif")
    palette = base.convert("P")
    palette.info["transparency"] = 0
    palette.save(data / "p-transparent.png")
    palette.convert("PA").save(data / "pa.tif")
    base.convert("LAB").save(data / "lab.tif")
    Image.fromarray(gray8.astype(np.uint16) * 257).save(data / "gray16be.tif")
    before = _tree(data)
    result = demo(tmp_path / "out", data)
    assert (result.code, result.err) == (0, [])
    rows = {Path(r["file"]).name: r for r in read_rows(tmp_path / "out")}
    assert len(rows) == 13 and all(r["success"] == "1" for r in rows.values())
    for wide in ("gray16.png", "gray16be.tif"):
        np.testing.assert_allclose(probs_of([rows[wide]]), probs_of([rows["gray8.png"]]), atol=1e-6)
    assert _tree(data) == before


def test_exif_garbage_is_ignored_quietly(data: Path, demo: Demo, tmp_path: Path) -> None:
    picture = Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 24, 3), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 99  # an orientation that does not exist
    picture.save(data / "orientation.jpg", exif=exif)
    picture.save(data / "noise.jpg", exif=b"Exif\x00\x00" + np.random.default_rng(1).bytes(300))
    picture.save(data / "cut.jpg", exif=b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x05")
    result = demo(tmp_path / "out", data)
    assert (result.code, result.err) == (0, [])
    assert len(read_rows(tmp_path / "out")) == 3


# -- names of any bytes ----------------------------------------------------------------------

ODD_NAMES = [
    b"line\nbreak.png",
    b"carriage\rreturn.png",
    b"both\r\n.png",
    b"latin\xe9\xff.png",
    b"literal\\xe9\\xff.png",
    b'quote",comma.png',
    b"-dash.png",
    b"esc\x1b[2J.png",
    b"tab\there.png",
    b"x" * 250 + b".png",
    "unicode-é-😀.png".encode(),
]


def test_names_of_any_bytes_survive_a_resumed_run(
    data: Path, demo: Demo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = [os.fsdecode(os.path.join(os.fsencode(data), n)) for n in ODD_NAMES]
    for seed, name in enumerate(names):
        _image(os.fsencode(name), seed)
    (data / "broken\nfile.png").write_bytes(b"not a png")
    before = _tree(data)
    extra = ("--format", "csv,jsonl", "--draw_text", "--batch-size", "3")
    full = demo(tmp_path / "full", data, extra=extra)
    broken = display_name(str(data / "broken\nfile.png"))
    assert full.code == 1
    assert full.err == [
        f"error: {broken}: not an image Pillow can read (corrupt, empty or another format)".replace(
            "\n", "\\n"
        )
    ]
    shown = sorted(display_name(n) for n in names)
    assert sorted(_files(tmp_path / "full")) == shown
    jsonl = (tmp_path / "full" / "predictions.jsonl").read_text(encoding="utf-8")
    assert sorted(json.loads(line)["file"] for line in jsonl.splitlines()) == shown
    assert len(list((tmp_path / "full").glob("*_pred.jpg"))) == len(names)

    from opengraphau.pipeline import Pipeline

    original, calls = Pipeline.submit, {"n": 0}

    def interrupted(self, frames):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(self, frames)

    monkeypatch.setattr(Pipeline, "submit", interrupted)
    out = tmp_path / "resumed"
    assert demo(out, data, extra=extra).code == 130
    assert 0 < len(read_rows(out)) < len(names)
    monkeypatch.setattr(Pipeline, "submit", original)
    assert demo(out, data, extra=(*extra, "--skip-existing")).code == 1
    assert demo(out, data, extra=(*extra, "--skip-existing")).code == 1
    resumed = sorted(read_rows(out), key=lambda r: r["file"])
    expected = sorted(read_rows(tmp_path / "full"), key=lambda r: r["file"])
    assert [r["file"] for r in resumed] == shown
    np.testing.assert_allclose(probs_of(resumed), probs_of(expected), atol=1e-6)
    lines = (out / "predictions.jsonl").read_text(encoding="utf-8").splitlines()
    assert sorted(json.loads(line)["file"] for line in lines) == shown
    assert _tree(data) == before


def test_names_that_display_alike_are_resumed_apart(data: Path, demo: Demo, tmp_path: Path) -> None:
    """`a\\xff.png` (four characters) and a\\xff.png (one byte) both show as a\\xff.png; a run
    that did only one of them must not skip the other when resumed."""
    literal = _image(data / "a\\xff.png", 1)
    raw = _image(os.fsencode(data) + b"/a\xff.png", 2)
    out = tmp_path / "out"
    assert demo(out, literal).code == 0
    assert demo(out, data, extra=("--skip-existing",)).code == 0
    rows = read_rows(out)
    assert [r["file"] for r in rows] == [display_name(raw)] * 2
    assert not np.allclose(probs_of(rows[:1]), probs_of(rows[1:]))
    assert demo(out, data, extra=("--skip-existing",)).code == 0
    assert len(read_rows(out)) == 2


def test_odd_names_on_a_real_terminal_stay_one_line(tmp_path: Path) -> None:
    """In a subprocess, where stdout's encoding is strict and no test harness catches Python's
    log records: a non-UTF-8 output folder, input names with line breaks and escape sequences,
    and a TIFF that Pillow logs an error about before it raises."""
    data = os.fsencode(tmp_path) + b"/in\xff"
    os.mkdir(data)
    _image(data + b"/ok\x1b[31m.png")
    with open(data + b"/bad\nname.jpg", "wb") as f:
        f.write(b"nope")
    with open(data + b"/samples.tif", "wb") as f:
        f.write(_tiff_with_samples_per_pixel(2048))
    out = os.fsdecode(os.fsencode(tmp_path) + b"/out\xfe")
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "demo.py"),
            *FAST,
            "--input",
            os.fsdecode(data),
            "--output-dir",
            out,
        ],
        capture_output=True,
        timeout=300,
    )
    assert result.returncode == 1, result.stderr
    err = [ln for ln in result.stderr.decode().splitlines() if ln != BANNER]
    shown = display_name(os.fsdecode(data))
    unreadable = "not an image Pillow can read (corrupt, empty or another format)"
    assert err == [
        f"error: {shown}/bad\\nname.jpg: {unreadable}",
        f"error: {shown}/samples.tif: {unreadable}",
    ]
    assert b"\x1b" not in result.stderr + result.stdout
    assert f"outputs in {display_name(out)}/" in result.stdout.decode()


# -- pictures ------------------------------------------------------------------------------------


def test_every_picture_has_its_own_name(data: Path, demo: Demo, tmp_path: Path) -> None:
    for seed, name in enumerate(["a.jpg", "a.png", "a_jpg.png", "A.PNG", "b.png"]):
        _image(data / name, seed, fmt="JPEG" if name.endswith("jpg") else "PNG")
    (data / "a").write_bytes(b"no extension: not an input")
    result = demo(tmp_path / "out", data, extra=("--draw_text",))
    assert (result.code, result.err) == (0, [])
    pictures = sorted(p.name for p in (tmp_path / "out").glob("*_pred.jpg"))
    assert pictures == [
        "A_PNG_pred.jpg",
        "a_jpg_2_pred.jpg",
        "a_jpg_pred.jpg",
        "a_png_2_pred.jpg",
        "b_pred.jpg",
    ]


def test_strips_are_drawn_and_a_picture_too_big_for_jpeg_is_skipped(
    data: Path, demo: Demo, tmp_path: Path, monkeypatch
) -> None:
    Image.new("RGB", (12000, 8), (10, 20, 30)).save(data / "strip.png")
    Image.new("RGB", (8, 12000), (10, 20, 30)).save(data / "tall.png")
    Image.new("RGB", (70000, 2), (10, 20, 30)).save(data / "wide.png")
    before = _tree(data)
    out = tmp_path / "out"
    result = demo(out, data, extra=("--draw_text",))
    assert (result.code, result.err) == (0, [])
    for name in ("strip", "tall", "wide"):
        assert max(Image.open(out / f"{name}_pred.jpg").size) < 65500
    from opengraphau.render import pictures

    monkeypatch.setattr(pictures, "MAX_PHOTO_WIDTH", 100000)  # the panel outgrows JPEG
    result = demo(out, data / "wide.png", _image(data / "z.png"), extra=("--draw_text",))
    assert result.code == 0
    assert result.err == [
        f"warning: {out / 'wide_pred.jpg'}: picture skipped (ValueError: "
        "100708 x 564 pixels, more than JPEG's 65500 a side)"
    ]
    assert len(read_rows(out)) == 2 and (out / "z_pred.jpg").is_file()
    assert not list(out.glob(".*tmp*"))
    before[b"z.png"] = _tree(data)[b"z.png"]
    assert _tree(data) == before


def test_a_drawing_that_fails_skips_only_the_picture(
    demo: Demo, tmp_path: Path, monkeypatch
) -> None:
    from opengraphau.render import pictures

    monkeypatch.setattr(pictures, "annotate_image", _raises(RuntimeError("boom\nsecond line")))
    image = _image(tmp_path / "a.png")
    result = demo(tmp_path / "out", image, extra=("--draw_text",))
    assert result.code == 0
    assert result.err == [
        f"warning: {tmp_path / 'out' / 'a_pred.jpg'}: picture skipped (RuntimeError: boom)"
    ]
    assert _files(tmp_path / "out") == [image]


def _raises(exc: BaseException):
    def fail(*_: object, **__: object) -> None:
        raise exc

    return fail


# -- one input's unexpected failure ------------------------------------------------------------


@pytest.mark.parametrize("workers", ["0", "1"])  # a worker is forked: it has the fakes too
def test_unexpected_errors_fail_only_their_input(
    data: Path, workers: str, demo: Demo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from opengraphau.engines import local
    from opengraphau.pipeline import Pipeline

    for n in range(5):
        _image(data / f"i{n}.png", n)
    real_load, real_submit = local.load_image, Pipeline.submit

    def load(path):
        if path.endswith("i1.png"):
            raise RuntimeError("a plugin bug")
        return real_load(path)

    def submit(self, frames):
        if any(f.source.endswith("i3.png") for f in frames):
            raise IndexError("a model bug")
        return real_submit(self, frames)

    monkeypatch.setattr(local, "load_image", load)
    monkeypatch.setattr(Pipeline, "submit", submit)
    result = demo(tmp_path / "out", data, extra=("--batch-size", "2", "--workers", workers))
    assert result.code == 1
    assert result.err == [
        f"error: {data / 'i1.png'}: could not be prepared (RuntimeError: a plugin bug)",
        f"error: {data / 'i3.png'}: could not be processed (IndexError: a model bug)",
    ]
    assert _files(tmp_path / "out") == [str(data / f"i{n}.png") for n in (0, 2, 4)]
    completed = (tmp_path / "out" / "completed.csv").read_text()
    assert "i1.png" not in completed and "i3.png" not in completed


# -- videos --------------------------------------------------------------------------------------


def _video(path: Path, frames: int = 12, size: tuple[int, int] = (32, 24)) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 10, size)
    for n in range(frames):
        writer.write(np.full((size[1], size[0], 3), n * 9 % 256, np.uint8))
    writer.release()
    return path


def test_damaged_videos_say_so_once(tmp_path: Path) -> None:
    """In a subprocess, so FFmpeg is first used by the tool, as in a user's run (this test's own
    process has written videos with it already), and its own complaints would show on stderr."""
    whole = _video(tmp_path / "whole.avi", 40).read_bytes()
    (tmp_path / "cut.avi").write_bytes(whole[: len(whole) * 6 // 10])
    (tmp_path / "head.mp4").write_bytes(whole[:200])
    (tmp_path / "empty.mkv").write_bytes(b"")
    (tmp_path / "noise.mov").write_bytes(np.random.default_rng(0).bytes(5000))
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k != "OPENCV_FFMPEG_LOGLEVEL"}
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "demo.py"),
            *FAST,
            "--output-dir",
            str(out),
            "--input",
            *(str(tmp_path / n) for n in ("cut.avi", "head.mp4", "empty.mkv", "noise.mov")),
            "--draw_text",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    code = result.returncode
    err = [ln for ln in result.stderr.splitlines() if ln != BANNER]  # FFmpeg's too
    assert code == 1
    assert len(err) == 4 and "Traceback" not in "".join(err)
    for name, line in zip(("cut.avi", "head.mp4", "empty.mkv", "noise.mov"), err):
        assert line.startswith(f"error: {tmp_path / name}: ") and line.count(name) == 1
    assert "decoding stopped at frame 15 of 40 (file damaged or truncated)" in err[0]
    assert len(read_rows(out)) == 15
    assert (out / "cut_pred.mp4").is_file() and (out / "cut_aus.png").is_file()
    assert "cut.avi" in (out / "completed.csv").read_text()  # what it holds is all it will give


def test_a_video_whose_name_is_not_utf8(demo: Demo, tmp_path: Path) -> None:
    """OpenCV kills the process on such a name, reading a video or writing one."""
    name = os.fsencode(tmp_path) + b"/clip\xff\n.avi"
    os.rename(_video(tmp_path / "clip.avi", 5), name)
    before = _tree(tmp_path)
    out = Path(os.fsdecode(os.fsencode(tmp_path) + b"/out\xfe"))
    result = demo(out, os.fsdecode(name), extra=("--draw_text",))
    assert (result.code, result.err) == (0, [])
    assert _files(out) == [display_name(os.fsdecode(name))] * 5
    made = set(os.listdir(os.fsencode(out)))
    assert {b"clip\xff\n_pred.mp4", b"clip\xff\n_aus.png"} <= made
    with opencv_path(out / "clip\udcff\n_pred.mp4") as path:
        assert cv2.VideoCapture(path).get(cv2.CAP_PROP_FRAME_COUNT) == 5
    assert {k: v for k, v in _tree(tmp_path).items() if not k.startswith(b"out")} == before


def test_a_video_that_fails_half_way_keeps_its_rows_and_is_retried(
    demo: Demo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from opengraphau.pipeline import Pipeline

    clip = _video(tmp_path / "clip.avi", 12)
    original, calls = Pipeline.submit, {"n": 0}

    def submit(self, frames, **search):
        calls["n"] += 1
        if calls["n"] == 2:
            raise MemoryError()
        return original(self, frames, **search)

    monkeypatch.setattr(Pipeline, "submit", submit)
    out = tmp_path / "out"
    result = demo(out, clip, extra=("--batch-size", "4"))
    assert result.code == 1
    assert result.err == [f"error: {clip}: could not be processed (MemoryError)"]
    assert len(read_rows(out)) == 4 and "clip" not in (out / "completed.csv").read_text()
    monkeypatch.setattr(Pipeline, "submit", original)
    assert demo(out, clip, extra=("--skip-existing",)).code == 0
    assert [r["frame"] for r in read_rows(out)] == [str(n) for n in range(12)]


def test_a_video_frame_that_cannot_be_drawn_ends_only_the_drawing(
    demo: Demo, tmp_path: Path, monkeypatch
) -> None:
    from opengraphau.render import pictures

    clip = _video(tmp_path / "clip.avi", 6)
    monkeypatch.setattr(pictures, "annotate_frame", _raises(ValueError("odd frame")))
    result = demo(tmp_path / "out", clip, extra=("--draw_text",))
    assert result.code == 0
    assert result.err == [
        f"warning: {clip}: annotated video stopped at frame 0 (ValueError: odd frame)"
    ]
    assert len(read_rows(tmp_path / "out")) == 6


# -- checkpoints -------------------------------------------------------------------------------

KEY = "module.head.gnn.U.weight"


class _RunsCode:
    def __reduce__(self):
        return (os.mkdir, ("/tmp/opengraphau-hostile-pwned",))


def _checkpoint(good: Path, path: Path, change) -> Path:
    """A copy of `good` with `change(state_dict)` applied."""
    obj = torch.load(good, weights_only=True)
    change(obj["state_dict"])
    torch.save(obj, path)
    return path


def _set(key: str, make):
    def change(state: dict) -> None:
        state[key] = make(state[key])

    return change


def _nan(value: torch.Tensor) -> torch.Tensor:
    value = value.clone()
    value.view(-1)[7] = float("nan")
    return value


BROKEN_CHECKPOINTS = {
    "zero.pth": (lambda p, good: p.write_bytes(b""), "is empty (0 bytes); download it again"),
    "text.pth": (
        lambda p, good: p.write_text("hello\n"),
        "not a PyTorch checkpoint (it is "
        "neither the zip archive nor the pickle torch.save writes: a text, JSON or "
        "other file)",
    ),
    "json.pth": (
        lambda p, good: p.write_text('{"state_dict": {}}'),
        "not a PyTorch checkpoint "
        "(it is neither the zip archive nor the pickle torch.save writes: a text, JSON or "
        "other file)",
    ),
    "noise.pth": (
        lambda p, good: p.write_bytes(b"\x80\x02" + np.random.default_rng(0).bytes(900)),
        "not a PyTorch checkpoint (damaged, or a pickle of something else); download it again",
    ),
    "code.pth": (
        lambda p, good: torch.save({"state_dict": _RunsCode()}, p),
        "not a safe PyTorch "
        "checkpoint: it holds Python objects that would run code when loaded, so it was "
        "refused",
    ),
    "list.pth": (
        lambda p, good: torch.save([torch.zeros(2)], p),
        "not a model checkpoint (no 'state_dict' of tensors found)",
    ),
    "int64.pth": (
        lambda p, good: _checkpoint(good, p, _set(KEY, lambda v: v.long())),
        "tensor head.gnn.U.weight holds torch.int64, not floating-point weights",
    ),
    "nan.pth": (
        lambda p, good: _checkpoint(good, p, _set(KEY, _nan)),
        "tensor head.gnn.U.weight holds 1 NaN or infinite values; the file is damaged or "
        "from a diverged training run",
    ),
    "inf.pth": (
        lambda p, good: _checkpoint(good, p, _set(KEY, lambda v: v.clamp(max=0) / 0)),
        f"tensor head.gnn.U.weight holds {128 * 128} NaN or infinite values; the file is "
        "damaged or from a diverged training run",
    ),
    "sparse.pth": (
        lambda p, good: _checkpoint(good, p, _set(KEY, lambda v: v.to_sparse())),
        "tensor head.gnn.U.weight is sparse (torch.sparse_coo); save dense tensors",
    ),
    "meta.pth": (
        lambda p, good: _checkpoint(good, p, _set(KEY, lambda v: v.to("meta"))),
        "tensor head.gnn.U.weight has no data (a meta tensor); save the real weights",
    ),
    "missing.pth": (
        lambda p, good: _checkpoint(good, p, lambda s: s.pop("module.head.main_sc")),
        "does not match the resnet18 stage-1 model: 1 missing (e.g. head.main_sc)",
    ),
    "foreign.pth": (
        lambda p, good: torch.save({"state_dict": {"fc.weight": torch.zeros(2)}}, p),
        f"not an OpenGraphAU checkpoint (its keys match none of the {len(VARIANTS)} "
        "backbones with a stage-1 or stage-2 head)",
    ),
    "folder.pth": (lambda p, good: p.mkdir(), "is a folder, not a checkpoint file"),
    "pipe.pth": (
        lambda p, good: os.mkfifo(p),
        "is not a regular file (a pipe or a device?); give a checkpoint file",
    ),
}


@pytest.mark.parametrize("name", BROKEN_CHECKPOINTS)
def test_broken_checkpoints_are_refused_in_one_line(
    name: str, demo: Demo, resnet18_s1: Path, tmp_path: Path
) -> None:
    make, reason = BROKEN_CHECKPOINTS[name]
    (tmp_path / "inputs").mkdir()
    path = tmp_path / "inputs" / name
    make(path, resnet18_s1)
    image = _image(tmp_path / "inputs" / "a.png")
    out = tmp_path / "out"
    assert demo(out, image, flags=("--resume", str(resnet18_s1), *FAST[3:])).code == 0
    kept = (out / "predictions.csv").read_bytes()
    before = _tree(tmp_path / "inputs")
    result = demo(out, image, flags=("--resume", str(path), "--precision", "fp32", *FAST[3:]))
    assert (result.code, result.err) == (2, [f"demo.py: error: --resume {path}: {reason}"])
    assert (out / "predictions.csv").read_bytes() == kept
    assert _tree(tmp_path / "inputs") == before
    assert not os.path.exists("/tmp/opengraphau-hostile-pwned")


def test_a_bad_checkpoint_found_in_a_folder_blames_no_flag(
    demo: Demo, resnet18_s1: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    path = _checkpoint(resnet18_s1, folder / "mine.pth", _set(KEY, _nan))
    result = demo(
        tmp_path / "out",
        _image(tmp_path / "a.png"),
        flags=("--checkpoint-dir", str(folder), *FAST[3:]),
    )
    assert (result.code, result.err) == (
        2,
        [
            f"demo.py: error: {path}: tensor head.gnn.U.weight holds 1 NaN or infinite values; the "
            "file is damaged or from a diverged training run"
        ],
    )
    (folder / "mine.pth").write_bytes(b"")
    result = demo(
        tmp_path / "out",
        _image(tmp_path / "a.png"),
        flags=("--checkpoint-dir", str(folder), *FAST[3:]),
    )
    assert (result.code, result.err) == (
        2,
        [f"demo.py: error: {path}: is empty (0 bytes); download it again"],
    )


# -- the output folder -------------------------------------------------------------------------


@pytest.fixture()
def done(demo: Demo, tmp_path: Path) -> tuple[Path, str]:
    """A finished run's output folder and its input."""
    image = _image(tmp_path / "a.png")
    assert demo(tmp_path / "out", image, extra=("--format", "csv,jsonl")).code == 0
    return tmp_path / "out", image


@pytest.mark.parametrize(
    "name", ["predictions.csv", "errors.csv", "completed.csv", "predictions.jsonl"]
)
@pytest.mark.parametrize("resume", [False, True])
def test_a_folder_where_a_result_file_should_be(
    name: str, resume: bool, demo: Demo, done: tuple[Path, str]
) -> None:
    out, image = done
    (out / name).unlink()
    (out / name).mkdir()
    (out / name / "keep.txt").write_text("mine")
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    extra = ("--format", "csv,jsonl") + (("--skip-existing",) if resume else ())
    result = demo(out, image, extra=extra)
    assert (result.code, result.err) == (
        2,
        [
            f"demo.py: error: --output-dir {out / name}: a folder stands where the file should be; "
            "move it away"
        ],
    )
    assert (out / name / "keep.txt").read_text() == "mine"
    if resume:  # rewritten identically up to the failure, or not at all
        assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_a_file_where_the_output_folder_should_be(demo: Demo, tmp_path: Path) -> None:
    (tmp_path / "out").write_text("mine")
    result = demo(tmp_path / "out", _image(tmp_path / "a.png"))
    assert (result.code, result.err) == (
        2,
        [
            f"demo.py: error: --output-dir {tmp_path / 'out'}: exists and is not a folder; choose "
            "another output folder"
        ],
    )
    assert (tmp_path / "out").read_text() == "mine"


def test_planted_links_are_replaced_never_written_through(demo: Demo, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    for name in ("victim.jpg", "victim.csv", "victim.jsonl"):
        (outside / name).write_bytes(b"precious " + name.encode())
    before = _tree(outside)
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(outside / "victim.jpg", out / "a_pred.jpg")
    os.symlink(outside / "victim.csv", out / "predictions.csv")
    os.symlink(outside / "victim.jsonl", out / "predictions.jsonl")
    image = _image(tmp_path / "a.png")
    result = demo(out, image, extra=("--draw_text", "--format", "csv,jsonl"))
    assert (result.code, result.err) == (0, [])
    assert _tree(outside) == before
    assert not any(p.is_symlink() for p in out.iterdir())
    assert _files(out) == [image]
    # Resuming reads the old results, but never through a link planted since.
    (out / "predictions.csv").unlink()
    os.symlink(outside / "victim.csv", out / "predictions.csv")
    result = demo(out, image, extra=("--skip-existing",))
    assert (result.code, result.err) == (
        2,
        [
            f"demo.py: error: --output-dir {out / 'predictions.csv'}: "
            "is a symbolic link; remove it "
            "(links are never written through)"
        ],
    )
    assert _tree(outside) == before


def test_a_linked_subfolder_leading_outside_stops_the_run(demo: Demo, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    _image(data / "b.png")
    _image(data / "sub" / "a.png")
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(outside, out / "sub")
    result = demo(out, data, extra=("--draw_text",))
    assert (result.code, result.err) == (
        2,
        [
            f"demo.py: error: --output-dir {out / 'sub'}: "
            "leads outside the output folder through a "
            "symbolic link; remove the link"
        ],
    )
    assert list(outside.iterdir()) == []
    assert len(read_rows(out)) == 2  # written before the picture failed, and kept
    (out / "sub").unlink()
    assert demo(out, data, extra=("--draw_text", "--skip-existing")).code == 0
    assert len(read_rows(out)) == 2 and (out / "sub" / "a_pred.jpg").is_file()


@pytest.mark.parametrize("planted", ["pipe", "link"])
def test_planted_lock_or_pipe_in_the_output_folder(
    planted: str, demo: Demo, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    image = _image(tmp_path / "a.png")
    if planted == "pipe":
        os.mkfifo(out / ".opengraphau.lock")
        reason = "is not a regular file (a pipe, a device or a socket); move it away"
    else:
        os.symlink(tmp_path / "a.png", out / ".opengraphau.lock")
        reason = "is a symbolic link; remove it (links are never written through)"
    before = _tree(tmp_path)
    result = demo(out, image)
    assert (result.code, result.err) == (
        2,
        [f"demo.py: error: --output-dir {out / '.opengraphau.lock'}: {reason}"],
    )
    assert _tree(tmp_path) == before
    (out / ".opengraphau.lock").unlink()
    assert demo(out, image).code == 0
    (out / "completed.csv").unlink()
    os.mkfifo(out / "completed.csv")
    result = demo(out, image, extra=("--skip-existing",))
    assert (result.code, result.err) == (
        2,
        [
            f"demo.py: error: --output-dir {out / 'completed.csv'}: "
            "is not a regular file (a pipe, a "
            "device or a socket); move it away"
        ],
    )


def _os_error(code: int, when):
    """A stand-in for an os function that fails with `code` when `when(args)` holds."""

    def wrap(real):
        def fake(*args, **kwargs):
            if when(*args):
                raise OSError(code, os.strerror(code), str(args[0]))
            return real(*args, **kwargs)

        return fake

    return wrap


def test_a_read_only_file_system(
    demo: Demo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes = os.O_WRONLY | os.O_RDWR | os.O_CREAT
    image = _image(tmp_path / "a.png")
    (tmp_path / "old").mkdir()
    monkeypatch.setattr(
        os, "open", _os_error(errno.EROFS, lambda path, flags, *_: flags & writes)(os.open)
    )
    monkeypatch.setattr(os, "mkdir", _os_error(errno.EROFS, lambda *_: True)(os.mkdir))
    result = demo(tmp_path / "old", image)
    assert (result.code, result.err) == (
        2,
        [
            f"demo.py: error: --output-dir {tmp_path / 'old' / '.opengraphau.lock'}: "
            "the file system "
            "is read-only; choose another output folder"
        ],
    )
    result = demo(tmp_path / "new", image)
    assert (result.code, result.err) == (
        2,
        [
            f"demo.py: error: --output-dir {tmp_path / 'new'}: cannot create it (Read-only file "
            "system); choose another folder"
        ],
    )


def test_a_full_disk_while_saving_pictures_then_resuming(
    data: Path, demo: Demo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(5):
        _image(data / f"i{n}.png", n)
    before = _tree(data)
    out = tmp_path / "out"
    monkeypatch.setattr(
        os,
        "replace",
        _os_error(errno.ENOSPC, lambda src, dst: str(dst).endswith("i3_pred.jpg"))(os.replace),
    )
    result = demo(out, data, extra=("--draw_text", "--batch-size", "2"))
    assert (result.code, result.err) == (
        2,
        [
            f"demo.py: error: --output-dir {out / 'i3_pred.jpg'}: "
            "the disk is full; free some space, "
            "then continue with --skip-existing"
        ],
    )
    assert len(read_rows(out)) == 4  # all written before the picture; i2, i3 not completed
    assert [r[0] for r in csv.reader(open(out / "completed.csv"))][1:] == [
        str(data / "i0.png"),
        str(data / "i1.png"),
    ]
    assert not list(out.glob(".*tmp*"))
    monkeypatch.undo()
    result = demo(out, data, extra=("--draw_text", "--skip-existing"))
    assert (result.code, result.err) == (0, [])
    assert sorted(_files(out)) == [str(data / f"i{n}.png") for n in range(5)]
    assert sorted(p.name for p in out.glob("*_pred.jpg")) == [f"i{n}_pred.jpg" for n in range(5)]
    assert _tree(data) == before


def test_a_full_disk_while_writing_rows(
    data: Path, demo: Demo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk fills up in the middle of a batch's rows: the file is cut back to its last
    whole row (a cut-off row would read as a real one with a wrong value)."""
    from opengraphau.sinks.files import OutputFolder

    for n in range(6):
        _image(data / f"i{n}.png", n)
    real, real_write = OutputFolder.open_append, os.write
    full, room = set(), [2]

    def open_append(self, name):
        fd = real(self, name)
        if name == "predictions.csv":
            full.add(fd)
        return fd

    def write(fd, data):
        if fd in full:
            room[0] -= 1
            if room[0] < 0:
                real_write(fd, bytes(data[: len(data) // 2]))  # the disk took half the batch
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    monkeypatch.setattr(OutputFolder, "open_append", open_append)
    out = tmp_path / "out"
    result = demo(out, data, extra=("--batch-size", "2"))
    assert (result.code, result.err) == (
        2,
        [
            f"demo.py: error: --output-dir {out / 'predictions.csv'}: the disk is full; free some "
            "space, then continue with --skip-existing"
        ],
    )
    assert len(read_rows(out)) == 4
    assert (out / "predictions.csv").read_bytes().endswith(b"\r\n")
    assert len(pd.read_csv(out / "predictions.csv")) == 4
    monkeypatch.undo()
    assert demo(out, data, extra=("--skip-existing",)).code == 0
    assert sorted(_files(out)) == [str(data / f"i{n}.png") for n in range(6)]


def test_an_output_folder_that_holds_the_inputs(demo: Demo, tmp_path: Path) -> None:
    out = tmp_path / "project"
    (out / "photos").mkdir(parents=True)
    a = _image(out / "photos" / "a.png", 1)
    b = _image(out / "photos" / "b.png", 2)
    before = _tree(out / "photos")
    result = demo(out, out / "photos", extra=("--draw_text",))
    assert (result.code, result.err) == (0, [])
    assert _files(out) == [a, b]
    assert _tree(out / "photos") == before
    # The folder itself, read again, would feed our own pictures back in: refused.
    result = demo(out, out, extra=("--draw_text",))
    assert result.code == 2
    assert result.err == [
        f"demo.py: error: --input: no images or videos found ({out}: all 4 files found are "
        f"inside the output folder {out}, which is not searched for inputs; choose an output "
        "folder outside the inputs (or name those files themselves))"
    ]
    # An input named inside it is never replaced by a picture: c.png's would be c_pred.jpg.
    c = _image(out / "c.png", 3)
    victim = _image(out / "c_pred.jpg", 4, fmt="JPEG")
    kept = Path(victim).read_bytes()
    result = demo(out, c, victim, extra=("--draw_text",))
    assert result.code == 0
    assert result.err == [f"warning: {out / 'c_pred.jpg'}: not written, it would replace an input"]
    assert Path(victim).read_bytes() == kept and (out / "c_pred_pred.jpg").is_file()


# -- concurrency and signals ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, str]]]:
    """64 tiny images and the rows of a full run over them."""
    data = tmp_path_factory.mktemp("many")
    for n in range(64):
        Image.new("RGB", (20, 16), (4 * n, 255 - n, n // 2)).save(data / f"i{n:03d}.png")
    out = data.parent / f"{data.name}-full"
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        assert (
            run_main(*FAST, "--batch-size", "4", "--output-dir", str(out), "--input", str(data))
            == 0
        )
    return data, read_rows(out)


def _start(data: Path, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "demo.py"),
            *FAST[:-3],
            "--quiet",
            "--batch-size",
            "4",
            "--output-dir",
            str(out),
            "--input",
            str(data),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_rows(out: Path, rows: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        path = out / "predictions.csv"
        if path.exists() and path.read_text().count("\n") > rows:
            return
        time.sleep(0.02)
    raise AssertionError(f"no {rows} rows: {process.poll()}")


def _same_rows(rows: list[dict[str, str]], full: list[dict[str, str]]) -> None:
    by_file = {r["file"]: r for r in full}
    assert len({r["file"] for r in rows}) == len(rows)
    np.testing.assert_allclose(
        probs_of(rows), probs_of([by_file[r["file"]] for r in rows]), atol=1e-6
    )


@pytest.mark.slow
def test_two_runs_into_one_folder(demo: Demo, many, tmp_path: Path) -> None:
    data, full = many
    out = tmp_path / "out"
    first = _start(data, out, "--workers", "0")
    _wait_for_rows(out, 4, first)
    result = demo(out, data)
    assert (result.code, result.err) == (
        2,
        [
            f"demo.py: error: --output-dir {out}: is in use by another run (process {first.pid}); "
            "wait for it to finish or choose another output folder"
        ],
    )
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    rows = read_rows(out)
    assert len(rows) == len(full)
    _same_rows(rows, full)


@pytest.mark.slow
@pytest.mark.parametrize("gap", [0.0, 0.05, 0.4])
def test_a_second_ctrl_c_exits_quietly(gap: float, many, tmp_path: Path) -> None:
    data, full = many
    out = tmp_path / "out"
    run = _start(data, out, "--workers", "2")
    _wait_for_rows(out, 8, run)
    run.send_signal(signal.SIGINT)
    time.sleep(gap)
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 130
    assert [ln for ln in err.splitlines() if ln != BANNER] == []
    rows = read_rows(out)
    assert [r["file"] for r in rows] == [r["file"] for r in full[: len(rows)]]
    _same_rows(rows, full)


@pytest.mark.slow
def test_kill_9_then_resume(demo: Demo, many, tmp_path: Path) -> None:
    data, full = many
    out = tmp_path / "out"
    run = _start(data, out, "--workers", "2")
    _wait_for_rows(out, 20, run)
    run.kill()
    run.communicate(timeout=60)
    result = demo(out, data, extra=("--skip-existing", "--batch-size", "4"))
    assert (result.code, result.err) == (0, [])
    rows = read_rows(out)
    assert sorted(r["file"] for r in rows) == sorted(r["file"] for r in full)
    _same_rows(rows, full)
