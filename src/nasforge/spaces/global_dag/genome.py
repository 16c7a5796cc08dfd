"""The genome of the global space: node and edge genes, ids from content, canonical form
and key (see the package docstring).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

from nasforge.errors import GenomeError
from nasforge.spaces.global_dag.graph import INPUT, OUTPUT, _canonical_structure

__all__ = ["INPUT", "OUTPUT", "SCHEMA", "EdgeGene", "GlobalGenome", "NodeGene"]

SCHEMA = "nasforge.global/1"
_ID_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,63}$")


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
