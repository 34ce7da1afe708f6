"""Building blocks shared by the stage-1 and stage-2 heads."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from conf import NUM_MAIN_AUS, NUM_SUB_AUS, SUB_AU_PARENTS

BN_EPS = 1e-5


class LinearBlock(nn.Module):
    """Linear layer, BatchNorm over features, ReLU: applied to every token of a (B, D, C) batch."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_features, out_features)
        self.bn = nn.BatchNorm1d(out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.fc(x).transpose(1, 2)).transpose(1, 2))


class AUBlocks(nn.Module):
    """The 27 per-AU LinearBlocks stored as stacked tensors, so they run as one batched matmul.

    The official files hold 27 separate `main_class_linears.{i}` blocks; `checkpoint_filter_fn`
    in `model.checkpoint` stacks them into this layout. Inference only (BatchNorm uses its
    running statistics).
    """

    def __init__(self, channels: int, num_aus: int = NUM_MAIN_AUS) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_aus, channels, channels))
        self.bias = nn.Parameter(torch.zeros(num_aus, channels))
        self.bn_weight = nn.Parameter(torch.ones(num_aus, channels))
        self.bn_bias = nn.Parameter(torch.zeros(num_aus, channels))
        self.register_buffer("bn_mean", torch.zeros(num_aus, channels))
        self.register_buffer("bn_var", torch.ones(num_aus, channels))
        nn.init.normal_(self.weight, 0.0, (2.0 / channels) ** 0.5)

    def folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Weight (N, Cin, Cout) and bias (N, Cout) with the BatchNorm folded in."""
        scale = self.bn_weight * torch.rsqrt(self.bn_var + BN_EPS)
        weight = (self.weight * scale.unsqueeze(-1)).transpose(1, 2)
        bias = (self.bias - self.bn_mean) * scale + self.bn_bias
        return weight, bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D, C) tokens -> (B, N, D, C) per-AU token features."""
        weight, bias = self.folded()
        y = torch.matmul(x.unsqueeze(1), weight.unsqueeze(0)) + bias[None, :, None, :]
        return F.relu(y)


class AUHead(nn.Module):
    """What both heads share: the per-AU blocks and the cosine readout against learned AU centres.

    Parameter names (`main_sc`, `sub_sc`) are the official ones so checkpoints map one to one.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.au_linears = AUBlocks(channels)
        self.main_sc = nn.Parameter(torch.empty(NUM_MAIN_AUS, channels))
        self.sub_sc = nn.Parameter(torch.empty(NUM_SUB_AUS, channels))
        nn.init.xavier_uniform_(self.main_sc)
        nn.init.xavier_uniform_(self.sub_sc)
        parents = torch.tensor(SUB_AU_PARENTS).repeat_interleave(2)
        self.register_buffer("sub_parents", parents, persistent=False)

    def readout(self, nodes: torch.Tensor) -> torch.Tensor:
        """(B, 27, C) node features -> (B, 41): cosine of each node with its ReLU'd centre.

        The 14 left/right AUs reuse the node of their parent AU against their own centres.
        Node features are non-negative, so the scores lie in [0, 1].
        """
        nodes = F.normalize(nodes, p=2, dim=-1)
        main = F.normalize(F.relu(self.main_sc), p=2, dim=-1)
        sub = F.normalize(F.relu(self.sub_sc), p=2, dim=-1)
        main_scores = (nodes * main).sum(-1)
        sub_scores = (nodes[:, self.sub_parents] * sub).sum(-1)
        return torch.cat([main_scores, sub_scores], dim=-1)
