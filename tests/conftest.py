"""Shared fixtures: official-layout checkpoints with random weights."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from factories import BANNER, FAST, Demo, Result, run_main, write_official_checkpoint


@pytest.fixture(scope="session", autouse=True)
def _no_network_model_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No test reaches the network or the user's model cache: an empty cache of the session's
    own, offline (tests of fetching set their own cache and a loopback mirror)."""
    saved = {
        k: os.environ.get(k)
        for k in ("OPENGRAPHAU_HOME", "OPENGRAPHAU_OFFLINE", "OPENGRAPHAU_MIRROR")
    }
    os.environ["OPENGRAPHAU_HOME"] = str(tmp_path_factory.mktemp("model-cache"))
    os.environ["OPENGRAPHAU_OFFLINE"] = "1"
    os.environ.pop("OPENGRAPHAU_MIRROR", None)
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def resnet18_s1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An official-layout ResNet-18 stage-1 checkpoint with random weights."""
    return write_official_checkpoint(
        "resnet18", 1, tmp_path_factory.mktemp("ck") / "r18s1.pth", calibrate=True
    )


@pytest.fixture(scope="session")
def resnet18_s2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_official_checkpoint(
        "resnet18", 2, tmp_path_factory.mktemp("ck") / "r18s2.pth", calibrate=True
    )


@pytest.fixture
def demo(capsys: pytest.CaptureFixture) -> Demo:
    """Runs the command line in this process (`factories.Demo`): its exit status and stderr's
    lines, which never hold a traceback."""

    def run(
        out: Path, *inputs: str | Path, extra: tuple[str, ...] = (), flags: tuple[str, ...] = FAST
    ) -> Result:
        again = () if "--skip-existing" in extra else ("--overwrite",)
        args = (*flags, *again, "--output-dir", str(out), "--input", *map(str, inputs), *extra)
        code = run_main(*args)
        captured = capsys.readouterr()
        assert "Traceback" not in captured.err
        return Result(code, [ln for ln in captured.err.splitlines() if ln != BANNER], captured.out)

    return run


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """An empty folder for a case's inputs (tmp_path/data); its outputs go elsewhere."""
    folder = tmp_path / "data"
    folder.mkdir()
    return folder
