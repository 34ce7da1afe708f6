"""The official OpenGraphAU checkpoints: one row per released file, with its short name.

`checkpoints/README.md` and `opengraphau models` show the same rows; a test keeps the README in
step.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError

_DRIVE_VIEW = "https://drive.google.com/file/d/{}/view"
#: Google Drive's direct download: `confirm=t` skips the "cannot scan for viruses" page that
#: files over 100 MB otherwise get; a page served anyway is recognised by the fetcher.
DRIVE_DOWNLOAD = "https://drive.usercontent.google.com/download?id={}&export=download&confirm=t"


@dataclass(frozen=True)
class OfficialCheckpoint:
    """One released OpenGraphAU file, as listed in the reference README (F1 and accuracy in %
    on its hybrid test set)."""

    name: str
    """What a user types: `--model resnet50-s2`, `opengraphau download swin-b-s1`."""
    arch: str
    stage: int
    filename: str
    drive_id: str | None
    """None: the reference README gives no link (the file is known to exist)."""
    f1: float | None
    acc: float | None

    @property
    def url(self) -> str | None:
        """The page to open in a browser."""
        return _DRIVE_VIEW.format(self.drive_id) if self.drive_id else None

    @property
    def download_url(self) -> str | None:
        return DRIVE_DOWNLOAD.format(self.drive_id) if self.drive_id else None


def _row(
    name: str, arch: str, stage: int, file: str, drive_id: str | None, f1=None, acc=None
) -> OfficialCheckpoint:
    filename = f"OpenGprahAU-{file}_{'first' if stage == 1 else 'second'}_stage.pth"
    return OfficialCheckpoint(name, arch, stage, filename, drive_id, f1, acc)


#: The released checkpoints. ResNet-101 files exist but the reference README gives no link.
OFFICIAL_CHECKPOINTS: tuple[OfficialCheckpoint, ...] = (
    _row(
        "resnet18-s1", "resnet18", 1, "ResNet18", "1b9yrKF663K9IwY2C2-1SD6azpAdNgBm7", 22.33, 92.97
    ),
    _row(
        "resnet50-s1", "resnet50", 1, "ResNet50", "11xh9r2e4qCpWEtQ-ptJGWut_TQ0_AmSp", 22.52, 92.63
    ),
    _row("resnet101-s1", "resnet101", 1, "ResNet101", None),
    _row(
        "swin-t-s1",
        "swin_transformer_tiny",
        1,
        "SwinT",
        "1JSa-ft965qXJlVGvnoMepbkRkSm78_to",
        22.66,
        92.97,
    ),
    _row(
        "swin-s-s1",
        "swin_transformer_small",
        1,
        "SwinS",
        "1GNjFKpd00nvgYIP2q7AzRSzfzEUfAqfT",
        24.49,
        92.84,
    ),
    _row(
        "swin-b-s1",
        "swin_transformer_base",
        1,
        "SwinB",
        "1nWwowmq4pQn1ACnSOOeyBy6-n0rmqTQ9",
        23.53,
        92.91,
    ),
    _row("mae-s1", "mae", 1, "MAEViT", "126i4dn6u0v-npYR8UaIM8migdSsI5u__", 24.05, 93.47),
    _row(
        "resnet18-s2", "resnet18", 2, "ResNet18", "1CzWgr2ywt7TmxHLWM5tg1VaEbgGYyAZ4", 22.51, 93.23
    ),
    _row(
        "resnet50-s2", "resnet50", 2, "ResNet50", "1UMnpbj_YKlqHF1m0DHV0KYD3qmcOmeXp", 23.24, 93.31
    ),
    _row("resnet101-s2", "resnet101", 2, "ResNet101", None),
    _row(
        "swin-t-s2",
        "swin_transformer_tiny",
        2,
        "SwinT",
        "1yRWnYY5BR_FDiquaKnzf_aCdkyjZM77E",
        22.74,
        93.37,
    ),
    _row(
        "swin-s-s2",
        "swin_transformer_small",
        2,
        "SwinS",
        "1e4Z_hYxpWaa8sJ8087HVym8eMNbOH6WG",
        22.99,
        93.37,
    ),
    _row(
        "swin-b-s2",
        "swin_transformer_base",
        2,
        "SwinB",
        "1hVGpSabBZv40n2_ZTRis-Gc4ArYc-v30",
        24.14,
        93.25,
    ),
    _row("mae-s2", "mae", 2, "MAEViT", "1yE_kvSCxHC3ULsJYQU22g0LuNTjNeijP", 25.29, 93.76),
)

DEFAULT_MODEL = "resnet50-s2"
"""Used when a run names no model or checkpoint: the reference's headline backbone with the
paper's full (MEFL) head; on a CPU it runs about as fast as stage 1."""


def official_by_name(name: str) -> OfficialCheckpoint:
    """The row called `name`; ConfigError listing the names otherwise."""
    for row in OFFICIAL_CHECKPOINTS:
        if row.name == name:
            return row
    raise ConfigError(
        f"no official model of that name; choose one of {', '.join(model_names())}",
        param="model",
        value=name,
    )


def model_names() -> tuple[str, ...]:
    return tuple(row.name for row in OFFICIAL_CHECKPOINTS)
