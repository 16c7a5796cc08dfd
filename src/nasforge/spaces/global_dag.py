"""The global (whole-network) DAG search space of REMNet: genome, edits and the space.

**Genome.** A :class:`GlobalGenome` is frozen plain data: node genes ``(id, op)`` and edge
genes ``(src, dst, enabled)`` between the fixed nodes ``"in"`` and ``"out"`` and the hidden
nodes. Disabled edges are kept as genes (NEAT-style), so a toggle can re-enable them.

**Ids from content.** A node made by splitting the edge ``src -> dst`` with operation ``op``
gets ``sha256("split|op|src|dst|salt")[:10]`` as id, where ``salt`` is the smallest integer
(normally 0) that keeps the id unique inside the genome. No global counter: the same edit of
the same ancestor gives the same id in any process, so two genomes share an id exactly where
they share that history, and crossover aligns genes by id.

**Canonical form.** Disabled edges, and nodes not on an enabled in->out path, are pruned; the
rest are renumbered ``n1..nk`` in a deterministic topological order. The next node is the
ready node with the smallest key (structural colour, sorted canonical labels of its
predecessors). The colour is the operation refined by the colours of predecessors *and*
successors (colour refinement, as in Weisfeiler-Lehman), because predecessors alone cannot
tell apart two same-op nodes that differ only downstream. Nodes whose keys still tie are
tried in every order (twins with equal op, inputs and outputs only once) and the smallest
resulting serialisation wins, so any two genomes that build the same network give the same
canonical form whatever their ids or gene order. (The tie search stops branching after 512
complete orders; only many mutually symmetric, non-twin nodes get there, and beyond it ties
fall back to gene order.) Equality, ``hash`` and :meth:`key` (hex sha256 of the canonical
JSON, equal across processes) are on the canonical form.

**Validity.** Acyclic enabled edges, an enabled in->out path, known operations of the space,
at most ``max_nodes`` node genes (and with shapes: mergeable inputs, at most ``max_params``).
Every structurally valid genome builds: kernels are clamped to their input map and merges
align shapes per the merge policy (see :mod:`nasforge.spaces.merge`).
"""

from __future__ import annotations

import graphlib
import hashlib
import json
import random
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Sequence

import numpy as np
from torch import nn

from nasforge.errors import ConfigError, GenomeError
from nasforge.spaces.base import SearchSpace, register_space
from nasforge.spaces.builder import HEADS, NetworkPlan, NodeSpec, build_network, plan_network
from nasforge.spaces.merge import MergePolicy, get_merge_policy, policy_name
from nasforge.spaces.ops import REMNET_OPERATIONS, get_operation, is_registered, op_text

SCHEMA = "nasforge.global/1"
INPUT = "in"
OUTPUT = "out"
_ID_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,63}$")
_TIE_LEAF_LIMIT = 512

__all__ = [
    "DEFAULT_MUTATION_PROBS",
    "EdgeGene",
    "GlobalGenome",
    "GlobalSpace",
    "NodeGene",
    "SCHEMA",
    "add_edge",
    "change_op",
    "drop_inactive",
    "new_node_id",
    "remnet_best_genome",
    "split_edge",
    "toggle_edge",
]


# ====================================================================== genome
@dataclass(frozen=True)
class NodeGene:
    """A hidden node: its content-derived id and its operation name."""

    id: str
    op: str


@dataclass(frozen=True)
class EdgeGene:
    """A directed edge gene ``src -> dst``; disabled edges are kept but carry no data."""

    src: str
    dst: str
    enabled: bool = True


@dataclass(frozen=True, eq=False)
class GlobalGenome:
    """A DAG genome between ``"in"`` and ``"out"``: plain, frozen, hashable data.

    Equality and hashing are on the canonical form (the network it builds), not on ids or
    gene order; compare ``to_dict()`` for gene-exact identity.
    """

    nodes: tuple[NodeGene, ...] = ()
    edges: tuple[EdgeGene, ...] = ()
    if TYPE_CHECKING:  # a per-instance cache of derived values, deliberately not a field
        _cache: dict[str, Any]

    def __post_init__(self) -> None:
        object.__setattr__(self, "_cache", {})
        object.__setattr__(self, "nodes", tuple(self.nodes))
        object.__setattr__(self, "edges", tuple(self.edges))
        ids: set[str] = set()
        for node in self.nodes:
            if not isinstance(node, NodeGene):
                raise GenomeError(f"genome nodes must be NodeGene, got {type(node).__name__}")
            if not isinstance(node.id, str) or not _ID_PATTERN.match(node.id):
                raise GenomeError(f"bad node id {node.id!r} (letters, digits, _.:- ; <= 64)")
            if node.id in (INPUT, OUTPUT):
                raise GenomeError(f"node id {node.id!r} is reserved")
            if node.id in ids:
                raise GenomeError(f"duplicate node id {node.id!r}")
            if not isinstance(node.op, str) or not node.op:
                raise GenomeError(f"node {node.id}: operation must be a non-empty string")
            ids.add(node.id)
        pairs: set[tuple[str, str]] = set()
        for edge in self.edges:
            if not isinstance(edge, EdgeGene):
                raise GenomeError(f"genome edges must be EdgeGene, got {type(edge).__name__}")
            if not isinstance(edge.enabled, bool):
                raise GenomeError(f"edge {edge.src}->{edge.dst}: enabled must be a bool")
            if edge.src != INPUT and edge.src not in ids:
                raise GenomeError(f"edge {edge.src}->{edge.dst}: unknown source {edge.src!r}")
            if edge.dst != OUTPUT and edge.dst not in ids:
                raise GenomeError(f"edge {edge.src}->{edge.dst}: unknown target {edge.dst!r}")
            if edge.src == edge.dst:
                raise GenomeError(f"edge {edge.src}->{edge.dst} is a self-loop")
            if (edge.src, edge.dst) in pairs:
                raise GenomeError(f"duplicate edge {edge.src}->{edge.dst}")
            pairs.add((edge.src, edge.dst))

    # ------------------------------------------------------------- plain views
    @property
    def ops(self) -> dict[str, str]:
        """Node id -> operation name."""
        return {n.id: n.op for n in self.nodes}

    @property
    def enabled_edges(self) -> list[tuple[str, str]]:
        """The enabled edges as (src, dst) pairs, in gene order."""
        return [(e.src, e.dst) for e in self.edges if e.enabled]

    def edge(self, src: str, dst: str) -> EdgeGene | None:
        """The edge gene ``src -> dst``, or None."""
        for e in self.edges:
            if e.src == src and e.dst == dst:
                return e
        return None

    # ------------------------------------------------------------- JSON form
    def to_dict(self) -> dict[str, Any]:
        """The stable, schema-versioned JSON-ready form (gene-exact, in gene order)."""
        return {
            "schema": SCHEMA,
            "nodes": [{"id": n.id, "op": n.op} for n in self.nodes],
            "edges": [{"src": e.src, "dst": e.dst, "enabled": e.enabled} for e in self.edges],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GlobalGenome:
        """Parse :meth:`to_dict`'s form; GenomeError (one line) on unknown fields, schema
        versions, missing fields or wrong types."""
        if not isinstance(data, Mapping):
            raise GenomeError(f"genome must be a JSON object, got {type(data).__name__}")
        _check_fields(data, {"schema", "nodes", "edges"}, "genome")
        if data["schema"] != SCHEMA:
            raise GenomeError(f"unknown genome schema {data['schema']!r}; expected {SCHEMA!r}")
        if not isinstance(data["nodes"], list) or not isinstance(data["edges"], list):
            raise GenomeError("genome 'nodes' and 'edges' must be lists")
        nodes = []
        for i, item in enumerate(data["nodes"]):
            _check_fields(item, {"id", "op"}, f"genome node {i}")
            if not isinstance(item["id"], str) or not isinstance(item["op"], str):
                raise GenomeError(f"genome node {i}: 'id' and 'op' must be strings")
            nodes.append(NodeGene(item["id"], item["op"]))
        edges = []
        for i, item in enumerate(data["edges"]):
            _check_fields(item, {"src", "dst", "enabled"}, f"genome edge {i}")
            if not isinstance(item["src"], str) or not isinstance(item["dst"], str):
                raise GenomeError(f"genome edge {i}: 'src' and 'dst' must be strings")
            if not isinstance(item["enabled"], bool):
                raise GenomeError(f"genome edge {i}: 'enabled' must be true or false")
            edges.append(EdgeGene(item["src"], item["dst"], item["enabled"]))
        return cls(tuple(nodes), tuple(edges))

    # ------------------------------------------------------------- canonical form
    def canonical(self) -> GlobalGenome:
        """The pruned, renumbered genome (ids ``n1..nk``) that builds the same network.

        Raises GenomeError when the enabled edges on in->out paths form a cycle.
        """
        if "canonical" not in self._cache:
            ops, preds, out_preds = _canonical_structure(self)
            nodes = tuple(NodeGene(f"n{i + 1}", op) for i, op in enumerate(ops))
            edges: list[EdgeGene] = []
            for i, ps in enumerate(preds):
                edges += [EdgeGene(_label(p), f"n{i + 1}") for p in ps]
            edges += [EdgeGene(_label(p), OUTPUT) for p in out_preds]
            canon = GlobalGenome(nodes, tuple(edges))
            canon._cache["canonical"] = canon
            self._cache["canonical"] = canon
        return self._cache["canonical"]

    def key(self) -> str:
        """Hex sha256 of the canonical JSON form; the same in every process.

        A genome whose active part is cyclic has no canonical form; its key is taken over
        its own genes instead (it never equals a valid genome's key).
        """
        if "key" not in self._cache:
            try:
                data = self.canonical().to_dict()
            except GenomeError:
                data = {"raw": self.to_dict()}
            text = json.dumps(data, sort_keys=True, separators=(",", ":"))
            self._cache["key"] = hashlib.sha256(text.encode()).hexdigest()
        return self._cache["key"]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GlobalGenome):
            return NotImplemented
        return self is other or self.key() == other.key()

    def __hash__(self) -> int:
        return int(self.key()[:16], 16)

    def __getstate__(self) -> dict[str, Any]:
        return {"nodes": self.nodes, "edges": self.edges}

    def __setstate__(self, state: dict[str, Any]) -> None:
        object.__setattr__(self, "nodes", state["nodes"])
        object.__setattr__(self, "edges", state["edges"])
        object.__setattr__(self, "_cache", {})


def _check_fields(item: Any, expected: set[str], where: str) -> None:
    if not isinstance(item, Mapping):
        raise GenomeError(f"{where} must be a JSON object, got {type(item).__name__}")
    unknown = sorted(set(item) - expected)
    if unknown:
        raise GenomeError(f"{where}: unknown field(s) {unknown}; expected {sorted(expected)}")
    missing = sorted(expected - set(item))
    if missing:
        raise GenomeError(f"{where}: missing field(s) {missing}")


def _label(index: int) -> str:
    return INPUT if index == 0 else f"n{index}"


# ====================================================================== graph helpers
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


# ====================================================================== edits
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


# ====================================================================== space
DEFAULT_MUTATION_PROBS: Mapping[str, float] = {
    "split": 0.25,
    "identity": 0.05,
    "op": 0.35,
    "toggle": 0.35,
    "add_edge": 0.0,
}
_CROSSOVER_GENES = ("parent", "union")


@register_space("global")
class GlobalSpace(SearchSpace):
    """REMNet's global DAG space: a network is a DAG of operations between input and output.

    ``operations``: names of registered operations (default: the 12 REMNet ones);
    ``max_nodes``: most node genes, inactive ones included (a split at the limit first drops
    the nodes on no enabled in->out path); ``merge_policy``: a name of ``MERGE_POLICIES``, a dict of
    :class:`MergePolicy` fields or a policy; ``head``: ``"gap"`` or ``"remnet"``;
    ``max_params``: reject larger networks (None: no limit); ``initial_mutations``: add-node
    mutations of a sample; ``mutation_probs``: overrides of ``DEFAULT_MUTATION_PROBS`` (split,
    identity, op, toggle, add_edge; the merged values must sum to 1); ``crossover_genes``:
    ``"parent"`` (disjoint genes from one random parent) or ``"union"`` (all genes).
    """

    name: ClassVar[str] = "global"
    capabilities: ClassVar[frozenset[str]] = frozenset({"mutate", "crossover", "encode"})

    def __init__(
        self,
        operations: Sequence[str] | None = None,
        max_nodes: int = 16,
        merge_policy: str | MergePolicy | Mapping[str, Any] = "remnet",
        head: str = "gap",
        max_params: int | None = None,
        initial_mutations: int = 4,
        mutation_probs: Mapping[str, float] | None = None,
        crossover_genes: str = "parent",
    ) -> None:
        ops = tuple(REMNET_OPERATIONS if operations is None else operations)
        if not ops:
            raise ConfigError("global space: operations must not be empty")
        if len(set(ops)) != len(ops):
            raise ConfigError(f"global space: duplicate operations in {list(ops)}")
        for op in ops:
            get_operation(op)  # ConfigError listing the known ones
        if not isinstance(max_nodes, int) or isinstance(max_nodes, bool) or max_nodes < 1:
            raise ConfigError(f"global space: max_nodes must be a positive int, got {max_nodes!r}")
        if head not in HEADS:
            raise ConfigError(f"global space: head must be one of {', '.join(HEADS)}, got {head!r}")
        if max_params is not None and (
            not isinstance(max_params, int) or isinstance(max_params, bool) or max_params < 1
        ):
            raise ConfigError("global space: max_params must be a positive int or None")
        if not isinstance(initial_mutations, int) or initial_mutations < 0:
            raise ConfigError("global space: initial_mutations must be a non-negative int")
        probs = dict(DEFAULT_MUTATION_PROBS)
        unknown = sorted(set(mutation_probs or {}) - set(probs))
        if unknown:
            raise ConfigError(
                f"global space: unknown mutation(s) {unknown}; known: {sorted(probs)}"
            )
        probs.update({k: float(v) for k, v in (mutation_probs or {}).items()})
        if any(v < 0 for v in probs.values()) or abs(sum(probs.values()) - 1.0) > 1e-6:
            raise ConfigError(
                f"global space: mutation_probs must be >= 0 and sum to 1, got {probs}"
            )
        if crossover_genes not in _CROSSOVER_GENES:
            raise ConfigError(
                f"global space: crossover_genes must be one of {_CROSSOVER_GENES}"
            )
        self.operations: tuple[str, ...] = ops
        self.max_nodes = max_nodes
        self.merge_policy: MergePolicy = get_merge_policy(merge_policy)
        self.head = head
        self.max_params = max_params
        self.initial_mutations = initial_mutations
        self.mutation_probs: dict[str, float] = probs
        self.crossover_genes = crossover_genes

    # ------------------------------------------------------------------ settings
    def settings(self) -> dict[str, Any]:
        """The JSON-ready settings; ``get_space("global", **settings())`` rebuilds the space."""
        name = policy_name(self.merge_policy)
        return {
            "operations": list(self.operations),
            "max_nodes": self.max_nodes,
            "merge_policy": name if name is not None else self.merge_policy.to_dict(),
            "head": self.head,
            "max_params": self.max_params,
            "initial_mutations": self.initial_mutations,
            "mutation_probs": dict(self.mutation_probs),
            "crossover_genes": self.crossover_genes,
        }

    def genome_to_dict(self, genome: GlobalGenome) -> dict[str, Any]:
        """The genome's schema-versioned JSON-ready form."""
        return _as_genome(genome).to_dict()

    def genome_from_dict(self, data: Mapping[str, Any]) -> GlobalGenome:
        """Parse a genome; GenomeError on unknown fields, versions or bad types."""
        return GlobalGenome.from_dict(data)

    # ------------------------------------------------------------------ sampling
    def initial(self) -> GlobalGenome:
        """The initial genome: a single enabled in->out edge."""
        return GlobalGenome((), (EdgeGene(INPUT, OUTPUT),))

    def sample(self, rng: random.Random) -> GlobalGenome:
        """The initial genome after ``initial_mutations`` add-node (split) mutations."""
        genome = self.initial()
        for _ in range(self.initial_mutations):
            genome = self._split(genome, rng)
        return genome

    # ------------------------------------------------------------------ mutation
    def mutate(self, genome: GlobalGenome, rng: random.Random) -> GlobalGenome:
        """One mutation with the published probabilities (see :meth:`mutate_traced`)."""
        return self.mutate_traced(genome, rng)[0]

    def mutate_traced(self, genome: GlobalGenome, rng: random.Random) -> tuple[GlobalGenome, str]:
        """One mutation and the name of the operator applied.

        Drawn with ``mutation_probs`` (published: split 0.25, identity 0.05, op 0.35,
        toggle 0.35): split a random enabled edge with a node of a random operation; no
        change; change the operation of a random node; toggle a random edge among those whose
        toggle keeps the enabled graph acyclic and connected from in to out; or add an edge
        forward in topological order. Op changes, toggles and edge additions that are not
        possible fall back to a split (reported as ``"split"``). The result is valid except
        for the limits (max_nodes, max_params) when ``genome`` is valid.
        """
        genome = _as_genome(genome)
        draw = rng.random()
        kind = "split"
        total = 0.0
        for name in ("split", "identity", "op", "toggle", "add_edge"):
            total += self.mutation_probs[name]
            if draw < total:
                kind = name
                break
        if kind == "identity":
            return genome, "identity"
        if kind == "op":
            choices = [o for o in self.operations]
            if genome.nodes and len(choices) > 1:
                node = rng.choice(genome.nodes)
                op = rng.choice([o for o in choices if o != node.op])
                return change_op(genome, node.id, op), "op"
        elif kind == "toggle":
            candidates = _toggle_candidates(genome)
            if candidates:
                e = rng.choice(candidates)
                return toggle_edge(genome, e.src, e.dst), "toggle"
        elif kind == "add_edge":
            pairs = _add_edge_candidates(genome)
            if pairs:
                src, dst = rng.choice(pairs)
                return add_edge(genome, src, dst), "add_edge"
        return self._split(genome, rng), "split"

    def _split(self, genome: GlobalGenome, rng: random.Random) -> GlobalGenome:
        """Split a random enabled edge with a node of a random operation; at the node limit,
        inactive node genes are dropped first."""
        if len(genome.nodes) >= self.max_nodes:
            genome = drop_inactive(genome)
        enabled = [e for e in genome.edges if e.enabled]
        if not enabled:
            raise GenomeError("cannot split: the genome has no enabled edge")
        e = rng.choice(enabled)
        return split_edge(genome, e.src, e.dst, rng.choice(self.operations))

    def mutate_valid(
        self,
        genome: GlobalGenome,
        rng: random.Random,
        input_shape: tuple[int, int, int],
        num_classes: int,
        width: int,
        tries: int = 20,
    ) -> GlobalGenome:
        """A mutation valid for these shapes and limits, retrying up to ``tries`` times; then
        ``genome`` itself if it is valid (an identity mutation), else GenomeError."""
        for _ in range(tries):
            child = self.mutate(genome, rng)
            if not self.validate_for(child, input_shape, num_classes, width):
                return child
        reasons = self.validate_for(genome, input_shape, num_classes, width)
        if not reasons:
            return _as_genome(genome)
        raise GenomeError(f"no valid mutation in {tries} tries; parent invalid: {reasons[0]}")

    # ------------------------------------------------------------------ crossover
    def crossover(self, a: GlobalGenome, b: GlobalGenome, rng: random.Random, *,
                  fitter_first: bool = False,
                  disabled_stays: float | None = None) -> GlobalGenome:
        """A child with genes aligned by id: a shared node takes either parent's operation,
        a shared edge either parent's ``enabled`` flag; disjoint genes come from one random
        parent (``crossover_genes="parent"``) or from both (``"union"``). The child is
        repaired (cycles broken, in->out reconnected) and falls back to that parent's genes
        when no repair is found; it is valid except for the limits.

        NEAT's rules (Stanley & Miikkulainen 2002, Sec. 3.2), for the ``genetic`` strategy:
        ``fitter_first``: ``a`` is the fitter parent and gives the disjoint genes (instead
        of a random parent); ``disabled_stays``: a shared edge disabled in either parent is
        disabled in the child with this probability (NEAT: 0.75), else enabled. The
        defaults keep the plain behaviour (and its random draws) unchanged.
        """
        a, b = _as_genome(a), _as_genome(b)
        if fitter_first:
            primary, other = a, b
        else:
            primary, other = (a, b) if rng.random() < 0.5 else (b, a)
        other_ops = other.ops
        other_edges = {(e.src, e.dst): e.enabled for e in other.edges}
        nodes = [
            NodeGene(n.id, rng.choice((n.op, other_ops[n.id])) if n.id in other_ops else n.op)
            for n in primary.nodes
        ]

        def flag(e: EdgeGene) -> bool:
            if (e.src, e.dst) not in other_edges:
                return e.enabled
            theirs = other_edges[(e.src, e.dst)]
            if disabled_stays is not None and not (e.enabled and theirs):
                return rng.random() >= disabled_stays
            return bool(rng.choice((e.enabled, theirs)))

        edges = [EdgeGene(e.src, e.dst, flag(e)) for e in primary.edges]
        if self.crossover_genes == "union":
            have = {n.id for n in nodes}
            nodes += [n for n in other.nodes if n.id not in have]
            pairs = {(e.src, e.dst) for e in edges}
            edges += [e for e in other.edges if (e.src, e.dst) not in pairs]
        child = _repair(GlobalGenome(tuple(nodes), tuple(edges)), rng)
        if child is None:
            child = primary
        if len(child.nodes) > self.max_nodes:
            child = drop_inactive(child)
        return child

    # ------------------------------------------------------------------ validity
    def validate(self, genome: GlobalGenome) -> list[str]:
        """Reasons ``genome`` is invalid regardless of shapes: unknown operation, operation
        not in this space, cycle, no enabled in->out path, over max_nodes."""
        return self._structure_reasons(genome) + self._node_limit_reasons(genome)

    def _structure_reasons(self, genome: GlobalGenome) -> list[str]:
        genome = _as_genome(genome)
        reasons = []
        for n in genome.nodes:
            if not is_registered(n.op):
                reasons.append(f"node {n.id}: unknown operation {n.op!r}")
            elif n.op not in self.operations:
                reasons.append(f"node {n.id}: operation {n.op!r} is not in this space")
        succ, _ = _adjacency(genome)
        cycle = _find_cycle(succ)
        if cycle is not None:
            reasons.append(f"cycle among enabled edges: {' -> '.join(cycle)}")
        if not _has_path(succ, INPUT, OUTPUT):
            reasons.append("no enabled path from in to out")
        return reasons

    def _node_limit_reasons(self, genome: GlobalGenome) -> list[str]:
        if len(genome.nodes) > self.max_nodes:
            return [f"{len(genome.nodes)} nodes, over max_nodes={self.max_nodes}"]
        return []

    def validate_for(
        self,
        genome: GlobalGenome,
        input_shape: tuple[int, int, int],
        num_classes: int,
        width: int,
    ) -> list[str]:
        """:meth:`validate` plus the shape-dependent checks: merges that cannot align (see
        the merge policy) and the parameter count over ``max_params``."""
        structure = self._structure_reasons(genome)
        limits = self._node_limit_reasons(genome)
        if structure:
            return structure + limits
        plan = self.plan(genome, input_shape, num_classes, width)
        reasons = list(plan.problems) + limits
        if not plan.problems and self.max_params is not None:
            total = plan.total_params
            if total > self.max_params:
                reasons.append(f"{total:,} parameters, over max_params={self.max_params:,}")
        return reasons

    def canonical(self, genome: GlobalGenome) -> GlobalGenome:
        """The canonical form (see :meth:`GlobalGenome.canonical`)."""
        return _as_genome(genome).canonical()

    # ------------------------------------------------------------------ encoding
    def encoding_size(self) -> int:
        """Length of :meth:`encode`'s vector."""
        slots = self.max_nodes + 2
        return slots * (slots - 1) // 2 + self.max_nodes * len(self.operations)

    def encode(self, genome: GlobalGenome) -> np.ndarray:
        """A fixed-length float32 vector: the strict upper triangle of the canonical adjacency
        over ``max_nodes + 2`` slots (0 = in, 1..k = canonical nodes, last = out; unused
        slots zero), then a one-hot operation per node slot (zero for unused slots)."""
        canon = self.canonical(genome)
        if len(canon.nodes) > self.max_nodes:
            raise GenomeError(f"{len(canon.nodes)} active nodes, over max_nodes={self.max_nodes}")
        slots = self.max_nodes + 2
        index = {INPUT: 0, OUTPUT: slots - 1, **{n.id: i + 1 for i, n in enumerate(canon.nodes)}}
        adjacency = np.zeros((slots, slots), dtype=np.float32)
        for e in canon.edges:
            adjacency[index[e.src], index[e.dst]] = 1.0
        onehot = np.zeros((self.max_nodes, len(self.operations)), dtype=np.float32)
        for i, n in enumerate(canon.nodes):
            if n.op not in self.operations:
                raise GenomeError(f"operation {n.op!r} is not in this space")
            onehot[i, self.operations.index(n.op)] = 1.0
        upper = adjacency[np.triu_indices(slots, k=1)]
        return np.concatenate([upper, onehot.ravel()])

    # ------------------------------------------------------------------ building
    def plan(
        self,
        genome: GlobalGenome,
        input_shape: tuple[int, int, int],
        num_classes: int,
        width: int,
    ) -> NetworkPlan:
        """Shapes and parameter counts of the canonical network, without weights.

        GenomeError when it has no canonical network (cycle, no path, unknown operation)."""
        canon = self.canonical(genome)
        if not canon.edges:
            raise GenomeError("no enabled path from in to out")
        preds: dict[str, list[str]] = {n.id: [] for n in canon.nodes}
        preds[OUTPUT] = []
        for e in canon.edges:
            preds[e.dst].append(e.src)
        specs = [NodeSpec(n.id, n.op, tuple(preds[n.id])) for n in canon.nodes]
        return plan_network(
            specs, tuple(preds[OUTPUT]), tuple(input_shape), num_classes, width,
            self.merge_policy, self.head,
        )

    def count_params(
        self,
        genome: GlobalGenome,
        input_shape: tuple[int, int, int],
        num_classes: int,
        width: int,
    ) -> int:
        """Trainable parameters of the built network, by shape inference (no weights)."""
        plan = self.plan(genome, input_shape, num_classes, width)
        if plan.problems:
            raise GenomeError(plan.problems[0])
        return plan.total_params

    def build(
        self,
        genome: GlobalGenome,
        input_shape: tuple[int, int, int],
        num_classes: int,
        width: int,
    ) -> nn.Module:
        """The network of the canonical genome; GenomeError when ``validate_for`` objects."""
        reasons = self.validate_for(genome, input_shape, num_classes, width)
        if reasons:
            raise GenomeError(f"cannot build genome: {reasons[0]}")
        return build_network(self.plan(genome, input_shape, num_classes, width))

    # ------------------------------------------------------------------ text
    def _texts(
        self, canon: GlobalGenome, width: int | None, input_shape: tuple[int, int, int] | None
    ) -> tuple[dict[str, str], NetworkPlan | None]:
        plan = None
        if input_shape is not None:
            try:
                plan = self.plan(canon, input_shape, 1, width if width is not None else 2)
            except GenomeError:
                plan = None
        texts: dict[str, str] = {}
        planned = {p.label: p for p in plan.nodes} if plan is not None else {}
        for n in canon.nodes:
            if not is_registered(n.op):
                texts[n.id] = f"{n.op}?"
                continue
            op = get_operation(n.op)
            p = planned.get(n.id)
            if p is None:
                texts[n.id] = op_text(op, width)
            else:
                channels = p.geometry.out_channels if width is not None else None
                texts[n.id] = op_text(op, width, kernel=p.geometry.kernel, channels=channels)
        return texts, plan

    def describe(
        self,
        genome: GlobalGenome,
        width: int | None = None,
        input_shape: tuple[int, int, int] | None = None,
    ) -> str:
        """A one-line text form of the canonical network.

        Layered chains read ``in -> conv3(32) -> avgpool5 -> {conv3(16), conv3(16)} -> out``
        (braces: parallel nodes whose outputs are merged); other DAGs list nodes with their
        inputs, ``n1=conv2(128)(in); n2=conv3(64)(n1,in); out=sum(n1,n2)``. With
        ``input_shape`` the effective (clamped) kernels are shown.
        """
        try:
            canon = self.canonical(genome)
        except GenomeError as exc:
            return f"invalid genome: {exc}"
        if not canon.edges:
            return "in -/- out (no enabled path)"
        texts, _ = self._texts(canon, width, input_shape)
        stages = _layered_stages(canon)
        if stages is not None:
            parts = ["in"]
            for stage in stages:
                items = [texts[v] for v in stage]
                parts.append(items[0] if len(items) == 1 else "{" + ", ".join(items) + "}")
            parts.append("out")
            return " -> ".join(parts)
        preds: dict[str, list[str]] = {n.id: [] for n in canon.nodes}
        preds[OUTPUT] = []
        for e in canon.edges:
            preds[e.dst].append(e.src)
        combine = self.merge_policy.combine
        items = [f"{n.id}={texts[n.id]}({','.join(preds[n.id])})" for n in canon.nodes]
        outs = preds[OUTPUT]
        items.append(f"out={combine}({','.join(outs)})" if len(outs) > 1 else f"out={outs[0]}")
        return "; ".join(items)

    def to_dot(
        self,
        genome: GlobalGenome,
        width: int | None = None,
        input_shape: tuple[int, int, int] | None = None,
    ) -> str:
        """A Graphviz DOT digraph of the canonical network (with shapes given
        ``input_shape``)."""
        canon = self.canonical(genome)
        texts, plan = self._texts(canon, width, input_shape)
        shapes: dict[str, str] = {}
        if plan is not None and width is not None:
            shapes = {p.label: "x".join(map(str, p.out_shape)) for p in plan.nodes}
            shapes[OUTPUT] = "x".join(map(str, plan.out_shape))
        if input_shape is not None:
            shapes[INPUT] = "x".join(map(str, input_shape))

        def label(name: str, text: str) -> str:
            full = f"{text}\\n{shapes[name]}" if name in shapes else text
            return f'  "{name}" [label="{full}"];'

        combine = self.merge_policy.combine
        lines = [
            "digraph genome {",
            "  rankdir=TB;",
            '  node [shape=box, style="rounded"];',
            label(INPUT, "in"),
        ]
        lines += [label(n.id, texts[n.id]) for n in canon.nodes]
        out_inputs = sum(1 for e in canon.edges if e.dst == OUTPUT)
        lines.append(label(OUTPUT, f"out ({combine})" if out_inputs > 1 else "out"))
        lines += [f'  "{e.src}" -> "{e.dst}";' for e in canon.edges]
        lines.append("}")
        return "\n".join(lines) + "\n"


def _layered_stages(canon: GlobalGenome) -> list[list[str]] | None:
    """Stages of a layered canonical genome (every node of a stage takes exactly all nodes
    of the previous stage as inputs, and the output takes the last stage), else None."""
    preds: dict[str, set[str]] = {n.id: set() for n in canon.nodes}
    preds[OUTPUT] = set()
    for e in canon.edges:
        preds[e.dst].add(e.src)
    depth = {INPUT: 0}
    for n in canon.nodes:  # canonical order is topological
        depth[n.id] = 1 + max(depth[p] for p in preds[n.id])
    last = max(depth.values())
    stages: list[list[str]] = [[INPUT]] + [[] for _ in range(last)]
    for n in canon.nodes:
        stages[depth[n.id]].append(n.id)
    for d in range(1, last + 1):
        for v in stages[d]:
            if preds[v] != set(stages[d - 1]):
                return None
    if preds[OUTPUT] != set(stages[last]):
        return None
    return stages[1:]


def _as_genome(genome: Any) -> GlobalGenome:
    if not isinstance(genome, GlobalGenome):
        raise GenomeError(f"expected a GlobalGenome, got {type(genome).__name__}")
    return genome


def remnet_best_genome() -> GlobalGenome:
    """The best published REMNet architecture as a genome built by splits:
    in -> conv2N -> conv2N -> conv3N -> conv5N -> avgpool5 -> two parallel conv3H -> out (sum).

    Spatial sizes on 28x28: 28 -> 27 -> 26 -> 24 -> 20 -> 4 -> 2. REMNet-128 (width 128, head
    "remnet", merge "remnet", input (1, 28, 28), 10 classes) has 791,338 parameters.
    """
    genome = GlobalGenome((), (EdgeGene(INPUT, OUTPUT),))
    src = INPUT
    for op in ("conv2N", "conv2N", "conv3N", "conv5N", "avgpool5", "conv3H"):
        genome = split_edge(genome, src, OUTPUT, op)
        src = genome.nodes[-1].id
    pool = genome.nodes[-2].id
    genome = toggle_edge(genome, pool, OUTPUT)  # re-enable avgpool5 -> out, then split it
    return split_edge(genome, pool, OUTPUT, "conv3H")
