"""Fixed-length encodings of genomes for performance predictors, one per kind of space.

:func:`encoder_for` picks, by the space's name and capabilities:

- ``nb201``: :class:`NB201Features`: the BANANAS **path encoding** (White et al., AAAI
  2021, Sec. 4: one bit per operation sequence on an input -> output route of the cell that
  has no ``none`` edge, 4 + 16 + 64 = 84 bits, the space's own ``encoding="path"``), then the
  one-hot operation per edge (30) and counts over the live edges (6): 120 floats.
- ``darts``: a path encoding of both cells, **truncated** to paths of at most
  ``max_path_length`` (default 3) edges: one bit per (cell, start input c_{k-2} or c_{k-1},
  sequence of non-``none`` operations) that occurs on a path from a cell input to an
  intermediate node (every intermediate node feeds the cell's output concatenation). With the
  8 DARTS operations: 2 x 2 x (7 + 49 + 343) = 1,596 bits. BANANAS also truncates the DARTS
  path encoding (its length grows exponentially); the length cut here is ours.
- ``global``: :class:`GlobalFeatures` (documented there), a fixed-length feature vector of
  the canonical DAG: operation counts, depth, degrees, and the log10 parameter count.
- any other space with ``"encode"``: the space's own vector (one-hot / adjacency);
- any other space with ``"decisions"``: a one-hot per decision step over
  :func:`~nasforge.strategies.decisions.step_vocabulary`.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Callable

import numpy as np

from nasforge.errors import ConfigError, GenomeError
from nasforge.spaces.base import SearchSpace

Encoder = Callable[[Any], np.ndarray]
"""A genome -> float32 vector [d] function (d fixed per space and settings)."""


# ====================================================================== nb201
class NB201Features:
    """Path encoding (84 bits) + one-hot per edge (30 bits) + live counts (6) of an nb201 cell.

    The live counts are, over the edges on some input -> output route without ``none`` (the
    edges that carry data to the output), the number of each operation (``OPERATIONS``
    order) and the number of such routes. Why not the path bits alone: on a synthetic
    objective (``route_quality`` in tests/test_predictors.py; 100 training cells, 500 held out,
    seed 0) the path bits alone gave Kendall tau-b 0.617 (MLP ensemble), 0.440 (random
    forest), 0.788 (GP); with the one-hot and counts 0.905, 0.873, 0.919. A path bit marks a sequence, not which edges carry it, and
    a tree ensemble needs many splits to add up many sparse bits.
    """

    def __init__(self, space: SearchSpace) -> None:
        from nasforge.spaces import get_space

        self.path = get_space("nb201", **dict(space.settings(), encoding="path"))
        self.onehot = get_space("nb201", **dict(space.settings(), encoding="onehot"))
        self.size = self.path.encoding_size() + self.onehot.encoding_size() + 6  # type: ignore

    def __call__(self, genome: Any) -> np.ndarray:
        from nasforge.spaces.nb201 import _ROUTES, OPERATIONS, as_genome

        ops = as_genome(genome).ops
        live = [r for r in _ROUTES if all(ops[k] != "none" for k in r)]
        counts = np.zeros(len(OPERATIONS) + 1, dtype=np.float32)
        for k in {k for r in live for k in r}:
            counts[OPERATIONS.index(ops[k])] += 1
        counts[-1] = len(live)
        return np.concatenate([self.path.encode(genome), self.onehot.encode(genome), counts])


# ====================================================================== darts paths
class DartsPathEncoder:
    """Truncated BANANAS path encoding of a DARTS genome (see the module docstring).

    Vector layout: cell (normal, reduce) x start input (0, 1) x operation sequences of length
    1..``max_path_length`` in lexicographic order of the space's non-``none`` operations.
    """

    def __init__(self, space: SearchSpace, max_path_length: int = 3) -> None:
        if max_path_length < 1:
            raise ConfigError("darts path encoding: max_path_length must be >= 1")
        self.space = space
        self.max_len = max_path_length
        ops = [op for op in space.operations if op != "none"]  # type: ignore[attr-defined]
        seqs = [s for n in range(1, max_path_length + 1) for s in itertools.product(ops, repeat=n)]
        self._index = {s: i for i, s in enumerate(seqs)}
        self.size = 2 * 2 * len(seqs)

    def __call__(self, genome: Any) -> np.ndarray:
        from nasforge.spaces.darts_genome import CELL_TYPES

        reasons = self.space.validate(genome)
        if reasons:
            raise GenomeError(f"cannot encode: {reasons[0]}")
        out = np.zeros(self.size, dtype=np.float32)
        block = len(self._index)
        for c, kind in enumerate(CELL_TYPES):
            paths: dict[int, list[tuple[int, tuple[str, ...]]]] = {}
            for k, pair in enumerate(genome.cell(kind).nodes()):
                node = k + 2
                found: list[tuple[int, tuple[str, ...]]] = []
                for e in pair:
                    if e.op == "none":
                        continue
                    if e.input < 2:
                        found.append((e.input, (e.op,)))
                    else:
                        found += [(s, seq + (e.op,)) for s, seq in paths.get(e.input, [])
                                  if len(seq) < self.max_len]
                paths[node] = found
                for start, seq in found:
                    out[(2 * c + start) * block + self._index[seq]] = 1.0
        return out


# ====================================================================== global features
class GlobalFeatures:
    """A fixed-length vector for the global (REMNet) DAG space, from its canonical genome.

    Layout ([len(ops) * 2 + 9] floats, ops = the space's operations in order):

    - ``count[op]``: number of active nodes with each operation;
    - ``position[op]``: mean relative depth of those nodes (longest path from the input to the
      node divided by the network's depth; 0 when absent): where in the network an operation
      sits (an early pooling shrinks every later map);
    - ``nodes``, ``edges``, ``depth`` (longest input -> output path, in edges), ``shortest``
      (shortest such path), ``out_degree_in`` (edges leaving the input), ``in_degree_out``
      (edges entering the output), ``merges`` (nodes with more than one input), ``max_in``
      (largest in-degree);
    - ``log10_params`` of the built network for ``problem`` and ``width`` (0 without them or
      when the count fails).

    Canonical, so two genomes of the same network encode the same; unlike the space's own
    adjacency encoding it does not depend on the order in which nodes are numbered.
    """

    def __init__(self, space: SearchSpace, input_shape: tuple[int, int, int] | None = None,
                 num_classes: int | None = None, width: int | None = None) -> None:
        self.space = space
        self.ops: tuple[str, ...] = tuple(space.operations)  # type: ignore[attr-defined]
        self.problem = (input_shape, num_classes, width)
        self.size = 2 * len(self.ops) + 9

    def names(self) -> list[str]:
        """One name per vector entry."""
        return ([f"count[{o}]" for o in self.ops] + [f"position[{o}]" for o in self.ops]
                + ["nodes", "edges", "depth", "shortest", "out_degree_in", "in_degree_out",
                   "merges", "max_in", "log10_params"])

    def __call__(self, genome: Any) -> np.ndarray:
        from nasforge.spaces.global_dag import INPUT, OUTPUT

        canon = self.space.canonical(genome)
        preds: dict[str, list[str]] = {n.id: [] for n in canon.nodes}
        preds[OUTPUT] = []
        for e in canon.edges:
            preds.setdefault(e.dst, []).append(e.src)
        longest: dict[str, int] = {INPUT: 0}
        shortest: dict[str, int] = {INPUT: 0}

        def visit(node: str, seen: frozenset[str] = frozenset()) -> None:
            if node in longest:
                return
            if node in seen:
                raise GenomeError("cannot encode a cyclic genome")
            for p in preds.get(node, []):
                visit(p, seen | {node})
            ins = [p for p in preds.get(node, []) if p in longest]
            longest[node] = 1 + max((longest[p] for p in ins), default=-1)
            shortest[node] = 1 + min((shortest[p] for p in ins), default=-1)

        for node in [*preds]:
            visit(node)
        depth = max(longest.get(OUTPUT, 0), 1)
        count = np.zeros(len(self.ops), dtype=np.float32)
        position = np.zeros(len(self.ops), dtype=np.float32)
        for n in canon.nodes:
            if n.op in self.ops:
                i = self.ops.index(n.op)
                count[i] += 1
                position[i] += longest[n.id] / depth
        position = np.divide(position, count, out=np.zeros_like(position), where=count > 0)
        in_degrees = [len(preds[n.id]) for n in canon.nodes]
        log_params = 0.0
        shape, classes, width = self.problem
        if shape is not None and classes is not None and width is not None:
            try:
                log_params = math.log10(max(1, self.space.count_params(genome, shape, classes,
                                                                       width)))
            except GenomeError:
                log_params = 0.0
        structure = np.array([
            len(canon.nodes), len(canon.edges), depth, shortest.get(OUTPUT, 0),
            sum(1 for e in canon.edges if e.src == INPUT), len(preds[OUTPUT]),
            sum(1 for d in in_degrees if d > 1), max(in_degrees, default=0), log_params,
        ], dtype=np.float32)
        return np.concatenate([count, position, structure])


# ====================================================================== dispatch
def _decisions_onehot(space: SearchSpace) -> Encoder:
    from nasforge.strategies.decisions import step_vocabulary, to_decisions

    vocab = step_vocabulary(space)
    offsets = np.cumsum([0] + [len(v) for v in vocab])
    index = [{c: i for i, c in enumerate(v)} for v in vocab]

    def encode(genome: Any) -> np.ndarray:
        out = np.zeros(int(offsets[-1]), dtype=np.float32)
        for step, choice in enumerate(to_decisions(space, genome)):
            if choice in index[step]:
                out[offsets[step] + index[step][choice]] = 1.0
        return out

    return encode


def encoder_for(space: SearchSpace, input_shape: tuple[int, int, int] | None = None,
                num_classes: int | None = None, width: int | None = None) -> Encoder:
    """The predictor encoding of ``space`` (see the module docstring for each kind).

    ``input_shape``, ``num_classes`` and ``width`` only matter for the global space (its
    parameter-count feature). Raises ``ConfigError`` for a space with neither ``"encode"`` nor
    ``"decisions"``.
    """
    if space.name == "nb201":
        return NB201Features(space)
    if space.name == "darts":
        return DartsPathEncoder(space)
    if space.name == "global":
        return GlobalFeatures(space, input_shape, num_classes, width)
    if "encode" in space.capabilities:
        return space.encode
    if "decisions" in space.capabilities:
        return _decisions_onehot(space)
    raise ConfigError(f"space {space.name!r} has no encoding for predictors (needs the "
                      "'encode' or 'decisions' capability)")


def encode_all(encoder: Encoder, genomes: list[Any]) -> np.ndarray:
    """Encode every genome: float32 [len(genomes), d]."""
    if not genomes:
        raise ConfigError("nothing to encode")
    return np.stack([np.asarray(encoder(g), dtype=np.float32) for g in genomes])
