"""What a benchmark ran on, recorded with its figures so that tables from different days compare.

The machines this project is measured on share one CPU name ("AMD EPYC") across generations
that differ 2.7x in arithmetic speed (AVX2 against AVX-512 with bf16), so the name alone does
not say which one a figure came from: the CPU's family and model, its widest vector and matrix
instructions and the fp32 matmul rate do.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from pathlib import Path

import torch

from opengraphau.device import resolve_device
from opengraphau.model.optimize import cpu_supports_bf16

_ISA = (
    ("amx_tile", "AMX"),
    ("avx512_bf16", "AVX-512 bf16"),
    ("avx512f", "AVX-512"),
    ("avx2", "AVX2"),
)
"""cpuinfo flags, widest first, and how they are named in a report."""


def matmul_gflops(size: int = 2048, calls: int = 10) -> float:
    """This machine's fp32 matmul rate with torch's threads: the yardstick for how close a model
    runs to the hardware, and the fingerprint of the day's machine."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    times = []
    for _ in range(calls + 2):
        start = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times[2:]) / 1e9


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo ({} where there is none)."""
    path = Path("/proc/cpuinfo")
    if not path.exists():
        return {}
    first = path.read_text().split("\n\n", 1)[0]
    return {
        key.strip(): value.strip()
        for key, _, value in (line.partition(":") for line in first.splitlines())
    }


def describe(device: torch.device | str = "cpu") -> dict[str, object]:
    """The machine as a dict for a benchmark's JSON: CPU name, family/model, widest vector
    instructions, cores, torch threads, torch version, fp32 matmul rate; the GPU's name when
    `device` (as the tool's --device takes it) is one."""
    info = _cpuinfo()
    flags = set(info.get("flags", "").split())
    widest = next((name for flag, name in _ISA if flag in flags), None)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    found: dict[str, object] = {
        "cpu": info.get("model name") or platform.processor() or platform.machine(),
        "cpu_id": (
            f"family {info['cpu family']} model {info['model']}"
            if "cpu family" in info and "model" in info
            else None
        ),
        "isa": widest,
        "bf16": cpu_supports_bf16(),
        "cores": cores,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "fp32_matmul_gflops": round(matmul_gflops(), 1),
    }
    device = resolve_device(device)
    if device.type == "cuda":
        found["gpu"] = torch.cuda.get_device_name(device)
    return found


def label(found: dict[str, object]) -> str:
    """One line naming the machine, for the first line a benchmark prints."""
    cpu = ", ".join(str(part) for part in (found["cpu"], found["cpu_id"], found["isa"]) if part)
    gpu = f"{found['gpu']}; " if "gpu" in found else ""
    return (
        f"{gpu}{cpu}; {found['cores']} cores, {found['threads']} torch threads; "
        f"CPU fp32 matmul {found['fp32_matmul_gflops']:.0f} GFLOP/s; torch {found['torch']}"
    )


if __name__ == "__main__":
    print(label(describe()))
