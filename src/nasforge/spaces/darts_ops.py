"""Modules of the DARTS evaluation network: operations, cells, the macro skeleton, and the
parameter count of each computed from the structure alone (no weights allocated).

Source: Liu, Simonyan & Yang, "DARTS: Differentiable Architecture Search", ICLR 2019
(section 2.1 and appendix A.1.2); the operation definitions follow the paper's published
code (written anew here). All ReLUs are out of place (a node's output feeds several ops).

**Operations** (``C`` channels in and out, stride 2 on an input node of a reduction cell):

- ``none``: zeros (``x[..., ::s, ::s] * 0``), no parameters;
- ``max_pool_3x3``/``avg_pool_3x3``: 3x3 pooling, padding 1 (average without the padded
  cells). The search network follows each pool with a BatchNorm without affine parameters;
  the evaluation network built here has none (as published);
- ``skip_connect``: identity, or in a reduction a *factorized reduce* (below);
- ``sep_conv_kxk`` (k = 3, 5): (ReLU, depthwise kxk conv, pointwise 1x1 conv, BN) twice, the
  stride on the first depthwise conv only;
- ``dil_conv_kxk`` (k = 3, 5): ReLU, depthwise kxk conv with dilation 2, pointwise conv, BN.

Every op maps an ``H x W`` map to ``ceil(H/s) x ceil(W/s)`` for stride ``s``.

**Odd sizes: the alignment rule.** The published factorized reduce concatenates a stride-2
1x1 conv of ``x`` and one of ``x`` shifted by one pixel (``x[:, :, 1:, 1:]``): on odd sizes
those give ``ceil(H/2)`` beside ``floor(H/2)`` (9x12 beside 8x11 for a 17x23 map) and the
concatenation fails. Here the shifted map is zero-padded by one row at the bottom and one
column at the right before its conv (``F.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:]``), so both halves
give ``ceil(H/2) x ceil(W/2)``, the size every other stride-2 op gives. On even sizes the padded
cells are never read by the stride-2 1x1 conv, so the result equals the published one. For an
odd ``C`` the shifted half gets the extra channel.

**Auxiliary head** (appendix A.1.2: weight 0.4 on CIFAR-10): on the output of cell
``2L // 3`` (the second reduction): ReLU, average pooling to 2x2, 1x1 conv to 128, BN, ReLU,
2x2 conv to 768, BN, ReLU, linear. The published pooling (5x5, stride 3, no padding) assumes
an 8x8 map; it is used wherever it gives 2x2 (maps of 8 to 10 pixels a side, e.g. 29x29 to
40x40 inputs) and an adaptive 2x2 average pooling elsewhere (a smaller map's cells are
repeated), so the head works at every input size with the same parameters.

**Drop-path** (as published): during training, the output of every op that is not an
identity is zeroed per sample with probability ``drop_path_prob`` and scaled by
``1 / (1 - p)``; the network's ``drop_path_prob`` is a plain attribute the trainer sets per
epoch (published: 0.2 x epoch / epochs, see :meth:`DartsNetwork.schedule_drop_path`).
"""

from __future__ import annotations

from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

OPERATIONS: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)
"""The 8 DARTS operations, in the published order (``PRIMITIVES``)."""

STEPS = 4
"""Intermediate nodes per cell (published); a cell outputs ``STEPS * C`` channels."""

STEM_MULTIPLIER = 3
"""The stem has ``3 * C`` channels (published code, ``stem_multiplier``)."""

AUX_CHANNELS = (128, 768)
"""Channels of the auxiliary head's two convolutions (published code)."""

Shape = tuple[int, int, int]

__all__ = [
    "AUX_CHANNELS",
    "OPERATIONS",
    "STEM_MULTIPLIER",
    "STEPS",
    "DartsNetwork",
    "FactorizedReduce",
    "aux_params",
    "drop_path",
    "make_op",
    "map_sizes",
    "network_params",
    "op_params",
    "reduction_cells",
]


def reduction_cells(cells: int) -> frozenset[int]:
    """Indices of the reduction cells among ``cells`` cells: ``L // 3`` and ``2L // 3``
    (published; one index when they coincide, L = 1)."""
    return frozenset({cells // 3, 2 * cells // 3})


def _reduced(size: int, stride: int) -> int:
    return -(-size // stride)


class Zero(nn.Module):
    """The ``none`` op: zeros of the strided shape."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return x[:, :, :: self.stride, :: self.stride] * 0.0


class FactorizedReduce(nn.Module):
    """Halve the map with two stride-2 1x1 convs (one on a one-pixel shift), concatenated,
    then BN; (N, c_in, H, W) -> (N, c_out, ceil(H/2), ceil(W/2)) for every H, W (padding rule
    in the module docstring)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        half = c_out // 2
        self.conv_1 = nn.Conv2d(c_in, half, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out - half, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        x = F.relu(x)
        shifted = F.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:]
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1))


def relu_conv_bn(c_in: int, c_out: int) -> nn.Sequential:
    """ReLU, 1x1 conv, BN: the preprocessing of a cell's input."""
    return nn.Sequential(nn.ReLU(), nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out))


def _dw_pw(c: int, kernel: int, stride: int, dilation: int) -> list[nn.Module]:
    pad = dilation * (kernel - 1) // 2
    return [
        nn.ReLU(),
        nn.Conv2d(c, c, kernel, stride, pad, dilation=dilation, groups=c, bias=False),
        nn.Conv2d(c, c, 1, bias=False),
        nn.BatchNorm2d(c),
    ]


def make_op(name: str, channels: int, stride: int) -> nn.Module:
    """The module of operation ``name`` at ``channels`` channels and ``stride`` (1 or 2).

    Raises KeyError for a name outside :data:`OPERATIONS` (the space validates first)."""
    c = channels
    if name == "none":
        return Zero(stride)
    if name == "max_pool_3x3":
        return nn.MaxPool2d(3, stride, padding=1)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride, padding=1, count_include_pad=False)
    if name == "skip_connect":
        return nn.Identity() if stride == 1 else FactorizedReduce(c, c)
    if name in ("sep_conv_3x3", "sep_conv_5x5"):
        k = int(name[-1])
        return nn.Sequential(*_dw_pw(c, k, stride, 1), *_dw_pw(c, k, 1, 1))
    if name in ("dil_conv_3x3", "dil_conv_5x5"):
        return nn.Sequential(*_dw_pw(c, int(name[-1]), stride, 2))
    raise KeyError(name)


def op_params(name: str, channels: int, stride: int) -> int:
    """Trainable parameters of :func:`make_op` (BN: 2 per channel), from the structure."""
    c = channels
    if name in ("sep_conv_3x3", "sep_conv_5x5"):
        k = int(name[-1])
        return 2 * (c * k * k + c * c + 2 * c)
    if name in ("dil_conv_3x3", "dil_conv_5x5"):
        k = int(name[-1])
        return c * k * k + c * c + 2 * c
    if name == "skip_connect" and stride == 2:
        return c * c + 2 * c  # factorized reduce
    return 0


def drop_path(x: torch.Tensor, prob: float) -> torch.Tensor:
    """Zero whole samples of ``x`` (N, ...) with probability ``prob``, scale the kept ones by
    ``1 / (1 - prob)`` (DARTS, appendix A.1.2; from FractalNet)."""
    if prob <= 0.0:
        return x
    keep = 1.0 - prob
    mask = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), device=x.device, dtype=x.dtype)
    return x * mask.bernoulli_(keep) / keep


class Cell(nn.Module):
    """One cell: two preprocessed inputs, ``len(edges) // 2`` nodes each summing two
    (op, input) pairs, output the channel concatenation of all intermediate nodes.

    ``edges`` is the genotype's flat list of (op, input index) pairs (node ``i``'s two at
    ``2i`` and ``2i + 1``; indices 0 and 1 are the inputs, ``2 + i`` node ``i``)."""

    def __init__(
        self,
        edges: Sequence[tuple[str, int]],
        c_prev_prev: int,
        c_prev: int,
        c: int,
        reduction: bool,
        reduction_prev: bool,
    ) -> None:
        super().__init__()
        self.reduction = reduction
        self.pre0 = (
            FactorizedReduce(c_prev_prev, c) if reduction_prev else relu_conv_bn(c_prev_prev, c)
        )
        self.pre1 = relu_conv_bn(c_prev, c)
        self.indices = [int(i) for _, i in edges]
        self.ops = nn.ModuleList(make_op(op, c, 2 if reduction and i < 2 else 1) for op, i in edges)
        self.steps = len(edges) // 2
        self.out_channels = self.steps * c

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float) -> torch.Tensor:
        """(N, c_prev_prev, H0, W0), (N, c_prev, H1, W1) -> (N, steps*c, H', W')."""
        states = [self.pre0(s0), self.pre1(s1)]
        for i in range(self.steps):
            total = None
            for j in (2 * i, 2 * i + 1):
                op = self.ops[j]
                h = op(states[self.indices[j]])
                if self.training and drop_prob > 0.0 and not isinstance(op, nn.Identity):
                    h = drop_path(h, drop_prob)
                total = h if total is None else total + h
            states.append(total)
        return torch.cat(states[2:], dim=1)


class AuxiliaryHead(nn.Module):
    """The auxiliary classifier; (N, c, H, W) -> (N, classes) for any H, W >= 1 (pooling rule
    in the module docstring)."""

    def __init__(self, channels: int, num_classes: int, map_size: tuple[int, int]) -> None:
        super().__init__()
        published = all(8 <= s <= 10 for s in map_size)
        pool: nn.Module = (
            nn.AvgPool2d(5, stride=3, padding=0, count_include_pad=False)
            if published
            else nn.AdaptiveAvgPool2d(2)
        )
        a, b = AUX_CHANNELS
        self.features = nn.Sequential(
            nn.ReLU(),
            pool,
            nn.Conv2d(channels, a, 1, bias=False),
            nn.BatchNorm2d(a),
            nn.ReLU(),
            nn.Conv2d(a, b, 2, bias=False),
            nn.BatchNorm2d(b),
            nn.ReLU(),
        )
        self.classifier = nn.Linear(b, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.classifier(self.features(x).flatten(1))


def aux_params(channels: int, num_classes: int) -> int:
    """Trainable parameters of :class:`AuxiliaryHead` (any map size)."""
    a, b = AUX_CHANNELS
    return channels * a + 2 * a + a * b * 4 + 2 * b + b * num_classes + num_classes


def _macro(cells: int, width: int) -> Iterator[tuple[int, int, int, bool, bool]]:
    """Per cell: (channels of input 0, of input 1, the cell's C, reduction, after a reduction)."""
    reductions = reduction_cells(cells)
    c_pp = c_p = STEM_MULTIPLIER * width
    c = width
    reduction_prev = False
    for i in range(cells):
        reduction = i in reductions
        if reduction:
            c *= 2
        yield c_pp, c_p, c, reduction, reduction_prev
        reduction_prev = reduction
        c_pp, c_p = c_p, STEPS * c


class DartsNetwork(nn.Module):
    """The DARTS evaluation network: stem (3x3 conv to ``3C`` + BN), ``cells`` cells
    (reductions at ``L // 3`` and ``2L // 3``, channels doubled there), global average
    pooling, linear.

    ``forward(x)``: (N, in_channels, H, W) -> logits (N, classes); in training mode with the
    auxiliary head enabled it returns ``(logits, aux_logits)`` instead, both (N, classes):
    the trainer adds ``auxiliary_weight * cross_entropy(aux_logits, y)`` (published 0.4) to
    the loss. In eval mode the head is skipped and only logits are returned.

    Attributes the trainer may set: ``drop_path_prob`` (float, read at every forward;
    starts at the space's ``drop_path`` setting), ``auxiliary_weight``.
    """

    def __init__(
        self,
        normal: Sequence[tuple[str, int]],
        reduce: Sequence[tuple[str, int]],
        input_shape: Shape,
        num_classes: int,
        width: int,
        cells: int,
        auxiliary: bool = False,
        drop_path: float = 0.0,
        auxiliary_weight: float = 0.4,
    ) -> None:
        super().__init__()
        in_ch, h, w = input_shape
        stem = STEM_MULTIPLIER * width
        self.stem = nn.Sequential(
            nn.Conv2d(in_ch, stem, 3, padding=1, bias=False), nn.BatchNorm2d(stem)
        )
        self.cells = nn.ModuleList()
        self.aux_index = 2 * cells // 3
        self.auxiliary_head: nn.Module | None = None
        for i, (c_pp, c_p, c, reduction, red_prev) in enumerate(_macro(cells, width)):
            cell = Cell(reduce if reduction else normal, c_pp, c_p, c, reduction, red_prev)
            self.cells.append(cell)
            if reduction:
                h, w = _reduced(h, 2), _reduced(w, 2)
            if auxiliary and i == self.aux_index:
                self.auxiliary_head = AuxiliaryHead(cell.out_channels, num_classes, (h, w))
        self.classifier = nn.Linear(self.cells[-1].out_channels, num_classes)
        self.drop_path_max = float(drop_path)
        self.drop_path_prob = float(drop_path)
        self.auxiliary_weight = float(auxiliary_weight)

    def schedule_drop_path(self, epoch: int, epochs: int) -> float:
        """Set the published linear schedule ``drop_path_prob = max * epoch / epochs``
        (DARTS training script) and return it."""
        self.drop_path_prob = self.drop_path_max * epoch / max(epochs, 1)
        return self.drop_path_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits, or ``(logits, aux_logits)`` when training with the auxiliary head."""
        s0 = s1 = self.stem(x)
        aux = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if i == self.aux_index and self.auxiliary_head is not None and self.training:
                aux = self.auxiliary_head(s1)
        logits = self.classifier(torch.flatten(F.adaptive_avg_pool2d(s1, 1), 1))
        return logits if aux is None else (logits, aux)


def network_params(
    normal: Sequence[tuple[str, int]],
    reduce: Sequence[tuple[str, int]],
    in_channels: int,
    num_classes: int,
    width: int,
    cells: int,
    auxiliary: bool = False,
) -> int:
    """Trainable parameters of :class:`DartsNetwork`, from the structure (no weights).

    Independent of the map size (the auxiliary head's pooling has no parameters)."""
    stem = STEM_MULTIPLIER * width
    total = in_channels * stem * 9 + 2 * stem
    aux_index = 2 * cells // 3
    c_out = stem
    for i, (c_pp, c_p, c, reduction, _) in enumerate(_macro(cells, width)):
        total += c_pp * c + 2 * c  # relu-conv-bn and factorized reduce alike
        total += c_p * c + 2 * c
        for op, j in reduce if reduction else normal:
            total += op_params(op, c, 2 if reduction and j < 2 else 1)
        c_out = len(reduce if reduction else normal) // 2 * c
        if auxiliary and i == aux_index:
            total += aux_params(c_out, num_classes)
    return total + c_out * num_classes + num_classes


def map_sizes(input_shape: Shape, cells: int) -> list[tuple[int, int]]:
    """Spatial size after the stem and after each cell (ceil halving at reductions)."""
    _, h, w = input_shape
    sizes = [(h, w)]
    reductions = reduction_cells(cells)
    for i in range(cells):
        if i in reductions:
            h, w = _reduced(h, 2), _reduced(w, 2)
        sizes.append((h, w))
    return sizes
