"""Builders for test inputs and readers of outputs: official-layout checkpoints, a fake
camera, the rows of predictions.csv."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import torch

from conf import AU_COLUMNS

ROOT = Path(__file__).resolve().parents[1]
#: `../shared/checkpoint-keys/ARCH_stageN.json`: [[key, shape], ...] of the official files.
KEYS_DIR = ROOT.parent / "shared" / "checkpoint-keys"


def official_keys(arch: str, stage: int) -> list[tuple[str, list[int]]]:
    return [(k, s) for k, s in json.loads((KEYS_DIR / f"{arch}_stage{stage}.json").read_text())]


def random_tensor(key: str, shape: list[int], gen: torch.Generator) -> torch.Tensor:
    """Random values a trained network could hold (BatchNorm variances positive)."""
    if not shape:
        return torch.tensor(7)
    if key.endswith("running_var"):
        return torch.rand(shape, generator=gen) + 0.5
    if key.endswith("relative_position_index"):
        return torch.randint(0, 169, shape, generator=gen)
    return torch.randn(shape, generator=gen) * 0.05


def official_state_dict(arch: str, stage: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """`module.`-prefixed random state dict with exactly the official keys and shapes."""
    gen = torch.Generator().manual_seed(seed)
    return {"module." + k: random_tensor(k, s, gen) for k, s in official_keys(arch, stage)}


def write_official_checkpoint(arch: str, stage: int, path: Path, seed: int = 0) -> Path:
    """A file laid out like the released ones: epoch, state_dict and an AdamW optimizer state."""
    state = official_state_dict(arch, stage, seed)
    params = [torch.nn.Parameter(torch.zeros(3))]
    optimizer = torch.optim.AdamW(params, lr=1e-5)
    params[0].grad = torch.ones(3)
    optimizer.step()
    torch.save({"epoch": 19, "state_dict": state, "optimizer": optimizer.state_dict()}, path)
    return path


class FakeCamera:
    """A camera for `VideoSource(capture_factory=...)` that always has a frame; counts reads
    and records release(). Frame n (from 1) is `frame(n)`: override it to tell frames apart."""

    def __init__(self) -> None:
        self.reads, self.released = 0, False

    def frame(self, n: int) -> np.ndarray:
        return np.full((120, 160, 3), (n * 7) % 256, np.uint8)

    def isOpened(self) -> bool:
        return True

    def read(self) -> tuple[bool, np.ndarray]:
        self.reads += 1
        return True, self.frame(self.reads)

    def get(self, prop: int) -> float:
        return 30.0 if prop == cv2.CAP_PROP_FPS else 0.0

    def release(self) -> None:
        self.released = True


def read_rows(out: Path) -> list[dict[str, str]]:
    """The rows of `out/predictions.csv`, each a dict by column name."""
    with open(out / "predictions.csv", newline="") as f:
        return list(csv.DictReader(f))


def probs_of(rows: list[dict[str, str]]) -> np.ndarray:
    """(rows, 41) AU probabilities of CSV rows."""
    return np.array([[float(r[c]) for c in AU_COLUMNS] for r in rows])
