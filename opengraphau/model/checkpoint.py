"""Reading official OpenGraphAU checkpoints safely and strictly.

The official files are `{'epoch', 'state_dict': {'module.' + key: tensor}, 'optimizer', ...}`
saved from a DataParallel model. They are read with `weights_only=True` (a pickle that would run
code is refused before any of it runs), every tensor is checked (dense, real, floating point and
finite where the model holds floats), the layout is converted to this package's by the pure
`checkpoint_filter_fn`, and the model is loaded strictly: every tensor it needs must come from the
file with the right shape.
"""

from __future__ import annotations

import pickle
import re
import warnings
import zipfile
from collections import defaultdict
from pathlib import Path
from typing import Literal, overload

import torch

from ..aus import NUM_MAIN_AUS
from ..errors import CheckpointError, ConfigError, describe
from .opengraphau import OpenGraphAU, build_model
from .optimize import InferenceModel, check_precision, optimize_for_inference
from .variants import VARIANTS, get_variant

_AU_BLOCK = re.compile(r"^head\.main_class_linears\.(\d+)\.(fc|bn)\.(\w+)$")
_AU_FIELDS = {
    ("fc", "weight"): "weight",
    ("fc", "bias"): "bias",
    ("bn", "weight"): "bn_weight",
    ("bn", "bias"): "bn_bias",
    ("bn", "running_mean"): "bn_mean",
    ("bn", "running_var"): "bn_var",
}
#: Integer tensors the official files hold on purpose: counters and index tables.
_INTEGER_KEYS = ("num_batches_tracked", "relative_position_index")


def _fail(path: Path, reason: str) -> CheckpointError:
    return CheckpointError(reason, param="checkpoint", value=path)


def _unpickle(path: Path) -> object:
    """`torch.load(weights_only=True)`, every failure turned into one line naming the file."""
    if not path.exists():
        raise _fail(path, "no such checkpoint file; check the path")
    if path.is_dir():
        raise _fail(path, "is a folder, not a checkpoint file")
    if not path.is_file():
        raise _fail(path, "is not a regular file (a pipe or a device?); give a checkpoint file")
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as exc:
        raise _fail(path, f"cannot be read ({exc.strerror or exc})") from None
    if not head:
        raise _fail(path, "is empty (0 bytes); download it again")
    if not head.startswith((b"PK\x03\x04", b"\x80")):  # torch.save: a zip, or (old) a pickle
        raise _fail(
            path,
            "not a PyTorch checkpoint (it is neither the zip archive nor the pickle "
            "torch.save writes: a text, JSON or other file)",
        )
    try:
        with warnings.catch_warnings():  # the unpickler's warnings would break stderr's lines
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except PermissionError:
        raise _fail(path, "permission denied; make the file readable") from None
    except pickle.UnpicklingError as exc:
        if "unsupported global" in str(exc).lower():
            raise _fail(
                path,
                "not a safe PyTorch checkpoint: it holds Python objects that would "
                "run code when loaded, so it was refused",
            ) from None
        raise _fail(
            path,
            "not a PyTorch checkpoint (damaged, or a pickle of something else); download it again",
        ) from None
    except Exception as exc:  # noqa: BLE001 - the unpickler raises anything on a foreign file
        first = describe(exc).split(". ")[0].rstrip(".")  # torch adds paragraphs of advice
        kind = (
            "unreadable or truncated checkpoint"
            if isinstance(exc, (RuntimeError, EOFError, OSError, zipfile.BadZipFile))
            else "not a PyTorch checkpoint"
        )
        raise _fail(path, f"{kind} ({first}); download it again") from None


def _check_tensor(path: Path, key: str, value: torch.Tensor) -> None:
    """Refuse a tensor the model could not use as it is, naming it."""
    if value.layout != torch.strided:
        raise _fail(path, f"tensor {key} is sparse ({value.layout}); save dense tensors")
    if value.is_meta:
        raise _fail(path, f"tensor {key} has no data (a meta tensor); save the real weights")
    if key.endswith(_INTEGER_KEYS):
        return
    if not value.is_floating_point():
        raise _fail(path, f"tensor {key} holds {value.dtype}, not floating-point weights")
    if not bool(torch.isfinite(value).all()):
        bad = int((~torch.isfinite(value)).sum())
        raise _fail(
            path,
            f"tensor {key} holds {bad} NaN or infinite values; the file is "
            "damaged or from a diverged training run",
        )


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The file's tensors with any DataParallel `module.` prefix removed, each checked."""
    path = Path(path)
    obj = _unpickle(path)
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if (
        not isinstance(state, dict)
        or not state
        or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())
    ):
        raise _fail(path, "not a model checkpoint (no 'state_dict' of tensors found)")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    for key, value in state.items():
        _check_tensor(path, key, value)
    return state


def detect_arch_stage(state: dict[str, torch.Tensor]) -> tuple[str, int] | None:
    """(arch, stage) that a state dict holds, from its keys and shapes; None if not OpenGraphAU."""
    archs = [v.arch for v in VARIANTS.values() if v.family_module().matches(v, state)]
    if "head.gnn.graph_layers.0.U.weight" in state or "head.edge_extractor.bn.weight" in state:
        stage = 2
    elif "head.gnn.U.weight" in state:
        stage = 1
    else:
        return None
    return (archs[0], stage) if len(archs) == 1 else None


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
    family = get_variant(arch).family_module()
    backbone = {
        k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")
    }
    out = {"backbone." + k: v for k, v in family.checkpoint_filter_fn(backbone).items()}
    out.update(_stack_au_blocks({k: v for k, v in state.items() if not k.startswith("backbone.")}))
    return out


def _strict_problems(state: dict[str, torch.Tensor], model: OpenGraphAU) -> str:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} {list(state[k].shape)} vs {list(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
        if items:
            parts.append(f"{len(items)} {label} (e.g. {items[0]})")
    return "; ".join(parts)


def _structure(arch: str, stage: int) -> OpenGraphAU:
    """The model, to be filled by a checkpoint, without the random initialisation the
    checkpoint replaces whole (a third of a second of ResNet-50's start-up): built on the meta
    device, then given real, empty storage. A family that computes buffers no checkpoint holds
    when it is built (Swin's relative positions, MAE's sinusoid table) is built as usual."""
    with torch.device("meta"):
        model = build_model(arch=arch, stage=stage)
    if any(module._non_persistent_buffers_set for module in model.modules()):
        return build_model(arch=arch, stage=stage)
    return model.to_empty(device="cpu")


def _converted_state(
    path: Path, arch: str | None, stage: int | None
) -> tuple[dict[str, torch.Tensor], str, int]:
    """The file's tensors in this package's layout, with the arch and stage they hold; a
    CheckpointError when that is not what `arch`/`stage` ask for."""
    state = read_state_dict(path)
    found = detect_arch_stage(state)
    if found is None:
        raise _fail(
            path,
            "not an OpenGraphAU checkpoint (its keys match none of the "
            f"{len(VARIANTS)} backbones with a stage-1 or stage-2 head)",
        )
    if (arch and arch != found[0]) or (stage and stage != found[1]):
        raise _fail(
            path,
            f"holds a {found[0]} stage-{found[1]} model, not {arch or found[0]} "
            f"stage-{stage or found[1]}; ask for {found[0]} stage {found[1]}, or "
            "leave the backbone and stage out and let the file decide",
        )
    return checkpoint_filter_fn(state, found[0]), found[0], found[1]


def _check_strict(path: Path, state: dict[str, torch.Tensor], model: OpenGraphAU) -> None:
    problems = _strict_problems(state, model)
    if problems:
        raise _fail(path, f"does not match the {model.arch} stage-{model.stage} model: {problems}")


def check_checkpoint(path: str | Path, arch: str, stage: int) -> None:
    """CheckpointError unless `path` would load strictly as `arch` stage `stage`: the loader's
    every check, against a model built on the meta device (no weights are made)."""
    state, found_arch, found_stage = _converted_state(Path(path), arch, stage)
    with torch.device("meta"):
        model = build_model(arch=found_arch, stage=found_stage)
    _check_strict(Path(path), state, model)


@overload
def load_model(
    path: str | Path,
    arch: str | None = ...,
    stage: int | None = ...,
    device: str | torch.device = ...,
    *,
    optimize: Literal[True] = ...,
    precision: str = ...,
) -> InferenceModel: ...
@overload
def load_model(
    path: str | Path,
    arch: str | None = ...,
    stage: int | None = ...,
    device: str | torch.device = ...,
    *,
    optimize: Literal[False],
    precision: str = ...,
) -> OpenGraphAU: ...
def load_model(
    path: str | Path,
    arch: str | None = None,
    stage: int | None = None,
    device: str | torch.device = "cpu",
    *,
    optimize: bool = True,
    precision: str = "fp32",
) -> InferenceModel | OpenGraphAU:
    """Build the model a checkpoint holds and load it strictly; eval mode, on `device`.

    `arch`/`stage` default to what the file holds; when given and the file says otherwise a
    CheckpointError says what the file holds. By default the result is the fast inference
    module of `model.optimize` (fp32 unless `precision` says bf16/fp16; DeviceError if that
    cannot run on `device`); `optimize=False` gives the plain `OpenGraphAU` (for training,
    export or inspection), which is fp32 only.
    """
    path = Path(path)
    if optimize:
        check_precision(precision, device)
    elif precision != "fp32":
        raise ConfigError(
            "the plain model (optimize=False) is fp32 only", param="precision", value=precision
        )
    state, found_arch, found_stage = _converted_state(path, arch, stage)
    model = _structure(found_arch, found_stage)
    _check_strict(path, state, model)
    model.load_state_dict(state, strict=True)
    model = model.to(device).eval()
    return optimize_for_inference(model, precision=precision, inplace=True) if optimize else model
