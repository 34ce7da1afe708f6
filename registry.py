"""Finding a checkpoint when `--resume` is not given, and telling the user where to get one."""
from __future__ import annotations

from pathlib import Path

from conf import CHECKPOINT_SUFFIXES, OFFICIAL_CHECKPOINTS
from utils import UserError


def download_help(folder: Path) -> str:
    """One line (long, but one) with where to put files and the official links."""
    links = "; ".join(f"{c.arch} stage {c.stage}: {c.url}" for c in OFFICIAL_CHECKPOINTS if c.url)
    return (f"put an official OpenGraphAU checkpoint in {folder}/ (any name ending in .pth) or pass "
            f"--resume FILE, or use --untrained for a smoke test. Downloads: {links}")


def find_checkpoint(folder: Path, arch: str | None, stage: int | None) -> Path:
    """The checkpoint in `folder` for arch/stage: the official file name if present, else the
    only file there. Several candidates and no way to choose is an error listing them."""
    files = sorted(p for p in folder.glob("*") if p.suffix.lower() in CHECKPOINT_SUFFIXES
                   and p.is_file()) if folder.is_dir() else []
    if not files:
        raise UserError(f"no checkpoint given and none in {folder}/: {download_help(folder)}")
    wanted = [c.filename for c in OFFICIAL_CHECKPOINTS
              if (arch is None or c.arch == arch) and (stage is None or c.stage == stage)]
    named = [p for p in files if p.name in wanted]
    if len(named) == 1:
        return named[0]
    if len(files) == 1:
        return files[0]
    names = ", ".join(p.name for p in (named or files))
    raise UserError(f"several checkpoints in {folder}/ ({names}); choose one with --resume "
                    "(or narrow with --arc/--stage)")
