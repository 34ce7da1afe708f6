"""Shared fixtures: official-layout checkpoints with random weights."""
from __future__ import annotations

from pathlib import Path

import pytest

from factories import write_official_checkpoint


@pytest.fixture(scope="session")
def resnet18_s1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An official-layout ResNet-18 stage-1 checkpoint with random weights."""
    return write_official_checkpoint("resnet18", 1, tmp_path_factory.mktemp("ck") / "r18s1.pth",
                                     calibrate=True)


@pytest.fixture(scope="session")
def resnet18_s2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_official_checkpoint("resnet18", 2, tmp_path_factory.mktemp("ck") / "r18s2.pth",
                                     calibrate=True)
