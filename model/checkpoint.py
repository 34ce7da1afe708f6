"""Reading official OpenGraphAU checkpoints safely and strictly.

The official files are `{'epoch', 'state_dict': {'module.' + key: tensor}, 'optimizer', ...}`
saved from a DataParallel model. They are read with `weights_only=True` (a pickle that would run
code is refused before any of it runs), converted to this package's layout by the pure
`checkpoint_filter_fn`, and loaded strictly: every tensor the model needs must come from the
file with the right shape.
"""
from __future__ import annotations

import pickle
import re
import zipfile
from collections import defaultdict
from pathlib import Path

import torch

from conf import NUM_MAIN_AUS

from . import mae, resnet, swin
from .opengraphau import OpenGraphAU, build_model
from .optimize import InferenceModel, check_precision, optimize_for_inference

_BACKBONE_FILTERS = {
    "resnet": resnet.checkpoint_filter_fn,
    "swin": swin.checkpoint_filter_fn,
    "mae": mae.checkpoint_filter_fn,
}
_AU_BLOCK = re.compile(r"^head\.main_class_linears\.(\d+)\.(fc|bn)\.(\w+)$")
_AU_FIELDS = {("fc", "weight"): "weight", ("fc", "bias"): "bias", ("bn", "weight"): "bn_weight",
              ("bn", "bias"): "bn_bias", ("bn", "running_mean"): "bn_mean",
              ("bn", "running_var"): "bn_var"}


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message is one line naming the file."""


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The file's tensors with any DataParallel `module.` prefix removed."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint file; check the path given to --resume")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except PermissionError:
        raise CheckpointError(f"{path}: permission denied; make the file readable") from None
    except pickle.UnpicklingError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else "unsafe pickle"
        if "weights_only" in str(exc) or "Unsupported" in str(exc):
            reason = "it holds Python objects that would run code when loaded, so it was refused"
        raise CheckpointError(f"{path}: not a safe PyTorch checkpoint: {reason}") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: unreadable or truncated checkpoint ({first}); "
                              "download it again") from None
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not state or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise CheckpointError(f"{path}: not a model checkpoint (no 'state_dict' of tensors found)")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _count_blocks(state: dict[str, torch.Tensor], prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return len({m.group(1) for k in state if (m := pattern.match(k))})


def detect_arch_stage(state: dict[str, torch.Tensor]) -> tuple[str, int] | None:
    """(arch, stage) that a state dict holds, from its keys and shapes; None if not OpenGraphAU."""
    if "backbone.encoder.patch_embed.proj.weight" in state or (
            "backbone.patch_embed.proj.weight" in state and "backbone.blocks.0.attn.qkv.weight" in state):
        arch = "mae"
    elif "backbone.patch_embed.proj.weight" in state and "backbone.layers.0.blocks.0.norm1.weight" in state:
        width = state["backbone.patch_embed.proj.weight"].shape[0]
        depth = _count_blocks(state, "backbone.layers.2.blocks.")
        arch = {(96, 6): "swin_transformer_tiny", (96, 18): "swin_transformer_small",
                (128, 18): "swin_transformer_base"}.get((width, depth), "")
    elif "backbone.conv1.weight" in state:
        if "backbone.layer1.0.conv3.weight" in state:
            arch = {6: "resnet50", 23: "resnet101"}.get(_count_blocks(state, "backbone.layer3."), "")
        else:
            arch = {2: "resnet18"}.get(_count_blocks(state, "backbone.layer3."), "")
    else:
        arch = ""
    if "head.gnn.graph_layers.0.U.weight" in state or "head.edge_extractor.bn.weight" in state:
        stage = 2
    elif "head.gnn.U.weight" in state:
        stage = 1
    else:
        stage = 0
    return (arch, stage) if arch and stage else None


def _stack_au_blocks(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """27 `main_class_linears.{i}` LinearBlocks -> stacked `au_linears` tensors."""
    fields: dict[str, dict[int, torch.Tensor]] = defaultdict(dict)
    rest = {}
    for key, value in state.items():
        match = _AU_BLOCK.match(key)
        if match and (match.group(2), match.group(3)) in _AU_FIELDS:
            fields[_AU_FIELDS[match.group(2), match.group(3)]][int(match.group(1))] = value
        elif not (match and match.group(3) == "num_batches_tracked"):
            rest[key] = value
    out = dict(rest)
    for name, per_au in fields.items():
        shapes = {v.shape for v in per_au.values()}
        if sorted(per_au) == list(range(NUM_MAIN_AUS)) and len(shapes) == 1:
            out[f"head.au_linears.{name}"] = torch.stack([per_au[i] for i in range(NUM_MAIN_AUS)])
        else:  # incomplete or inconsistent: keep the originals so the strict load names them
            for i, value in per_au.items():
                out[f"head.main_class_linears.{i}.{name}"] = value
    return out


def checkpoint_filter_fn(state: dict[str, torch.Tensor], arch: str) -> dict[str, torch.Tensor]:
    """Official layout (without `module.`) -> this package's layout, for the given backbone."""
    family = "resnet" if arch.startswith("resnet") else "swin" if arch.startswith("swin") else "mae"
    backbone = {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}
    out = {"backbone." + k: v for k, v in _BACKBONE_FILTERS[family](backbone).items()}
    out.update(_stack_au_blocks({k: v for k, v in state.items() if not k.startswith("backbone.")}))
    return out


def _strict_problems(state: dict[str, torch.Tensor], model: OpenGraphAU) -> str:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {list(state[k].shape)} vs {list(v.shape)}" for k, v in expected.items()
             if k in state and state[k].shape != v.shape]
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
        if items:
            parts.append(f"{len(items)} {label} (e.g. {items[0]})")
    return "; ".join(parts)


def load_model(path: str | Path, arch: str | None = None, stage: int | None = None,
               device: str | torch.device = "cpu", *, optimize: bool = True,
               precision: str = "fp32") -> InferenceModel | OpenGraphAU:
    """Build the model a checkpoint holds and load it strictly; eval mode, on `device`.

    `arch`/`stage` default to what the file holds; when given and the file says otherwise a
    CheckpointError says what the file holds. By default the result is the fast inference
    module of `model.optimize` (fp32 unless `precision` says bf16/fp16; ValueError if that
    cannot run on `device`); `optimize=False` gives the plain eager `OpenGraphAU` (for
    training, export or inspection), which is fp32 only.
    """
    if optimize:
        check_precision(precision, device)
    elif precision != "fp32":
        raise ValueError(f"precision {precision!r} needs optimize=True; the plain model is fp32")
    state = read_state_dict(path)
    found = detect_arch_stage(state)
    if found is None:
        raise CheckpointError(f"{path}: not an OpenGraphAU checkpoint (its keys match none of the "
                              "7 backbones with a stage-1 or stage-2 head)")
    if (arch and arch != found[0]) or (stage and stage != found[1]):
        raise CheckpointError(f"{path}: holds a {found[0]} stage-{found[1]} model, not "
                              f"{arch or found[0]} stage-{stage or found[1]}; pass --arc {found[0]} "
                              f"--stage {found[1]} or leave both out")
    model = build_model(arch=found[0], stage=found[1])
    state = checkpoint_filter_fn(state, found[0])
    problems = _strict_problems(state, model)
    if problems:
        raise CheckpointError(f"{path}: does not match the {found[0]} stage-{found[1]} model: "
                              f"{problems}")
    model.load_state_dict(state, strict=True)
    model = model.to(device).eval()
    return optimize_for_inference(model, precision=precision, inplace=True) if optimize else model
