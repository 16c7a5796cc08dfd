"""Supernets of the ``nb201`` and ``darts`` cell spaces: every operation on every edge.

A *mixed operation* (DARTS, Liu et al. ICLR 2019, Sec. 2.2, eq. 2) holds one module per
operation of its space on one edge and returns ``sum_k w_k * op_k(x)`` with ``w`` the edge's
weights, a softmax of the edge's architecture parameters ``alpha``. The ``none`` operation is
a zero term: it adds nothing to the sum (its weight still takes part in the softmax, so its
gradient is the published one). In GDAS mode (Dong & Yang, CVPR 2019, Sec. 3.2) the weights
are a hard one-hot sample with a straight-through gradient and only the sampled operation is
computed (``index``), which is what makes GDAS about ``|O|`` times cheaper a step.

The operation modules are the spaces' own (``nb201_ops.make_operation``,
``darts_ops.make_op``), with every batch norm replaced by one without affine parameters
(DARTS, Sec. 3.1.1: "we disable learnable affine parameters in all batch normalizations" of
the search network; the published search net also follows each pooling with such a batch
norm, done here for the DARTS space as published).

Architecture parameters are separate ``nn.Parameter`` tensors, shared by every cell of a
type (one ``[6, 5]`` tensor for NB201; ``[14, K]`` for the normal and the reduction cell of
DARTS), initialised ``1e-3 * N(0, 1)`` (published code). :meth:`Supernet.arch_parameters`
and :meth:`Supernet.weight_parameters` split the two sets for their two optimizers.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nasforge.errors import ConfigError
from nasforge.spaces import darts_ops, nb201_ops

MIN_DARTS_CELLS = 3
"""Fewest cells of a DARTS supernet: reductions sit at L/3 and 2L/3 (DARTS, Sec. 3.1.1), so
with 1 or 2 cells every cell is a reduction cell and no normal cell is searched."""

METHODS: tuple[str, ...] = ("softmax", "gumbel")
"""How edge weights come from ``alpha``: DARTS' softmax, or GDAS' hard Gumbel-softmax."""


def without_affine(module: nn.Module) -> nn.Module:
    """``module`` with every ``BatchNorm2d`` replaced in place by one with ``affine=False``
    (same channel count); returns ``module``."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, nn.BatchNorm2d(child.num_features, affine=False))
        else:
            without_affine(child)
    return module


class MixedOp(nn.Module):
    """One edge holding every operation. ``forward(x, weights, index)``: x [N, C, H, W],
    weights [K] (one per operation); ``index`` None sums every op weighted, an int computes
    only op ``index`` times its weight (GDAS). Zero ops (``is_zero``) add nothing to a sum."""

    def __init__(self, ops: Sequence[nn.Module], is_zero: Sequence[bool]) -> None:
        super().__init__()
        self.ops = nn.ModuleList(ops)
        self.is_zero = tuple(bool(z) for z in is_zero)

    def forward(self, x: torch.Tensor, weights: torch.Tensor,
                index: int | None = None) -> torch.Tensor:  # noqa: D102
        if index is not None:
            return weights[index] * self.ops[index](x)
        total: torch.Tensor | None = None
        for k, op in enumerate(self.ops):
            if self.is_zero[k]:
                continue
            term = weights[k] * op(x)
            total = term if total is None else total + term
        if total is None:  # every op is a zero op
            return weights.sum() * self.ops[0](x) * 0.0
        return total


def edge_weights(alpha: torch.Tensor, method: str, tau: float = 1.0
                 ) -> tuple[torch.Tensor, list[int] | None]:
    """Weights [E, K] of the edges from their parameters ``alpha`` [E, K], and the sampled op
    index per edge (``gumbel``) or None (``softmax``: every op is computed).

    ``gumbel``: ``F.gumbel_softmax(alpha, tau, hard=True)``: a one-hot sample per edge whose
    gradient is the soft sample's (straight-through; GDAS, Sec. 3.2, eq. 5-6)."""
    if method == "softmax":
        return F.softmax(alpha, dim=-1), None
    if method == "gumbel":
        for _ in range(10):  # as GDAS' code: draw again on a non-finite sample (rare)
            hard = F.gumbel_softmax(alpha, tau=tau, hard=True, dim=-1)
            if torch.isfinite(hard).all():
                break
        return hard, [int(i) for i in hard.detach().argmax(dim=-1)]
    raise ConfigError(f"unknown edge weighting {method!r}; known: {', '.join(METHODS)}")


class Supernet(nn.Module):
    """Base of the supernets: architecture vs. weight parameters, the weighting ``method``
    and the Gumbel temperature ``tau`` (plain attributes a search loop sets)."""

    method: str = "softmax"
    tau: float = 1.0
    operations: tuple[str, ...] = ()

    def arch_parameters(self) -> list[nn.Parameter]:
        """The architecture parameters (``alpha`` tensors)."""
        return [p for n, p in self.named_parameters() if n.startswith("alpha")]

    def weight_parameters(self) -> list[nn.Parameter]:
        """Every other trainable parameter (the network's weights)."""
        return [p for n, p in self.named_parameters() if not n.startswith("alpha")]

    def alphas(self) -> dict[str, torch.Tensor]:
        """The architecture parameters by cell type (``"cell"``; or ``"normal"``,
        ``"reduce"``), detached."""
        return {n.removeprefix("alpha_"): p.detach().clone()
                for n, p in self.named_parameters() if n.startswith("alpha")}

    def _weights(self, alpha: torch.Tensor) -> tuple[torch.Tensor, list[int] | None]:
        if not self.training and self.method == "gumbel":  # evaluate the most likely cell
            hard = F.one_hot(alpha.argmax(-1), alpha.shape[-1]).to(alpha.dtype)
            return hard, [int(i) for i in alpha.argmax(-1)]
        return edge_weights(alpha, self.method, self.tau)


# ---------------------------------------------------------------------------- NB201
class NB201MixedCell(nn.Module):
    """The NB201 cell with a mixed op on each of its 6 edges (``EDGES`` order):
    [N, C, H, W] -> [N, C, H, W]."""

    def __init__(self, channels: int, operations: Sequence[str]) -> None:
        super().__init__()
        edges = []
        for _ in nb201_ops.EDGES:
            mods = [nb201_ops.make_operation(op, channels) or nn.Identity() for op in operations]
            edges.append(MixedOp([without_affine(m) for m in mods],
                                 [op == "none" for op in operations]))
        self.edges = nn.ModuleList(edges)

    def forward(self, x: torch.Tensor, weights: torch.Tensor,
                index: list[int] | None) -> torch.Tensor:  # noqa: D102
        nodes = [x]
        for node in (1, 2, 3):
            total: torch.Tensor | None = None
            for k, (dst, src) in enumerate(nb201_ops.EDGES):
                if dst != node:
                    continue
                idx = None if index is None else index[k]
                if idx is not None and self.edges[k].is_zero[idx]:
                    term = weights[k, idx] * nodes[src] * 0.0
                else:
                    term = self.edges[k](nodes[src], weights[k], idx)
                total = term if total is None else total + term
            nodes.append(total)  # type: ignore[arg-type]
        return nodes[3]


class NB201Supernet(Supernet):
    """NAS-Bench-201's macro skeleton (``nb201_ops.NB201Network``) with mixed cells; one
    ``alpha_cell`` [6, 5] shared by every cell. [N, C_in, H, W] -> [N, classes]."""

    def __init__(self, in_channels: int, num_classes: int, channels: int, cells: int,
                 operations: Sequence[str] = nb201_ops.OPERATIONS,
                 method: str = "softmax") -> None:
        super().__init__()
        self.operations = tuple(operations)
        self.method = method
        c = channels
        self.stem = without_affine(nn.Sequential(
            nn.Conv2d(in_channels, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)))
        layers: list[nn.Module] = []
        for stage, width in enumerate((c, 2 * c, 4 * c)):
            if stage > 0:
                layers.append(without_affine(nb201_ops.ResNetBasicBlock(width // 2, width)))
            layers.extend(NB201MixedCell(width, self.operations) for _ in range(cells))
        self.layers = nn.ModuleList(layers)
        self.head = nn.Sequential(nn.BatchNorm2d(4 * c, affine=False), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(4 * c, num_classes)
        self.alpha_cell = nn.Parameter(1e-3 * torch.randn(len(nb201_ops.EDGES),
                                                          len(self.operations)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        weights, index = self._weights(self.alpha_cell)
        h = self.stem(x)
        for layer in self.layers:
            h = layer(h, weights, index) if isinstance(layer, NB201MixedCell) else layer(h)
        return self.classifier(self.head(h))


# ---------------------------------------------------------------------------- DARTS
def darts_edges() -> list[tuple[int, int]]:
    """The 14 (node, input) edges of a DARTS search cell in the published order: node 2
    from 0, 1; node 3 from 0, 1, 2; node 4 from 0..3; node 5 from 0..4."""
    return [(2 + i, j) for i in range(darts_ops.STEPS) for j in range(2 + i)]


def _darts_op(name: str, channels: int, stride: int) -> nn.Module:
    op = without_affine(darts_ops.make_op(name, channels, stride))
    if "pool" in name:  # the published search net: pooling, then BN without affine
        op = nn.Sequential(op, nn.BatchNorm2d(channels, affine=False))
    return op


class DartsMixedCell(nn.Module):
    """A DARTS search cell: two preprocessed inputs, 4 nodes each summing a mixed op from
    every earlier node, output the concatenation of the 4 nodes.
    (N, c_pp, H0, W0), (N, c_p, H1, W1) -> (N, 4c, H', W')."""

    def __init__(self, operations: Sequence[str], c_pp: int, c_p: int, c: int,
                 reduction: bool, reduction_prev: bool) -> None:
        super().__init__()
        self.reduction = reduction
        pre0 = (darts_ops.FactorizedReduce(c_pp, c) if reduction_prev
                else darts_ops.relu_conv_bn(c_pp, c))
        self.pre0 = without_affine(pre0)
        self.pre1 = without_affine(darts_ops.relu_conv_bn(c_p, c))
        self.edges = nn.ModuleList(
            MixedOp([_darts_op(op, c, 2 if reduction and j < 2 else 1) for op in operations],
                    [op == "none" for op in operations])
            for _, j in darts_edges())

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor,
                index: list[int] | None) -> torch.Tensor:  # noqa: D102
        states = [self.pre0(s0), self.pre1(s1)]
        k = 0
        for _ in range(darts_ops.STEPS):
            total: torch.Tensor | None = None
            for h in list(states):
                idx = None if index is None else index[k]
                term = self.edges[k](h, weights[k], idx)
                total = term if total is None else total + term
                k += 1
            states.append(total)  # type: ignore[arg-type]
        return torch.cat(states[2:], dim=1)


class DartsSupernet(Supernet):
    """The DARTS search network (published: 8 cells, C=16): stem 3C, ``cells`` mixed cells
    with reductions at L/3 and 2L/3, GAP, linear; ``alpha_normal`` and ``alpha_reduce``
    [14, K]. [N, C_in, H, W] -> [N, classes]."""

    def __init__(self, in_channels: int, num_classes: int, channels: int, cells: int,
                 operations: Sequence[str] = darts_ops.OPERATIONS,
                 method: str = "softmax") -> None:
        super().__init__()
        if cells < MIN_DARTS_CELLS:
            raise ConfigError(f"a DARTS supernet needs at least {MIN_DARTS_CELLS} cells, got "
                              f"{cells}: with fewer, every cell is a reduction cell and the "
                              "normal cell's architecture parameters get no gradient")
        self.operations = tuple(operations)
        self.method = method
        stem = darts_ops.STEM_MULTIPLIER * channels
        self.stem = nn.Sequential(nn.Conv2d(in_channels, stem, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(stem, affine=False))
        self.cells = nn.ModuleList()
        c_out = stem
        for c_pp, c_p, c, reduction, red_prev in darts_ops._macro(cells, channels):
            self.cells.append(DartsMixedCell(self.operations, c_pp, c_p, c, reduction, red_prev))
            c_out = darts_ops.STEPS * c
        self.classifier = nn.Linear(c_out, num_classes)
        n_edges = len(darts_edges())
        self.alpha_normal = nn.Parameter(1e-3 * torch.randn(n_edges, len(self.operations)))
        self.alpha_reduce = nn.Parameter(1e-3 * torch.randn(n_edges, len(self.operations)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        normal = self._weights(self.alpha_normal)
        reduce = self._weights(self.alpha_reduce)
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            w, idx = reduce if cell.reduction else normal
            s0, s1 = s1, cell(s0, s1, w, idx)
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(s1, 1), 1))


def build_supernet(space_name: str, input_shape: Sequence[int], num_classes: int,
                   channels: int, cells: int, operations: Sequence[str] | None = None,
                   method: str = "softmax") -> Supernet:
    """The supernet of space ``space_name`` (``nb201``: ``cells`` per stage; ``darts``:
    ``cells`` in all) at stem width ``channels`` for images ``input_shape`` (C, H, W).

    Raises ConfigError for a space without a supernet or a bad size."""
    if method not in METHODS:
        raise ConfigError(f"unknown edge weighting {method!r}; known: {', '.join(METHODS)}")
    if not isinstance(cells, int) or cells < 1 or not isinstance(channels, int) or channels < 2:
        raise ConfigError(f"supernet: cells >= 1 and channels >= 2 needed, got {cells!r}, "
                          f"{channels!r}")
    in_ch = int(input_shape[0])
    if space_name == "nb201":
        return NB201Supernet(in_ch, num_classes, channels, cells,
                             operations or nb201_ops.OPERATIONS, method)
    if space_name == "darts":
        return DartsSupernet(in_ch, num_classes, channels, cells,
                             operations or darts_ops.OPERATIONS, method)
    raise ConfigError(f"space {space_name!r} has no supernet; spaces with one: nb201, darts")
