"""Shared test set-up: the repository on sys.path and checkpoint/image factories."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from factories import KEYS_DIR, write_official_checkpoint  # noqa: E402


@pytest.fixture(scope="session")
def resnet18_s1(keys_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An official-layout ResNet-18 stage-1 checkpoint with random weights."""
    return write_official_checkpoint("resnet18", 1, tmp_path_factory.mktemp("ck") / "r18s1.pth")


@pytest.fixture(scope="session")
def resnet18_s2(keys_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_official_checkpoint("resnet18", 2, tmp_path_factory.mktemp("ck") / "r18s2.pth")


@pytest.fixture(scope="session")
def keys_dir() -> Path:
    if not KEYS_DIR.is_dir():
        pytest.skip(f"{KEYS_DIR} (the official key lists beside the repository) is not here")
    return KEYS_DIR
