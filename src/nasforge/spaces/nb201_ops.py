"""The NAS-Bench-201 network: cell operations, the cell, the macro skeleton, and analytic
parameter and FLOP counts (no weights allocated).

Source: Dong & Yang, "NAS-Bench-201: Extending the Scope of Reproducible Neural Architecture
Search", ICLR 2020, Sec. 2.1 and Fig. 1. A cell has 4 nodes; node 0 is the cell input, node i
(i = 1, 2, 3) is the sum of one operation per earlier node, node 3 is the cell output. Cell
operations keep shape (stride 1, C -> C channels):

- ``none``: a zero term (no module, no parameters);
- ``skip_connect``: identity;
- ``nor_conv_1x1`` / ``nor_conv_3x3``: ReLU, conv (no bias), BatchNorm (affine);
- ``avg_pool_3x3``: 3x3 average pooling, stride 1, padding 1, padding not counted.

Macro skeleton: stem conv 3x3 (no bias) + BN to C channels; N cells at C; a ResNet basic
block with stride 2 to 2C; N cells at 2C; a basic block to 4C; N cells at 4C; BN, ReLU,
global average pooling, linear. The basic block is ReLU-conv3x3(stride 2)-BN, ReLU-conv3x3-BN,
plus a shortcut of 2x2 average pooling (stride 2) and a 1x1 conv (no bias).

**Odd sizes (our rule).** The published shortcut pools with ``floor`` rounding while the
stride-2 conv rounds up, which mismatches on odd sizes (9x12 beside 8x11 from 17x23). Here the
shortcut's pooling uses ``ceil_mode=True``, so both give ``ceil(H/2) x ceil(W/2)``; on even
sizes this is identical to the published block. Any input of 1 channel or more and 1x1 or
more builds.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

OPERATIONS: tuple[str, ...] = (
    "none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3",
)
"""The five NAS-Bench-201 cell operations, in the order of the published ``OPS`` list."""

EDGES: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
"""The six cell edges as (to node, from node), in the order of the NB201 string form
``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``: 1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2."""

CONV_KERNEL: dict[str, int] = {"nor_conv_1x1": 1, "nor_conv_3x3": 3}


class ReLUConvBN(nn.Sequential):
    """ReLU, conv (no bias), BatchNorm. [N, C_in, H, W] -> [N, C_out, H', W']."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(c_out),
        )


def make_operation(op: str, channels: int) -> nn.Module | None:
    """The module of one cell edge (shape-preserving); None for ``none`` (a zero term)."""
    if op == "none":
        return None
    if op == "skip_connect":
        return nn.Identity()
    if op in CONV_KERNEL:
        return ReLUConvBN(channels, channels, CONV_KERNEL[op], 1)
    if op == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    raise ValueError(f"unknown NAS-Bench-201 operation {op!r}")


class NB201Cell(nn.Module):
    """One cell: [N, C, H, W] -> [N, C, H, W]; ``ops`` are the 6 edge operations in ``EDGES``
    order. A node whose every incoming edge is ``none`` is zero."""

    def __init__(self, ops: Sequence[str], channels: int) -> None:
        super().__init__()
        self.ops = tuple(ops)
        self.edges = nn.ModuleList(
            [make_operation(op, channels) or nn.Identity() for op in self.ops]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for node in (1, 2, 3):
            total: torch.Tensor | None = None
            for k, (dst, src) in enumerate(EDGES):
                if dst != node or self.ops[k] == "none":
                    continue
                term = self.edges[k](nodes[src])
                total = term if total is None else total + term
            # x * 0 rather than a fresh zero tensor: as the published Zero op, the graph
            # stays connected (the stem gets a zero gradient, not none)
            nodes.append(x * 0.0 if total is None else total)
        return nodes[3]


class ResNetBasicBlock(nn.Module):
    """The stride-2 reduction block: [N, C_in, H, W] -> [N, C_out, ceil(H/2), ceil(W/2)]."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, 2)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1)
        self.shortcut = nn.Sequential(
            nn.AvgPool2d(2, stride=2, padding=0, ceil_mode=True),
            nn.Conv2d(c_in, c_out, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_b(self.conv_a(x)) + self.shortcut(x)


class NB201Network(nn.Module):
    """The NAS-Bench-201 macro skeleton around one cell: [N, C_in, H, W] -> [N, classes]."""

    def __init__(self, ops: Sequence[str], in_channels: int, num_classes: int,
                 channels: int, cells: int) -> None:
        super().__init__()
        c = channels
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        )
        layers: list[nn.Module] = []
        for stage, width in enumerate((c, 2 * c, 4 * c)):
            if stage > 0:
                layers.append(ResNetBasicBlock(width // 2, width))
            layers.extend(NB201Cell(ops, width) for _ in range(cells))
        self.cells = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.BatchNorm2d(4 * c), nn.ReLU(inplace=False),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(4 * c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.head(self.cells(self.stem(x))))


def _cell_params(ops: Sequence[str], c: int) -> int:
    total = 0
    for op in ops:
        if op in CONV_KERNEL:
            k = CONV_KERNEL[op]
            total += c * c * k * k + 2 * c  # conv weights + BN affine
    return total


def count_params(ops: Sequence[str], in_channels: int, num_classes: int,
                 channels: int, cells: int) -> int:
    """Trainable parameters of ``NB201Network`` by formula (no weights allocated)."""
    c = channels
    total = in_channels * c * 9 + 2 * c  # stem conv + BN
    for stage, width in enumerate((c, 2 * c, 4 * c)):
        if stage > 0:
            w_in = width // 2
            total += w_in * width * 9 + 2 * width  # conv_a + BN
            total += width * width * 9 + 2 * width  # conv_b + BN
            total += w_in * width  # shortcut 1x1 conv
        total += cells * _cell_params(ops, width)
    total += 2 * 4 * c  # final BN
    total += 4 * c * num_classes + num_classes  # classifier
    return total


def count_flops(ops: Sequence[str], input_shape: Sequence[int], num_classes: int,
                channels: int, cells: int) -> int:
    """FLOPs of one forward pass on one image of ``input_shape`` (C, H, W), counted as
    ``nasforge.evaluation.metrics.count_flops`` does (convolutions and the linear layer only,
    a multiply-add = 2 FLOPs), by formula. Every conv edge counts, also one whose node does not
    reach the output (it is computed, as in the published network)."""
    c_in, h, w = (int(d) for d in input_shape)
    c = channels
    flops = 2 * h * w * c_in * c * 9
    for stage, width in enumerate((c, 2 * c, 4 * c)):
        if stage > 0:
            w_in = width // 2
            h, w = math.ceil(h / 2), math.ceil(w / 2)
            flops += 2 * h * w * (w_in * width * 9 + width * width * 9 + w_in * width)
        per_cell = sum(2 * h * w * width * width * CONV_KERNEL[op] ** 2
                       for op in ops if op in CONV_KERNEL)
        flops += cells * per_cell
    flops += 2 * 4 * c * num_classes
    return flops
