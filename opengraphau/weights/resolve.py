"""Which checkpoint a run uses, in one place for the CLI, the API, exports and Ray workers.

In order: a checkpoint file named by path; an official model named by name (fetched into the
cache when needed); a checkpoint in the checkpoint folder (`checkpoints/` of a clone); the
default official model (for the backbone and stage asked, if any).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .cache import ModelCache, offline_from_env
from .folder import find_checkpoint
from .official import DEFAULT_MODEL, OFFICIAL_CHECKPOINTS, official_by_name


@dataclass(frozen=True)
class Weights:
    """The checkpoint file a run loads, and what is known of it already."""

    path: Path
    model: str | None = None
    """The official model's name when it came from the cache."""
    sha256: str | None = None
    """Known when the cache checked the file (so run.json need not hash it again)."""


def default_model(arch: str | None, stage: int | None) -> str:
    """The official model for `arch`/`stage` where given, the rest from DEFAULT_MODEL."""
    default = official_by_name(DEFAULT_MODEL)
    arch, stage = arch or default.arch, stage or default.stage
    return next(c.name for c in OFFICIAL_CHECKPOINTS if (c.arch, c.stage) == (arch, stage))


def choose_weights(
    *,
    checkpoint: str | Path | None = None,
    model: str | None = None,
    checkpoint_dir: str | Path | None = None,
    arch: str | None = None,
    stage: int | None = None,
    offline: bool | None = None,
    progress: bool = True,
    say: Callable[[str], None] | None = None,
) -> Weights:
    """The checkpoint to load (see the module's docstring for the order). `offline` None:
    `$OPENGRAPHAU_OFFLINE`. Fetching shows a progress bar on stderr unless `progress` is False;
    DownloadError when the model cannot be had."""
    if checkpoint is not None:
        return Weights(Path(checkpoint))
    if model is None and checkpoint_dir is not None:
        found = find_checkpoint(Path(checkpoint_dir), arch, stage)
        if found is not None:
            return Weights(found)
    name = model or default_model(arch, stage)
    cached = ModelCache().get(
        name,
        offline=offline_from_env() if offline is None else offline,
        progress=progress,
        say=say,
    )
    return Weights(cached.path, cached.official.name, cached.sha256)
