"""Hostile cases, third round (issue #31): export targets, decoding that would run programs,
files swapped under the run, standard streams closed, full or gone, locales, full disks, deep
paths, lists of lists, odd numbers in flags, memory per batch, pictures without pixels, and
library noise under odd HOME/TMPDIR. Cases that depend on privileges run as root and, forked,
as the user nobody; those need root and are skipped without it."""

from __future__ import annotations

import contextlib
import csv
import errno
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from test_hostile import _errors, _files, _image, _video, no_hang  # noqa: F401

from factories import BANNER, FAST, ROOT, Demo, read_rows, run_main
from opengraphau.errors import ExportError, ImageError, OutputError

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mknod, mount, setuid)")
NOBODY = 65534


def _command(*args: str, env: dict[str, str] | None = None, **kwargs) -> subprocess.Popen:
    """`python -m opengraphau ARGS` as a user starts it (this tree's package)."""
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "opengraphau", *args], cwd=ROOT, env=environment, **kwargs
    )


def _as_nobody(body: Callable[[], int]) -> tuple[int, str]:
    """body() in a forked child running as the user nobody: its return code and stderr."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no pytest machinery from here on, only os._exit
        code = 99
        try:
            signal.signal(signal.SIGALRM, signal.SIG_DFL)  # a hang, even in C, ends it
            signal.alarm(120)
            os.dup2(write, 2)
            os.dup2(write, 1)
            os.setgroups([])
            os.setresgid(NOBODY, NOBODY, NOBODY)
            os.setresuid(NOBODY, NOBODY, NOBODY)
            sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
            sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
            code = body()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as f:
        text = f.read()
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), text


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder the user nobody may use too (pytest's own are root's alone)."""
    folder = Path(tempfile.mkdtemp(prefix="hostile3-"))
    folder.chmod(0o777)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


# -- writes where they must not go -------------------------------------------------------------


@ROOT_ONLY
def test_export_onto_a_device_or_pipe_is_refused(capsys, tmp_path: Path) -> None:
    from opengraphau.export import export_onnx
    from opengraphau.model.opengraphau import untrained_model

    full = tmp_path / "full"
    os.mknod(full, stat.S_IFCHR | 0o666, os.makedev(1, 7))  # a /dev/full of its own
    fifo = tmp_path / "fifo.onnx"
    os.mkfifo(fifo)
    for target in (full, fifo):
        code = run_main("--untrained", "--arc", "resnet18", "--export-onnx", str(target))
        err = [ln for ln in capsys.readouterr().err.splitlines() if ln != BANNER]
        assert (code, err) == (
            2,
            [
                f"demo.py: error: --export-onnx {target}: "
                "is not a regular file (a pipe, a device or "
                "a socket); not replaced, choose a file"
            ],
        )
        with pytest.raises(ExportError, match="not replaced"):
            export_onnx(untrained_model("resnet18", 1), target)
    assert stat.S_ISCHR(os.lstat(full).st_mode) and stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo.onnx", "full"]


@ROOT_ONLY
def test_export_onto_the_systems_dev_full_as_nobody() -> None:
    from opengraphau.cli.main import main

    before = os.lstat("/dev/full")
    code, err = _as_nobody(
        lambda: main(
            ["--untrained", "--arc", "resnet18", "--export-onnx", "/dev/full"], prog="demo.py"
        )
    )
    assert (code, err.splitlines()) == (
        2,
        [
            "demo.py: error: --export-onnx /dev/full: is not a regular file (a pipe, a device or a "
            "socket); not replaced, choose a file"
        ],
    )
    after = os.lstat("/dev/full")
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev


def test_export_never_writes_through_a_planted_link(tmp_path: Path) -> None:
    from opengraphau.export import export_onnx
    from opengraphau.model.opengraphau import untrained_model

    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    folder = tmp_path / "models"
    folder.mkdir()
    # The names the old export wrote to, and one at the target itself.
    os.symlink(outside, folder / f".m.{os.getpid()}.tmp.onnx")
    os.symlink(outside, folder / "m.onnx")
    assert export_onnx(untrained_model("resnet18", 1), folder / "m.onnx") <= 1e-4
    assert outside.read_text() == "precious"
    target = folder / "m.onnx"
    assert stat.S_ISREG(os.lstat(target).st_mode) and target.stat().st_size > 40e6
    assert sorted(p.name for p in folder.iterdir()) == [f".m.{os.getpid()}.tmp.onnx", "m.onnx"]


def test_postscript_named_jpg_never_reaches_ghostscript(
    data: Path, demo: Demo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    marker = tmp_path / "gs-ran"
    gs = bin_dir / "gs"
    gs.write_text(f"#!/bin/sh\ntouch {marker}\nexit 1\n")
    gs.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    (data / "photo.jpg").write_bytes(
        b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 16 16\n0 0 moveto 16 16 lineto stroke\n"
        b"showpage\n%%EOF\n"
    )
    good = _image(data / "good.png")
    result = demo(tmp_path / "out", data)
    assert result.code == 1
    assert _errors(tmp_path / "out") == {
        str(data / "photo.jpg"): "not an image Pillow can read (corrupt, empty or another format)"
    }
    assert _files(tmp_path / "out") == [good]
    assert not marker.exists()


# -- a file swapped for a pipe between the check and the open ----------------------------------


def _swap_after_check(monkeypatch: pytest.MonkeyPatch, module: str) -> None:
    """The check of a name passes, then the file becomes a named pipe before it is opened."""
    import importlib

    target = importlib.import_module(module)
    real = target.special_file_reason

    def check_then_swap(path):
        reason = real(path)
        if reason is None and Path(path).stem == "swap":
            os.unlink(path)
            os.mkfifo(path)
        return reason

    monkeypatch.setattr(target, "special_file_reason", check_then_swap)


def test_a_file_swapped_for_a_pipe_after_its_check(
    data: Path, demo: Demo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _image(data / "swap.png")
    _video(data / "swap.mp4")
    good = _image(data / "good.png", 1)
    _swap_after_check(monkeypatch, "opengraphau.sources.images")
    _swap_after_check(monkeypatch, "opengraphau.sources.video")
    result = demo(tmp_path / "out", data)  # no_hang fails it if it blocks
    assert result.code == 1
    why = "is a named pipe, not a regular file (it was replaced after the inputs were listed)"
    errors = _errors(tmp_path / "out")
    assert errors.keys() == {str(data / "swap.png"), str(data / "swap.mp4")}
    assert errors[str(data / "swap.png")] == why
    # The video is checked once more before it is read (its frame count, for the progress bar,
    # is probed first, through the same non-blocking open): the swap is seen at either check.
    assert errors[str(data / "swap.mp4")].startswith("is a named pipe, not a regular file")
    assert _files(tmp_path / "out") == [good]


@ROOT_ONLY
def test_a_file_swapped_for_a_pipe_as_nobody(
    shared_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from opengraphau.sources.images import load_image

    path = shared_dir / "swap.png"
    _image(path)
    path.chmod(0o666)
    _swap_after_check(monkeypatch, "opengraphau.sources.images")

    def body() -> int:
        try:
            load_image(path)
        except ImageError as exc:
            print(exc.reason)
            return 3
        return 0

    code, err = _as_nobody(body)
    assert (code, err.strip()) == (
        3,
        "is a named pipe, not a regular file (it was replaced after the inputs were listed)",
    )


# -- standard streams closed, full or gone ---------------------------------------------------


def _images(folder: Path, count: int) -> Path:
    folder.mkdir()
    for n in range(count):
        _image(folder / f"i{n}.png", n)
    return folder


@pytest.mark.parametrize(
    "stream",
    [
        "stderr closed",
        "stdout reader gone",
        "stdout reader gone --quiet",
        "stdout full",
        "both closed",
    ],
)
def test_standard_streams_closed_full_or_gone(stream: str, tmp_path: Path) -> None:
    data = _images(tmp_path / "data", 8)
    out = tmp_path / "out"
    flags = [f for f in FAST if f != "--quiet"] + (["--quiet"] if "--quiet" in stream else [])
    read, write = os.pipe()
    stdio: dict = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    gone = None
    if "reader gone" in stream:
        gone, stdio["stdout"] = os.pipe()
        os.close(gone)  # every write meets EPIPE
    elif "full" in stream:
        stdio["stdout"] = open("/dev/full", "w")  # noqa: SIM115
    closed = {"stderr closed": (2,), "both closed": (1, 2)}.get(stream, ())
    os.close(read)
    os.close(write)

    def close_them() -> None:
        for fd in closed:
            os.close(fd)

    process = _command(
        *flags, "--output-dir", str(out), "--input", str(data), preexec_fn=close_them, **stdio
    )
    _, err = process.communicate(timeout=300)
    if not isinstance(stdio["stdout"], int):
        stdio["stdout"].close()
    elif stdio["stdout"] != subprocess.PIPE:
        os.close(stdio["stdout"])
    assert process.returncode == 0
    assert err is None or b"Exception ignored" not in err and b"error" not in err, err
    assert sorted(_files(out)) == [str(data / f"i{n}.png") for n in range(8)]


# -- names are bytes, whatever the locale ------------------------------------------------------


@pytest.fixture(scope="module")
def latin1_locale(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of a Latin-1 locale, built here (few machines install one)."""
    folder = tmp_path_factory.mktemp("locales")
    if shutil.which("localedef") is None:
        pytest.skip("no localedef to build a Latin-1 locale")
    made = subprocess.run(
        ["localedef", "-i", "en_US", "-f", "ISO-8859-1", str(folder / "en_US.ISO-8859-1")],
        capture_output=True,
    )
    env = {"LOCPATH": str(folder), "LANG": "en_US.ISO-8859-1", "LC_ALL": ""}
    check = subprocess.run(
        [sys.executable, "-c", "import sys; print(sys.getfilesystemencoding())"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    )
    if made.returncode not in (0, 1) or check.stdout.strip() != "iso8859-1":
        pytest.skip("cannot build a Latin-1 locale here")
    return env


def test_names_do_not_depend_on_the_locale(
    data: Path, latin1_locale: dict[str, str], tmp_path: Path
) -> None:
    utf8 = _image(data / "日本語 é.jpg", fmt="JPEG")
    _image(os.fsencode(data) + b"/caf\xe9.png", 1)  # a Latin-1 name, not UTF-8
    with open(tmp_path / "list.txt", "wb") as f:  # a list naming them, as UTF-8 bytes
        f.write(b"data/\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xc3\xa9.jpg\ndata/caf\xe9.png\n")
    out = tmp_path / "out"
    for env in (latin1_locale, {"LANG": "C.UTF-8", "LC_ALL": ""}):
        # Tables too: their UTF-8 names are escaped on a Latin-1 terminal, not an error.
        flags = [f for f in FAST if f != "--quiet" or env is not latin1_locale]
        flags += ["--tables"] if env is latin1_locale else []
        process = _command(
            *flags,
            "--output-dir",
            str(out),
            "--input",
            str(data),
            f"@{tmp_path / 'list.txt'}",
            "--skip-existing",
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        shown, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
        if env is latin1_locale:
            assert shown.count(b"Inner brow raiser") == 2
            assert "\\u65e5\\u672c\\u8a9e \xe9.jpg".encode("latin-1") in shown
        assert sorted(_files(out)) == sorted([utf8, str(data / "caf\\xe9.png")])
        with open(out / "completed.csv", newline="", encoding="utf-8") as completed:
            assert sorted(map(tuple, csv.reader(completed))) == sorted(
                [
                    ("file", "name_bytes_hex"),
                    (utf8, ""),
                    (str(data / "caf\\xe9.png"), os.fsencode(data / "caf").hex() + "e92e706e67"),
                ]
            )


# -- full disks --------------------------------------------------------------------------------


@contextlib.contextmanager
def _small_disk(folder: Path, size: str) -> Iterator[Path]:
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True
    )
    if mounted.returncode:
        pytest.skip("cannot mount a small tmpfs here")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _fill(folder: Path, leave: int) -> Path:
    """A file filling `folder`'s disk but for `leave` bytes."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 4096)
    os.truncate(filler, max(0, filler.stat().st_size - leave))
    return filler


@ROOT_ONLY
@pytest.mark.parametrize("leave", [12_000, 30_000])
def test_a_real_full_disk_leaves_whole_rows_then_resumes(
    leave: int, demo: Demo, tmp_path: Path
) -> None:
    data = _images(tmp_path / "data", 40)
    with _small_disk(tmp_path / "disk", "2m") as disk:
        out = disk / "out"
        out.mkdir()
        filler = _fill(disk, leave)
        result = demo(out, data, extra=("--batch-size", "3", "--format", "csv,jsonl"))
        assert result.code == 2
        assert result.err[-1].endswith(
            "the disk is full; free some space, then continue with --skip-existing"
        ), result.err
        for name in ("predictions.csv", "completed.csv", "errors.csv"):
            if (out / name).exists():
                text = (out / name).read_bytes()
                assert text == b"" or text.endswith(b"\r\n"), name
        if (out / "predictions.csv").stat().st_size:
            frame = pd.read_csv(out / "predictions.csv")
            assert not frame.isna().any().any()
        lines = (out / "predictions.jsonl").read_bytes().split(b"\n")
        assert lines[-1] == b"" and all(json.loads(line) for line in lines[:-1])
        filler.unlink()
        result = demo(out, data, extra=("--skip-existing", "--format", "csv,jsonl"))
        assert (result.code, result.err) == (0, [])
        assert sorted(_files(out)) == sorted(str(data / f"i{n}.png") for n in range(40))
        assert len((out / "predictions.jsonl").read_text().splitlines()) == 40


@ROOT_ONLY
def test_an_annotated_video_cut_by_a_full_disk_is_removed(tmp_path: Path) -> None:
    from opengraphau.render.video import VideoWriter

    rng = np.random.default_rng(0)
    with _small_disk(tmp_path / "disk", "1m") as disk:
        writer = VideoWriter(disk / "clip_pred.mp4", 25.0)
        with pytest.raises(OutputError, match="lacks its index"):
            with writer:
                for _ in range(60):  # noise compresses badly: far more than a megabyte
                    writer.write(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8))
        assert list(disk.iterdir()) == []


# -- paths and lists ---------------------------------------------------------------------------


@pytest.fixture
def deep_room() -> Iterator[Path]:
    """A folder outside pytest's own: its clean-up (shutil.rmtree) recurses once a level and
    would fail on a tree 1,100 deep, in this session or a later one; `rm -rf` does not."""
    folder = Path(tempfile.mkdtemp(prefix="hostile3-deep-"))
    yield folder
    subprocess.run(["rm", "-rf", str(folder)], check=True)


def test_a_folder_nested_1100_deep_with_pictures(demo: Demo, deep_room: Path) -> None:
    tmp_path = deep_room
    data = tmp_path / "data"
    folder = data
    folder.mkdir()
    for _ in range(1100):  # os.makedirs itself would recurse too deep
        folder = folder / "d"
        folder.mkdir()
    deep = _image(folder / "deep.png")
    top = _image(data / "top.png", 1)
    out = tmp_path / "out"
    result = demo(out, data, extra=("--draw_text",))
    assert (result.code, result.err) == (0, [])
    assert sorted(_files(out)) == sorted([deep, top])
    pictures = sorted(p.relative_to(out).as_posix() for p in out.rglob("*_pred.jpg"))
    assert len(pictures) == 2 and "top_pred.jpg" in pictures
    (fallback,) = [p for p in pictures if p != "top_pred.jpg"]
    assert fallback.startswith("deep~") and "/" not in fallback  # at the folder's top
    result = demo(out, data, extra=("--draw_text", "--skip-existing"))
    assert result.code == 0 and len(_files(out)) == 2


def test_lists_naming_lists(demo: Demo, tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    a = _image(data / "a.png")
    b = _image(data / "sub" / "b.png", 1)
    c = _image(tmp_path / "c.png", 2)
    (data / "sub" / "inner.txt").write_text(f"b.png\n@../outer.txt\n@{tmp_path / 'abs.txt'}\n")
    (tmp_path / "abs.txt").write_text("c.png\n")
    (data / "outer.txt").write_text("a.png\n  @sub/inner.txt  \n")
    out = tmp_path / "out"
    result = demo(out, f"@{data / 'outer.txt'}")
    assert result.code == 1
    cycle = data / "sub" / ".." / "outer.txt"
    assert result.err == [
        f"error: @{cycle}: list file includes itself (through the lists it names)"
    ]
    assert _files(out) == [a, b, c]


# -- videos, flags, workers --------------------------------------------------------------------


def test_every_far_beyond_the_video_keeps_rows_and_video(demo: Demo, tmp_path: Path) -> None:
    clip = _video(tmp_path / "clip.mp4", frames=12)
    out = tmp_path / "out"
    result = demo(out, clip, extra=("--every", "1000000", "--draw_text"))
    assert (result.code, result.err) == (0, [])
    assert [r["frame"] for r in read_rows(out)] == ["0"]
    capture = __import__("cv2").VideoCapture(str(out / "clip_pred.mp4"))
    assert capture.read()[0]
    capture.release()


@pytest.mark.parametrize("flag", ["--start", "--end", "--threshold"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_nan_and_inf_are_refused(flag: str, value: str, demo: Demo, tmp_path: Path) -> None:
    result = demo(tmp_path / "out", _image(tmp_path / "a.png"), extra=(f"{flag}={value}",))
    assert (result.code, result.err) == (
        2,
        [f"demo.py: error: {flag} {value}: must be a finite number"],
    )


def test_workers_beyond_the_machine(
    demo: Demo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--workers 1000 starts no more processes than cores (nor inputs); a system that cannot
    start even those (fork fails: EAGAIN) decodes in the main process instead."""
    from torch.utils.data import DataLoader

    import opengraphau.engines.local as local

    data = _images(tmp_path / "data", 3)
    flags = tuple(f for f in FAST if f not in ("--workers", "0"))
    asked: list[int] = []

    class NoFork(DataLoader):
        def __iter__(self):
            asked.append(self.num_workers)
            if self.num_workers:
                raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")
            return super().__iter__()

    monkeypatch.setattr(local, "DataLoader", NoFork)
    result = demo(tmp_path / "out", data, flags=flags, extra=("--workers", "1000"))
    assert (result.code, result.err) == (0, [])
    assert asked == [min(os.cpu_count() or 1, 3), 0]
    assert sorted(_files(tmp_path / "out")) == sorted(str(p) for p in data.iterdir())


# -- memory per batch --------------------------------------------------------------------------


def test_batches_are_bounded_by_pixels(
    data: Path, demo: Demo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import opengraphau.pipeline as pipeline

    for n, size in enumerate([(20, 10)] * 4 + [(60, 40)] + [(20, 10)] * 3):
        _image(data / f"i{n}.png", n, size=size)
    clip = _video(tmp_path / "clip.mp4", frames=10, size=(32, 24))
    monkeypatch.setattr(pipeline, "MAX_BATCH_PIXELS", 600)
    sizes: list[list[tuple[int, int]]] = []
    real = pipeline.Pipeline.submit

    def submit(self, frames, *args, **kwargs):
        sizes.append([f.size for f in frames])
        return real(self, frames, *args, **kwargs)

    monkeypatch.setattr(pipeline.Pipeline, "submit", submit)
    result = demo(tmp_path / "out", data, clip, extra=("--draw_text", "--batch-size", "100000"))
    assert (result.code, result.err) == (0, [])
    assert sizes[:4] == [[(20, 10)] * 3, [(20, 10)], [(60, 40)], [(20, 10)] * 3]
    assert sizes[4:] == [[(32, 24)]] * 10  # 768 pixels a frame: one a batch
    assert len(_files(tmp_path / "out")) == 18


def test_pixel_batches_against_a_plain_transcription() -> None:
    from opengraphau.pipeline import MAX_BATCH_PIXELS, frames_per_batch, pixel_batches

    rng = np.random.default_rng(3)
    for _ in range(200):
        counts = [int(c) for c in rng.integers(0, MAX_BATCH_PIXELS // 2, rng.integers(0, 30))]
        size = int(rng.integers(1, 8))
        batches = list(pixel_batches(counts, size))
        assert [i for b in batches for i in b] == list(range(len(counts)))
        for batch in batches:
            assert 1 <= len(batch) <= size
            assert len(batch) == 1 or sum(counts[i] for i in batch) <= MAX_BATCH_PIXELS
    assert frames_per_batch(100_000, (1920, 1080)) == MAX_BATCH_PIXELS // (1920 * 1080)
    assert frames_per_batch(16, (64, 48)) == 16 and frames_per_batch(4, (10**5, 10**5)) == 1


# -- the API on pictures without pixels --------------------------------------------------------


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((0, 0, 3), np.uint8),
        np.zeros((0, 10, 3), np.uint8),
        np.zeros((10, 0), np.uint8),
        Image.new("RGB", (0, 0)),
    ],
    ids=["0x0x3", "0x10x3", "10x0", "PIL 0x0"],
)
def test_predict_on_pictures_without_pixels(image) -> None:
    from opengraphau import AUPredictor

    predictor = AUPredictor(arch="resnet18", stage=1, untrained=True)
    with pytest.raises(ImageError, match="has no pixels"):
        predictor.predict([image])


# -- no library noise, whatever HOME or TMPDIR -------------------------------------------------


@pytest.mark.parametrize("home,tmp", [("/proc", "/nonexistent"), ("/nonexistent", "/proc")])
def test_no_library_noise_under_odd_home_or_tmpdir(home: str, tmp: str, tmp_path: Path) -> None:
    clip = _video(tmp_path / "clip.mp4", frames=6)
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MPLCONFIGDIR", "XDG_CACHE_HOME", "XDG_CONFIG_HOME")
    }
    env.update(HOME=home, TMPDIR=tmp, PYTHONPATH=str(ROOT))
    process = subprocess.run(
        [
            sys.executable,
            "-m",
            "opengraphau",
            *FAST,
            "--draw_text",
            "--output-dir",
            str(tmp_path / "out"),
            "--input",
            str(clip),
            _image(tmp_path / "a.png"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert process.returncode == 0
    assert process.stderr.splitlines() == [BANNER]
