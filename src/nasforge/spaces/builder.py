"""Shape inference and module building for DAG networks (the global space's phenotype).

A network is given as nodes in topological order, each ``(label, operation, input labels)``,
plus the labels feeding the output; ``"in"`` is the input tensor. :func:`plan_network` infers
every shape and parameter count without allocating weights (so a huge head is rejected by
``max_params`` before anything is built); :func:`build_network` turns a plan into a module.

Several inputs of a node (or of the output) are merged per a :class:`MergePolicy`
(:mod:`nasforge.spaces.merge`). Heads (``HEADS``):

- ``"gap"``: global average pool -> flatten -> linear(C, classes). The default for search.
- ``"remnet"``: flatten (n = C*H*W features) -> linear(n, n/4) -> ReLU -> linear(n/4, n/8)
  -> ReLU -> linear(n/8, classes), integer division, each at least 1. The published head is
  the three linear layers; the activations are not given, so ReLU is used between them (it
  has no parameters, so counts are unaffected). On a large map this head is enormous (n^2/4
  weights), which is what ``max_params`` is for.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from nasforge.errors import GenomeError
from nasforge.spaces.merge import (
    Merge,
    MergePolicy,
    merge_output_shape,
    merge_params,
    merge_problems,
)
from nasforge.spaces.ops import (
    OpGeometry,
    Operation,
    get_operation,
    is_registered,
    op_params,
    resolve,
)

Shape = tuple[int, int, int]
INPUT = "in"
OUTPUT = "out"
HEADS: tuple[str, ...] = ("gap", "remnet")

__all__ = [
    "HEADS",
    "GraphNet",
    "NetworkPlan",
    "NodeSpec",
    "PlannedNode",
    "build_network",
    "head_params",
    "make_head",
    "plan_network",
]


@dataclass(frozen=True)
class NodeSpec:
    """One node of a network to plan: its label, operation name and input labels."""

    label: str
    op: str
    inputs: tuple[str, ...]


@dataclass(frozen=True)
class PlannedNode:
    """A node with its inferred shapes: merged input, effective geometry, output."""

    label: str
    op: Operation
    inputs: tuple[str, ...]
    input_shapes: tuple[Shape, ...]
    merged_shape: Shape
    geometry: OpGeometry
    out_shape: Shape
    op_params: int
    merge_params: int


@dataclass(frozen=True)
class NetworkPlan:
    """Every shape and parameter count of a network, computed without weights.

    ``problems`` lists why it cannot be built (e.g. a merge that cannot align channels);
    a plan with problems has no meaningful parameter count.
    """

    input_shape: Shape
    num_classes: int
    width: int
    policy: MergePolicy
    head: str
    nodes: tuple[PlannedNode, ...]
    out_inputs: tuple[str, ...]
    out_input_shapes: tuple[Shape, ...]
    out_shape: Shape
    out_merge_params: int
    head_params: int
    problems: tuple[str, ...]

    @property
    def total_params(self) -> int:
        """All trainable parameters: nodes, merges and head."""
        return (
            sum(n.op_params + n.merge_params for n in self.nodes)
            + self.out_merge_params
            + self.head_params
        )


def head_params(shape: Shape, num_classes: int, head: str) -> int:
    """Parameters of ``head`` on a (C, H, W) feature map, without weights."""
    c, h, w = shape
    if head == "gap":
        return c * num_classes + num_classes
    if head == "remnet":
        n = c * h * w
        h1, h2 = max(1, n // 4), max(1, n // 8)
        return n * h1 + h1 + h1 * h2 + h2 + h2 * num_classes + num_classes
    raise GenomeError(f"unknown head {head!r}; known: {', '.join(HEADS)}")


def make_head(shape: Shape, num_classes: int, head: str) -> nn.Module:
    """The classifier ``head`` on a (C, H, W) feature map."""
    c, h, w = shape
    if head == "gap":
        return nn.Sequential(
            OrderedDict(
                pool=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(), fc=nn.Linear(c, num_classes)
            )
        )
    if head == "remnet":
        n = c * h * w
        h1, h2 = max(1, n // 4), max(1, n // 8)
        return nn.Sequential(
            OrderedDict(
                flatten=nn.Flatten(),
                fc1=nn.Linear(n, h1),
                act1=nn.ReLU(),
                fc2=nn.Linear(h1, h2),
                act2=nn.ReLU(),
                fc3=nn.Linear(h2, num_classes),
            )
        )
    raise GenomeError(f"unknown head {head!r}; known: {', '.join(HEADS)}")


def plan_network(
    nodes: Sequence[NodeSpec],
    out_inputs: Sequence[str],
    input_shape: tuple[int, int, int],
    num_classes: int,
    width: int,
    policy: MergePolicy,
    head: str,
) -> NetworkPlan:
    """Infer shapes and parameter counts of a topologically ordered network.

    Raises ``GenomeError`` for structural errors (unknown operation or input label, no
    output input); merge problems are collected in ``problems`` instead.
    """
    if len(input_shape) != 3 or any(int(s) < 1 for s in input_shape):
        raise GenomeError(f"input shape must be (C, H, W) of positive ints, got {input_shape}")
    if width < 1 or num_classes < 1:
        raise GenomeError(f"width and num_classes must be positive, got {width}, {num_classes}")
    if head not in HEADS:
        raise GenomeError(f"unknown head {head!r}; known: {', '.join(HEADS)}")
    c, h, w = (int(s) for s in input_shape)
    shapes: dict[str, Shape] = {INPUT: (c, h, w)}
    planned: list[PlannedNode] = []
    problems: list[str] = []
    for spec in nodes:
        if not is_registered(spec.op):
            raise GenomeError(f"node {spec.label}: unknown operation {spec.op!r}")
        if not spec.inputs:
            raise GenomeError(f"node {spec.label} has no inputs")
        missing = [i for i in spec.inputs if i not in shapes]
        if missing:
            raise GenomeError(f"node {spec.label}: inputs {missing} are not computed before it")
        in_shapes = tuple(shapes[i] for i in spec.inputs)
        for p in merge_problems(in_shapes, policy):
            problems.append(f"merge into {spec.label}: {p}")
        merged = merge_output_shape(in_shapes, policy)
        op = get_operation(spec.op)
        geometry = resolve(op, merged, width)
        out_shape: Shape = (geometry.out_channels, *geometry.out_size)
        shapes[spec.label] = out_shape
        planned.append(
            PlannedNode(
                label=spec.label,
                op=op,
                inputs=tuple(spec.inputs),
                input_shapes=in_shapes,
                merged_shape=merged,
                geometry=geometry,
                out_shape=out_shape,
                op_params=op_params(op, geometry),
                merge_params=merge_params(in_shapes, policy),
            )
        )
    if not out_inputs:
        raise GenomeError("the output has no inputs")
    missing = [i for i in out_inputs if i not in shapes]
    if missing:
        raise GenomeError(f"output inputs {missing} are not computed")
    out_shapes = tuple(shapes[i] for i in out_inputs)
    for p in merge_problems(out_shapes, policy):
        problems.append(f"merge into out: {p}")
    out_shape = merge_output_shape(out_shapes, policy)
    return NetworkPlan(
        input_shape=shapes[INPUT],
        num_classes=num_classes,
        width=width,
        policy=policy,
        head=head,
        nodes=tuple(planned),
        out_inputs=tuple(out_inputs),
        out_input_shapes=out_shapes,
        out_shape=out_shape,
        out_merge_params=merge_params(out_shapes, policy),
        head_params=head_params(out_shape, num_classes, head),
        problems=tuple(problems),
    )


class GraphNet(nn.Module):
    """A DAG network: node operations applied in topological order, merges, then a head.

    Submodules: ``ops[label]`` (one per node), ``merges[label]`` (nodes and ``"out"`` with
    several inputs) and ``head``. Labels are the canonical ones, so equal genomes give equal
    state-dict keys.
    """

    def __init__(self, plan: NetworkPlan) -> None:
        super().__init__()
        if plan.problems:
            raise GenomeError(plan.problems[0])
        self.input_shape = plan.input_shape
        self.ops = nn.ModuleDict()
        self.merges = nn.ModuleDict()
        self._schedule: list[tuple[str, tuple[str, ...]]] = []
        for node in plan.nodes:
            if len(node.inputs) > 1:
                self.merges[node.label] = Merge(node.input_shapes, plan.policy)
            self.ops[node.label] = node.op.factory(node.geometry)
            self._schedule.append((node.label, node.inputs))
        if len(plan.out_inputs) > 1:
            self.merges[OUTPUT] = Merge(plan.out_input_shapes, plan.policy)
        self._out_inputs = plan.out_inputs
        self.head = make_head(plan.out_shape, plan.num_classes, plan.head)

    def _gather(
        self, label: str, inputs: tuple[str, ...], values: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        if len(inputs) == 1:
            return values[inputs[0]]
        return self.merges[label]([values[i] for i in inputs])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape (batch, classes) for input of shape (batch, C, H, W)."""
        values: dict[str, torch.Tensor] = {INPUT: x}
        for label, inputs in self._schedule:
            values[label] = self.ops[label](self._gather(label, inputs, values))
        return self.head(self._gather(OUTPUT, self._out_inputs, values))


def build_network(plan: NetworkPlan) -> GraphNet:
    """The module for a plan; ``GenomeError`` when the plan has problems."""
    return GraphNet(plan)
