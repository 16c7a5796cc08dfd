"""The global space (``GlobalSpace``): sampling, mutation, crossover, encoding, building,
drawing (its text forms are in :mod:`nasforge.spaces.global_dag.text`); and the published
REMNet genome.
"""

from __future__ import annotations

import random
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np
from torch import nn

from nasforge.errors import ConfigError, GenomeError
from nasforge.spaces.base import SearchSpace, register_space
from nasforge.spaces.builder import HEADS, NetworkPlan, NodeSpec, build_network, plan_network
from nasforge.spaces.merge import MergePolicy, get_merge_policy, policy_name
from nasforge.spaces.ops import REMNET_OPERATIONS, get_operation, is_registered
from nasforge.spaces.global_dag.genome import INPUT, OUTPUT, EdgeGene, GlobalGenome, NodeGene
from nasforge.spaces.global_dag.graph import _adjacency, _find_cycle, _has_path
from nasforge.spaces.global_dag.text import GlobalTextMixin
from nasforge.spaces.global_dag.edits import (
    _add_edge_candidates,
    _repair,
    _toggle_candidates,
    add_edge,
    change_op,
    drop_inactive,
    split_edge,
    toggle_edge,
)


DEFAULT_MUTATION_PROBS: Mapping[str, float] = {
    "split": 0.25,
    "identity": 0.05,
    "op": 0.35,
    "toggle": 0.35,
    "add_edge": 0.0,
}
_CROSSOVER_GENES = ("parent", "union")


@register_space("global")
class GlobalSpace(GlobalTextMixin, SearchSpace):
    """REMNet's global DAG space: a network is a DAG of operations between input and output.

    ``operations``: names of registered operations (default: the 12 REMNet ones);
    ``max_nodes``: most node genes, inactive ones included (a split at the limit first drops
    the nodes on no enabled in->out path); ``merge_policy``: a name of ``MERGE_POLICIES``, a dict of
    :class:`MergePolicy` fields or a policy; ``head``: ``"gap"`` or ``"remnet"``;
    ``max_params``: reject larger networks (None: no limit); ``initial_mutations``: add-node
    mutations of a sample; ``mutation_probs``: overrides of ``DEFAULT_MUTATION_PROBS`` (split,
    identity, op, toggle, add_edge; the merged values must sum to 1); ``crossover_genes``:
    ``"parent"`` (disjoint genes from one random parent) or ``"union"`` (all genes);
    ``input_ops``: the operations a node may apply to the input image itself (None: any), e.g.
    only convolutions, so no network pools the image before it has been convolved at full
    resolution (as the fixed convolutional stem of cell spaces, Liu et al. 2019, DARTS,
    section 3; a search limit, dropped for a network already chosen).
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
        input_ops: Sequence[str] | None = None,
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
        if input_ops is not None:
            if (not isinstance(input_ops, (list, tuple)) or not input_ops
                    or not all(op in ops for op in input_ops)
                    or len(set(input_ops)) != len(input_ops)):
                raise ConfigError(f"global space: input_ops must be a non-empty list of this "
                                  f"space's operations {list(ops)}, each once, got "
                                  f"{input_ops!r}")
        self.input_ops: tuple[str, ...] | None = (None if input_ops is None
                                                  else tuple(input_ops))
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
            **({} if self.input_ops is None else {"input_ops": list(self.input_ops)}),
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
        possible fall back to a split (reported as ``"split"``). A new node after the input,
        or a new operation of a node reading it, is drawn from ``input_ops``. The result is
        valid except for the limits (max_nodes, max_params) and for ``input_ops`` after a
        toggle or an added edge from the input, when ``genome`` is valid.
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
        if kind == "op" and genome.nodes and len(self.operations) > 1:
            node = rng.choice(genome.nodes)
            reads_input = any(e.enabled and e.src == INPUT and e.dst == node.id
                              for e in genome.edges)
            choices = [o for o in self._ops_after(INPUT if reads_input else node.id)
                       if o != node.op]
            if choices:
                return change_op(genome, node.id, rng.choice(choices)), "op"
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
        return split_edge(genome, e.src, e.dst, rng.choice(self._ops_after(e.src)))

    def _ops_after(self, src: str) -> tuple[str, ...]:
        """The operations a node fed by ``src`` may have: ``input_ops`` after the input."""
        return self.input_ops if src == INPUT and self.input_ops is not None else self.operations

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
        not in this space, cycle, no enabled in->out path, an operation on the input outside
        ``input_ops``, over max_nodes."""
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
        if self.input_ops is not None:
            ops = {n.id: n.op for n in genome.nodes}
            reasons += [f"node {e.dst}: {ops[e.dst]!r} reads the input image, not one of "
                        f"input_ops {list(self.input_ops)}" for e in genome.edges
                        if e.enabled and e.src == INPUT and e.dst in ops
                        and ops[e.dst] not in self.input_ops]
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
