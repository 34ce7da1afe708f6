"""Stage-2 head (MEFL): cross-attention edge features for every AU pair + two gated GNN layers.

The reference builds the pairwise features by repeating every AU's (D, C) feature map N times
(a B x N*N x D x C tensor). Here the same function is computed from the pairwise products alone:
attention scores are formed for each (i, j) pair directly, and because the edge projection and
its BatchNorm are affine, the mean over tokens is taken before them instead of after.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from conf import NUM_MAIN_AUS

from .blocks import AUHead


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

    def __init__(self, channels: int, num_nodes: int = NUM_MAIN_AUS) -> None:
        super().__init__()
        self.num_nodes = num_nodes
        self.FAM = CrossAttention(channels)
        self.ARM = CrossAttention(channels)
        self.edge_proj = nn.Linear(channels, channels)
        self.bn = nn.BatchNorm2d(num_nodes * num_nodes)
        nn.init.normal_(self.edge_proj.weight, 0.0, (2.0 / channels) ** 0.5)

    def forward(self, au_maps: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """(B, N, D, C) per-AU maps and (B, D, C) tokens -> (B, N*N, C), edge e = i*N + j."""
        if self.training:
            raise RuntimeError("EdgeFeatures is inference-only: it pools before its BatchNorm")
        b, n, _, c = au_maps.shape
        fam, arm = self.FAM, self.ARM
        # FAM: each AU map attends over the shared global tokens (keys/values computed once).
        key, value = fam.linear_k(tokens), fam.linear_v(tokens)
        attn = torch.softmax(torch.matmul(fam.linear_q(au_maps), key.unsqueeze(1).transpose(-1, -2))
                             * fam.scale, dim=-1)
        feat = torch.matmul(attn, value.unsqueeze(1))                       # (B, N, D, C)
        # ARM: queries from AU j, keys/values from AU i, for every pair (i, j).
        q, k, v = arm.linear_q(feat), arm.linear_k(feat), arm.linear_v(feat)
        scores = torch.matmul(q.unsqueeze(1), k.unsqueeze(2).transpose(-1, -2)) * arm.scale
        mean_attn = torch.softmax(scores, dim=-1).mean(dim=-2)              # (B, N_i, N_j, D)
        pooled = torch.matmul(mean_attn, v)                                 # (B, N_i, N_j, C)
        # The BatchNorm2d's channels are the N*N edges: a per-edge affine map, so it commutes
        # with the mean over tokens taken above.
        return self.bn(self.edge_proj(pooled.reshape(b, n * n, c)).unsqueeze(-1)).squeeze(-1)


class GatedGNNLayer(nn.Module):
    """One gated graph layer that updates node and edge features together."""

    def __init__(self, channels: int, num_nodes: int = NUM_MAIN_AUS) -> None:
        super().__init__()
        self.num_nodes = num_nodes
        for name in ("U", "V", "A", "B", "E"):
            layer = nn.Linear(channels, channels, bias=False)
            nn.init.normal_(layer.weight, 0.0, (2.0 / channels) ** 0.5)
            setattr(self, name, layer)
        self.bnv = nn.BatchNorm1d(num_nodes)
        self.bne = nn.BatchNorm1d(num_nodes * num_nodes)

    def forward(self, x: torch.Tensor, edge: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, N, C), edge (B, N*N, C) with e = i*N + j -> updated (x, edge)."""
        b, n, c = x.shape
        pair = self.A(x).unsqueeze(2) + self.B(x).unsqueeze(1)             # A x_i + B x_j
        edge = edge + F.relu(self.bne(pair.reshape(b, n * n, c) + self.E(edge)))
        gate = torch.softmax(torch.sigmoid(edge).view(b, n, n, c), dim=2)  # over j, per i
        message = (gate * self.V(x).unsqueeze(1)).sum(dim=2) / n
        x = x + F.relu(self.bnv(self.U(x) + message))
        return x, edge


class GatedGNN(nn.Module):
    def __init__(self, channels: int, num_nodes: int = NUM_MAIN_AUS, layers: int = 2) -> None:
        super().__init__()
        self.graph_layers = nn.ModuleList(GatedGNNLayer(channels, num_nodes) for _ in range(layers))

    def forward(self, x: torch.Tensor, edge: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for layer in self.graph_layers:
            x, edge = layer(x, edge)
        return x, edge


class MEFLHead(AUHead):
    """Tokens (B, D, C) -> 41 AU scores: per-AU nodes, pairwise edges, two gated GNN layers."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels)
        self.edge_extractor = EdgeFeatures(channels)
        self.gnn = GatedGNN(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        au_maps = self.au_linears(x)
        nodes, _ = self.gnn(au_maps.mean(dim=-2), self.edge_extractor(au_maps, x))
        return self.readout(nodes)
