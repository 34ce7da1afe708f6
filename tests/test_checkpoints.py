"""Loading official checkpoints: all 14 layouts strictly, and every kind of bad file."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from factories import ROOT, official_state_dict, write_official_checkpoint
from opengraphau.errors import CheckpointError
from opengraphau.model import detect_arch_stage, load_model
from opengraphau.model.checkpoint import read_state_dict
from opengraphau.model.optimize import optimize_for_inference
from opengraphau.model.variants import ARCHS

VARIANTS = [(arch, stage) for arch in ARCHS for stage in (1, 2)]


@pytest.mark.parametrize("arch,stage", VARIANTS)
def test_official_layout_loads_strictly_and_is_detected(
    arch: str, stage: int, tmp_path: Path
) -> None:
    path = write_official_checkpoint(arch, stage, tmp_path / "official.pth")
    raw = torch.load(path, weights_only=True)["state_dict"]
    model = load_model(path, optimize=False)
    assert (model.arch, model.stage) == (arch, stage)
    ours = model.state_dict()
    # Every official tensor arrives where the conversion says it should.
    assert torch.equal(ours["head.main_sc"], raw["module.head.main_sc"])
    for i in (0, 13, 26):
        assert torch.equal(
            ours["head.au_linears.weight"][i], raw[f"module.head.main_class_linears.{i}.fc.weight"]
        )
        assert torch.equal(
            ours["head.au_linears.bn_var"][i],
            raw[f"module.head.main_class_linears.{i}.bn.running_var"],
        )
    if arch.startswith("swin"):  # original: merge at the end of stage k; timm: start of k + 1
        assert torch.equal(
            ours["backbone.layers.1.downsample.reduction.weight"],
            raw["module.backbone.layers.0.downsample.reduction.weight"],
        )
    if arch == "mae":
        q = raw["module.backbone.encoder.blocks.3.attn.q_bias"]
        v = raw["module.backbone.encoder.blocks.3.attn.v_bias"]
        assert torch.equal(
            ours["backbone.blocks.3.attn.qkv.bias"], torch.cat([q, torch.zeros_like(q), v])
        )
    fast = optimize_for_inference(model)  # what load_model returns by default
    with torch.no_grad():
        out = fast(torch.randn(1, 3, 224, 224))
    assert out.shape == (1, 41) and torch.isfinite(out).all()


def test_bare_state_dict_without_prefix(tmp_path: Path) -> None:
    state = {k.removeprefix("module."): v for k, v in official_state_dict("resnet18", 2).items()}
    torch.save(state, tmp_path / "bare.pth")
    model = load_model(tmp_path / "bare.pth", arch="resnet18", stage=2)
    assert (model.arch, model.stage) == ("resnet18", 2)


def test_module_prefix_is_stripped_only_at_the_start(tmp_path: Path) -> None:
    torch.save(
        {"state_dict": {"module.a.weight": torch.zeros(1), "b.module.c": torch.zeros(1)}},
        tmp_path / "x.pth",
    )
    assert set(read_state_dict(tmp_path / "x.pth")) == {"a.weight", "b.module.c"}


def test_detection_rejects_foreign_models() -> None:
    import torchvision

    state = torchvision.models.resnet18(weights=None).state_dict()
    assert detect_arch_stage(state) is None


def _error(path: Path, **kw) -> str:
    with pytest.raises(CheckpointError) as info:
        load_model(path, **kw)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


def test_arch_or_stage_mismatch_says_what_the_file_holds(resnet18_s1: Path) -> None:
    message = _error(resnet18_s1, arch="resnet50")
    assert "holds a resnet18 stage-1 model" in message
    message = _error(resnet18_s1, stage=2)
    assert "holds a resnet18 stage-1 model" in message


class _Evil:
    """Unpickling this would create a file."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_pickle_that_runs_code_is_refused_and_never_runs(tmp_path: Path) -> None:
    target = tmp_path / "pwned.txt"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "payload": _Evil(str(target))}, path)
    with open(tmp_path / "plain.pkl", "wb") as f:  # a plain pickle, not even a torch file
        pickle.dump(_Evil(str(target)), f)
    assert "refused" in _error(path)
    _error(tmp_path / "plain.pkl")
    assert not target.exists()


def test_bad_files_give_one_clear_line(tmp_path: Path, resnet18_s1: Path) -> None:
    assert "no such checkpoint" in _error(tmp_path / "missing.pth")
    assert "folder" in _error(tmp_path)
    data = resnet18_s1.read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    assert "truncated" in _error(tmp_path / "cut.pth")
    (tmp_path / "noise.pth").write_bytes(bytes(range(256)) * 50)
    _error(tmp_path / "noise.pth")
    (tmp_path / "empty.pth").write_bytes(b"")
    _error(tmp_path / "empty.pth")
    torch.save({"epoch": 3, "lr": 0.1}, tmp_path / "nodict.pth")
    assert "not a model checkpoint" in _error(tmp_path / "nodict.pth")
    import torchvision

    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "tv.pth")
    assert "not an OpenGraphAU checkpoint" in _error(tmp_path / "tv.pth")


def test_missing_or_misshaped_tensor_is_an_error_not_random_output(tmp_path: Path) -> None:
    state = official_state_dict("resnet18", 1)
    del state["module.head.sub_sc"]
    torch.save({"state_dict": state}, tmp_path / "missing.pth")
    assert "1 missing (e.g. head.sub_sc)" in _error(tmp_path / "missing.pth")
    state = official_state_dict("resnet18", 1)
    state["module.head.gnn.U.weight"] = torch.zeros(10, 10)
    torch.save({"state_dict": state}, tmp_path / "shape.pth")
    assert "wrong shape (e.g. head.gnn.U.weight" in _error(tmp_path / "shape.pth")
    state = official_state_dict("resnet18", 1)
    del state["module.head.main_class_linears.5.fc.bias"]
    torch.save({"state_dict": state}, tmp_path / "au.pth")
    assert "missing (e.g. head.au_linears.bias)" in _error(tmp_path / "au.pth")


def _cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "demo.py"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_bad_checkpoints_exit_2_with_one_line(resnet18_s1: Path, tmp_path: Path) -> None:
    image = ROOT / "demo_imgs" / "astronaut_face.jpg"
    (tmp_path / "noise.pth").write_bytes(b"\x00garbage" * 100)
    cases = [
        ("--resume", str(tmp_path / "missing.pth")),
        ("--resume", str(tmp_path / "noise.pth")),
        ("--resume", str(resnet18_s1), "--arc", "swin_transformer_tiny"),
    ]
    for case in cases:
        result = _cli(
            *case, "--input", str(image), "--no-detect", "--output-dir", str(tmp_path / "o")
        )
        assert result.returncode == 2, result.stderr
        lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
        assert lines[0].startswith("demo.py: error: ")


@pytest.mark.parametrize("arch,stage", [("resnet18", 2), ("swin_transformer_tiny", 1)])
def test_loading_skips_the_random_init_and_loses_nothing(
    arch: str, stage: int, tmp_path: Path
) -> None:
    """The structure a checkpoint fills is built on the meta device (no random init to throw
    away) where nothing else is made at construction: every tensor ends up real, and the
    model computes what the eagerly built one loaded with the same weights computes."""
    from factories import face_photos
    from opengraphau.model import build_model, checkpoint_filter_fn

    path = write_official_checkpoint(arch, stage, tmp_path / "m.pth", calibrate=True)
    loaded = load_model(path, optimize=False)
    eager = build_model(arch=arch, stage=stage)
    eager.load_state_dict(checkpoint_filter_fn(read_state_dict(path), arch), strict=True)
    for module in loaded.modules():
        held = [*module.parameters(recurse=False), *module.buffers(recurse=False)]
        held += [v for v in vars(module).values() if isinstance(v, torch.Tensor)]
        assert all(t.device.type == "cpu" for t in held), type(module).__name__
    x = face_photos(2)
    with torch.inference_mode():
        assert torch.equal(loaded(x), eager(x))
