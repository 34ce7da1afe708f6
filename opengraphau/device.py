"""Choosing the device: 'auto' | 'cpu' | 'cuda' | 'cuda:N' -> a usable torch.device."""

from __future__ import annotations

import torch

from .errors import DeviceError


def resolve_device(spec: str | torch.device) -> torch.device:
    """A usable torch.device for `spec`, or DeviceError saying why not."""
    text = str(spec).strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except RuntimeError:
        raise DeviceError(
            "not a device; use auto, cpu, cuda or cuda:N", param="device", value=spec
        ) from None
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise DeviceError(
            "not supported; use auto, cpu, cuda or cuda:N", param="device", value=spec
        )
    if not torch.cuda.is_available():
        raise DeviceError(
            "CUDA is not available on this machine; run on the CPU instead",
            param="device",
            value=spec,
        )
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise DeviceError(
            f"only {torch.cuda.device_count()} CUDA device(s) here", param="device", value=spec
        )
    return device
