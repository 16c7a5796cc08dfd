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

from nasforge.spaces.global_dag.genome import (  # noqa: F401
    INPUT,
    OUTPUT,
    SCHEMA,
    EdgeGene,
    GlobalGenome,
    NodeGene,
)
from nasforge.spaces.global_dag.edits import (  # noqa: F401
    add_edge,
    change_op,
    drop_inactive,
    new_node_id,
    split_edge,
    toggle_edge,
)
from nasforge.spaces.global_dag.space import (  # noqa: F401
    DEFAULT_MUTATION_PROBS,
    GlobalSpace,
    remnet_best_genome,
)

__all__ = [
    "DEFAULT_MUTATION_PROBS",
    "INPUT",
    "OUTPUT",
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

