"""Ant colony optimisation as in DeepSwarm (Byla & Pang, UKCI 2019).

An ant walks a path of choices; every choice of every place on a path carries a pheromone
value, ``start`` (0.1) until touched. At each place the ant takes, with probability
``greediness`` (0.5), the choice with the most pheromone x heuristic (ties at random),
otherwise it draws one with probability proportional to pheromone x heuristic. Local
update, as each ant is asked: each choice on its path moves toward the start value,
``tau = (1 - local_decay) tau + local_decay * start`` (0.1), which makes later ants of the
same iteration explore. Global update, after each iteration of ``ants`` (16) results: the
best ant so far (over all iterations, as DeepSwarm's code keeps ``best_ant``; ant colony
system's global-best rule) gets ``tau = (1 - evaporation) tau + evaporation * fitness``
(0.1) on its path, fitness being its accuracy. Failed ants count toward the iteration with
no fitness. All constants: DeepSwarm's published settings. Measured on the synthetic
additive test (6 steps x 5 options, 300 evaluations, 40 seeds): updating with the
iteration's best ant instead found the optimum in 24 of 40 seeds, the best so far in more.

**Cell spaces** (the ``decisions`` capability): the places are the steps of the decision
sequence, the heuristic is 1.

**The global space** (no decision sequence): DeepSwarm's layer graph. An ant builds a chain
``in -> layer_1 -> ... -> layer_d -> out`` (each layer made by splitting the edge to
``out``, so node ids are the space's content ids). At depth d it first picks the layer's
*type* after the previous one's (``conv``: an operation that sets the channels, ``pool``:
a kernel that keeps them, or ``end``: the head follows, DeepSwarm's Flatten) with
DeepSwarm's transition heuristics (:data:`TRANSITIONS`), then the layer's operation among the
space's operations of that type (DeepSwarm's attribute pheromone, heuristic 1). The
pheromone of a type choice belongs to (depth, previous type), of an operation to (depth,
type), as DeepSwarm keeps one node per type and depth. Progressive depth (DeepSwarm's
``increase_depth``, on by default here): paths have at most 1 layer in the first
iteration and one more after each iteration, up to ``max_depth`` (DeepSwarm: 15; at most the
space's ``max_nodes``). The path of a told genome is read back from its chain; it ends with
``end`` when shorter than the current depth limit.
"""

from __future__ import annotations

import math
from typing import Any

from nasforge.errors import ConfigError, GenomeError
from nasforge.evaluation.budget import Budget
from nasforge.spaces.base import SearchSpace
from nasforge.spaces.global_dag import INPUT, OUTPUT, EdgeGene, GlobalGenome, GlobalSpace, split_edge
from nasforge.spaces.ops import get_operation
from nasforge.strategies.base import Candidate, Observation, Problem, Strategy, register_strategy
from nasforge.strategies.decisions import (
    decision_choices, decision_length, from_decisions, to_decisions,
)
from nasforge.strategies.population import check_float, check_int

TRANSITIONS: dict[str, dict[str, float]] = {
    "input": {"conv": 1.0},
    "conv": {"conv": 0.8, "pool": 1.2, "end": 1.0},
    "pool": {"conv": 1.1, "end": 1.0},
}
"""DeepSwarm's transition heuristics between layer types (its Fashion-MNIST settings,
``settings/fashion-mnist.yaml``: Input->Conv2D 1.0; Conv2D->Conv2D 0.8, ->Pool2D 1.2,
->Flatten 1.0; Pool2D->Conv2D 1.1, ->Flatten 1.0; no Pool2D->Pool2D). Its BatchNorm and
Dropout nodes are inside this space's conv operations; Flatten is ``end``."""
DEEPSWARM_MAX_DEPTH = 15
"""DeepSwarm's ``max_depth`` (Byla & Pang 2019, Fashion-MNIST and CIFAR-10 settings)."""

Path = list[tuple[str, Any]]


def layer_type(op: str) -> str:
    """``"pool"`` for an operation with a kernel that keeps the channels, else ``"conv"``."""
    spec = get_operation(op)
    return "pool" if spec.channels == "keep" and spec.kernel is not None else "conv"


def chain_ops(genome: GlobalGenome) -> list[str] | None:
    """The operations along ``genome``'s enabled edges from ``in`` to ``out`` when they form
    one chain, else None."""
    succ: dict[str, list[str]] = {}
    for src, dst in genome.enabled_edges:
        succ.setdefault(src, []).append(dst)
    ops, node, ops_of = [], INPUT, genome.ops
    while node != OUTPUT:
        nxt = succ.get(node, [])
        if len(nxt) != 1 or len(ops) > len(ops_of):
            return None
        node = nxt[0]
        if node != OUTPUT:
            ops.append(ops_of[node])
    return ops


def chain_genome(ops: list[str]) -> GlobalGenome:
    """The chain ``in -> ops[0] -> ... -> out``, each node made by splitting the edge to
    ``out`` (content ids, as the space's split mutation makes them)."""
    genome = GlobalGenome((), (EdgeGene(INPUT, OUTPUT),))
    last = INPUT
    for op in ops:
        genome = split_edge(genome, last, OUTPUT, op)
        last = genome.nodes[-1].id
    return genome


@register_strategy("aco")
class AntColony(Strategy):
    """DeepSwarm's ant colony (see the module doc). ``progressive`` and ``max_depth`` apply
    to the global space only (None: on, and min(15, max_nodes))."""

    requires = frozenset({"decisions"})

    @classmethod
    def missing_capabilities(cls, space: SearchSpace) -> frozenset[str]:
        if isinstance(space, GlobalSpace):
            return frozenset()  # layer paths instead of a decision sequence
        return super().missing_capabilities(space)

    def __init__(self, space: SearchSpace, budget: Budget, problem: Problem, seed: int,
                 ants: int = 16, greediness: float = 0.5, start: float = 0.1,
                 local_decay: float = 0.1, evaporation: float = 0.1,
                 progressive: bool | None = None, max_depth: int | None = None) -> None:
        super().__init__(space, budget, problem, seed)
        self.ants = check_int(self.name, "ants", ants, 1)
        self.greediness = check_float(self.name, "greediness", greediness, 0.0, 1.0)
        self.start = check_float(self.name, "start", start, 0.0)
        if self.start <= 0:
            raise ConfigError(f"{self.name}: start must be > 0, got {start!r}")
        self.local_decay = check_float(self.name, "local_decay", local_decay, 0.0, 1.0)
        self.evaporation = check_float(self.name, "evaporation", evaporation, 0.0, 1.0)
        self.layers = isinstance(space, GlobalSpace) and "decisions" not in space.capabilities
        if self.layers:
            self._init_layers(space, progressive, max_depth)
        else:
            if progressive or max_depth is not None:
                key = "progressive" if progressive else "max_depth"
                raise ConfigError(f"{self.name}: {key} applies to the global space only "
                                  f"(space {space.name!r} has a fixed decision sequence)")
            self.length = decision_length(space)
        self.pheromone: dict[str, dict[Any, float]] = {}
        self.told = 0  # results of the current iteration
        self.iteration = 0
        self.best: tuple[float, Path] | None = None  # best ant so far

    def _init_layers(self, space: GlobalSpace, progressive: bool | None,
                     max_depth: int | None) -> None:
        if progressive is not None and not isinstance(progressive, bool):
            raise ConfigError(f"{self.name}: progressive must be true or false, "
                              f"got {progressive!r}")
        self.progressive = True if progressive is None else progressive
        limit = min(DEEPSWARM_MAX_DEPTH, space.max_nodes)
        self.max_depth = limit if max_depth is None else check_int(
            self.name, "max_depth", max_depth, 1)
        if self.max_depth > space.max_nodes:
            raise ConfigError(f"{self.name}: max_depth {self.max_depth} is over the space's "
                              f"max_nodes {space.max_nodes}")
        self.ops_of: dict[str, list[str]] = {}
        for op in space.operations:
            self.ops_of.setdefault(layer_type(op), []).append(op)
        if "conv" not in self.ops_of:
            raise ConfigError(f"{self.name}: the global space needs a channel-setting "
                              f"operation (a conv) for DeepSwarm's first layer")

    # ------------------------------------------------------------------ paths
    def depth_limit(self) -> int:
        """Most layers a path may have now (global space; progressive depth)."""
        if not self.progressive:
            return self.max_depth
        return min(self.max_depth, 1 + self.iteration)

    def _next(self, path: Path) -> tuple[str, list[Any], list[float]] | None:
        """The place after ``path``: its pheromone key, allowed choices and heuristics; None
        when the path is complete."""
        if not self.layers:
            step = len(path)
            if step == self.length:
                return None
            allowed = list(decision_choices(self.space, [c for _, c in path]))
            return str(step), allowed, [1.0] * len(allowed)
        types = [c for k, c in path if k.startswith("t")]
        if path and path[-1][0].startswith("t") and path[-1][1] != "end":  # its operation
            kind = path[-1][1]
            return f"o{len(types) - 1}|{kind}", list(self.ops_of[kind]), [1.0] * len(
                self.ops_of[kind])
        depth = len(types)
        if (types and types[-1] == "end") or depth >= self.depth_limit():
            return None
        prev = types[-1] if types else "input"
        moves = {t: h for t, h in TRANSITIONS[prev].items() if t == "end" or t in self.ops_of}
        return f"t{depth}|{prev}", list(moves), list(moves.values())

    def _genome(self, path: Path) -> Any:
        if not self.layers:
            return from_decisions(self.space, [c for _, c in path])
        return chain_genome([c for k, c in path if k.startswith("o")])

    def path_of(self, genome: Any) -> Path:
        """The path that builds ``genome`` (see the module doc); ``GenomeError`` for a global
        genome that is not a chain."""
        if not self.layers:
            return [(str(s), c) for s, c in enumerate(to_decisions(self.space, genome))]
        ops = chain_ops(genome)
        if ops is None:
            raise GenomeError("aco: a global genome that is not a chain of layers")
        path: Path = []
        prev = "input"
        for d, op in enumerate(ops):
            kind = layer_type(op)
            path += [(f"t{d}|{prev}", kind), (f"o{d}|{kind}", op)]
            prev = kind
        if len(ops) < self.depth_limit():
            path.append((f"t{len(ops)}|{prev}", "end"))
        return path

    def tau(self, key: str, choice: Any) -> float:
        """The pheromone on ``choice`` at the place ``key``."""
        return self.pheromone.get(key, {}).get(choice, self.start)

    def _walk(self) -> Path:
        path: Path = []
        while (place := self._next(path)) is not None:
            key, allowed, heuristic = place
            scores = [self.tau(key, c) * h for c, h in zip(allowed, heuristic)]
            if self.rng.random() < self.greediness:
                top = max(scores)
                choice = self.rng.choice([c for c, s in zip(allowed, scores) if s == top])
            else:
                choice = self.rng.choices(allowed, weights=scores)[0]
            path.append((key, choice))
        return path

    def ask(self) -> Candidate:
        for _ in range(50):  # a path the space rejects (limits) is walked again
            path = self._walk()
            genome = self._genome(path)
            if self.is_valid(genome):
                break
        else:
            raise GenomeError(f"aco: 50 ants in a row walked networks space {self.space.name!r} "
                              f"rejects; loosen {self.limits()}")
        for key, choice in path:  # local update
            self.pheromone.setdefault(key, {})[choice] = (
                (1 - self.local_decay) * self.tau(key, choice) + self.local_decay * self.start)
        return Candidate(genome, self.budget)

    def tell(self, observation: Observation) -> None:
        fitness = observation.fitness
        if observation.status == "ok" and fitness is not None and math.isfinite(fitness):
            if self.best is None or fitness > self.best[0]:
                self.best = (float(fitness), self.path_of(observation.genome))
        self.told += 1
        if self.told >= self.ants:
            if self.best is not None:  # global update on the best ant so far
                value, path = self.best
                for key, choice in path:
                    self.pheromone.setdefault(key, {})[choice] = (
                        (1 - self.evaporation) * self.tau(key, choice)
                        + self.evaporation * value)
            self.told = 0
            self.iteration += 1

    def entropy(self) -> float:
        """Mean over the places of the current greedy path of the entropy (nats) of an ant's
        choice there, greedy and proportional draws mixed (a measure of exploration)."""
        path: Path = []
        total = 0.0
        while (place := self._next(path)) is not None:
            key, allowed, heuristic = place
            scores = [self.tau(key, c) * h for c, h in zip(allowed, heuristic)]
            top = max(scores)
            winners = [s == top for s in scores]
            probs = [(1 - self.greediness) * s / sum(scores)
                     + self.greediness * w / sum(winners) for s, w in zip(scores, winners)]
            total -= sum(p * math.log(p) for p in probs if p > 0)
            path.append((key, allowed[scores.index(top)]))
        return total / max(1, len(path))

    def warm_start(self, genomes: list[Any]) -> None:
        raise ConfigError("strategy 'aco' does not support warm starts (--init-from): its "
                          "pheromone starts uniform (DeepSwarm); warm-start evolution or "
                          "genetic instead")

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(
            places=[[k, [[c, v] for c, v in p.items()]] for k, p in self.pheromone.items()],
            told=self.told, iteration=self.iteration,
            best=None if self.best is None else [self.best[0], [list(e) for e in self.best[1]]],
        )
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if "places" in state:
            self.pheromone = {k: {c: float(v) for c, v in p} for k, p in state["places"]}
        else:  # a state saved before layer paths: pheromone per step of a decision sequence
            self.pheromone = {str(s): {c: float(v) for c, v in p}
                              for s, p in enumerate(state["pheromone"]) if p}
        self.told, self.iteration = int(state["told"]), int(state["iteration"])
        best = state["best"]
        if best is None:
            self.best = None
        elif "places" in state:
            self.best = (float(best[0]), [(k, c) for k, c in best[1]])
        else:
            self.best = (float(best[0]), [(str(s), c) for s, c in enumerate(best[1])])
