"""Turning a loaded OpenGraphAU into the fast inference module that `load_model` returns.

Nothing here changes what the network computes (fp32 stays within 1e-4 of the literal
reference equations); it only removes work that eager PyTorch would redo on every call:

* BatchNorms are folded into the layer before them (every ResNet conv, the global
  LinearBlock, the 27 per-AU blocks), once, at load time;
* ResNet convolutions run channels-last through oneDNN's fused conv+add+ReLU with weights laid
  out once (see `model.fused`);
* timm attention layers use PyTorch's fused scaled-dot-product attention (timm keeps it off
  for Swin by default, as not yet tested there; tests/test_speed_paths.py checks it);
* parameters stop requiring gradients, so no autograd bookkeeping happens at inference.

`precision="bf16"` (CPUs with AVX512-BF16/AMX, CUDA) or `"fp16"` (CUDA) runs the backbone and
the global LinearBlock in that type; the AU head stays fp32, since its top-K graph and softmaxes
are where a low-precision rounding would flip a decision, and it is a small part of the cost.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_linear_bn_eval

from ..errors import ConfigError, DeviceError
from .blocks import AUBlocks, AUHead, FoldedAUBlocks, LinearBlock
from .fused import FusedResNetTokens
from .opengraphau import OpenGraphAU
from .resnet import ResNetTokens
from .transforms import EvalTransform

PRECISIONS: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}


def check_precision(precision: str, device: str | torch.device) -> torch.dtype:
    """The dtype for `precision` on `device`; DeviceError (one line) if it cannot run there."""
    if precision not in PRECISIONS:
        raise ConfigError(
            f"choose one of {', '.join(PRECISIONS)}", param="precision", value=precision
        )
    device = torch.device(device)
    reason = None
    if precision == "fp16" and device.type != "cuda":
        reason = f"fp16 runs on CUDA only, not on {device.type}; use bf16 or fp32"
    elif precision == "bf16":
        if device.type not in ("cpu", "cuda"):
            reason = f"bf16 runs on CPU or CUDA, not on {device.type}; use fp32"
        elif device.type == "cuda" and not torch.cuda.is_available():
            reason = "bf16 on cuda: no CUDA device is available here"
        elif device.type == "cuda" and not torch.cuda.is_bf16_supported():
            reason = "bf16 is not supported by this GPU; use fp16 or fp32"
        elif device.type == "cpu" and not cpu_supports_bf16():
            reason = "bf16 needs a CPU with AVX512-BF16 or AMX (oneDNN reports none here); use fp32"
    if reason:
        raise DeviceError(reason, param="precision", value=precision)
    return PRECISIONS[precision]


def cpu_supports_bf16() -> bool:
    """Whether oneDNN has native bf16 kernels on this CPU (without them bf16 is slower)."""
    return (
        torch.backends.mkldnn.is_available()
        and hasattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported")
        and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    )


@contextlib.contextmanager
def exact_fp32(device: torch.device) -> Iterator[None]:
    """On CUDA, fp32 matmuls and convolutions in full fp32, not TF32, for as long as it lasts.

    TF32 keeps 10 mantissa bits: enough to flip the stage-1 top-4 graph of an image and move
    its outputs by 0.01, so fp32 means fp32 here. Restores the caller's settings afterwards.
    """
    if device.type != "cuda":
        yield
        return
    matmul = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with torch.backends.cudnn.flags(enabled=torch.backends.cudnn.enabled, allow_tf32=False):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul


@contextlib.contextmanager
def flushed_denormals(device: torch.device) -> Iterator[None]:
    """On CPU, subnormal floats read and written as zero for as long as it lasts; the caller's
    setting comes back afterwards.

    Trained weights and the far tails of softmaxes hold values below float32's smallest normal
    (1.2e-38); x86 CPUs compute with those up to 100x slower, so a model's speed came to depend
    on its data. Zero instead changes no output by more than 1e-37.
    """
    if device.type != "cpu":
        yield
        return
    was_on = float(torch.tensor(_SUBNORMAL) * 1.0) == 0.0  # PyTorch has no getter
    if was_on or not torch.set_flush_denormal(True):
        yield
        return
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


_SUBNORMAL = 1e-40
"""A float32 subnormal: multiplied by 1 it stays itself, unless subnormals are flushed."""


class InferenceModel(nn.Module):
    """The same mapping as `OpenGraphAU` ((B, 3, 224, 224) -> (B, 41) fp32), rearranged for speed.

    Inputs of any float type are accepted and cast inside; outputs are always fp32. It keeps
    `arch`, `stage` and `preprocess`; `precision` says what the backbone computes in.
    """

    def __init__(
        self,
        backbone: nn.Module,
        global_linear: nn.Module,
        head: AUHead,
        *,
        arch: str,
        stage: int,
        preprocess: EvalTransform,
        precision: str,
    ) -> None:
        super().__init__()
        self.backbone, self.global_linear, self.head = backbone, global_linear, head
        self.arch, self.stage, self.preprocess = arch, stage, preprocess
        self.precision = precision
        self.dtype = PRECISIONS[precision]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.predict(x)[0]

    def predict(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(probabilities (B, 41), embedding (B, num_features)), both fp32.

        The embedding is the backbone's tokens averaged and L2-normalised: an appearance
        descriptor of the face that costs nothing extra, used to keep track ids in videos.
        """
        exact = exact_fp32(x.device) if self.precision == "fp32" else contextlib.nullcontext()
        with exact, flushed_denormals(x.device):
            tokens = self.backbone(x.to(self.dtype))
            probs = self.head(self.global_linear(tokens).float())
        embedding = F.normalize(tokens.float().mean(dim=1), dim=-1)
        return probs, embedding


def _fold_linear_block(block: LinearBlock) -> nn.Sequential:
    return nn.Sequential(
        fuse_linear_bn_eval(block.fc.eval(), block.bn.eval()), nn.ReLU(inplace=True)
    )


@torch.no_grad()
def optimize_for_inference(
    model: OpenGraphAU,
    *,
    precision: str = "fp32",
    device: str | torch.device | None = None,
    inplace: bool = False,
) -> InferenceModel:
    """A fast inference copy of `model` (left untouched) on `device` (default: the model's).

    `inplace=True` reuses `model`'s modules instead of copying them (then `model` must not be
    used afterwards): `load_model` does so, as its freshly built model is thrown away anyway.

    Raises DeviceError when `precision` cannot run on `device` (fp16 on CPU, say).
    """
    if device is None:
        device = next(model.parameters()).device
    dtype = check_precision(precision, device)
    model = (model if inplace else copy.deepcopy(model)).eval().requires_grad_(False)
    backbone = model.backbone
    if isinstance(backbone, ResNetTokens):
        backbone = FusedResNetTokens(backbone)
    for module in backbone.modules():
        if hasattr(module, "fused_attn"):  # timm's switch, read at every forward
            module.fused_attn = True
    head = model.head
    if isinstance(head.au_linears, AUBlocks):
        head.au_linears = FoldedAUBlocks(head.au_linears)
    global_linear = _fold_linear_block(model.global_linear)
    fast = InferenceModel(
        backbone.to(device=device, dtype=dtype),
        global_linear.to(device=device, dtype=dtype),
        head.to(device),
        arch=model.arch,
        stage=model.stage,
        preprocess=model.preprocess,
        precision=precision,
    )
    for tensor in [*fast.parameters(), *fast.buffers()]:
        if tensor.is_floating_point():  # subnormal weights to zero: see `flushed_denormals`
            tensor[tensor.abs() < torch.finfo(tensor.dtype).tiny] = 0
    return fast.eval().requires_grad_(False)
