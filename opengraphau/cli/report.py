"""What the terminal shows: the model line, AU tables for small runs, a progress bar, errors on
stderr, a live preview for videos, and one summary line at the end."""

from __future__ import annotations

import functools
import os
import sys
import textwrap
import threading
from typing import TYPE_CHECKING, TextIO

import numpy as np

from ..aus import AU_IDS, AU_NAMES
from ..context import UNTRAINED_BANNER, Reporter, RunStats
from ..records import display_name
from ..thresholds import ThresholdLike, Thresholds, as_thresholds

if TYPE_CHECKING:
    from tqdm import tqdm


_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))}
_CONTROL.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})


def terminal_text(text: str) -> str:
    """`text` as one terminal line: names as `display_name` writes them, and control characters
    (a line break or an escape sequence in a file name) as \\n, \\x1b, ..., so a message stays
    one line and a file name cannot drive the terminal."""
    return display_name(text).translate(_CONTROL)


def format_table(title: str, probs: np.ndarray, threshold: ThresholdLike) -> str:
    """All 41 AUs of a face, `*` beside those at or above their threshold."""
    active = as_thresholds(threshold).active(probs)
    lines = [title, f"  {'AU':<6} {'name':<26} {'prob':>6}"]
    for au, name, p, on in zip(AU_IDS, AU_NAMES, probs, active):
        mark = "  *" if on else ""
        lines.append(f"  {'AU' + au:<6} {name:<26} {p:6.3f}{mark}")
    return "\n".join(lines)


SUMMARY_WIDTH = 100
"""The summary is one line when it fits in this many columns, else two."""


def format_summary(stats: RunStats) -> str:
    """What the run did, how long it took and where its outputs are, wrapped at SUMMARY_WIDTH
    columns (a long output path alone may pass it)."""
    s = stats
    rate = (s.images + s.frames) / s.elapsed_s if s.elapsed_s > 0 else 0.0
    parts = [f"{'interrupted' if s.interrupted else 'done'}: {s.images} images"]
    if s.videos:
        parts.append(f"{s.videos} videos ({s.frames} frames)")
    parts.append(f"{s.failed} failed")
    if s.detect:
        parts.append(f"{s.faces} faces, {s.no_face} without a face")
    if s.skipped:
        parts.append(f"{s.skipped} already done")
    if s.warnings:
        parts.append(f"{len(s.warnings)} warnings")
    timing = f"model {s.model_s:.1f} s" + (f", detection {s.detect_s:.1f} s" if s.detect else "")
    unit = "images+frames" if s.frames else "images"
    what = ", ".join(parts)
    # "outputs in DIR/" stays whole on its line (a no-break space until wrapped), so it can
    # be found, and copied, as one piece.
    how = (
        f"{s.elapsed_s:.1f} s, {rate:.2f} {unit}/s ({timing}); "
        f"outputs\xa0in\xa0{terminal_text(str(s.output_dir))}/"
    )
    one = f"{what}; {how}"
    if len(one) > SUMMARY_WIDTH:  # what, then how long and where, each wrapped as needed
        wrap = functools.partial(
            textwrap.wrap,
            width=SUMMARY_WIDTH,
            subsequent_indent="  ",
            break_long_words=False,
            break_on_hyphens=False,
        )
        one = "\n".join([*wrap(f"{what};"), *wrap(how, initial_indent="  ")])
    text = one.replace("\xa0", " ")
    return f"{UNTRAINED_BANNER}\n{text}" if s.untrained else text


DEFAULT_SCREEN = (1280, 720)
"""The screen size assumed when the display cannot tell its own."""
_WINDOW = "OpenGraphAU (q quits)"


def screen_size() -> tuple[int, int]:
    """The display's (width, height) in pixels as Tk sees it, or DEFAULT_SCREEN."""
    try:
        import tkinter

        root = tkinter.Tk()
        try:
            size = (root.winfo_screenwidth(), root.winfo_screenheight())
        finally:
            root.destroy()
    except Exception:  # noqa: BLE001 - no Tk, or no display it can open: assume a small screen
        return DEFAULT_SCREEN
    return size if min(size) > 0 else DEFAULT_SCREEN


def fit_to_screen(frame: np.ndarray, screen: tuple[int, int]) -> np.ndarray:
    """`frame` shrunk (never enlarged) so its window, title bar and the desktop's panels
    included, fits on a `screen` of (width, height) pixels. Only the preview is shrunk."""
    import cv2

    height, width = frame.shape[:2]
    scale = min(1.0, 0.95 * screen[0] / width, 0.85 * screen[1] / height)
    if scale >= 1.0:
        return frame
    return cv2.resize(
        frame,
        (max(1, round(width * scale)), max(1, round(height * scale))),
        interpolation=cv2.INTER_AREA,
    )


class _Preview:
    """Live window when a display exists; otherwise says so once and does nothing.

    The window has no toolbar or status bar (WINDOW_GUI_NORMAL): more room for the picture,
    and the Qt build of opencv-python, which ships no fonts, then has no text to draw and no
    "QFontDatabase: Cannot find font directory" warnings to print."""

    def __init__(self) -> None:
        import cv2

        self.cv2 = cv2
        self.enabled = bool(
            os.environ.get("DISPLAY")
            or os.environ.get("WAYLAND_DISPLAY")
            or sys.platform in ("win32", "darwin")
        )
        self.screen = screen_size() if self.enabled else DEFAULT_SCREEN
        self.opened = False
        if not self.enabled:
            print("note: --show ignored, no display; running headless", file=sys.stderr)

    def show(self, frame_rgb: np.ndarray) -> bool:
        """Draw a frame; True when the user pressed q."""
        if not self.enabled:
            return False
        try:
            if not self.opened:
                self.cv2.namedWindow(_WINDOW, self.cv2.WINDOW_AUTOSIZE | self.cv2.WINDOW_GUI_NORMAL)
                self.opened = True
            self.cv2.imshow(_WINDOW, fit_to_screen(frame_rgb, self.screen)[..., ::-1])
            return (self.cv2.waitKey(1) & 0xFF) == ord("q")
        except self.cv2.error:
            print("note: --show failed to open a window; running headless", file=sys.stderr)
            self.enabled = False
            return False

    def close(self) -> None:
        if self.enabled:
            self.cv2.destroyAllWindows()


class TerminalReporter(Reporter):
    """Prints to the terminal as `demo.py` always has."""

    def __init__(self, *, quiet: bool, tables: bool = False, stream: TextIO | None = None) -> None:
        """`tables`: an AU table per face for every image (by default only for a run of one
        image). `stream`: where progress goes (default stderr); bars only on a terminal."""
        self.quiet = quiet
        self.all_tables = tables
        self.stream = stream or sys.stderr
        self.shows_progress = not quiet
        self.tables = False
        self._progress: tqdm | None = None
        self._overall: tqdm | None = None
        self._video: tqdm | None = None
        self._preview: _Preview | None = None
        self._quit = threading.Event()
        self._reader: threading.Thread | None = None
        self._interrupt = threading.Event()
        self.processing = False
        """True from the first input to the end: Ctrl-C then asks the run to stop."""

    def model_ready(self, description: str, untrained: bool) -> None:
        if untrained:
            print(f"*** {UNTRAINED_BANNER} ***", file=sys.stderr)
        if not self.quiet:
            print(f"model: {terminal_text(description)}", file=sys.stderr)

    def _bar(self, **kwargs: object) -> tqdm:
        from tqdm import tqdm

        return tqdm(
            file=self.stream,
            disable=self.quiet or not self.stream.isatty(),
            dynamic_ncols=True,
            **kwargs,
        )

    def start_images(self, total: int) -> None:
        self.processing = True
        self.tables = not self.quiet and (total == 1 or self.all_tables)
        if total:
            self._progress = self._bar(total=total, unit="img")

    def images_done(self, outcomes: list, threshold: Thresholds, detect: bool) -> None:
        if self._progress is not None:
            self._progress.update(len(outcomes))
            if self._progress.n >= (self._progress.total or 0):
                self._progress.close()
        if not self.tables:
            return
        for outcome in outcomes:
            name = outcome.records[0].source if outcome.records else ""
            for record in outcome.records:
                where = (
                    ""
                    if not detect
                    else (
                        f"  face {record.face_id} box {tuple(round(v) for v in record.box)}"
                        if record.success
                        else "  no face found"
                    )
                )
                title = f"{terminal_text(name)}{where}"
                print(format_table(title, record.probs, threshold) if record.success else title)

    def start_videos(self, totals: list[int | None]) -> None:
        """Over several videos, a bar for all of them (its ETA when every count is known)."""
        self.processing = True
        if self._progress is not None:
            self._progress.close()
        if len(totals) > 1:
            known = None if None in totals else sum(t or 0 for t in totals)
            self._overall = self._bar(total=known, unit="frame", desc=f"{len(totals)} videos")

    def start_video(self, name: str, total: int | None, camera: bool) -> None:
        label = terminal_text(os.path.basename(name) or name)
        if len(label) > 24:
            label = label[:11] + "..." + label[-10:]
        self._video = self._bar(
            total=total,
            unit="frame",
            desc=label,
            leave=self._overall is None,
            position=1 if self._overall is not None else 0,
        )

    def frames_done(self, count: int) -> None:
        for bar in (self._video, self._overall):
            if bar is not None:
                bar.update(count)

    def end_video(self) -> None:
        if self._video is not None:
            self._video.close()
            self._video = None

    def failed(self, source: str, reason: str) -> None:
        print(f"error: {terminal_text(f'{source}: {reason}')}", file=sys.stderr)

    def warn(self, text: str) -> None:
        print(f"warning: {terminal_text(text)}", file=sys.stderr)

    def start_camera(self) -> None:
        """Each camera stops on its own q; one thread reads the terminal for all of them."""
        self._quit.clear()
        if sys.stdin is not None and sys.stdin.isatty():
            print("note: type q and Enter (or press Ctrl-C) to stop the camera", file=sys.stderr)
            if self._reader is None:
                self._reader = threading.Thread(target=self._read_quit, daemon=True)
                self._reader.start()

    def _read_quit(self) -> None:
        for line in sys.stdin:
            if line.strip().lower() == "q":
                self._quit.set()

    def stop_requested(self) -> bool:
        return self._quit.is_set()

    def request_interrupt(self) -> None:
        """Ctrl-C: the run stops after its current batch (safe from a signal handler)."""
        self._interrupt.set()

    def interrupt_requested(self) -> bool:
        return self._interrupt.is_set()

    def preview(self, frame: np.ndarray) -> bool:
        if self._preview is None:
            self._preview = _Preview()
        return self._preview.show(frame)

    def close(self) -> None:
        self.processing = False
        for bar in (self._progress, self._video, self._overall):
            if bar is not None:
                bar.close()
        if self._preview is not None:
            self._preview.close()
