"""The fast heads in model/ against the literal reference equations in tests/oracle.py."""

from __future__ import annotations

import pytest
import torch

from opengraphau.model.anfl import ANFLHead
from opengraphau.model.blocks import AUHead
from opengraphau.model.mefl import MEFLHead
from oracle import (
    dynamic_graph_gnn,
    oracle_forward,
    oracle_head_forward,
    random_model,
    randomize_statistics_,
)

HEAD_TOL = 1e-5


def make_head(stage: int, channels: int, seed: int) -> AUHead:
    torch.manual_seed(seed)
    head = (ANFLHead(channels) if stage == 1 else MEFLHead(channels)).eval()
    return randomize_statistics_(head, torch.Generator().manual_seed(seed))


def tokens(batch: int, num_tokens: int, channels: int, seed: int) -> torch.Tensor:
    """What the global LinearBlock hands the head: ReLU'd, so non-negative with zeros."""
    gen = torch.Generator().manual_seed(seed)
    return torch.relu(torch.randn(batch, num_tokens, channels, generator=gen))


@pytest.mark.parametrize("stage", [1, 2])
@pytest.mark.parametrize(
    "channels,batch,num_tokens",
    [
        (8, 1, 49),
        (32, 3, 49),
        (64, 2, 49),
        (96, 5, 49),
        (16, 2, 196),  # MAE's 14 x 14 tokens
        (24, 3, 7),
    ],
)
def test_head_matches_oracle(stage: int, channels: int, batch: int, num_tokens: int) -> None:
    head = make_head(stage, channels, seed=channels + batch)
    x = tokens(batch, num_tokens, channels, seed=batch)
    with torch.no_grad():
        fast = head(x)
    want = oracle_head_forward(head, x)
    assert fast.shape == want.shape == (batch, 41)
    assert (fast - want).abs().max().item() <= HEAD_TOL


@pytest.mark.parametrize("block", [1, 3 * 49 * 49, 1 << 18, 1 << 30])
def test_stage2_pair_blocks_do_not_change_results(block: int) -> None:
    """Pair scores one by one, 3 key AUs at a time, several query AUs at a time, or all at
    once give the same edges."""
    head = make_head(2, 16, seed=3)
    assert isinstance(head, MEFLHead)
    head.edge_extractor.scores_per_block = block
    x = tokens(2, 49, 16, seed=4)
    with torch.no_grad():
        fast = head(x)
    assert (fast - oracle_head_forward(head, x)).abs().max().item() <= HEAD_TOL


@pytest.mark.filterwarnings("ignore:`torch.jit.trace:FutureWarning")
@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")  # N and D are fixed per model
def test_stage2_traced_head_keeps_a_dynamic_batch() -> None:
    """The traced form (what ONNX export records) takes whole batches, not image by image:
    traced on 2 images, it must still be right on 5."""
    head = make_head(2, 16, seed=5)
    with torch.no_grad():
        traced = torch.jit.trace(head, tokens(2, 49, 16, seed=6), check_trace=False)
        x = tokens(5, 49, 16, seed=7)
        fast = traced(x)
    assert (fast - oracle_head_forward(head, x)).abs().max().item() <= HEAD_TOL


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_top_k_graph_keeps_every_tie(seed: int) -> None:
    """Nodes with small integer features have exactly equal dot products: a node whose K-th
    largest similarity is shared links to all of them (>= threshold), in both versions."""
    head = make_head(1, 12, seed=seed)
    assert isinstance(head, ANFLHead)
    gen = torch.Generator().manual_seed(seed)
    nodes = torch.randint(0, 3, (4, 27, 12), generator=gen).float()
    nodes[:, 5] = nodes[:, 6] = nodes[:, 7]  # duplicated nodes: ties guaranteed
    gnn = head.gnn
    adjacency = gnn.adjacency(nodes)
    assert ((adjacency > 0).sum(-1) > gnn.neighbors).any(), "the test needs ties past K"
    with torch.no_grad():
        fast = gnn(nodes)
        want = dynamic_graph_gnn(gnn, nodes)
    assert (fast - want).abs().max().item() <= HEAD_TOL


@pytest.mark.parametrize("stage", [1, 2])
def test_scores_are_probabilities(stage: int) -> None:
    head = make_head(stage, 32, seed=7)
    x = tokens(6, 49, 32, seed=8) * 50  # large activations still give cosines in [0, 1]
    with torch.no_grad():
        out = head(x)
    assert out.shape == (6, 41) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert out.min().item() >= 0.0 and out.max().item() <= 1.0 + 1e-6


def test_stage2_head_refuses_training_mode() -> None:
    head = make_head(2, 8, seed=0).train()
    with pytest.raises(RuntimeError, match="inference-only"):
        head(tokens(2, 49, 8, seed=0))


@pytest.mark.parametrize(
    "arch,stage,batch",
    [
        ("resnet18", 1, 3),
        ("resnet18", 2, 2),
        ("swin_transformer_tiny", 2, 1),
        ("mae", 1, 1),
    ],
)
def test_whole_model_matches_oracle(arch: str, stage: int, batch: int) -> None:
    model = random_model(arch, stage)
    images = torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = model(images)
    want = oracle_forward(model, images)
    assert out.shape == (batch, 41)
    assert (out - want).abs().max().item() <= HEAD_TOL
    assert out.min().item() >= 0.0 and out.max().item() <= 1.0 + 1e-6
