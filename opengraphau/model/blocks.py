"""Building blocks shared by the stage-1 and stage-2 heads."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..aus import NUM_MAIN_AUS, NUM_SUB_AUS, SUB_AU_PARENTS

BN_EPS = 1e-5


def _affine(
    weight: torch.Tensor, bias: torch.Tensor, mean: torch.Tensor, var: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    scale = weight * torch.rsqrt(var + eps)
    return scale, bias - mean * scale


def bn_affine(bn: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode BatchNorm as y = scale * x + shift per channel: (scale, shift), each (C,)."""
    if bn.training or bn.running_mean is None or bn.running_var is None:
        raise RuntimeError("folding a BatchNorm needs eval mode and its running statistics")
    return _affine(bn.weight, bn.bias, bn.running_mean, bn.running_var, bn.eps)


class LinearBlock(nn.Module):
    """Linear layer, BatchNorm over features, ReLU: applied to every token of a (B, D, C) batch."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_features, out_features)
        self.bn = nn.BatchNorm1d(out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.fc(x).transpose(1, 2)).transpose(1, 2))


class AUBlocks(nn.Module):
    """The 27 per-AU LinearBlocks stored as stacked tensors, so they run as one matmul.

    The official files hold 27 separate `main_class_linears.{i}` blocks; `checkpoint_filter_fn`
    in `model.checkpoint` stacks them into this layout. Inference only (BatchNorm uses its
    running statistics).
    """

    bn_mean: torch.Tensor
    bn_var: torch.Tensor

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
        """All blocks as one linear layer, BatchNorm folded in: weight (N*C, Cin), bias (N*C,).

        Row n*C + k is output channel k of AU n, so the product needs no transpose.
        """
        scale, shift = _affine(self.bn_weight, self.bn_bias, self.bn_mean, self.bn_var, BN_EPS)
        weight = (self.weight * scale.unsqueeze(-1)).flatten(0, 1)
        return weight, (self.bias * scale + shift).flatten()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D, C) tokens -> (B, D, N, C): token-major, the layout the one matmul produces."""
        weight, bias = self.folded()
        out = F.relu(F.linear(x, weight, bias), inplace=True)
        return out.unflatten(-1, (self.weight.shape[0], -1))


class FoldedAUBlocks(nn.Module):
    """`AUBlocks` with the folding done once, for inference copies that never change weights."""

    def __init__(self, blocks: AUBlocks) -> None:
        super().__init__()
        weight, bias = blocks.folded()
        self.num_aus = blocks.weight.shape[0]
        self.linear = nn.Linear(weight.shape[1], weight.shape[0], device=weight.device)
        self.linear.weight.data.copy_(weight.detach())
        self.linear.bias.data.copy_(bias.detach())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.linear(x), inplace=True).unflatten(-1, (self.num_aus, -1))


class AUHead(nn.Module):
    """What both heads share: the per-AU blocks and the cosine readout against learned AU centres.

    Parameter names (`main_sc`, `sub_sc`) are the official ones so checkpoints map one to one.
    """

    sub_parents: torch.Tensor

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.au_linears: nn.Module = AUBlocks(channels)
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
