"""The official OpenGraphAU checkpoints (file, link, scores), and finding one in a folder.

`checkpoints/README.md` lists the same rows; a test keeps the two in step.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import CheckpointError

CHECKPOINT_DIR = "checkpoints"
"""Where the CLI looks for checkpoints when none is named."""
CHECKPOINT_SUFFIXES: tuple[str, ...] = (".pth", ".pt", ".ckpt")
"""File suffixes accepted as checkpoints in a checkpoint folder."""


@dataclass(frozen=True)
class OfficialCheckpoint:
    """One released OpenGraphAU file, as listed in the reference README."""

    arch: str
    stage: int
    filename: str
    url: str | None
    f1: float | None
    acc: float | None


_DRIVE = "https://drive.google.com/file/d/{}/view"

#: The released checkpoints. ResNet-101 files exist but the reference README gives no link.
OFFICIAL_CHECKPOINTS: tuple[OfficialCheckpoint, ...] = (
    OfficialCheckpoint(
        "resnet18",
        1,
        "OpenGprahAU-ResNet18_first_stage.pth",
        _DRIVE.format("1b9yrKF663K9IwY2C2-1SD6azpAdNgBm7"),
        22.33,
        92.97,
    ),
    OfficialCheckpoint(
        "resnet50",
        1,
        "OpenGprahAU-ResNet50_first_stage.pth",
        _DRIVE.format("11xh9r2e4qCpWEtQ-ptJGWut_TQ0_AmSp"),
        22.52,
        92.63,
    ),
    OfficialCheckpoint("resnet101", 1, "OpenGprahAU-ResNet101_first_stage.pth", None, None, None),
    OfficialCheckpoint(
        "swin_transformer_tiny",
        1,
        "OpenGprahAU-SwinT_first_stage.pth",
        _DRIVE.format("1JSa-ft965qXJlVGvnoMepbkRkSm78_to"),
        22.66,
        92.97,
    ),
    OfficialCheckpoint(
        "swin_transformer_small",
        1,
        "OpenGprahAU-SwinS_first_stage.pth",
        _DRIVE.format("1GNjFKpd00nvgYIP2q7AzRSzfzEUfAqfT"),
        24.49,
        92.84,
    ),
    OfficialCheckpoint(
        "swin_transformer_base",
        1,
        "OpenGprahAU-SwinB_first_stage.pth",
        _DRIVE.format("1nWwowmq4pQn1ACnSOOeyBy6-n0rmqTQ9"),
        23.53,
        92.91,
    ),
    OfficialCheckpoint(
        "mae",
        1,
        "OpenGprahAU-MAEViT_first_stage.pth",
        _DRIVE.format("126i4dn6u0v-npYR8UaIM8migdSsI5u__"),
        24.05,
        93.47,
    ),
    OfficialCheckpoint(
        "resnet18",
        2,
        "OpenGprahAU-ResNet18_second_stage.pth",
        _DRIVE.format("1CzWgr2ywt7TmxHLWM5tg1VaEbgGYyAZ4"),
        22.51,
        93.23,
    ),
    OfficialCheckpoint(
        "resnet50",
        2,
        "OpenGprahAU-ResNet50_second_stage.pth",
        _DRIVE.format("1UMnpbj_YKlqHF1m0DHV0KYD3qmcOmeXp"),
        23.24,
        93.31,
    ),
    OfficialCheckpoint("resnet101", 2, "OpenGprahAU-ResNet101_second_stage.pth", None, None, None),
    OfficialCheckpoint(
        "swin_transformer_tiny",
        2,
        "OpenGprahAU-SwinT_second_stage.pth",
        _DRIVE.format("1yRWnYY5BR_FDiquaKnzf_aCdkyjZM77E"),
        22.74,
        93.37,
    ),
    OfficialCheckpoint(
        "swin_transformer_small",
        2,
        "OpenGprahAU-SwinS_second_stage.pth",
        _DRIVE.format("1e4Z_hYxpWaa8sJ8087HVym8eMNbOH6WG"),
        22.99,
        93.37,
    ),
    OfficialCheckpoint(
        "swin_transformer_base",
        2,
        "OpenGprahAU-SwinB_second_stage.pth",
        _DRIVE.format("1hVGpSabBZv40n2_ZTRis-Gc4ArYc-v30"),
        24.14,
        93.25,
    ),
    OfficialCheckpoint(
        "mae",
        2,
        "OpenGprahAU-MAEViT_second_stage.pth",
        _DRIVE.format("1yE_kvSCxHC3ULsJYQU22g0LuNTjNeijP"),
        25.29,
        93.76,
    ),
)


class CheckpointNotFound(CheckpointError):
    """No checkpoint was named and the folder gives none, or several: `candidates` lists them."""

    def __init__(self, reason: str, *, folder: Path, candidates: tuple[Path, ...] = ()) -> None:
        self.folder, self.candidates = folder, candidates
        super().__init__(reason, param="checkpoint_dir", value=f"{folder}/")


def official_checkpoint(path: str | Path) -> OfficialCheckpoint | None:
    """The official row whose file name `path` has, if any."""
    name = Path(path).name
    return next((c for c in OFFICIAL_CHECKPOINTS if c.filename == name), None)


def download_links() -> str:
    """The official links on one line."""
    return "; ".join(f"{c.arch} stage {c.stage}: {c.url}" for c in OFFICIAL_CHECKPOINTS if c.url)


def find_checkpoint(folder: Path, arch: str | None, stage: int | None) -> Path:
    """The checkpoint in `folder` for arch/stage: the official file name if present, else the
    only file there. None, or several and no way to choose, is CheckpointNotFound."""
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
        raise CheckpointNotFound(
            "no checkpoint there; put an official OpenGraphAU checkpoint "
            f"in it (any name ending in .pth). Downloads: {download_links()}",
            folder=folder,
        )
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
