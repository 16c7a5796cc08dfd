"""Supernet searches run inside data-parallel ranks by tests/test_data_parallel_supernet.py
(imported by name in fresh processes, so they live in a module of their own)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nasforge.oneshot import SupernetSettings, discretise, fit_supernet, search_supernet
from nasforge.oneshot.supernet import MixedOp, Supernet
from nasforge.spaces.nb201_ops import EDGES, OPERATIONS

#: global batch 16 over 2 ranks: 8 images a rank and step; 2 epochs of 2 steps
EPOCHS, BATCH, STEPS = 2, 16, 2
#: learning rates raised from DARTS' published (0.025, 3e-4) so 4 steps move the alphas
FIRST_ORDER = SupernetSettings(w_lr=0.1, a_lr=0.05)


def _plain_op(name: str, channels: int) -> nn.Module:
    """NB201's operations without batch norm (``none`` is a zero term of the mixed op)."""
    if name in ("none", "skip_connect"):
        return nn.Identity()
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, 1, 1, count_include_pad=False)
    size = 1 if name == "nor_conv_1x1" else 3
    return nn.Sequential(nn.ReLU(), nn.Conv2d(channels, channels, size, padding=size // 2))


class PlainCell(nn.Module):
    """The NB201 cell (6 mixed edges, ``EDGES`` order) with batch-norm-free operations."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.edges = nn.ModuleList(
            MixedOp([_plain_op(op, channels) for op in OPERATIONS],
                    [op == "none" for op in OPERATIONS]) for _ in EDGES)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for node in (1, 2, 3):
            nodes.append(sum(self.edges[k](nodes[src], weights[k])
                             for k, (dst, src) in enumerate(EDGES) if dst == node))
        return nodes[3]


class PlainSupernet(Supernet):
    """conv stem -> one NB201 mixed cell without batch norm -> ReLU -> GAP -> linear, with one
    ``alpha_cell`` [6, 5]: a supernet whose forward on a batch is the mean of its forwards on
    the halves, so 2 ranks can match 1 process. [N, 1, 8, 8] -> [N, 4]."""

    def __init__(self, channels: int = 4, classes: int = 4) -> None:
        super().__init__()
        self.operations = OPERATIONS
        self.stem = nn.Conv2d(1, channels, 3, padding=1)
        self.cell = PlainCell(channels)
        self.head = nn.Linear(channels, classes)
        self.alpha_cell = nn.Parameter(1e-3 * torch.randn(len(EDGES), len(OPERATIONS)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights, _ = self._weights(self.alpha_cell)
        return self.head(F.relu(self.cell(self.stem(x), weights)).mean(dim=(2, 3)))


def planted(n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Images [n, 1, 8, 8] and 4 about balanced labels: the channel of largest standardised
    mean of ReLU(a fixed 3x3 convolution) (a learnable signal)."""
    gen = torch.Generator().manual_seed(5)
    x = torch.rand(n, 1, 8, 8, generator=gen)
    kernel = torch.randn(4, 1, 3, 3, generator=gen)
    signal = F.relu(F.conv2d(x, kernel - kernel.mean(dim=(2, 3), keepdim=True), padding=1))
    signal = signal.mean(dim=(2, 3))
    return x, ((signal - signal.mean(0)) / signal.std(0)).argmax(dim=1)


def plain_search(group: Any = None) -> dict[str, Any]:
    """First-order DARTS on :class:`PlainSupernet` (seed 0): alphas, weights, genome."""
    torch.manual_seed(0)
    model = PlainSupernet()
    x, y = planted()
    fit_supernet(model, x, y, epochs=EPOCHS, batch_size=BATCH, settings=FIRST_ORDER, seed=0,
                 max_steps=STEPS, group=group)
    genome = discretise("nb201", model.alphas(), OPERATIONS)
    return {"alpha": model.alpha_cell.detach().clone(), "genome": genome.to_string(),
            "weights": {k: v.detach().clone() for k, v in model.named_parameters()
                        if not k.startswith("alpha")}}


def nb201_search(settings: SupernetSettings, group: Any = None) -> dict[str, Any]:
    """``search_supernet`` of the NB201 supernet (batch norm without affine), 1 cell a stage,
    width 4: the discretised cell, the alphas history, the accuracy."""
    x, y = planted()
    outcome = search_supernet("nb201", OPERATIONS, x, y, 4, width=4, epochs=EPOCHS,
                              batch_size=BATCH, settings=settings, seed=1, max_steps=STEPS,
                              group=group)
    return {"genome": outcome.genome.to_string(), "acc": outcome.supernet_acc,
            "alphas": [h["alphas"]["cell"] for h in outcome.history]}


def searches(ctx: Any) -> dict[str, Any]:
    """Every search above on this rank's data-parallel group."""
    from nasforge.evaluation.ddp import RankGroup

    group = RankGroup(ctx.slow_group, ctx.device)
    return {"status": "ok", "rank": ctx.rank, "plain": plain_search(group),
            "second_order": nb201_search(SupernetSettings(order=2, a_lr=0.05), group),
            "gdas": nb201_search(SupernetSettings(method="gumbel", a_lr=0.05), group)}
