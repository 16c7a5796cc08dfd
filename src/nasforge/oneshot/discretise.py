"""Reading an ordinary genome off a supernet's architecture parameters.

- **NB201** (as NAS-Bench-201's DARTS code, ``genotype()``): on each of the 6 edges the
  operation of largest weight among all five, ``none`` included; ``exclude_none=True`` takes
  the largest among the other four.
- **DARTS** (Liu et al. 2019, Sec. 2.4): for each intermediate node, the two incoming edges
  whose strongest non-``none`` weight is largest, each with its strongest non-``none``
  operation; for the normal and the reduction cell.

Both return a genome their space validates (checked here: a bug, never a bad genome, raises).
Weights are the softmax of ``alpha`` per edge (argmax of the softmax equals argmax of alpha).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch

from nasforge.errors import GenomeError
from nasforge.spaces.darts_genome import CellEdge, DartsCell, DartsGenome
from nasforge.spaces.nb201 import NB201Genome
from nasforge.oneshot.supernet import darts_edges


def discretise_nb201(alpha: torch.Tensor, operations: Sequence[str],
                     exclude_none: bool = False) -> NB201Genome:
    """The NB201 cell of ``alpha`` [6, K] (``EDGES`` order, ``operations`` order)."""
    weights = torch.softmax(alpha.detach().float(), dim=-1)
    if exclude_none and "none" in operations:
        weights[:, list(operations).index("none")] = -1.0
    return NB201Genome(tuple(operations[int(i)] for i in weights.argmax(-1)))  # type: ignore[arg-type]


def _darts_cell(alpha: torch.Tensor, operations: Sequence[str]) -> DartsCell:
    weights = torch.softmax(alpha.detach().float(), dim=-1)
    live = [k for k, op in enumerate(operations) if op != "none"]
    if not live:
        raise GenomeError("darts discretisation needs an operation other than 'none'")
    edges = darts_edges()
    chosen: list[CellEdge] = []
    for node in sorted({n for n, _ in edges}):
        rows = [(k, j) for k, (n, j) in enumerate(edges) if n == node]
        strength = [(float(weights[k, live].max()), j, k) for k, j in rows]
        best = sorted(strength, key=lambda s: (-s[0], s[1]))[:2]
        for _, j, k in best:
            op = live[int(weights[k, live].argmax())]
            chosen.append(CellEdge(operations[op], j))
    return DartsCell(tuple(chosen))


def discretise_darts(alphas: Mapping[str, torch.Tensor],
                     operations: Sequence[str]) -> DartsGenome:
    """The DARTS genome of ``alphas["normal"]`` and ``alphas["reduce"]`` (each [14, K])."""
    return DartsGenome(_darts_cell(alphas["normal"], operations),
                       _darts_cell(alphas["reduce"], operations))


def discretise(space_name: str, alphas: Mapping[str, torch.Tensor], operations: Sequence[str],
               exclude_none: bool = False) -> NB201Genome | DartsGenome:
    """The genome of a supernet's ``alphas`` (``Supernet.alphas()``) in space
    ``space_name``; ``exclude_none`` applies to NB201 (DARTS always excludes ``none``)."""
    if space_name == "nb201":
        return discretise_nb201(alphas["cell"], operations, exclude_none)
    return discretise_darts(alphas, operations)


def count_skips(genome: NB201Genome | DartsGenome) -> int:
    """Skip connections of the cell: the NB201 cell's, or the DARTS normal cell's (the cell
    DARTS+ watches: Liang et al. 2019, arXiv:1909.06035, Sec. 3.2)."""
    if isinstance(genome, NB201Genome):
        return sum(op == "skip_connect" for op in genome.ops)
    return sum(e.op == "skip_connect" for e in genome.normal.edges)


def cell_text(genome: NB201Genome | DartsGenome) -> str:
    """A one-line text of the cell: the NB201 string, or the DARTS genotype."""
    if isinstance(genome, NB201Genome):
        return genome.to_string()
    return genome.to_genotype()
