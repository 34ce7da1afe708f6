"""Stage-1 head (ANFL): AU node features + a dynamic top-K graph and one GNN layer."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..aus import NUM_MAIN_AUS
from .blocks import AUHead


class DynamicGraphGNN(nn.Module):
    """x' = ReLU(x + BN(A·V(x) + U(x))), A the symmetric-normalised top-K dot-product graph."""

    def __init__(self, channels: int, num_nodes: int = NUM_MAIN_AUS, neighbors: int = 4) -> None:
        super().__init__()
        self.neighbors = neighbors
        self.U = nn.Linear(channels, channels)
        self.V = nn.Linear(channels, channels)
        self.bnv = nn.BatchNorm1d(num_nodes)
        nn.init.normal_(self.U.weight, 0.0, (2.0 / channels) ** 0.5)
        nn.init.normal_(self.V.weight, 0.0, (2.0 / channels) ** 0.5)

    def adjacency(self, x: torch.Tensor) -> torch.Tensor:
        """Each node links to the nodes whose dot product with it reaches its K-th largest."""
        sim = torch.bmm(x, x.transpose(1, 2))
        kth = sim.topk(self.neighbors, dim=-1).values[..., -1:]
        adj = (sim >= kth).to(x.dtype)
        inv_sqrt_deg = adj.sum(-1).rsqrt()
        return inv_sqrt_deg.unsqueeze(-1) * adj * inv_sqrt_deg.unsqueeze(-2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        adj = self.adjacency(x.detach())
        return F.relu(x + self.bnv(torch.bmm(adj, self.V(x)) + self.U(x)))


class ANFLHead(AUHead):
    """Tokens (B, D, C) -> 41 AU scores: mean-pooled per-AU features refined by the dynamic GNN."""

    def __init__(self, channels: int, neighbors: int = 4) -> None:
        super().__init__(channels)
        self.gnn = DynamicGraphGNN(channels, neighbors=neighbors)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = self.au_linears(x).mean(dim=1)
        return self.readout(self.gnn(nodes))
