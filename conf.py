"""Static configuration: the 41 action units, the model variants and the official checkpoints.

Everything here is plain data, so importing it is free and has no side effects.
"""
from __future__ import annotations

from dataclasses import dataclass

#: Ids of the 27 main AUs followed by the 14 left/right AUs, in the models' output order.
AU_IDS: tuple[str, ...] = (
    "1", "2", "4", "5", "6", "7", "9", "10", "11", "12", "13", "14", "15", "16", "17", "18", "19",
    "20", "22", "23", "24", "25", "26", "27", "32", "38", "39",
    "L1", "R1", "L2", "R2", "L4", "R4", "L6", "R6", "L10", "R10", "L12", "R12", "L14", "R14",
)

AU_NAMES: tuple[str, ...] = (
    "Inner brow raiser", "Outer brow raiser", "Brow lowerer", "Upper lid raiser", "Cheek raiser",
    "Lid tightener", "Nose wrinkler", "Upper lip raiser", "Nasolabial deepener", "Lip corner puller",
    "Sharp lip puller", "Dimpler", "Lip corner depressor", "Lower lip depressor", "Chin raiser",
    "Lip pucker", "Tongue show", "Lip stretcher", "Lip funneler", "Lip tightener", "Lip pressor",
    "Lips part", "Jaw drop", "Mouth stretch", "Lip bite", "Nostril dilator", "Nostril compressor",
    "Left inner brow raiser", "Right inner brow raiser", "Left outer brow raiser",
    "Right outer brow raiser", "Left brow lowerer", "Right brow lowerer", "Left cheek raiser",
    "Right cheek raiser", "Left upper lip raiser", "Right upper lip raiser",
    "Left nasolabial deepener", "Right nasolabial deepener", "Left dimpler", "Right dimpler",
)

#: Column names used in every output file ("AU1", ..., "AUR14").
AU_COLUMNS: tuple[str, ...] = tuple(f"AU{i}" for i in AU_IDS)

NUM_MAIN_AUS = 27
NUM_SUB_AUS = 14
#: For each left/right pair, the index of the main AU it refines (AU1, AU2, AU4, AU6, AU10, AU12, AU14).
SUB_AU_PARENTS: tuple[int, ...] = (0, 1, 2, 4, 7, 8, 11)

ARCHS: tuple[str, ...] = (
    "resnet18", "resnet50", "resnet101",
    "swin_transformer_tiny", "swin_transformer_small", "swin_transformer_base", "mae",
)
STAGES: tuple[int, ...] = (1, 2)


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
    OfficialCheckpoint("resnet18", 1, "OpenGprahAU-ResNet18_first_stage.pth",
                       _DRIVE.format("1b9yrKF663K9IwY2C2-1SD6azpAdNgBm7"), 22.33, 92.97),
    OfficialCheckpoint("resnet50", 1, "OpenGprahAU-ResNet50_first_stage.pth",
                       _DRIVE.format("11xh9r2e4qCpWEtQ-ptJGWut_TQ0_AmSp"), 22.52, 92.63),
    OfficialCheckpoint("resnet101", 1, "OpenGprahAU-ResNet101_first_stage.pth", None, None, None),
    OfficialCheckpoint("swin_transformer_tiny", 1, "OpenGprahAU-SwinT_first_stage.pth",
                       _DRIVE.format("1JSa-ft965qXJlVGvnoMepbkRkSm78_to"), 22.66, 92.97),
    OfficialCheckpoint("swin_transformer_small", 1, "OpenGprahAU-SwinS_first_stage.pth",
                       _DRIVE.format("1GNjFKpd00nvgYIP2q7AzRSzfzEUfAqfT"), 24.49, 92.84),
    OfficialCheckpoint("swin_transformer_base", 1, "OpenGprahAU-SwinB_first_stage.pth",
                       _DRIVE.format("1nWwowmq4pQn1ACnSOOeyBy6-n0rmqTQ9"), 23.53, 92.91),
    OfficialCheckpoint("mae", 1, "OpenGprahAU-MAEViT_first_stage.pth",
                       _DRIVE.format("126i4dn6u0v-npYR8UaIM8migdSsI5u__"), 24.05, 93.47),
    OfficialCheckpoint("resnet18", 2, "OpenGprahAU-ResNet18_second_stage.pth",
                       _DRIVE.format("1CzWgr2ywt7TmxHLWM5tg1VaEbgGYyAZ4"), 22.51, 93.23),
    OfficialCheckpoint("resnet50", 2, "OpenGprahAU-ResNet50_second_stage.pth",
                       _DRIVE.format("1UMnpbj_YKlqHF1m0DHV0KYD3qmcOmeXp"), 23.24, 93.31),
    OfficialCheckpoint("resnet101", 2, "OpenGprahAU-ResNet101_second_stage.pth", None, None, None),
    OfficialCheckpoint("swin_transformer_tiny", 2, "OpenGprahAU-SwinT_second_stage.pth",
                       _DRIVE.format("1yRWnYY5BR_FDiquaKnzf_aCdkyjZM77E"), 22.74, 93.37),
    OfficialCheckpoint("swin_transformer_small", 2, "OpenGprahAU-SwinS_second_stage.pth",
                       _DRIVE.format("1e4Z_hYxpWaa8sJ8087HVym8eMNbOH6WG"), 22.99, 93.37),
    OfficialCheckpoint("swin_transformer_base", 2, "OpenGprahAU-SwinB_second_stage.pth",
                       _DRIVE.format("1hVGpSabBZv40n2_ZTRis-Gc4ArYc-v30"), 24.14, 93.25),
    OfficialCheckpoint("mae", 2, "OpenGprahAU-MAEViT_second_stage.pth",
                       _DRIVE.format("1yE_kvSCxHC3ULsJYQU22g0LuNTjNeijP"), 25.29, 93.76),
)

#: Where the CLI looks for checkpoints when --resume is not given.
CHECKPOINT_DIR = "checkpoints"
#: File suffixes accepted as checkpoints in CHECKPOINT_DIR.
CHECKPOINT_SUFFIXES: tuple[str, ...] = (".pth", ".pt", ".ckpt")
