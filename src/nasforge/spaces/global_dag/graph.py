"""Graph algorithms on a genome's DAG: adjacency, reachability, cycles (graphlib), and the
canonical structure (colour refinement plus the bounded tie search).
"""

from __future__ import annotations

import graphlib
import json
from typing import TYPE_CHECKING, Any, Mapping

from nasforge.errors import GenomeError

if TYPE_CHECKING:
    from nasforge.spaces.global_dag.genome import GlobalGenome


INPUT = "in"
OUTPUT = "out"
_TIE_LEAF_LIMIT = 512
"""Complete orders the canonical tie search tries before falling back to gene order."""


def _adjacency(
    genome: GlobalGenome, enabled_only: bool = True
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(successors, predecessors) over all nodes including in/out."""
    names = [INPUT, *(n.id for n in genome.nodes), OUTPUT]
    succ: dict[str, list[str]] = {v: [] for v in names}
    pred: dict[str, list[str]] = {v: [] for v in names}
    for e in genome.edges:
        if e.enabled or not enabled_only:
            succ[e.src].append(e.dst)
            pred[e.dst].append(e.src)
    return succ, pred


def _reach(start: str, step: Mapping[str, list[str]]) -> set[str]:
    seen = {start}
    stack = [start]
    while stack:
        v = stack.pop()
        for w in step[v]:
            if w not in seen:
                seen.add(w)
                stack.append(w)
    return seen


def _has_path(
    succ: Mapping[str, list[str]], src: str, dst: str, skip: tuple[str, str] | None = None
) -> bool:
    """Whether ``dst`` is reachable from ``src``, optionally ignoring the edge ``skip``."""
    seen = {src}
    stack = [src]
    while stack:
        v = stack.pop()
        if v == dst:
            return True
        for w in succ[v]:
            if skip is not None and (v, w) == skip:
                continue
            if w not in seen:
                seen.add(w)
                stack.append(w)
    return False


def _active(genome: GlobalGenome) -> set[str]:
    """Hidden nodes on some enabled in->out path."""
    succ, pred = _adjacency(genome)
    both = _reach(INPUT, succ) & _reach(OUTPUT, pred)
    return both - {INPUT, OUTPUT}


def _find_cycle(succ: Mapping[str, list[str]]) -> list[str] | None:
    """A cycle as a list of nodes (first repeated at the end), or None; via graphlib."""
    sorter = graphlib.TopologicalSorter({v: () for v in succ})
    for v, ws in succ.items():
        for w in ws:
            sorter.add(w, v)
    try:
        sorter.prepare()
    except graphlib.CycleError as exc:
        return list(exc.args[1])  # in edge direction, first node repeated at the end
    return None


def _canonical_structure(
    genome: GlobalGenome,
) -> tuple[list[str], list[tuple[int, ...]], tuple[int, ...]]:
    """(ops in canonical order, sorted predecessor indices per node, output predecessors).

    Index 0 is the input; node ``i`` (1-based) is the i-th canonical node.
    """
    succ_all, pred_all = _adjacency(genome)
    if OUTPUT not in _reach(INPUT, succ_all):
        return [], [], ()
    keep = (_reach(INPUT, succ_all) & _reach(OUTPUT, pred_all)) | {INPUT, OUTPUT}
    succ = {v: sorted(w for w in succ_all[v] if w in keep) for v in keep}
    pred = {v: sorted(w for w in pred_all[v] if w in keep) for v in keep}
    cycle = _find_cycle(succ)
    if cycle is not None:
        raise GenomeError(f"cycle among enabled edges: {' -> '.join(cycle)}")
    ops = genome.ops
    colour = _refine_colours(keep, ops, succ, pred)
    hidden = [v for v in keep if v not in (INPUT, OUTPUT)]
    state = _TieSearch(hidden, ops, pred, succ, colour)
    best = state.run()
    order = best[1]
    index = {INPUT: 0, **{v: i + 1 for i, v in enumerate(order)}}
    ops_out = [ops[v] for v in order]
    preds_out = [tuple(sorted(index[p] for p in pred[v])) for v in order]
    out_preds = tuple(sorted(index[p] for p in pred[OUTPUT]))
    return ops_out, preds_out, out_preds


def _refine_colours(
    keep: set[str],
    ops: Mapping[str, str],
    succ: Mapping[str, list[str]],
    pred: Mapping[str, list[str]],
) -> dict[str, int]:
    """Colour refinement over predecessors and successors, starting from the operation."""

    def initial(v: str) -> tuple[Any, ...]:
        return (0, "") if v == INPUT else (2, "") if v == OUTPUT else (1, ops[v])

    def compress(sig: Mapping[str, Any]) -> dict[str, int]:
        ranks = {s: i for i, s in enumerate(sorted(set(sig.values())))}
        return {v: ranks[s] for v, s in sig.items()}

    colour = compress({v: initial(v) for v in keep})
    classes = len(set(colour.values()))
    while True:
        sig = {
            v: (
                colour[v],
                tuple(sorted(colour[p] for p in pred[v])),
                tuple(sorted(colour[s] for s in succ[v])),
            )
            for v in keep
        }
        new = compress(sig)
        count = len(set(new.values()))
        if count == classes:
            return colour
        colour, classes = new, count


class _TieSearch:
    """Chooses the canonical topological order, branching over ties that refinement left."""

    def __init__(
        self,
        hidden: list[str],
        ops: Mapping[str, str],
        pred: Mapping[str, list[str]],
        succ: Mapping[str, list[str]],
        colour: Mapping[str, int],
    ) -> None:
        self.hidden = hidden
        self.ops = ops
        self.pred = pred
        self.succ = succ
        self.colour = colour
        self.leaves = 0

    def run(self) -> tuple[tuple[Any, ...], list[str]]:
        return self._extend({INPUT: 0}, [], ())

    def _extend(
        self, labels: dict[str, int], order: list[str], serial: tuple[Any, ...]
    ) -> tuple[tuple[Any, ...], list[str]]:
        labels = dict(labels)
        order = list(order)
        while True:
            ready = [
                v for v in self.hidden
                if v not in labels and all(p in labels for p in self.pred[v])
            ]
            if not ready:
                out = tuple(sorted(labels[p] for p in self.pred[OUTPUT]))
                self.leaves += 1
                return serial + (("out", out),), order
            keys = {
                v: (self.colour[v], self.ops[v], tuple(sorted(labels[p] for p in self.pred[v])))
                for v in ready
            }
            best = min(keys.values())
            tied = sorted(v for v in ready if keys[v] == best)  # sorted only for determinism
            candidates = _one_per_twin_class(tied, self.pred, self.succ)
            if len(candidates) > 1 and self.leaves < _TIE_LEAF_LIMIT:
                results = []
                for v in candidates:
                    item = (self.ops[v], keys[v][2])
                    results.append(
                        self._extend({**labels, v: len(labels)}, order + [v], serial + (item,))
                    )
                return min(results, key=lambda r: _serial_key(r[0]))
            v = candidates[0]
            serial = serial + ((self.ops[v], keys[v][2]),)
            labels[v] = len(labels)
            order.append(v)


def _serial_key(serial: tuple[Any, ...]) -> str:
    return json.dumps(serial)


def _one_per_twin_class(
    tied: list[str], pred: Mapping[str, list[str]], succ: Mapping[str, list[str]]
) -> list[str]:
    """Keep one node per class of twins (same inputs and outputs): swapping twins is an
    automorphism, so trying more than one of them cannot change the result."""
    seen: set[tuple[tuple[str, ...], tuple[str, ...]]] = set()
    out = []
    for v in tied:
        sig = (tuple(sorted(pred[v])), tuple(sorted(succ[v])))
        if sig not in seen:
            seen.add(sig)
            out.append(v)
    return out
