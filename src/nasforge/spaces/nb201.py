"""The ``nb201`` space: exactly the NAS-Bench-201 cell space (Dong & Yang, ICLR 2020).

A genome is the operation on each of the cell's 6 edges, in ``EDGES`` order (1<-0, 2<-0,
2<-1, 3<-0, 3<-1, 3<-2: the order of the NB201 string form), each one of ``OPERATIONS``;
5**6 = 15,625 cells. The network is ``nb201_ops.NB201Network``: the build's ``width`` is the
stem's channel count C (published 16), the space setting ``cells`` is N (published 5).

Two equivalences (see :func:`count_unique`):

- ``nb201_key``: NAS-Bench-201's own rule (its ``to_unique_str(consider_zero=True)``): each
  node is the sorted sum of its terms, ``skip_connect`` passes its input's expression, a
  ``none`` edge (or an edge from a node that is exactly ``#``) is a zero term ``#`` kept in the
  sum; the cell's key is node 3's expression. 6,466 classes. :meth:`NB201Space.canonical`
  (dedup, ``genome_key``) follows this rule.
- ``strict_key``: functional equivalence: zero terms dropped, a node with no terms is zero and
  everything fed only by it vanishes. 5,390 classes.

Capabilities: ``mutate`` (one edge to another operation, uniform), ``crossover`` (each edge
from either parent, uniform), ``encode`` (one-hot, or the BANANAS path encoding), and
``decisions``: the genome as 6 categorical choices, one per edge in ``EDGES`` order, each from
all 5 operations whatever came before (the decision methods of
:class:`~nasforge.spaces.base.SearchSpace`: ``decision_length``, ``decision_names``,
``decision_choices``, ``to_decisions``, ``from_decisions``).
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np
from torch import nn

from nasforge.errors import ConfigError, GenomeError
from nasforge.spaces.base import SearchSpace, register_space
from nasforge.spaces.nb201_ops import EDGES, OPERATIONS, NB201Network
from nasforge.spaces.nb201_ops import count_flops as _count_flops
from nasforge.spaces.nb201_ops import count_params as _count_params

SCHEMA = "nasforge.nb201/1"
ENCODINGS: tuple[str, ...] = ("onehot", "path")
_ZERO = "#"


@dataclass(frozen=True)
class NB201Genome:
    """The 6 edge operations in ``EDGES`` order (1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2)."""

    ops: tuple[str, str, str, str, str, str]

    def __post_init__(self) -> None:
        if not isinstance(self.ops, tuple):
            object.__setattr__(self, "ops", tuple(self.ops))

    def to_string(self) -> str:
        """The NB201 string form, e.g. ``|nor_conv_3x3~0|+|none~0|skip_connect~1|+|...|``."""
        nodes = []
        for node in (1, 2, 3):
            terms = [f"{op}~{src}" for (dst, src), op in zip(EDGES, self.ops) if dst == node]
            nodes.append("|" + "|".join(terms) + "|")
        return "+".join(nodes)

    def __str__(self) -> str:
        return self.to_string()


def parse_nb201(text: str) -> NB201Genome:
    """Parse the NB201 string form; ``GenomeError`` (one line) when it is not one."""
    s = str(text).strip()
    parts = s.split("+")
    if len(parts) != 3:
        raise GenomeError(f"not an NB201 cell string (3 nodes joined by '+'): {text!r}")
    ops: dict[tuple[int, int], str] = {}
    for node, part in enumerate(parts, start=1):
        if not (part.startswith("|") and part.endswith("|")):
            raise GenomeError(f"node {node} of {text!r} must be written |op~j|...|")
        terms = part[1:-1].split("|")
        if len(terms) != node:
            raise GenomeError(f"node {node} of {text!r} needs {node} terms, got {len(terms)}")
        for term in terms:
            op, _, src = term.partition("~")
            if op not in OPERATIONS:
                raise GenomeError(f"unknown operation {op!r} in {text!r}; known: "
                                  f"{', '.join(OPERATIONS)}")
            if not src.isdigit() or int(src) >= node or (node, int(src)) in ops:
                raise GenomeError(f"bad input {term!r} of node {node} in {text!r}")
            ops[(node, int(src))] = op
    return NB201Genome(tuple(ops[e] for e in EDGES))  # type: ignore[arg-type]


def _node_expressions(ops: Sequence[str], strict: bool) -> list[str | None]:
    nodes: list[str | None] = ["0"]
    for node in (1, 2, 3):
        terms: list[str] = []
        for (dst, src), op in zip(EDGES, ops):
            if dst != node:
                continue
            inp = nodes[src]
            if strict:
                if op == "none" or inp is None:
                    continue
            elif op == "none" or inp == _ZERO:
                terms.append(_ZERO)
                continue
            terms.append(inp if op == "skip_connect" else f"({inp})@{op}")  # type: ignore[str-bytes-safe]
        nodes.append("+".join(sorted(terms)) if terms else None)
    return nodes


def nb201_key(genome: NB201Genome) -> str:
    """NAS-Bench-201's own isomorphism key (``to_unique_str(consider_zero=True)`` in its
    code): skip as identity, a ``none`` edge a zero term ``#`` kept in the sorted sum."""
    return str(_node_expressions(genome.ops, strict=False)[3])


def strict_key(genome: NB201Genome) -> str:
    """The functional key: zero terms dropped; ``"zero"`` when the output is always zero."""
    out = _node_expressions(genome.ops, strict=True)[3]
    return "zero" if out is None else out


def all_genomes() -> list[NB201Genome]:
    """All 15,625 cells, in lexicographic order of operation indices."""
    return [NB201Genome(ops) for ops in itertools.product(OPERATIONS, repeat=6)]  # type: ignore[arg-type]


def count_unique() -> dict[str, int]:
    """Enumerate every cell and count classes: ``{"cells": 15625, "nb201": 6466,
    "strict": 5390}`` (the first two published in NAS-Bench-201, Sec. 2.1)."""
    genomes = all_genomes()
    return {
        "cells": len(genomes),
        "nb201": len({nb201_key(g) for g in genomes}),
        "strict": len({strict_key(g) for g in genomes}),
    }


def _path_bins() -> dict[tuple[str, ...], int]:
    live = [op for op in OPERATIONS if op != "none"]
    seqs = [s for n in (1, 2, 3) for s in itertools.product(live, repeat=n)]
    return {s: i for i, s in enumerate(seqs)}


_ROUTES: tuple[tuple[int, ...], ...] = ((3,), (0, 4), (1, 5), (0, 2, 5))
"""The input -> output routes as indices into ``EDGES``: 0-3, 0-1-3, 0-2-3, 0-1-2-3."""


@register_space("nb201")
class NB201Space(SearchSpace):
    """NAS-Bench-201's cell space in its published macro skeleton.

    ``cells``: N, cells per stage (published 5); ``channels``: C, the published stem width
    (16), used where no width is given (``describe``, the table's cost model); a build's
    ``width`` argument is C; ``encoding``: ``"onehot"`` (30 floats, 6 edges x 5 operations)
    or ``"path"`` (BANANAS, White et al. 2021: one bit per sequence of non-``none``
    operations along an input->output route, 4 + 16 + 64 = 84 bits).
    """

    name: ClassVar[str] = "nb201"
    capabilities: ClassVar[frozenset[str]] = frozenset(
        {"mutate", "crossover", "encode", "decisions", "supernet"}
    )

    def __init__(self, cells: int = 5, channels: int = 16, encoding: str = "onehot") -> None:
        for label, value in (("cells", cells), ("channels", channels)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"nb201 space: {label} must be a positive int, got {value!r}")
        if encoding not in ENCODINGS:
            raise ConfigError(f"nb201 space: encoding must be one of {', '.join(ENCODINGS)}, "
                              f"got {encoding!r}")
        self.cells = cells
        self.channels = channels
        self.encoding = encoding
        self._representatives: dict[str, NB201Genome] | None = None
        self._paths = _path_bins()

    def settings(self) -> dict[str, Any]:
        """The JSON-ready settings; ``get_space("nb201", **settings())`` rebuilds the space."""
        return {"cells": self.cells, "channels": self.channels, "encoding": self.encoding}

    # ------------------------------------------------------------------ JSON and text
    def genome_to_dict(self, genome: NB201Genome) -> dict[str, Any]:
        """``{"schema": "nasforge.nb201/1", "ops": [6 names in EDGES order]}``."""
        return {"schema": SCHEMA, "ops": list(as_genome(genome).ops)}

    def genome_from_dict(self, data: Mapping[str, Any]) -> NB201Genome:
        """Parse :meth:`genome_to_dict`'s form (or ``{"cell": "<NB201 string>"}``);
        ``GenomeError`` on unknown fields, schema or operations."""
        if not isinstance(data, Mapping):
            raise GenomeError(f"an nb201 genome must be a JSON object, got {type(data).__name__}")
        if set(data) == {"cell"}:
            return parse_nb201(str(data["cell"]))
        if set(data) != {"schema", "ops"}:
            raise GenomeError(f"nb201 genome needs exactly the fields schema, ops; got "
                              f"{sorted(data)}")
        if data["schema"] != SCHEMA:
            raise GenomeError(f"unknown genome schema {data['schema']!r}; expected {SCHEMA!r}")
        ops = data["ops"]
        if not isinstance(ops, list) or len(ops) != 6:
            raise GenomeError("nb201 genome: ops must be a list of 6 operation names")
        genome = NB201Genome(tuple(str(o) for o in ops))  # type: ignore[arg-type]
        reasons = self.validate(genome)
        if reasons:
            raise GenomeError(f"nb201 genome: {reasons[0]}")
        return genome

    def parse(self, text: str) -> NB201Genome:
        """A genome from the NB201 string form (see :func:`parse_nb201`)."""
        return parse_nb201(text)

    def describe(self, genome: NB201Genome, width: int | None = None,
                 input_shape: tuple[int, int, int] | None = None) -> str:
        """The NB201 string form, then C and N (and the three stages' map sizes given
        ``input_shape``, e.g. ``maps 17x23, 9x12, 5x6``)."""
        g = as_genome(genome)
        c = self.channels if width is None else width
        text = f"{g.to_string()} (C={c}, N={self.cells})"
        if input_shape is not None:
            h, w = int(input_shape[1]), int(input_shape[2])
            sizes = [(h, w), ((h + 1) // 2, (w + 1) // 2), ((h + 3) // 4, (w + 3) // 4)]
            text += ", maps " + ", ".join(f"{a}x{b}" for a, b in sizes)
        return text

    def to_dot(self, genome: NB201Genome, width: int | None = None) -> str:
        """The cell as a Graphviz digraph: nodes 0..3, one labelled arrow per edge (``none``
        edges dashed grey)."""
        g = as_genome(genome)
        lines = ["digraph cell {", "  rankdir=LR;", "  node [shape=circle];"]
        lines += [f'  "{i}";' for i in range(4)]
        for (dst, src), op in zip(EDGES, g.ops):
            style = ' style=dashed color=grey' if op == "none" else ""
            lines.append(f'  "{src}" -> "{dst}" [label="{op}"{style}];')
        lines.append("}")
        return "\n".join(lines) + "\n"

    # ------------------------------------------------------------------ sampling and search
    def sample(self, rng: random.Random) -> NB201Genome:
        """A uniform random cell (each edge's operation uniform and independent)."""
        return NB201Genome(tuple(rng.choice(OPERATIONS) for _ in EDGES))  # type: ignore[arg-type]

    def mutate(self, genome: NB201Genome, rng: random.Random) -> NB201Genome:
        """One uniformly chosen edge set to a uniformly chosen different operation (the
        mutation of REA in NAS-Bench-201's baselines)."""
        ops = list(as_genome(genome).ops)
        k = rng.randrange(len(ops))
        ops[k] = rng.choice([op for op in OPERATIONS if op != ops[k]])
        return NB201Genome(tuple(ops))  # type: ignore[arg-type]

    def crossover(self, a: NB201Genome, b: NB201Genome, rng: random.Random) -> NB201Genome:
        """Uniform crossover: each edge's operation from ``a`` or ``b`` with probability 1/2."""
        pa, pb = as_genome(a).ops, as_genome(b).ops
        return NB201Genome(tuple(x if rng.random() < 0.5 else y for x, y in zip(pa, pb)))  # type: ignore[arg-type]

    def validate(self, genome: Any) -> list[str]:
        """Reasons the genome is not an NB201 cell (wrong type, length or operation)."""
        if not isinstance(genome, NB201Genome):
            return [f"not an NB201Genome: {type(genome).__name__}"]
        if len(genome.ops) != len(EDGES):
            return [f"needs {len(EDGES)} edge operations, got {len(genome.ops)}"]
        bad = [op for op in genome.ops if op not in OPERATIONS]
        return [f"unknown operation {bad[0]!r}; known: {', '.join(OPERATIONS)}"] if bad else []

    def canonical(self, genome: NB201Genome) -> NB201Genome:
        """The representative of the genome's class under NAS-Bench-201's rule
        (:func:`nb201_key`): the first cell of that class in :func:`all_genomes` order."""
        if self._representatives is None:
            reps: dict[str, NB201Genome] = {}
            for g in all_genomes():
                reps.setdefault(nb201_key(g), g)
            self._representatives = reps
        return self._representatives[nb201_key(as_genome(genome))]

    # ------------------------------------------------------------------ decisions
    @property
    def decision_length(self) -> int:
        """Number of decisions in a full sequence: 6 (one per edge, ``EDGES`` order)."""
        return len(EDGES)

    def decision_names(self) -> list[str]:
        """A name per decision: the edge it sets, e.g. ``"edge1<-0"`` (``EDGES`` order)."""
        return [f"edge{dst}<-{src}" for dst, src in EDGES]

    def decision_choices(self, prefix: Sequence[str]) -> tuple[str, ...]:
        """The choices of the next decision after ``prefix`` (all 5 operations, any prefix
        shorter than 6); ``GenomeError`` for a full or invalid prefix."""
        if len(prefix) >= len(EDGES) or any(p not in OPERATIONS for p in prefix):
            raise GenomeError(f"nb201: no decision follows the prefix {list(prefix)}")
        return OPERATIONS

    def to_decisions(self, genome: NB201Genome) -> tuple[str, ...]:
        """The genome as its sequence of 6 choices (the operations in ``EDGES`` order)."""
        return as_genome(genome).ops

    def from_decisions(self, decisions: Sequence[str]) -> NB201Genome:
        """The genome of a full decision sequence; ``GenomeError`` when it is not one."""
        genome = NB201Genome(tuple(decisions))  # type: ignore[arg-type]
        reasons = self.validate(genome)
        if reasons:
            raise GenomeError(f"nb201 decisions: {reasons[0]}")
        return genome

    # ------------------------------------------------------------------ encoding
    def encoding_size(self) -> int:
        """Length of :meth:`encode`'s vector: 30 (one-hot) or 84 (path)."""
        return len(EDGES) * len(OPERATIONS) if self.encoding == "onehot" else len(self._paths)

    def encode(self, genome: NB201Genome) -> np.ndarray:
        """A float32 vector: one-hot operation per edge (``EDGES`` order, ``OPERATIONS``
        order), or with ``encoding="path"`` one bit per operation sequence present on an
        input->output route without ``none`` edges (routes 0-3, 0-1-3, 0-2-3, 0-1-2-3)."""
        ops = as_genome(genome).ops
        if self.encoding == "onehot":
            vec = np.zeros((len(EDGES), len(OPERATIONS)), dtype=np.float32)
            for k, op in enumerate(ops):
                vec[k, OPERATIONS.index(op)] = 1.0
            return vec.ravel()
        vec = np.zeros(len(self._paths), dtype=np.float32)
        for route in _ROUTES:
            seq = tuple(ops[k] for k in route)
            if "none" not in seq:
                vec[self._paths[seq]] = 1.0
        return vec

    # ------------------------------------------------------------------ building
    def count_params(self, genome: NB201Genome, input_shape: tuple[int, int, int],
                     num_classes: int, width: int) -> int:
        """Trainable parameters of the built network (width = C), by formula."""
        g = self._checked(genome)
        return _count_params(g.ops, int(input_shape[0]), num_classes, width, self.cells)

    def count_flops(self, genome: NB201Genome, input_shape: tuple[int, int, int],
                    num_classes: int, width: int) -> int:
        """FLOPs of one forward pass on one image (see ``nb201_ops.count_flops``)."""
        g = self._checked(genome)
        return _count_flops(g.ops, input_shape, num_classes, width, self.cells)

    def build(self, genome: NB201Genome, input_shape: tuple[int, int, int],
              num_classes: int, width: int) -> nn.Module:
        """The network [N, C_in, H, W] -> [N, num_classes] with stem width C = ``width``."""
        g = self._checked(genome)
        if not isinstance(width, int) or width < 1 or num_classes < 1:
            raise GenomeError(f"nb201: width and num_classes must be positive, got "
                              f"{width!r}, {num_classes!r}")
        return NB201Network(g.ops, int(input_shape[0]), num_classes, width, self.cells)

    def _checked(self, genome: Any) -> NB201Genome:
        reasons = self.validate(genome)
        if reasons:
            raise GenomeError(f"cannot build nb201 genome: {reasons[0]}")
        return genome  # type: ignore[no-any-return]


def as_genome(genome: Any) -> NB201Genome:
    """``genome`` itself, or parsed from the NB201 string form; ``GenomeError`` otherwise."""
    if isinstance(genome, NB201Genome):
        return genome
    if isinstance(genome, str):
        return parse_nb201(genome)
    raise GenomeError(f"not an nb201 genome: {type(genome).__name__}")
