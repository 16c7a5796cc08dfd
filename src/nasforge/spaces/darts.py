"""The DARTS cell search space (Liu, Simonyan & Yang, ICLR 2019, section 2.1).

A genome (:mod:`nasforge.spaces.darts_genome`) is a normal and a reduction cell, each of 4
intermediate nodes (indices 2..5) summing two (operation, input) pairs with distinct inputs
among the earlier nodes (0, 1: the outputs of the two previous cells); the cell outputs the
concatenation of nodes 2..5. The network (:mod:`nasforge.spaces.darts_ops`) is the
published evaluation network: stem of 3C channels, L cells with reductions at L/3 and 2L/3,
global average pooling, linear; drop-path and an auxiliary head as options; any input size.

**Canonical form.** The order of a node's two (op, input) pairs does not change the network
(their sum is symmetric), so the canonical genome sorts each node's pair by (input, op).
Other equivalences (e.g. a ``none`` edge beside any op, permuted nodes) are not merged: they
change the concatenated channel order or a zero term, and such networks keep distinct keys.

**Decisions** (the capability ``"decisions"``, for step-wise strategies such as an ant colony
or a REINFORCE controller). The genome as 32 categorical choices: for the normal then the
reduction cell, for node 2..5: input a, op a, input b, op b. The inputs of node ``k`` range
over ``0..k-1``; input b excludes input a. Methods: :attr:`DartsSpace.decision_length`,
:meth:`DartsSpace.decision_names`, :meth:`DartsSpace.decision_choices` (the values allowed at
the next step given the earlier ones), :meth:`DartsSpace.to_decisions` and
:meth:`DartsSpace.from_decisions`. Every valid genome has exactly one sequence (its input
order is kept, not canonicalised), so sequence -> genome -> sequence is the identity.
"""

from __future__ import annotations

import random
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np
from torch import nn

from nasforge.errors import ConfigError, GenomeError
from nasforge.spaces.base import SearchSpace, register_space
from nasforge.spaces.darts_genome import (
    CELL_TYPES,
    DARTS_V2,
    CellEdge,
    DartsCell,
    DartsGenome,
)
from nasforge.spaces.darts_ops import OPERATIONS, STEPS, DartsNetwork, map_sizes, network_params

EDGES_PER_CELL = 2 * STEPS
DECISIONS_PER_NODE = ("input_a", "op_a", "input_b", "op_b")

__all__ = ["DARTS_V2", "DartsGenome", "DartsSpace", "OPERATIONS"]


def _as_genome(genome: Any) -> DartsGenome:
    if not isinstance(genome, DartsGenome):
        raise GenomeError(f"expected a DartsGenome, got {type(genome).__name__}")
    return genome


# ====================================================================== space
@register_space("darts")
class DartsSpace(SearchSpace):
    """The DARTS cell space with the evaluation network's macro skeleton.

    Settings: ``cells`` (L, default 20, the published evaluation net; the search net had 8),
    ``auxiliary`` (auxiliary head; published on, weight 0.4; off by default, as searches do
    not need it; with it the network returns ``(logits, aux_logits)`` in training mode and
    ``nasforge.evaluation.train`` adds the weighted auxiliary loss), ``drop_path`` (the
    maximum drop-path probability; published 0.2; ``train`` sets the linear ramp
    ``max * epoch / epochs`` before each epoch),
    ``operations`` (a subset of the 8, default all), ``max_params`` (a search limit, None: no
    limit). The width C is the build's ``width`` (published 36).
    """

    name: ClassVar[str] = "darts"
    capabilities: ClassVar[frozenset[str]] = frozenset(
        {"mutate", "crossover", "encode", "decisions", "cell", "supernet"}
    )

    def __init__(
        self,
        cells: int = 20,
        auxiliary: bool = False,
        drop_path: float = 0.0,
        operations: Sequence[str] | None = None,
        max_params: int | None = None,
    ) -> None:
        if not isinstance(cells, int) or isinstance(cells, bool) or cells < 1:
            raise ConfigError(f"darts space: cells must be a positive int, got {cells!r}")
        if not isinstance(auxiliary, bool):
            raise ConfigError(f"darts space: auxiliary must be true or false, got {auxiliary!r}")
        if (
            isinstance(drop_path, bool)
            or not isinstance(drop_path, (int, float))
            or not 0.0 <= drop_path < 1.0
        ):
            raise ConfigError(
                f"darts space: drop_path must be a number in [0, 1), got {drop_path!r}"
            )
        ops = tuple(OPERATIONS if operations is None else operations)
        unknown = [op for op in ops if op not in OPERATIONS]
        if unknown or not ops or len(set(ops)) != len(ops):
            raise ConfigError(
                f"darts space: operations must be distinct names among {', '.join(OPERATIONS)}; "
                f"got {list(ops)}"
            )
        if max_params is not None and (
            not isinstance(max_params, int) or isinstance(max_params, bool) or max_params < 1
        ):
            raise ConfigError("darts space: max_params must be a positive int or None")
        self.cells = cells
        self.auxiliary = auxiliary
        self.drop_path = float(drop_path)
        self.operations: tuple[str, ...] = ops
        self.max_params = max_params

    def settings(self) -> dict[str, Any]:
        """JSON-ready settings; ``get_space("darts", **settings())`` rebuilds the space."""
        return {
            "cells": self.cells,
            "auxiliary": self.auxiliary,
            "drop_path": self.drop_path,
            "operations": list(self.operations),
            "max_params": self.max_params,
        }

    # ------------------------------------------------------------------ JSON
    def genome_to_dict(self, genome: DartsGenome) -> dict[str, Any]:
        """The schema-versioned JSON-ready form."""
        return _as_genome(genome).to_dict()

    def genome_from_dict(self, data: Mapping[str, Any]) -> DartsGenome:
        """Parse a genome; GenomeError on unknown fields, versions or bad types."""
        return DartsGenome.from_dict(data)

    # ------------------------------------------------------------------ decisions
    @property
    def decision_length(self) -> int:
        """Number of steps of a decision sequence (2 cells x 4 nodes x 4 = 32)."""
        return len(CELL_TYPES) * STEPS * len(DECISIONS_PER_NODE)

    def decision_names(self) -> list[str]:
        """A name per step, e.g. ``"normal.node2.input_a"``, ``"reduce.node5.op_b"``."""
        return [
            f"{cell}.node{2 + k}.{what}"
            for cell in CELL_TYPES
            for k in range(STEPS)
            for what in DECISIONS_PER_NODE
        ]

    def _choices(self, step: int, prefix: Sequence[Any]) -> tuple[Any, ...]:
        node = (step // len(DECISIONS_PER_NODE)) % STEPS
        what = step % len(DECISIONS_PER_NODE)
        if what in (1, 3):
            return self.operations
        if what == 0:
            return tuple(range(node + 2))
        return tuple(j for j in range(node + 2) if j != prefix[step - 2])

    def decision_choices(self, prefix: Sequence[Any]) -> tuple[Any, ...]:
        """The values allowed at step ``len(prefix)`` given the earlier choices ``prefix``:
        input steps give node indices (ints), op steps operation names.

        Raises GenomeError when ``prefix`` is complete or holds a value not allowed."""
        prefix = list(prefix)
        if len(prefix) >= self.decision_length:
            raise GenomeError(f"decision sequence is complete ({self.decision_length} steps)")
        self._check_prefix(prefix)
        return self._choices(len(prefix), prefix)

    def _check_prefix(self, seq: Sequence[Any]) -> None:
        names = self.decision_names()
        for step, value in enumerate(seq):
            allowed = self._choices(step, seq)
            if isinstance(value, bool) or value not in allowed:
                raise GenomeError(
                    f"decision {step} ({names[step]}) = {value!r}; allowed: {list(allowed)}"
                )

    def to_decisions(self, genome: DartsGenome) -> tuple[Any, ...]:
        """The decision sequence of a valid genome (GenomeError when invalid)."""
        genome = _as_genome(genome)
        reasons = self.validate(genome)
        if reasons:
            raise GenomeError(f"invalid genome: {reasons[0]}")
        seq: list[Any] = []
        for kind in CELL_TYPES:
            for a, b in genome.cell(kind).nodes():
                seq += [a.input, a.op, b.input, b.op]
        return tuple(seq)

    def from_decisions(self, seq: Sequence[Any]) -> DartsGenome:
        """The genome of a full decision sequence; GenomeError on a wrong length or value."""
        seq = list(seq)
        if len(seq) != self.decision_length:
            raise GenomeError(
                f"a decision sequence has {self.decision_length} steps, got {len(seq)}"
            )
        self._check_prefix(seq)
        half = len(seq) // 2
        cells = []
        for part in (seq[:half], seq[half:]):
            edges = []
            for i in range(0, len(part), 4):
                edges += [CellEdge(part[i + 1], part[i]), CellEdge(part[i + 3], part[i + 2])]
            cells.append(DartsCell(tuple(edges)))
        return DartsGenome(cells[0], cells[1])

    # ------------------------------------------------------------------ sampling
    def sample(self, rng: random.Random) -> DartsGenome:
        """Each decision uniform over its allowed choices: ops uniform, a node's two inputs a
        uniform ordered pair of distinct earlier nodes."""
        seq: list[Any] = []
        for step in range(self.decision_length):
            seq.append(rng.choice(self._choices(step, seq)))
        return self.from_decisions(seq)

    def mutate(self, genome: DartsGenome, rng: random.Random) -> DartsGenome:
        """Change one op or one input of one node of one cell (uniform cell, node and edge;
        op or input half and half; an input change keeps the node's inputs distinct). Where
        no other input is possible (node 2 has only 0 and 1) the op changes, and vice versa."""
        seq = list(self.to_decisions(genome))
        per_node = len(DECISIONS_PER_NODE)
        node_start = rng.randrange(len(seq) // per_node) * per_node
        slot = rng.randrange(2) * 2  # 0: pair a, 2: pair b
        input_step, op_step = node_start + slot, node_start + slot + 1
        other_input = seq[node_start + 2 - slot]
        node = (node_start // per_node) % STEPS + 2
        inputs = [j for j in range(node) if j not in (seq[input_step], other_input)]
        ops = [o for o in self.operations if o != seq[op_step]]
        change_op = rng.random() < 0.5
        if (change_op and ops) or not inputs:
            if not ops:
                return genome
            seq[op_step] = rng.choice(ops)
        else:
            seq[input_step] = rng.choice(inputs)
        return self.from_decisions(seq)

    def crossover(self, a: DartsGenome, b: DartsGenome, rng: random.Random) -> DartsGenome:
        """Uniform crossover over the decision sequences: each step takes either parent's
        value at random, the other parent's when the first is not allowed after the earlier
        steps (one of the two always is)."""
        sa, sb = self.to_decisions(a), self.to_decisions(b)
        seq: list[Any] = []
        for step, pair in enumerate(zip(sa, sb)):
            first, second = pair if rng.random() < 0.5 else pair[::-1]
            seq.append(first if first in self._choices(step, seq) else second)
        return self.from_decisions(seq)

    # ------------------------------------------------------------------ validity
    def validate(self, genome: DartsGenome) -> list[str]:
        """Reasons ``genome`` is invalid: wrong number of edges, an input that is not an
        earlier node, a node's two inputs equal, an unknown operation or one not in this
        space. Empty when valid."""
        genome = _as_genome(genome)
        reasons = []
        for kind in CELL_TYPES:
            cell = genome.cell(kind)
            if len(cell.edges) != EDGES_PER_CELL:
                reasons.append(
                    f"{kind} cell: expected {EDGES_PER_CELL} edges ({STEPS} nodes x 2), "
                    f"got {len(cell.edges)}"
                )
                continue
            for k, pair in enumerate(cell.nodes()):
                node = k + 2
                for e in pair:
                    if not 0 <= e.input < node:
                        reasons.append(
                            f"{kind} cell node {node}: input {e.input} is not an earlier node "
                            f"(allowed 0..{node - 1})"
                        )
                    if e.op not in OPERATIONS:
                        reasons.append(
                            f"{kind} cell node {node}: unknown operation {e.op!r}; "
                            f"known: {', '.join(OPERATIONS)}"
                        )
                    elif e.op not in self.operations:
                        reasons.append(
                            f"{kind} cell node {node}: operation {e.op!r} is not in this space"
                        )
                if pair[0].input == pair[1].input:
                    reasons.append(
                        f"{kind} cell node {node}: both inputs are node {pair[0].input} "
                        "(must be distinct)"
                    )
        return reasons

    def validate_for(
        self, genome: DartsGenome, input_shape: tuple[int, int, int], num_classes: int, width: int
    ) -> list[str]:
        """:meth:`validate` plus the shape checks (input (C, H, W) >= 1, width >= 2 for the
        factorized reduce's two halves, classes >= 1) and ``max_params``."""
        reasons = self.validate(genome)
        if len(input_shape) != 3 or min(input_shape) < 1:
            reasons.append(
                f"input shape must be (channels, height, width) >= 1, got {tuple(input_shape)}"
            )
        if width < 2:
            reasons.append(f"width must be >= 2 (factorized reduce splits C in two), got {width}")
        if num_classes < 1:
            reasons.append(f"num_classes must be >= 1, got {num_classes}")
        if not reasons and self.max_params is not None:
            total = self.count_params(genome, input_shape, num_classes, width)
            if total > self.max_params:
                reasons.append(f"{total:,} parameters, over max_params={self.max_params:,}")
        return reasons

    def canonical(self, genome: DartsGenome) -> DartsGenome:
        """Each node's two (op, input) pairs sorted by (input, op): input order is free."""
        genome = _as_genome(genome)
        cells = []
        for kind in CELL_TYPES:
            edges: list[CellEdge] = []
            for pair in genome.cell(kind).nodes():
                edges += sorted(pair, key=lambda e: (e.input, e.op))
            cells.append(DartsCell(tuple(edges)))
        return DartsGenome(cells[0], cells[1])

    # ------------------------------------------------------------------ encoding
    def encoding_size(self) -> int:
        """Length of :meth:`encode`'s vector: 2 cells x 14 possible edges x ops."""
        slots = sum(k + 2 for k in range(STEPS))
        return len(CELL_TYPES) * slots * len(self.operations)

    def encode(self, genome: DartsGenome) -> np.ndarray:
        """A float32 vector: per cell, per possible edge (node k <- input j, j < k, in order
        (2<-0, 2<-1, 3<-0, ..., 5<-4)), a one-hot of its operation, zeros where the edge is
        absent. Invariant to the order of a node's two inputs."""
        genome = _as_genome(genome)
        reasons = self.validate(genome)
        if reasons:
            raise GenomeError(f"cannot encode: {reasons[0]}")
        n_ops = len(self.operations)
        out = np.zeros(self.encoding_size(), dtype=np.float32)
        base = 0
        for kind in CELL_TYPES:
            for k, pair in enumerate(genome.cell(kind).nodes()):
                for e in pair:
                    out[(base + e.input) * n_ops + self.operations.index(e.op)] = 1.0
                base += k + 2
        return out

    # ------------------------------------------------------------------ building
    def count_params(
        self, genome: DartsGenome, input_shape: tuple[int, int, int], num_classes: int, width: int
    ) -> int:
        """Trainable parameters of :meth:`build`'s network, from the structure (no weights)."""
        genome = self._checked(genome)
        return network_params(
            genome.normal.pairs(),
            genome.reduce.pairs(),
            input_shape[0],
            num_classes,
            width,
            self.cells,
            self.auxiliary,
        )

    def build(
        self, genome: DartsGenome, input_shape: tuple[int, int, int], num_classes: int, width: int
    ) -> nn.Module:
        """The evaluation network (:class:`~nasforge.spaces.darts_ops.DartsNetwork`) at width
        C = ``width``; in training mode with ``auxiliary`` it returns ``(logits, aux_logits)``.
        GenomeError when :meth:`validate_for` objects."""
        reasons = self.validate_for(genome, input_shape, num_classes, width)
        if reasons:
            raise GenomeError(f"cannot build genome: {reasons[0]}")
        return DartsNetwork(
            genome.normal.pairs(),
            genome.reduce.pairs(),
            tuple(input_shape),
            num_classes,
            width,
            self.cells,
            self.auxiliary,
            self.drop_path,
        )

    def _checked(self, genome: Any) -> DartsGenome:
        reasons = self.validate(_as_genome(genome))
        if reasons:
            raise GenomeError(f"invalid genome: {reasons[0]}")
        return genome

    # ------------------------------------------------------------------ text
    def describe(
        self,
        genome: DartsGenome,
        width: int | None = None,
        input_shape: tuple[int, int, int] | None = None,
    ) -> str:
        """One line: ``normal: 2=sep_conv_3x3(0)+sep_conv_3x3(1) 3=... | reduce: ... | 20 cells,
        C=36`` (node k = op(input)+op(input); 0 and 1 are the cell's inputs), plus the map
        sizes from ``input_shape`` to the last cell when given."""
        genome = _as_genome(genome)
        parts = []
        for kind in CELL_TYPES:
            nodes = " ".join(
                f"{k + 2}=" + "+".join(f"{e.op}({e.input})" for e in pair)
                for k, pair in enumerate(genome.cell(kind).nodes())
            )
            parts.append(f"{kind}: {nodes}")
        tail = f"{self.cells} cells" + (f", C={width}" if width is not None else "")
        if input_shape is not None:
            (h, w), (h2, w2) = map_sizes(tuple(input_shape), self.cells)[0 :: self.cells]
            tail += f", {h}x{w} -> {h2}x{w2}"
        return " | ".join(parts + [tail])

    def to_dot(
        self,
        genome: DartsGenome,
        width: int | None = None,
        input_shape: tuple[int, int, int] | None = None,
    ) -> str:
        """A Graphviz DOT digraph with one cluster per cell: inputs ``c_{k-2}``, ``c_{k-1}``,
        nodes 2..5, edges labelled with their operation, all nodes into the concat output."""
        genome = _as_genome(genome)
        lines = ["digraph darts {", "  rankdir=LR;", '  node [shape=box, style="rounded"];']
        for kind in CELL_TYPES:
            p = kind[0]
            lines += [f"  subgraph cluster_{kind} {{", f'    label="{kind} cell";']
            lines += [f'    "{p}0" [label="c_{{k-2}}"];', f'    "{p}1" [label="c_{{k-1}}"];']
            for k in range(len(genome.cell(kind).edges) // 2):
                lines.append(f'    "{p}{k + 2}" [label="{k + 2}"];')
            lines.append(f'    "{p}out" [label="c_{{k}} (concat)"];')
            for k, pair in enumerate(genome.cell(kind).nodes()):
                for e in pair:
                    lines.append(f'    "{p}{e.input}" -> "{p}{k + 2}" [label="{e.op}"];')
                lines.append(f'    "{p}{k + 2}" -> "{p}out";')
            lines.append("  }")
        lines.append("}")
        return "\n".join(lines) + "\n"
