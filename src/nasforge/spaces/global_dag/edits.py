"""Edit operations on a global genome (split an edge, toggle or add an edge, change an
operation, drop inactive genes) and the repair used by sampling and crossover.
"""

from __future__ import annotations

import graphlib
import hashlib
import random

from nasforge.errors import GenomeError
from nasforge.spaces.global_dag.genome import INPUT, OUTPUT, EdgeGene, GlobalGenome, NodeGene
from nasforge.spaces.global_dag.graph import _active, _adjacency, _find_cycle, _has_path


def new_node_id(genome: GlobalGenome, op: str, src: str, dst: str, mutation: str = "split") -> str:
    """The content-derived id for a node made by ``mutation`` of edge ``src -> dst`` with
    ``op``: a 10-hex-digit sha256, salted only if the genome already has that id."""
    taken = {n.id for n in genome.nodes}
    salt = 0
    while True:
        text = f"{mutation}|{op}|{src}|{dst}|{salt}"
        node_id = hashlib.sha256(text.encode()).hexdigest()[:10]
        if node_id not in taken:
            return node_id
        salt += 1


def split_edge(genome: GlobalGenome, src: str, dst: str, op: str) -> GlobalGenome:
    """Split the enabled edge ``src -> dst`` with a new node of ``op``: the edge is disabled
    and ``src -> new -> dst`` added."""
    old = genome.edge(src, dst)
    if old is None or not old.enabled:
        raise GenomeError(f"cannot split {src}->{dst}: no such enabled edge")
    node_id = new_node_id(genome, op, src, dst)
    edges = tuple(EdgeGene(e.src, e.dst, False) if e is old else e for e in genome.edges)
    edges += (EdgeGene(src, node_id), EdgeGene(node_id, dst))
    return GlobalGenome(genome.nodes + (NodeGene(node_id, op),), edges)


def toggle_edge(genome: GlobalGenome, src: str, dst: str) -> GlobalGenome:
    """Flip the ``enabled`` flag of the edge ``src -> dst`` (no validity check)."""
    old = genome.edge(src, dst)
    if old is None:
        raise GenomeError(f"cannot toggle {src}->{dst}: no such edge")
    edges = tuple(EdgeGene(e.src, e.dst, not e.enabled) if e is old else e for e in genome.edges)
    return GlobalGenome(genome.nodes, edges)


def add_edge(genome: GlobalGenome, src: str, dst: str) -> GlobalGenome:
    """Add an enabled edge ``src -> dst`` between existing nodes (no cycle check)."""
    if genome.edge(src, dst) is not None:
        raise GenomeError(f"edge {src}->{dst} already exists")
    return GlobalGenome(genome.nodes, genome.edges + (EdgeGene(src, dst),))


def change_op(genome: GlobalGenome, node_id: str, op: str) -> GlobalGenome:
    """The genome with node ``node_id``'s operation replaced by ``op`` (its id is kept)."""
    if node_id not in genome.ops:
        raise GenomeError(f"no node {node_id!r}")
    nodes = tuple(NodeGene(n.id, op) if n.id == node_id else n for n in genome.nodes)
    return GlobalGenome(nodes, genome.edges)


def drop_inactive(genome: GlobalGenome) -> GlobalGenome:
    """The genome without nodes that lie on no enabled in->out path (and their edges)."""
    active = _active(genome) | {INPUT, OUTPUT}
    nodes = tuple(n for n in genome.nodes if n.id in active)
    edges = tuple(e for e in genome.edges if e.src in active and e.dst in active)
    return GlobalGenome(nodes, edges)


def _toggle_candidates(genome: GlobalGenome) -> list[EdgeGene]:
    """Edges whose toggle keeps the enabled graph acyclic and in->out connected."""
    succ, _ = _adjacency(genome)
    out = []
    for e in genome.edges:
        if e.enabled:
            if _has_path(succ, INPUT, OUTPUT, skip=(e.src, e.dst)):
                out.append(e)
        elif not _has_path(succ, e.dst, e.src):
            out.append(e)
    return out


def _add_edge_candidates(genome: GlobalGenome) -> list[tuple[str, str]]:
    """New edges forward in a topological order of the enabled graph (no cycle possible)."""
    succ, _ = _adjacency(genome)
    sorter = graphlib.TopologicalSorter({v: () for v in succ})
    for v, ws in succ.items():
        for w in ws:
            sorter.add(w, v)
    try:
        order = list(sorter.static_order())
    except graphlib.CycleError:
        return []
    existing = {(e.src, e.dst) for e in genome.edges}
    out = []
    for i, u in enumerate(order):
        if u == OUTPUT:
            continue
        for v in order[i + 1 :]:
            if v != INPUT and (u, v) not in existing and not _has_path(succ, v, u):
                out.append((u, v))
    return out


def _repair(genome: GlobalGenome, rng: random.Random) -> GlobalGenome | None:
    """Disable edges to break enabled cycles, then enable disabled edges (acyclic ones, in
    random order) until in->out is connected. None when no connection can be made."""
    while True:
        succ, _ = _adjacency(genome)
        cycle = _find_cycle(succ)
        if cycle is None:
            break
        i = rng.randrange(len(cycle) - 1)
        genome = toggle_edge(genome, cycle[i], cycle[i + 1])
    succ, _ = _adjacency(genome)
    if _has_path(succ, INPUT, OUTPUT):
        return genome
    disabled = [e for e in genome.edges if not e.enabled]
    rng.shuffle(disabled)
    for e in disabled:
        succ, _ = _adjacency(genome)
        if not _has_path(succ, e.dst, e.src):
            genome = toggle_edge(genome, e.src, e.dst)
            succ, _ = _adjacency(genome)
            if _has_path(succ, INPUT, OUTPUT):
                return genome
    return None
