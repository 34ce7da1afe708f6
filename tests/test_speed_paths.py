"""load_model()'s fast default path, bf16/fp16, GPU and ONNX export, against the oracle."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from opengraphau.errors import ConfigError, DeviceError, OpenGraphAUError
from opengraphau.export import export_onnx
from opengraphau.model import InferenceModel, OpenGraphAU, load_model, optimize_for_inference
from opengraphau.model.anfl import ANFLHead, DynamicGraphGNN
from opengraphau.model.mefl import MEFLHead
from opengraphau.model.optimize import check_precision, cpu_supports_bf16
from oracle import oracle_forward, random_model

FP32_TOL = 1e-4
LOW_PRECISION_TOL = 1e-2

needs_bf16 = pytest.mark.skipif(
    not cpu_supports_bf16(), reason="this CPU has no native bf16 (AVX512-BF16/AMX)"
)
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def images(batch: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(seed))


def max_dp(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float().cpu() - b.float().cpu()).abs().max().item()


def stage1_gnn(model: InferenceModel) -> DynamicGraphGNN:
    """The top-K graph of a stage-1 model's head."""
    assert isinstance(model.head, ANFLHead)
    return model.head.gnn


@pytest.mark.parametrize("stage", [1, 2])
def test_default_path_matches_oracle_resnet18(stage: int) -> None:
    model = random_model("resnet18", stage)
    fast = optimize_for_inference(model)
    with torch.inference_mode():
        # 3, 1, 2: odd sizes, and oneDNN's batch-of-one weight layout next to the other one.
        for batch in (3, 1, 2):
            x = images(batch, seed=batch)
            out = fast(x)
            assert out.shape == (batch, 41) and out.dtype == torch.float32
            assert max_dp(out, oracle_forward(model, x)) <= FP32_TOL


def test_subnormals_are_zero_in_the_weights_and_inside_predict_only() -> None:
    """x86 computes with subnormal floats up to 100x slower: the CPU path flushes them, in the
    weights once and in every value while the model runs, and leaves the setting off after."""
    subnormal = 1e-40
    model = random_model("resnet18", 2)
    assert isinstance(model.head, MEFLHead)
    with torch.no_grad():
        model.head.gnn.first_layer.A.weight[0, :3] = subnormal  # kept as it is when folding
    fast = optimize_for_inference(model)
    assert isinstance(fast.head, MEFLHead)
    row = fast.head.gnn.first_layer.A.weight[0]
    assert (row[:3] == 0).all() and (row[3:] != 0).all()
    seen: list[float] = []
    fast.head.register_forward_hook(lambda *_: seen.append(float(torch.tensor(subnormal) * 1.0)))
    x = images(2)
    with torch.inference_mode():
        assert max_dp(fast(x), oracle_forward(model, x)) <= FP32_TOL
    assert seen == [0.0]
    assert float(torch.tensor(subnormal) * 1.0) > 0


@pytest.mark.filterwarnings("ignore:TF32 acceleration on top of oneDNN")  # from flags()
def test_plain_conv_fallback_matches_oracle() -> None:
    """The path taken on CUDA or without oneDNN's fused ops: folded weights, plain conv2d."""
    model = random_model("resnet18", 1)
    fast = optimize_for_inference(model)
    x = images(2)
    with torch.inference_mode(), torch.backends.mkldnn.flags(enabled=False):
        assert max_dp(fast(x), oracle_forward(model, x)) <= FP32_TOL


@pytest.mark.parametrize("arch,stage,batch", [("swin_transformer_tiny", 1, 2), ("mae", 2, 1)])
def test_default_path_matches_oracle_transformers(arch: str, stage: int, batch: int) -> None:
    model = random_model(arch, stage)
    x = images(batch)
    with torch.inference_mode():
        assert max_dp(optimize_for_inference(model)(x), oracle_forward(model, x)) <= FP32_TOL


def test_optimizing_leaves_the_model_alone_and_keeps_its_attributes() -> None:
    model = random_model("resnet18", 1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = optimize_for_inference(model)
    assert isinstance(fast, InferenceModel) and not fast.training
    assert (fast.arch, fast.stage, fast.preprocess) == (model.arch, model.stage, model.preprocess)
    assert fast.precision == "fp32"
    assert not any(p.requires_grad for p in fast.parameters())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


def test_optimized_model_can_be_copied_after_use() -> None:
    """oneDNN's laid-out weights cannot be copied; they are dropped from copies and remade."""
    fast = optimize_for_inference(random_model("resnet18", 1))
    x = images(2)
    with torch.inference_mode():
        first = fast(x)
        again = copy.deepcopy(fast)(x)
    assert max_dp(first, again) == 0.0


def test_load_model_default_and_plain(resnet18_s2: Path) -> None:
    fast = load_model(resnet18_s2)
    plain = load_model(resnet18_s2, optimize=False)
    assert isinstance(fast, InferenceModel) and type(plain) is OpenGraphAU
    assert (fast.arch, fast.stage) == (plain.arch, plain.stage) == ("resnet18", 2)
    x = images(3)
    with torch.inference_mode():
        assert max_dp(fast(x), oracle_forward(plain, x)) <= FP32_TOL


@pytest.mark.parametrize(
    "precision,device,error,message",
    [
        ("fp16", "cpu", DeviceError, "fp16 runs on CUDA only"),
        ("int8", "cpu", ConfigError, "choose one of fp32, bf16, fp16"),
        ("bf16", "meta", DeviceError, "bf16 runs on CPU or CUDA"),
    ],
)
def test_unsupported_precision_is_one_line_naming_the_parameter(
    precision: str, device: str, error: type[OpenGraphAUError], message: str
) -> None:
    with pytest.raises(error, match=message) as info:
        check_precision(precision, device)
    assert "\n" not in str(info.value)
    assert info.value.param == "precision" and info.value.value == precision


def test_plain_model_is_fp32_only(resnet18_s1: Path) -> None:
    with pytest.raises(ConfigError, match="fp32 only"):
        load_model(resnet18_s1, optimize=False, precision="bf16")
    with pytest.raises(DeviceError, match="fp16 runs on CUDA only"):
        load_model(resnet18_s1, precision="fp16")


@needs_bf16
def test_bf16_stage2_close_to_fp32() -> None:
    model = random_model("resnet18", 2)
    fast, low = optimize_for_inference(model), optimize_for_inference(model, precision="bf16")
    assert low.precision == "bf16"
    x = images(3)
    with torch.inference_mode():
        out = low(x)  # fp32 in, cast inside
    assert out.dtype == torch.float32 and out.shape == (3, 41)
    with torch.inference_mode():
        assert max_dp(out, fast(x)) <= LOW_PRECISION_TOL


@needs_bf16
def test_bf16_stage1_close_to_fp32_where_the_graph_agrees() -> None:
    """Stage 1 links each AU to its top-4 most similar: bf16 rounding can swap a neighbour that
    is within rounding of the 4th, a discrete change. Images where the graphs agree must be
    within 0.01; where they differ, the fp32 margin must indeed have been a near-tie."""
    model = random_model("resnet18", 1)
    fast, low = optimize_for_inference(model), optimize_for_inference(model, precision="bf16")
    nodes: dict[str, torch.Tensor] = {}
    for name, m in (("fp32", fast), ("bf16", low)):
        stage1_gnn(m).register_forward_hook(
            lambda mod, args, out, name=name: nodes.__setitem__(name, args[0])
        )
    x = images(6)
    with torch.inference_mode():
        dp = (low(x) - fast(x)).abs().amax(dim=1)
        gnn = stage1_gnn(fast)
        same = (gnn.adjacency(nodes["fp32"]) == gnn.adjacency(nodes["bf16"])).flatten(1).all(1)
        sim = nodes["fp32"] @ nodes["fp32"].transpose(1, 2)
        top = sim.topk(gnn.neighbors + 1, dim=-1).values
        margin = ((top[..., -2] - top[..., -1]) / top[..., -2].abs()).amin(dim=-1)
    assert same.any(), "no image kept its graph: bf16 is far off"
    assert dp[same].max().item() <= LOW_PRECISION_TOL
    assert (margin[~same] < 0.02).all()


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize(
    "precision,tol", [("fp32", FP32_TOL), ("fp16", LOW_PRECISION_TOL), ("bf16", LOW_PRECISION_TOL)]
)
@pytest.mark.parametrize("stage", [1, 2])
def test_cuda_paths(stage: int, precision: str, tol: float) -> None:
    """fp32 on CUDA is fp32 (no TF32) and equals the CPU oracle; at low precision, stage 1's
    top-4 graph may flip on near-ties (see the bf16 CPU test), so only images whose graph
    agrees with fp32's are held to the tolerance."""
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    model = random_model("resnet18", stage)
    fast = optimize_for_inference(model, precision=precision, device="cuda")
    x = images(6)
    with torch.inference_mode():
        out = fast(x.cuda())
        assert out.dtype == torch.float32 and out.device.type == "cuda"
        dp = (out.float().cpu() - oracle_forward(model, x)).abs().amax(dim=1)
    if stage == 1 and precision != "fp32":
        nodes: dict[str, torch.Tensor] = {}
        reference = optimize_for_inference(model, device="cuda")
        for name, m in (("fp32", reference), ("low", fast)):
            stage1_gnn(m).register_forward_hook(
                lambda mod, args, out, name=name: nodes.__setitem__(name, args[0])
            )
        with torch.inference_mode():
            reference(x.cuda()), fast(x.cuda())
            gnn = stage1_gnn(reference)
            same = (gnn.adjacency(nodes["fp32"]) == gnn.adjacency(nodes["low"])).flatten(1).all(1)
        dp = dp[same.cpu()]
    assert dp.max().item() <= tol


@pytest.mark.parametrize("stage", [1, 2])
def test_onnx_export_matches_pytorch(stage: int, tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    model = random_model("resnet18", stage)
    path = tmp_path / "model.onnx"
    assert export_onnx(model, path) <= FP32_TOL
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = images(5)  # a batch size never seen at export time
    (got,) = session.run(None, {"images": x.numpy()})
    with torch.no_grad():
        assert max_dp(torch.from_numpy(got), model(x)) <= FP32_TOL


def test_onnx_export_refuses_the_optimized_model(tmp_path: Path) -> None:
    fast = optimize_for_inference(random_model("resnet18", 1))
    with pytest.raises(ConfigError, match="optimize=False"):
        export_onnx(fast, tmp_path / "m.onnx")  # type: ignore[arg-type]  # the wrong type on purpose
    assert not (tmp_path / "m.onnx").exists()
