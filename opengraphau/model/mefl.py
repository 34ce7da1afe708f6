"""Stage-2 head (MEFL): cross-attention edge features for every AU pair + two gated GNN layers.

The reference builds the pairwise features by repeating every AU's (D, C) feature map N times
(B x N*N x D x C tensors) and runs a cross-attention over each copy. The same function costs
far less because an attention output is a mix of value rows with weights summing to one, and
such a mix commutes with affine maps:

* FAM's output for AU n is attn_n @ V, V the projected global tokens, so the ARM's queries,
  keys and values for AU n are attn_n times projections of V: three (D, C) projections per
  image instead of three per AU, and the ARM scores of pair (i, j) are
  attn_j @ (Q K^T) @ attn_i^T, a product with inner size D rather than C/2.
* The edge projection and the edges' BatchNorm are affine, so the mean over tokens is taken
  before them: edge (i, j) = BN(w_ij @ basis), w_ij the ARM attention averaged over its
  queries and mapped through attn_i, basis the projected values (D rows per image).
* The first GNN layer's E is linear as well, so E(edge) comes from E(basis) (D rows), not
  from an (N*N, C) x (C, C) product.
"""

from __future__ import annotations

import math
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from ..aus import NUM_MAIN_AUS
from .blocks import AUHead, bn_affine

LOG2_E = math.log2(math.e)


def _exp2_(x: torch.Tensor) -> torch.Tensor:
    """2**x in place: exp2 is several times faster than exp on CPU, but has no ONNX op."""
    if torch.onnx.is_in_onnx_export():
        return x.mul_(math.log(2.0)).exp_()
    return x.exp2_()


class CrossAttention(nn.Module):
    """Single-head attention of queries from one feature map over keys/values of another."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.linear_q = nn.Linear(channels, channels // 2)
        self.linear_k = nn.Linear(channels, channels // 2)
        self.linear_v = nn.Linear(channels, channels)
        self.scale = (channels // 2) ** -0.5
        nn.init.normal_(self.linear_q.weight, 0.0, (2.0 / (channels // 2)) ** 0.5)
        nn.init.normal_(self.linear_k.weight, 0.0, (2.0 / (channels // 2)) ** 0.5)
        nn.init.normal_(self.linear_v.weight, 0.0, (2.0 / channels) ** 0.5)


class EdgeFeatures(nn.Module):
    """GEM: edge (i, j) = mean over tokens of BN(P(attention of AU j's map over AU i's map))."""

    #: Pair scores computed at once: blocks of (query AU, key AU) pairs small enough to stay in
    #: cache through the softmax, since those passes over memory cost as much as the products.
    scores_per_block = 1 << 19
    #: On a GPU the opposite holds: few, large launches. Pair scores computed per kernel there
    #: (1 GiB of fp32), over as many whole images as fit.
    scores_per_gpu_chunk = 1 << 28

    def __init__(self, channels: int, num_nodes: int = NUM_MAIN_AUS) -> None:
        super().__init__()
        self.num_nodes = num_nodes
        self.FAM = CrossAttention(channels)
        self.ARM = CrossAttention(channels)
        self.edge_proj = nn.Linear(channels, channels)
        self.bn = nn.BatchNorm2d(num_nodes * num_nodes)
        nn.init.normal_(self.edge_proj.weight, 0.0, (2.0 / channels) ** 0.5)

    def forward(
        self, au_maps: torch.Tensor, tokens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, D, N, C) per-AU maps, (B, D, C) tokens -> weights (B, N*N, D), basis (B, D, C).

        Edge e = i*N + j before the BatchNorm is weights[e] @ basis: returned factored, so a
        linear map of the edges can be applied to the D basis rows instead of the N*N edges.
        """
        if self.training:
            raise RuntimeError("EdgeFeatures is inference-only: it pools before its BatchNorm")
        _, d, n, c = au_maps.shape  # the batch stays -1 in reshapes, for dynamic exports
        fam, arm = self.FAM, self.ARM
        # FAM: q_n k^T = au_n (k W_q)^T + k b_q, so the queries are never projected.
        key = fam.linear_k(tokens)  # (B, D, C/2)
        key_in = torch.matmul(key, fam.linear_q.weight) * fam.scale  # (B, D, C)
        key_bias = torch.matmul(key, fam.linear_q.bias) * fam.scale  # (B, D)
        scores = torch.baddbmm(
            key_bias.unsqueeze(1), au_maps.reshape(-1, d * n, c), key_in.transpose(1, 2)
        )
        attn = torch.softmax(scores, dim=-1).view(-1, d, n, d)  # [dq, n, dk]
        attn = attn.transpose(1, 2).contiguous()  # (B, N, D, D)
        # ARM on FAM's output attn_n @ values: project the D value rows once per image.
        values = fam.linear_v(tokens)
        # In log2 units: the pair softmax below uses exp2, several times faster than exp here.
        gram = torch.bmm(arm.linear_q(values), arm.linear_k(values).transpose(1, 2))
        gram *= arm.scale * LOG2_E
        left = torch.matmul(attn, gram.unsqueeze(1))  # attn_j @ gram
        mean_attn = self._mean_attention(left, attn).transpose(1, 2)  # [i, j, dk]
        weights = torch.matmul(mean_attn, attn).view(-1, n * n, d)
        return weights, self.edge_proj(arm.linear_v(values))

    def _mean_attention(self, left: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
        """attn_j @ gram and attn_i, both (B, N, D, D) -> (B, N_j, N_i, D): the ARM attention
        rows of pair (i, j) averaged over its D queries.

        CPU: image by image, in blocks of query AUs j and key AUs i of at most
        `scores_per_block` scores. Traced (ONNX export): whole images in chunks of query AUs,
        sized by N and D alone, so the exported graph keeps a dynamic batch. GPU: as many
        whole images per call as `scores_per_gpu_chunk` allows (query-AU chunks of one image
        when even one is larger).
        """
        b, n, d, _ = left.shape
        per_j = n * d * d
        if torch.jit.is_tracing():
            step = max(1, self.scores_per_block // per_j)
            return torch.cat(
                [_pair_softmax_mean(left[:, j : j + step], attn) for j in range(0, n, step)], dim=1
            )
        if not left.is_cpu:
            return _batched_pair_softmax_mean(left, attn, self.scores_per_gpu_chunk)
        if per_j <= self.scores_per_block:
            j_blocks, i_blocks = _even_blocks(n, self.scores_per_block // per_j), [(0, n)]
        else:
            j_blocks = _even_blocks(n, 1)
            i_blocks = _even_blocks(n, self.scores_per_block // (d * d))
        out = left.new_empty(b, n, n, d)
        for image in range(b):
            for j0, j1 in j_blocks:
                for i0, i1 in i_blocks:
                    out[image, j0:j1, i0:i1] = _pair_softmax_mean(
                        left[image : image + 1, j0:j1], attn[image : image + 1, i0:i1]
                    )[0]
        return out


def _batched_pair_softmax_mean(left: torch.Tensor, attn: torch.Tensor, budget: int) -> torch.Tensor:
    """`_pair_softmax_mean` over whole images, as many per call as `budget` scores allow, or
    over chunks of query AUs of one image at a time when even one image is larger."""
    b, n, d, _ = left.shape
    per_j = n * d * d
    images = budget // (n * per_j)
    if images >= 1:
        return torch.cat(
            [
                _pair_softmax_mean(left[i : i + images], attn[i : i + images])
                for i in range(0, b, images)
            ]
        )
    step = max(1, budget // per_j)
    return torch.cat(
        [
            torch.cat(
                [
                    _pair_softmax_mean(left[i : i + 1, j : j + step], attn[i : i + 1])
                    for j in range(0, n, step)
                ],
                dim=1,
            )
            for i in range(b)
        ]
    )


def _even_blocks(n: int, most: int) -> list[tuple[int, int]]:
    """[0, n) cut into the fewest ranges of at most `most` (at least 1), as even as can be."""
    count = -(-n // max(1, most))
    size = -(-n // count)
    return [(start, min(start + size, n)) for start in range(0, n, size)]


def _pair_softmax_mean(left: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
    """attn_j @ gram (B, Nj, D, D), attn_i (B, Ni, D, D) -> (B, Nj, Ni, D): for every pair, the
    softmax over key tokens dk of the scores attn_j @ gram @ attn_i^T, averaged over queries dq.

    The scores (in log2 units) are one matmul per image laid out [(j, dq), (i, dk)], so each
    softmax runs over a contiguous row of D scores.
    """
    _, nj, d, _ = left.shape
    ni = attn.shape[1]
    scores = torch.matmul(left.reshape(-1, nj * d, d), attn.reshape(-1, ni * d, d).transpose(1, 2))
    scores = scores.view(-1, nj, d, ni, d)  # [j, dq, i, dk]
    scores -= scores.amax(dim=-1, keepdim=True)
    probs = _exp2_(scores)
    probs /= probs.sum(dim=-1, keepdim=True)
    return probs.mean(dim=2)


def _he_linear(channels: int) -> nn.Linear:
    layer = nn.Linear(channels, channels, bias=False)
    nn.init.normal_(layer.weight, 0.0, (2.0 / channels) ** 0.5)
    return layer


class GatedGNNLayer(nn.Module):
    """One gated graph layer that updates node and edge features together."""

    def __init__(self, channels: int, num_nodes: int = NUM_MAIN_AUS) -> None:
        super().__init__()
        self.num_nodes = num_nodes
        self.U, self.V, self.A, self.B, self.E = (_he_linear(channels) for _ in range(5))
        self.bnv = nn.BatchNorm1d(num_nodes)
        self.bne = nn.BatchNorm1d(num_nodes * num_nodes)

    def forward(
        self, x: torch.Tensor, edge: torch.Tensor, edge_e: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, N, C), edge (B, N*N, C) with e = i*N + j -> updated (x, edge).

        `edge_e` is E(edge) when the caller has it for less than the (N*N, C) x (C, C) product.
        Inference only: the (B, N*N, C) temporaries are updated in place to spare memory traffic.
        """
        _, n, c = x.shape  # the batch stays -1 in reshapes, for dynamic exports
        update = (self.A(x).unsqueeze(2) + self.B(x).unsqueeze(1)).view(-1, c)  # Ax_i + Bx_j
        if edge_e is None:  # the product accumulates straight onto the pair terms
            update.addmm_(edge.reshape(-1, c), self.E.weight.t())
        else:
            update += edge_e.reshape(-1, c)
        scale, shift = bn_affine(self.bne)
        update = update.view(-1, n * n, c).mul_(scale.unsqueeze(-1)).add_(shift.unsqueeze(-1))
        edge = update.relu_().add_(edge)
        # Softmax over j of sigmoid(edge): its inputs lie in (0, 1), so exp needs no shift.
        gate = _exp2_(torch.sigmoid(edge).mul_(LOG2_E)).view(-1, n, n, c)
        total = gate.sum(dim=2)
        message = gate.mul_(self.V(x).unsqueeze(1)).sum(dim=2).div_(total * n)
        x = x + F.relu(self.bnv(self.U(x) + message))
        return x, edge


class GatedGNN(nn.Module):
    def __init__(self, channels: int, num_nodes: int = NUM_MAIN_AUS, layers: int = 2) -> None:
        super().__init__()
        self.graph_layers = nn.ModuleList(GatedGNNLayer(channels, num_nodes) for _ in range(layers))

    @property
    def first_layer(self) -> GatedGNNLayer:
        return cast(GatedGNNLayer, self.graph_layers[0])

    def forward(
        self, x: torch.Tensor, edge: torch.Tensor, edge_e: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`edge_e`: the first layer's E(edge), if already known."""
        for layer in self.graph_layers:
            x, edge = layer(x, edge, edge_e)
            edge_e = None
        return x, edge


class MEFLHead(AUHead):
    """Tokens (B, D, C) -> 41 AU scores: per-AU nodes, pairwise edges, two gated GNN layers."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels)
        self.edge_extractor = EdgeFeatures(channels)
        self.gnn = GatedGNN(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        au_maps = self.au_linears(x)
        weights, basis = self.edge_extractor(au_maps, x)
        # The edges' BatchNorm2d has one channel per edge: edge = scale_e * (weights_e @ basis)
        # + shift_e. The first layer's E is linear, so E(edge) is formed from E(basis)'s D rows.
        scale, shift = bn_affine(self.edge_extractor.bn)
        scale, shift = scale.unsqueeze(-1), shift.unsqueeze(-1)
        edge = torch.bmm(weights, basis).mul_(scale).add_(shift)
        first_e = self.gnn.first_layer.E
        edge_e = torch.bmm(weights, first_e(basis)).mul_(scale).add_(shift * first_e.weight.sum(1))
        nodes, _ = self.gnn(au_maps.mean(dim=1), edge, edge_e)
        return self.readout(nodes)
