"""A checkpoint in a folder (`checkpoints/` of a clone): the official file name, or the only one."""

from __future__ import annotations

from pathlib import Path

from ..errors import CheckpointError
from .official import OFFICIAL_CHECKPOINTS

CHECKPOINT_DIR = "checkpoints"
"""Where the CLI looks for checkpoints when none is named."""
CHECKPOINT_SUFFIXES: tuple[str, ...] = (".pth", ".pt", ".ckpt")
"""File suffixes accepted as checkpoints in a checkpoint folder."""


class CheckpointNotFound(CheckpointError):
    """Several checkpoints in the folder and no way to choose: `candidates` lists them."""

    def __init__(self, reason: str, *, folder: Path, candidates: tuple[Path, ...] = ()) -> None:
        self.folder, self.candidates = folder, candidates
        super().__init__(reason, param="checkpoint_dir", value=f"{folder}/")


def find_checkpoint(folder: Path, arch: str | None, stage: int | None) -> Path | None:
    """The checkpoint in `folder` for arch/stage: the official file name if present, else the
    only file there; None when the folder holds none. Several and no way to choose is
    CheckpointNotFound."""
    files = (
        tuple(
            sorted(
                p
                for p in folder.glob("*")
                if p.suffix.lower() in CHECKPOINT_SUFFIXES and p.is_file()
            )
        )
        if folder.is_dir()
        else ()
    )
    if not files:
        return None
    wanted = [
        c.filename
        for c in OFFICIAL_CHECKPOINTS
        if (arch is None or c.arch == arch) and (stage is None or c.stage == stage)
    ]
    named = tuple(p for p in files if p.name in wanted)
    if len(named) == 1:
        return named[0]
    if len(files) == 1:
        return files[0]
    candidates = named or files
    raise CheckpointNotFound(
        f"several checkpoints ({', '.join(p.name for p in candidates)}); "
        "name the one to use, or narrow by backbone and stage",
        folder=folder,
        candidates=candidates,
    )
