"""Model speed: the literal reference equations vs load_model()'s default path vs bf16.

    .venv/bin/python -m benchmarks.bench_model --arch resnet50 swin_transformer_tiny --stage 1 2 \
        --batch-size 8 --iters 7 --json results/bench_model.json

For each arch and stage a random-weight model (BatchNorm statistics that look trained) is saved
as an official-layout checkpoint and loaded back three ways: `load_model(optimize=False)` timed
through `tests/oracle.py` ("oracle": the reference's equations, literally), `load_model()`
("default", fp32) and `load_model(precision="bf16")` where the CPU has bf16. The variants of
one arch, both stages, run interleaved round after round on the same batch (each round
starting one variant later), so machine load hits them alike; times are medians over rounds,
ratios medians of per-round ratios. The stage-2 oracle (seconds and gigabytes per call) is
timed in rounds of its own; ratios to it are ratios of medians.
`--folder DIR` also times the whole CLI (`demo.py`, no face detection) on a folder of images.
`--reference DIR` also times the authors' own code: DIR is a local copy of the `OpenGraphAU`
folder of github.com/CVI-SZU/ME-GraphAU (nothing of it ships here). Its `MEFARG` gets the same
weights, so its largest |dp| against the default path is reported too.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import importlib.util
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.machine import describe, label
from opengraphau.model import InferenceModel, OpenGraphAU, load_model
from opengraphau.model.anfl import ANFLHead, DynamicGraphGNN
from opengraphau.model.mefl import GatedGNN, MEFLHead
from tests.oracle import oracle_forward, random_model

ROOT = Path(__file__).resolve().parents[1]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
_AU_FIELDS = {
    "weight": "fc.weight",
    "bias": "fc.bias",
    "bn_weight": "bn.weight",
    "bn_bias": "bn.bias",
    "bn_mean": "bn.running_mean",
    "bn_var": "bn.running_var",
}


def official_state_dict(model: OpenGraphAU) -> dict[str, torch.Tensor]:
    """This package's layout -> the released files' layout (`module.` keys, 27 AU blocks).

    MAE stays in timm's layout (`load_model` reads both); `reference_state_dict` converts it.
    """
    out = {}
    for key, value in model.state_dict().items():
        if key.startswith("head.au_linears."):
            name = key.rsplit(".", 1)[1]
            for i, block in enumerate(value):
                out[f"head.main_class_linears.{i}.{_AU_FIELDS[name]}"] = block.clone()
            continue
        if model.arch.startswith("swin"):  # timm merges patches at the start of stage k + 1
            key = re.sub(
                r"^backbone\.layers\.(\d+)\.downsample\.",
                lambda m: f"backbone.layers.{int(m.group(1)) - 1}.downsample.",
                key,
            )
        out[key] = value
    return {"module." + k: v for k, v in out.items()}


def write_checkpoint(arch: str, stage: int, folder: Path, seed: int) -> Path:
    model = random_model(arch, stage, seed)
    path = folder / f"{arch}_stage{stage}.pth"
    torch.save({"epoch": 0, "state_dict": official_state_dict(model)}, path)
    return path


REFERENCE_PACKAGE = "opengraphau_reference"


def reference_state_dict(model: OpenGraphAU) -> dict[str, torch.Tensor]:
    """The exact keys of the authors' MEFARG: no `module.`, MAE as `encoder.*` with q/v biases."""
    out = {}
    for key, value in official_state_dict(model).items():
        key = key.removeprefix("module.")
        if model.arch == "mae" and key.startswith("backbone."):
            key = "backbone.encoder." + key.removeprefix("backbone.")
            if key.endswith("attn.qkv.bias"):
                q, _, v = value.chunk(3)
                stem = key.removesuffix("qkv.bias")
                out[stem + "q_bias"], out[stem + "v_bias"] = q, v
                continue
        out[key] = value
    return out


def reference_model(folder: Path, model: OpenGraphAU) -> torch.nn.Module:
    """The authors' MEFARG for `model`'s arch and stage, from their `OpenGraphAU` folder,
    with `model`'s weights loaded strictly. Imported under a package name of its own, since
    theirs (`model`) is ours too."""
    if REFERENCE_PACKAGE not in sys.modules:
        init = folder / "model" / "__init__.py"
        if not init.is_file():
            raise SystemExit(
                f"--reference: {init} not found; pass the OpenGraphAU folder of a "
                f"ME-GraphAU checkout"
            )
        spec = importlib.util.spec_from_file_location(
            REFERENCE_PACKAGE, init, submodule_search_locations=[str(folder / "model")]
        )
        assert spec is not None and spec.loader is not None  # a file that exists has both
        package = importlib.util.module_from_spec(spec)
        sys.modules[REFERENCE_PACKAGE] = package
        spec.loader.exec_module(package)
    head = "ANFL" if model.stage == 1 else "MEFL"
    module: Any = importlib.import_module(f"{REFERENCE_PACKAGE}.{head}")  # theirs, untyped
    resnet50 = importlib.import_module(f"{REFERENCE_PACKAGE}.resnet").resnet50
    # Their stage-2 ResNet-50 asks for ImageNet weights from disk; ours replace them anyway.
    module.resnet50 = lambda pretrained=False, **kw: resnet50(pretrained=False, **kw)
    net = module.MEFARG(backbone=model.arch)
    # Swin's window index tables and masks are buffers made at construction: the only keys
    # allowed to stay as built.
    missing, unexpected = net.load_state_dict(reference_state_dict(model), strict=False)
    missing = [k for k in missing if not k.endswith(("relative_position_index", "attn_mask"))]
    if missing or unexpected:
        raise SystemExit(
            f"--reference: its MEFARG does not take these weights (missing "
            f"{missing[:3]}, unexpected {unexpected[:3]})"
        )
    return net.eval().requires_grad_(False)


def gflop_per_image(model: OpenGraphAU) -> float:
    """Arithmetic of this package's algorithm per image (multiply and add counted apart), from
    the plain module, whose matmuls are the default path's before BatchNorm folding."""
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(2, 3, 224, 224))
    return counter.get_total_flops() / 2 / 1e9


def interleaved(
    fns: dict[str, Callable[[], object]], rounds: int, warmup: int
) -> dict[str, list[float]]:
    """Seconds per call of every function, one call each per round, in turn.

    Each round starts one function later than the previous one, so no function always runs
    right after the same neighbour (whose freed memory or caches it would inherit).
    """
    names = list(fns)
    times: dict[str, list[float]] = {name: [] for name in names}
    with torch.inference_mode():
        for _ in range(warmup):
            for fn in fns.values():
                fn()
        for r in range(rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                start = time.perf_counter()
                fns[name]()
                times[name].append(time.perf_counter() - start)
    return times


def paired_ratio(num: list[float], den: list[float]) -> float:
    return statistics.median(a / b for a, b in zip(num, den))


def head_graph(model: InferenceModel) -> DynamicGraphGNN | GatedGNN:
    """The graph network of `model`'s head: stage 1's top-K graph or stage 2's gated one."""
    assert isinstance(model.head, ANFLHead | MEFLHead)
    return model.head.gnn


def compare_bf16(
    fast: InferenceModel, low: InferenceModel, images: int, batch: int
) -> dict[str, float | int]:
    """Largest |dp| of bf16 vs fp32 over `images` random inputs and, for stage 1, how many of
    them changed their top-K graph (a near-tie among an AU's most similar AUs flips under bf16
    rounding: a discrete jump, which a handful of timing images rarely shows)."""
    x = torch.randn(images, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    nodes: dict[str, torch.Tensor] = {}
    hooks = [
        head_graph(m).register_forward_hook(
            lambda mod, args, out, name=name: nodes.__setitem__(name, args[0])
        )
        for name, m in (("fp32", fast), ("bf16", low))
    ]
    dps, changed = [], []
    with torch.inference_mode():
        for part in x.split(batch):
            dps.append((low(part) - fast(part)).abs().amax(dim=1))
            if fast.stage == 1:
                gnn = head_graph(fast)
                assert isinstance(gnn, DynamicGraphGNN)
                graph = gnn.adjacency
                changed.append((graph(nodes["fp32"]) != graph(nodes["bf16"])).flatten(1).any(1))
    for hook in hooks:
        hook.remove()
    dp = torch.cat(dps)
    out: dict[str, float | int] = {
        "bf16_images_compared": images,
        "max_abs_dp_bf16_vs_fp32": dp.max().item(),
    }
    if changed:
        flipped = torch.cat(changed)
        out["bf16_images_with_changed_graph"] = int(flipped.sum())
        out["max_abs_dp_bf16_vs_fp32_same_graph"] = (
            dp[~flipped].max().item() if (~flipped).any() else float("nan")
        )
    return out


def folder_throughput(
    folder: Path, checkpoint: Path, arch: str, stage: int, batch: int
) -> dict[str, float] | None:
    """images/s of the whole CLI on `folder` (start-up and model loading included)."""
    demo = ROOT / "demo.py"
    if not demo.exists():
        print(f"--folder: {demo} is not there yet; skipping the whole-run timing")
        return None
    images = sum(1 for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    with tempfile.TemporaryDirectory() as out:
        cmd = [
            sys.executable,
            str(demo),
            "--resume",
            str(checkpoint),
            "--arc",
            arch,
            "--stage",
            str(stage),
            "--input",
            str(folder),
            "--no-detect",
            "--quiet",
            "--batch-size",
            str(batch),
            "--output-dir",
            out,
            "--overwrite",  # repeats write into the same folder
        ]
        start = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True)
        seconds = time.perf_counter() - start
    if done.returncode != 0:
        print(f"--folder: demo.py failed ({done.returncode}): {done.stderr.strip()[-300:]}")
        return None
    return {"images": images, "seconds": seconds, "images_per_s": images / seconds}


def bench_arch(
    arch: str, stages: list[int], args: argparse.Namespace, tmp: Path, bf16: bool
) -> dict[str, dict]:
    x = torch.randn(args.batch_size, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    fns: dict[str, Callable[[], object]] = {}
    results: dict[str, dict] = {}
    checkpoints = {}
    for stage in stages:
        path = checkpoints[stage] = write_checkpoint(arch, stage, tmp, args.seed)
        plain = load_model(path, optimize=False)
        default = load_model(path)
        with torch.inference_mode():
            ref = oracle_forward(plain, x)
            fast = default(x)
        row = {
            "max_abs_dp_default_vs_oracle": (fast - ref).abs().max().item(),
            "gflop_per_image": gflop_per_image(plain),
        }
        fns[f"oracle{stage}"] = functools.partial(oracle_forward, plain, x)
        fns[f"default{stage}"] = functools.partial(default, x)
        if args.reference:
            theirs = reference_model(args.reference, plain)
            with torch.inference_mode():
                row["max_abs_dp_default_vs_reference"] = (fast - theirs(x)).abs().max().item()
            fns[f"reference{stage}"] = functools.partial(theirs, x)
        if bf16:
            low = load_model(path, precision="bf16")
            row.update(compare_bf16(default, low, args.bf16_images, args.batch_size))
            fns[f"bf16{stage}"] = functools.partial(low, x)
        results[str(stage)] = row
    # The stage-2 oracle takes seconds and gigabytes per call: timed on its own, so that its
    # memory churn does not land on the others.
    slow: dict[str, Callable[[], object]] = {
        name: fns.pop(name) for name in ("oracle2", "reference2") if name in fns
    }
    print(f"{arch}: timing {len(fns)} variants x {args.iters} rounds ...", flush=True)
    times = interleaved(fns, args.iters, args.warmup)
    if slow:
        print(f"{arch}: timing {' and '.join(slow)} x {args.iters} ...", flush=True)
        times.update(interleaved(slow, args.iters, args.warmup))
    batch = args.batch_size
    for stage in stages:
        row = results[str(stage)]
        for variant in ("oracle", "reference", "default", "bf16"):
            if f"{variant}{stage}" not in times:
                continue
            per_call = times[f"{variant}{stage}"]
            ms = statistics.median(per_call) / batch * 1000
            row[variant] = {
                "ms_per_image": ms,
                "images_per_s": 1000 / ms,
                "min_ms_per_image": min(per_call) / batch * 1000,
                "gflops": row["gflop_per_image"] / ms * 1000,
            }
            for base in ("oracle", "reference"):
                if variant in (base, "reference") or f"{base}{stage}" not in times:
                    continue
                other = times[f"{base}{stage}"]
                row[f"{variant}_over_{base}"] = (  # not timed in the same rounds: medians
                    statistics.median(per_call) / statistics.median(other)
                    if f"{base}{stage}" in slow
                    else paired_ratio(per_call, other)
                )
        if args.folder:
            row["folder"] = folder_throughput(args.folder, checkpoints[stage], arch, stage, batch)
    if 1 in stages and 2 in stages:
        results["stage2_over_stage1"] = {
            v: paired_ratio(times[f"{v}2"], times[f"{v}1"])
            for v in ("default", "bf16")
            if f"{v}1" in times
        }
        for v in ("oracle", "reference"):
            if f"{v}1" in times:
                results["stage2_over_stage1"][v] = statistics.median(
                    times[f"{v}2"]
                ) / statistics.median(times[f"{v}1"])
    return results


def markdown(results: dict[str, dict], batch: int, matmul: float) -> str:
    lines = [
        "| arch | stage | oracle ms/img | reference code ms/img | default ms/img | "
        "bf16 ms/img | default img/s | bf16 img/s | default / oracle | "
        "default / reference code | bf16 / oracle | stage 2 / stage 1 (default) | "
        "GFLOP/img | default GFLOP/s | "
        "max abs dp default vs oracle | max abs dp bf16 vs fp32 | bf16: images with a changed "
        "top-K graph |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def fmt(value: float | None, spec: str) -> str:
        return "n/a" if value is None else format(value, spec)

    for arch, per_stage in results.items():
        s2s1 = per_stage.get("stage2_over_stage1", {}).get("default")
        for stage, row in per_stage.items():
            if stage == "stage2_over_stage1":
                continue
            bf, theirs = row.get("bf16", {}), row.get("reference", {})
            lines.append(
                " | ".join(
                    [
                        f"| {arch}",
                        stage,
                        fmt(row["oracle"]["ms_per_image"], ".1f"),
                        fmt(theirs.get("ms_per_image"), ".1f"),
                        fmt(row["default"]["ms_per_image"], ".1f"),
                        fmt(bf.get("ms_per_image"), ".1f"),
                        fmt(row["default"]["images_per_s"], ".1f"),
                        fmt(bf.get("images_per_s"), ".1f"),
                        fmt(row["default_over_oracle"], ".2f"),
                        fmt(row.get("default_over_reference"), ".2f"),
                        fmt(row.get("bf16_over_oracle"), ".2f"),
                        fmt(s2s1, ".2f") if stage == "2" else "",
                        fmt(row["gflop_per_image"], ".2f"),
                        fmt(row["default"]["gflops"], ".0f"),
                        fmt(row["max_abs_dp_default_vs_oracle"], ".1e"),
                        fmt(row.get("max_abs_dp_bf16_vs_fp32"), ".1e")
                        + (
                            f" ({row['max_abs_dp_bf16_vs_fp32_same_graph']:.1e} if the graph stays)"
                            if "max_abs_dp_bf16_vs_fp32_same_graph" in row
                            else ""
                        ),
                        (
                            f"{row['bf16_images_with_changed_graph']} of "
                            f"{row['bf16_images_compared']}"
                            if "bf16_images_with_changed_graph" in row
                            else ""
                        )
                        + " |",
                    ]
                )
            )
    lines.append(
        f"\nbatch {batch}; ms/img = median over rounds / batch; ratios = median of "
        f"per-round ratios; GFLOP counted on this package's algorithm. A 2048 x 2048 "
        f"fp32 matmul runs at {matmul:.0f} GFLOP/s here."
    )
    for arch, per_stage in results.items():
        for stage, row in per_stage.items():
            if stage != "stage2_over_stage1" and "max_abs_dp_default_vs_reference" in row:
                lines.append(
                    f"default vs the reference code, {arch} stage {stage}: max abs dp "
                    f"{row['max_abs_dp_default_vs_reference']:.1e}"
                )
            if stage != "stage2_over_stage1" and row.get("folder"):
                f = row["folder"]
                lines.append(
                    f"whole run, {arch} stage {stage}: {f['images']} images in "
                    f"{f['seconds']:.1f} s = {f['images_per_s']:.1f} images/s"
                )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", nargs="+", default=["resnet50"])
    parser.add_argument("--stage", nargs="+", type=int, choices=(1, 2), default=[1, 2])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--iters", type=int, default=5, help="timed rounds (median taken)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--no-bf16", action="store_true", help="skip the bf16 variant")
    parser.add_argument(
        "--bf16-images",
        type=int,
        default=32,
        help="random images on which bf16 is compared with fp32",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--folder", type=Path, help="also time demo.py on this image folder")
    parser.add_argument(
        "--reference",
        type=Path,
        metavar="DIR",
        help="also time the authors' code: the OpenGraphAU folder of a CVI-SZU/ME-GraphAU checkout",
    )
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    found = describe()
    print(label(found), flush=True)
    bf16 = not args.no_bf16 and bool(found["bf16"])
    if not bf16 and not args.no_bf16:
        print("bf16: this CPU has no native bf16 kernels; the bf16 columns are skipped")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.arch:
            results[arch] = bench_arch(arch, sorted(set(args.stage)), args, Path(tmp), bf16)
    report = {
        "machine": found,
        "batch_size": args.batch_size,
        "rounds": args.iters,
        "results": results,
    }
    print(markdown(results, args.batch_size, report["machine"]["fp32_matmul_gflops"]))
    text = json.dumps(report, indent=2)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
