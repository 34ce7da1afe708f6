"""What the terminal shows while a run works: frames of a video counted against its frame count,
with a rate and an ETA, per video and over all of them; cameras as frames and a rate; and a
summary that fits 100 columns. The bars are read from a captured terminal (a text stream that
says it is a tty, as tqdm's own tests do)."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from factories import FakeCamera, write_video
from opengraphau import Options, run
from opengraphau.cli.report import SUMMARY_WIDTH, TerminalReporter, format_summary
from opengraphau.context import RunStats
from opengraphau.sources.video import frames_kept


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _screens(text: str) -> list[str]:
    """Every state the bars were drawn in (tqdm redraws with carriage returns)."""
    return [s.strip() for s in re.split(r"[\r\n]", text) if s.strip()]


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("clips")
    return [
        write_video(folder / "short.mp4", 6, face_until=0),
        write_video(folder / "long.mp4", 10, face_until=0),
    ]


def _run(inputs: tuple[str, ...], out: Path, **extra) -> str:
    terminal = Terminal()
    options = Options(
        inputs=inputs,
        output_dir=out,
        untrained=True,
        arch="resnet18",
        detect=False,
        workers=0,
        batch_size=2,
        **extra,
    )
    with pytest.warns(UserWarning):
        run(options, TerminalReporter(quiet=False, stream=terminal))
    return terminal.getvalue()


def test_a_video_counts_its_frames_with_rate_and_eta(clips: list[Path], tmp_path: Path) -> None:
    screens = _screens(_run((str(clips[1]),), tmp_path / "o"))
    assert any(re.search(r"long\.mp4: +100%.*\| 10/10 \[", s) for s in screens), screens
    # While it runs: the count against the total, a rate and the time left.
    assert any(
        re.search(r" [2-8]/10 \[\d\d:\d\d<\d\d:\d\d, +[\d.]+frame/s\]", s) for s in screens
    ), screens
    assert not any("img" in s for s in screens)  # no empty image bar before it


def test_several_videos_have_a_bar_over_all_of_them(clips: list[Path], tmp_path: Path) -> None:
    screens = _screens(_run(tuple(map(str, clips)), tmp_path / "o", every=2))
    assert any(re.search(r"2 videos: +100%.*\| 8/8 \[", s) for s in screens), screens
    assert any(re.search(r"short\.mp4: .* 0/3 \[", s) for s in screens), screens
    assert any(re.search(r"long\.mp4: .* 0/5 \[", s) for s in screens), screens


def test_a_camera_counts_frames_and_a_rate(tmp_path: Path) -> None:
    terminal = Terminal()
    options = Options(
        inputs=("webcam:0",),
        output_dir=tmp_path / "c",
        untrained=True,
        arch="resnet18",
        detect=False,
        workers=0,
        max_frames=4,
    )
    with pytest.warns(UserWarning):
        run(
            options,
            TerminalReporter(quiet=False, stream=terminal),
            capture_factory=lambda _: FakeCamera(),
        )
    screens = _screens(terminal.getvalue())
    assert any(re.search(r"webcam:0: .*4/4 \[.*frame/s\]", s) for s in screens), screens


def test_frames_kept_counts_as_the_decoder_keeps() -> None:
    """An independent count: the indices a 25 fps video keeps, listed one by one."""
    for count, every, start, end, most in [
        (100, 1, None, None, None),
        (100, 3, None, None, None),
        (100, 4, 1.0, 2.5, None),
        (100, 2, 0.5, None, 7),
        (10, 1, 5.0, None, None),
    ]:
        kept = [
            i
            for i in range(count)
            if i % every == 0
            and (start is None or i / 25 >= start)
            and (end is None or i / 25 <= end)
        ]
        expected = len(kept) if most is None else min(len(kept), most)
        assert (
            frames_kept(count, 25.0, every=every, start=start, end=end, max_frames=most) == expected
        )
    assert frames_kept(None, 30.0) is None and frames_kept(None, 30.0, max_frames=5) == 5


def test_the_summary_fits_100_columns() -> None:
    stats = RunStats(
        Path("results/demo2"),
        detect=True,
        images=1234,
        failed=12,
        faces=98765,
        no_face=321,
        frames=104857,
        videos=17,
        detect_s=1234.5,
        model_s=4321.0,
        elapsed_s=5678.9,
    )
    lines = format_summary(stats).splitlines()
    assert len(lines) == 2 and all(len(line) <= SUMMARY_WIDTH for line in lines)
    assert lines[0] == (
        "done: 1234 images, 17 videos (104857 frames), 12 failed, 98765 faces, 321 without a face;"
    )
    assert lines[1].startswith("  5678.9 s, 18.68 images+frames/s")
    assert lines[1].endswith("outputs in results/demo2/")
    stats.skipped, stats.warnings = 40, ["w"] * 3
    assert all(len(line) <= SUMMARY_WIDTH for line in format_summary(stats).splitlines())
    short = RunStats(Path("o"), detect=False, images=3, elapsed_s=1.0, model_s=0.5)
    assert format_summary(short) == (
        "done: 3 images, 0 failed; 1.0 s, 3.00 images/s (model 0.5 s); outputs in o/"
    )
