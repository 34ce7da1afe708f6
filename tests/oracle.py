"""A literal, deliberately unoptimised restatement of the reference OpenGraphAU equations.

The tests compare the fast modules in `model/` with this, and the benchmark times it as "the
reference equations". It reads the weights of OUR modules but recomputes everything the way the
reference does: 27 separate linear+BatchNorm blocks in a Python loop, a (B, N*N, D, C) edge
tensor built by repeating every AU's feature map, dense N*N x N incidence matrices, a BatchNorm
applied to every token before the mean over tokens, one sub-AU at a time in the readout. Nothing
here is fused, folded or reordered, so any shortcut taken in `model/` has something honest to be
checked against.
"""

from __future__ import annotations

from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from opengraphau.model.anfl import ANFLHead, DynamicGraphGNN
from opengraphau.model.blocks import BN_EPS, AUBlocks, AUHead
from opengraphau.model.mefl import CrossAttention, GatedGNNLayer, MEFLHead
from opengraphau.model.opengraphau import OpenGraphAU, build_model

ModuleT = TypeVar("ModuleT", bound=nn.Module)


def _bn_statistics(bn: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """The running mean and variance, which every BatchNorm of the model tracks."""
    assert bn.running_mean is not None and bn.running_var is not None
    return bn.running_mean, bn.running_var


def _bn_channels_dim1(x: torch.Tensor, bn: nn.modules.batchnorm._BatchNorm) -> torch.Tensor:
    """Eval-mode BatchNorm of any rank over dim 1, spelled out from the module's statistics."""
    shape = [1, -1] + [1] * (x.dim() - 2)
    running_mean, running_var = _bn_statistics(bn)
    mean, var = running_mean.view(shape), running_var.view(shape)
    return (x - mean) / torch.sqrt(var + bn.eps) * bn.weight.view(shape) + bn.bias.view(shape)


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    out = torch.matmul(x, weight.t())
    return out if bias is None else out + bias


def linear_block(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    bn_weight: torch.Tensor,
    bn_bias: torch.Tensor,
    bn_mean: torch.Tensor,
    bn_var: torch.Tensor,
    eps: float,
) -> torch.Tensor:
    """Reference LinearBlock: fc, permute to (B, C, D), BatchNorm1d over C, ReLU, permute back."""
    y = _linear(x, weight, bias).permute(0, 2, 1)
    y = (y - bn_mean[None, :, None]) / torch.sqrt(bn_var[None, :, None] + eps)
    y = y * bn_weight[None, :, None] + bn_bias[None, :, None]
    return torch.relu(y).permute(0, 2, 1)


def per_au_features(blocks: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(B, D, C) -> (B, N, D, C): the reference's loop over N separate LinearBlocks.

    Block i is rebuilt from slice i of our stacked tensors (unfolded: the oracle reads them).
    """
    assert isinstance(blocks, AUBlocks), f"unfolded AUBlocks expected, not {type(blocks).__name__}"
    outs = []
    for i in range(blocks.weight.shape[0]):
        out = linear_block(
            x,
            blocks.weight[i],
            blocks.bias[i],
            blocks.bn_weight[i],
            blocks.bn_bias[i],
            blocks.bn_mean[i],
            blocks.bn_var[i],
            BN_EPS,
        )
        outs.append(out.unsqueeze(1))
    return torch.cat(outs, dim=1)


def readout(head: AUHead, nodes: torch.Tensor) -> torch.Tensor:
    """Cosine of each node with its ReLU'd centre; sub-AUs one pair at a time, as the reference."""
    b, n, c = nodes.shape
    main_sc = F.normalize(torch.relu(head.main_sc), p=2, dim=-1)
    main = (F.normalize(nodes, p=2, dim=-1) * main_sc.view(1, n, c)).sum(dim=-1)
    sub_parents = [int(p) for p in head.sub_parents[0::2]]
    sub = []
    for pair, parent in enumerate(sub_parents):
        node = F.normalize(nodes[:, parent], p=2, dim=-1)
        for side in (2 * pair, 2 * pair + 1):
            centre = F.normalize(torch.relu(head.sub_sc[side]), p=2, dim=-1)
            sub.append((node * centre.view(1, c)).sum(dim=-1)[:, None])
    return torch.cat([main, torch.cat(sub, dim=-1)], dim=-1)


# ---- stage 1 (ANFL) ---------------------------------------------------------------------------


def normalize_digraph(adj: torch.Tensor) -> torch.Tensor:
    """D^-1/2 A D^-1/2 with D built as a dense diagonal matrix and two bmm's."""
    b, n, _ = adj.shape
    inv_sqrt = adj.sum(dim=-1) ** -0.5
    diag = torch.eye(n, dtype=adj.dtype, device=adj.device).view(1, n, n) * inv_sqrt.view(b, n, 1)
    return torch.bmm(torch.bmm(diag, adj), diag)


def dynamic_graph_gnn(gnn: DynamicGraphGNN, f_v: torch.Tensor) -> torch.Tensor:
    """The stage-1 GNN on (B, N, C) nodes: top-K dot-product graph, kept where sim >= K-th."""
    b, n, _ = f_v.shape
    sim = torch.einsum("bij,bjk->bik", f_v, f_v.transpose(1, 2))
    threshold = sim.topk(k=gnn.neighbors, dim=-1, largest=True)[0][:, :, -1].view(b, n, 1)
    adj = normalize_digraph((sim >= threshold).float())
    aggregate = torch.einsum("bij,bjk->bik", adj, _linear(f_v, gnn.V.weight, gnn.V.bias))
    return torch.relu(
        f_v + _bn_channels_dim1(aggregate + _linear(f_v, gnn.U.weight, gnn.U.bias), gnn.bnv)
    )


def anfl_forward(head: ANFLHead, x: torch.Tensor) -> torch.Tensor:
    f_v = per_au_features(head.au_linears, x).mean(dim=-2)
    return readout(head, dynamic_graph_gnn(head.gnn, f_v))


# ---- stage 2 (MEFL) ---------------------------------------------------------------------------


def incidence_matrices(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense (N*N, N) `start` and `end`: edge e = i*N + j starts at node j and ends at node i."""
    end = torch.zeros(n * n, n)
    for i in range(n):
        end[i * n : (i + 1) * n, i] = 1
    start = torch.eye(n).repeat(n, 1)
    return start, end


def cross_attention(attn: CrossAttention, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Queries from y, keys and values from x, one softmax over the key tokens."""
    query = _linear(y, attn.linear_q.weight, attn.linear_q.bias)
    key = _linear(x, attn.linear_k.weight, attn.linear_k.bias)
    value = _linear(x, attn.linear_v.weight, attn.linear_v.bias)
    dots = torch.matmul(query, key.transpose(-2, -1)) * attn.scale
    return torch.matmul(torch.softmax(dots, dim=-1), value)


def edge_features(
    head: MEFLHead, class_feature: torch.Tensor, tokens: torch.Tensor
) -> torch.Tensor:
    """(B, N, D, C) per-AU maps -> (B, N*N, C): every pair's map materialised, BN per token."""
    gem = head.edge_extractor
    b, n, d, c = class_feature.shape
    global_feature = tokens.repeat(1, n, 1).view(b, n, d, c)
    feat = cross_attention(gem.FAM, class_feature, global_feature)
    feat_end = feat.repeat(1, 1, n, 1).view(b, -1, d, c)
    feat_start = feat.repeat(1, n, 1, 1).view(b, -1, d, c)
    feat = cross_attention(gem.ARM, feat_start, feat_end)
    edge = _bn_channels_dim1(_linear(feat, gem.edge_proj.weight, gem.edge_proj.bias), gem.bn)
    return edge.mean(dim=-2)


def gated_gnn_layer(
    layer: GatedGNNLayer,
    x: torch.Tensor,
    edge: torch.Tensor,
    start: torch.Tensor,
    end: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    n = start.shape[1]
    vix = _linear(x, layer.A.weight, None)
    vjx = _linear(x, layer.B.weight, None)
    e = _linear(edge, layer.E.weight, None)
    edge = edge + torch.relu(
        _bn_channels_dim1(
            torch.einsum("ev,bvc->bec", end, vix) + torch.einsum("ev,bvc->bec", start, vjx) + e,
            layer.bne,
        )
    )
    gate = torch.sigmoid(edge)
    b, _, c = gate.shape
    gate = torch.softmax(gate.view(b, n, n, c), dim=2).view(b, -1, c)
    ujx = torch.einsum("ev,bvc->bec", start, _linear(x, layer.V.weight, None))
    uix = _linear(x, layer.U.weight, None)
    x_new = uix + torch.einsum("ve,bec->bvc", end.t(), gate * ujx) / n
    return x + torch.relu(_bn_channels_dim1(x_new, layer.bnv)), edge


def mefl_forward(head: MEFLHead, x: torch.Tensor) -> torch.Tensor:
    f_u = per_au_features(head.au_linears, x)
    f_v = f_u.mean(dim=-2)
    f_e = edge_features(head, f_u, x)
    start, end = incidence_matrices(f_v.shape[1])
    start, end = start.to(x), end.to(x)
    for layer in head.gnn.graph_layers:
        assert isinstance(layer, GatedGNNLayer)
        f_v, f_e = gated_gnn_layer(layer, f_v, f_e, start, end)
    return readout(head, f_v)


# ---- entry points -----------------------------------------------------------------------------


@torch.no_grad()
def oracle_head_forward(head: AUHead, tokens: torch.Tensor) -> torch.Tensor:
    """(B, D, C) tokens after the global LinearBlock -> (B, 41), by the reference's equations."""
    if isinstance(head, MEFLHead):
        return mefl_forward(head, tokens)
    if isinstance(head, ANFLHead):
        return anfl_forward(head, tokens)
    raise TypeError(f"not an OpenGraphAU head: {type(head).__name__}")


@torch.no_grad()
def oracle_forward(model: OpenGraphAU, images: torch.Tensor) -> torch.Tensor:
    """(B, 3, 224, 224) -> (B, 41): our backbone in plain fp32 eager form, the rest literal."""
    tokens = model.backbone(images)
    gl = model.global_linear
    bn_mean, bn_var = _bn_statistics(gl.bn)
    tokens = linear_block(
        tokens,
        gl.fc.weight,
        gl.fc.bias,
        gl.bn.weight,
        gl.bn.bias,
        bn_mean,
        bn_var,
        gl.bn.eps,
    )
    return oracle_head_forward(model.head, tokens)


@torch.no_grad()
def randomize_statistics_(module: ModuleT, generator: torch.Generator | None = None) -> ModuleT:
    """Give every BatchNorm (and the stacked AU blocks) trained-looking statistics, in place.

    Fresh BatchNorms are the identity, which would hide a wrongly folded mean or variance.
    """

    def normal(t: torch.Tensor, std: float) -> None:
        t.copy_(torch.randn(t.shape, generator=generator) * std)

    def uniform(t: torch.Tensor, low: float, high: float) -> None:
        t.copy_(torch.rand(t.shape, generator=generator) * (high - low) + low)

    for mod in module.modules():
        if isinstance(mod, nn.modules.batchnorm._BatchNorm):
            running_mean, running_var = _bn_statistics(mod)
            normal(running_mean, 0.1)
            uniform(running_var, 0.5, 2.0)
            uniform(mod.weight, 0.5, 1.5)
            normal(mod.bias, 0.1)
        elif isinstance(mod, AUBlocks):
            normal(mod.bn_mean, 0.1)
            uniform(mod.bn_var, 0.5, 2.0)
            uniform(mod.bn_weight, 0.5, 1.5)
            normal(mod.bn_bias, 0.1)
            normal(mod.bias, 0.1)
    return module


def random_model(arch: str, stage: int, seed: int = 0) -> OpenGraphAU:
    """A seeded random model whose BatchNorms look trained (see `randomize_statistics_`)."""
    torch.manual_seed(seed)
    return randomize_statistics_(
        build_model(arch=arch, stage=stage), torch.Generator().manual_seed(seed)
    )
