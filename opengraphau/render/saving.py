"""Pictures of a run, written into its output folder.

Each is drawn into a temporary file that is renamed into place, so a link planted under its name
is replaced, never written through; none replaces one of the run's inputs (which may lie inside
the output folder); one that cannot be drawn, for whatever reason, is skipped with a warning,
and its rows are written anyway. Output folder failures (a full disk) stop the run.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from ..errors import OutputError, describe
from ..records import display_name
from ..sinks.files import OutputFolder

JPEG_MAX_SIDE = 65500
"""Pixels; a bigger picture (a panel per face of a crowd) is skipped with a warning."""


class PictureSaver:
    """Saves pictures under names relative to `folder`; `warn` hears of those skipped."""

    def __init__(self, folder: OutputFolder, inputs: set[str], warn: Callable[[str], None]) -> None:
        """`inputs`: the real paths of the run's input files, never to be replaced."""
        self.folder, self.inputs, self.warn = folder, inputs, warn

    def may_write(self, rel: str) -> bool:
        """False, with a warning, when `rel` would replace one of the run's inputs."""
        target = self.folder.root / rel
        if os.path.realpath(target) not in self.inputs:
            return True
        self.warn(f"{display_name(str(target))}: not written, it would replace an input")
        return False

    def save(self, rel: str, write: Callable[[Path], None]) -> None:
        """`write(path)` draws the picture into the temporary file `path`."""
        if not self.may_write(rel):
            return
        try:
            with self.folder.replace(rel) as temporary, warnings.catch_warnings():
                warnings.simplefilter("ignore")  # matplotlib's, on glyphs a name lacks
                write(temporary)
        except OutputError:
            raise
        except Exception as exc:  # noqa: BLE001 - any drawing failure skips only the picture
            self.warn(
                f"{display_name(str(self.folder.root / rel))}: picture skipped ({describe(exc)})"
            )

    def save_jpeg(self, rel: str, draw: Callable[[], Image.Image]) -> None:
        """The picture `draw()` makes, as a JPEG."""

        def write(path: Path) -> None:
            picture = draw()
            if max(picture.size) > JPEG_MAX_SIDE:  # libjpeg would print its own complaint
                raise ValueError(
                    f"{picture.width} x {picture.height} pixels, more than "
                    f"JPEG's {JPEG_MAX_SIDE} a side"
                )
            picture.save(path, format="JPEG", quality=95)

        self.save(rel, write)
