"""NSGA-II (Deb et al., IEEE TEC 2002): multi-objective search by non-dominated sorting.

Objectives come from the strategy's settings, ``objectives: [[name, direction], ...]`` with
at least two entries (one objective is refused: use ``evolution`` or ``genetic``). A value is
read from the told observation: ``val_acc`` (or ``fitness``) is its fitness; ``params`` and
``flops`` its metric of that name, else counted by the space for the strategy's budget width
and problem (no weights allocated); any other name its metric of that name. An observation
that lacks a value, failed, or repeats a network already in the population is not kept.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from nasforge.errors import ConfigError
from nasforge.evaluation.budget import Budget
from nasforge.spaces.base import SearchSpace, genome_key
from nasforge.strategies.base import Candidate, Observation, Problem, Strategy, register_strategy
from nasforge.strategies.pareto import DIRECTIONS, rank_and_crowding
from nasforge.strategies.population import (
    Proposals, check_crossover, check_float, check_int, crossover, population_ask,
)

MODES: tuple[str, ...] = ("steady", "generational")
DEFAULT_OBJECTIVES: tuple[tuple[str, str], ...] = (("val_acc", "max"), ("params", "min"))
_FITNESS_NAMES = ("val_acc", "fitness")
_COUNTED = {"params": "count_params", "flops": "count_flops"}


def parse_objectives(objectives: Any, strategy: str = "nsga2") -> list[tuple[str, str]]:
    """``[[name, direction], ...]`` checked: at least two, directions ``max``/``min``, no
    name twice; ``ConfigError`` naming ``objectives`` otherwise."""
    if not isinstance(objectives, (list, tuple)) or not all(
            isinstance(o, (list, tuple)) and len(o) == 2 for o in objectives):
        raise ConfigError(f"{strategy}: objectives must be a list of [name, direction] pairs, "
                          f"got {objectives!r}")
    parsed = [(str(n), str(d)) for n, d in objectives]
    if len(parsed) < 2:
        raise ConfigError(f"{strategy}: objectives needs at least two entries (got "
                          f"{len(parsed)}); for one objective use evolution or genetic")
    for name, direction in parsed:
        if direction not in DIRECTIONS:
            raise ConfigError(f"{strategy}: objectives: direction of {name!r} must be max or "
                              f"min, got {direction!r}")
    names = [n for n, _ in parsed]
    if len(set(names)) != len(names):
        raise ConfigError(f"{strategy}: objectives: a name appears twice in {names}")
    return parsed


@register_strategy("nsga2")
class NSGA2(Strategy):
    """Crowded-comparison tournaments, crossover + mutation; steady state or generational.

    The first ``population`` asks are random samples (warm-start genomes first). Each later
    ask picks two parents by binary crowded tournaments (lower front wins, then the larger
    crowding distance), crosses them with probability ``crossover_rate`` (else copies the
    first) and mutates the child with probability ``mutation_rate`` (always when not
    crossed). ``mode="steady"``: each kept result joins and the member of the last front with
    the smallest crowding distance leaves; ``"generational"``: ``population`` results are
    collected, then the best ``population`` of parents and children by front and crowding
    form the next population (Deb et al. 2002, Sec. III-C).
    """

    requires = frozenset({"mutate"})

    def __init__(self, space: SearchSpace, budget: Budget, problem: Problem, seed: int,
                 objectives: Sequence[Sequence[str]] = DEFAULT_OBJECTIVES,
                 population: int = 20, crossover_rate: float = 0.75,
                 mutation_rate: float = 0.5, mode: str = "steady",
                 novelty_tries: int = 20) -> None:
        super().__init__(space, budget, problem, seed)
        check_crossover(space, self.name)
        self.objectives = parse_objectives(objectives, self.name)
        self.directions = [d for _, d in self.objectives]
        self.population_size = check_int(self.name, "population", population, 2)
        self.crossover_rate = check_float(self.name, "crossover_rate", crossover_rate, 0, 1)
        self.mutation_rate = check_float(self.name, "mutation_rate", mutation_rate, 0, 1)
        if mode not in MODES:
            raise ConfigError(f"{self.name}: mode must be one of {', '.join(MODES)}, "
                              f"got {mode!r}")
        self.mode = mode
        self.proposals = Proposals(space, check_int(self.name, "novelty_tries",
                                                    novelty_tries, 0))
        self.members: list[list[Any]] = []  # [genome, values, key]
        self.children: list[list[Any]] = []
        self.initial_asked = 0
        self._seeds: list[Any] = []
        self._ranked: tuple[list[int], list[float]] | None = None

    # ------------------------------------------------------------------ values
    def values(self, observation: Observation) -> list[float] | None:
        """The objective values of an observation (see the module doc); None when one is
        missing or not finite."""
        out = []
        for name, _ in self.objectives:
            value: Any
            if name in _FITNESS_NAMES:
                value = observation.fitness
            elif observation.metrics.get(name) is not None:
                value = observation.metrics[name]
            elif name in _COUNTED and hasattr(self.space, _COUNTED[name]):
                value = getattr(self.space, _COUNTED[name])(
                    observation.genome, self.problem.input_shape, self.problem.num_classes,
                    self.budget.width)
            else:
                return None
            if value is None or not math.isfinite(float(value)):
                return None
            out.append(float(value))
        return out

    # ------------------------------------------------------------------ ask
    def ask(self) -> Candidate:
        return population_ask(self)

    def _ranking(self) -> tuple[list[int], list[float]]:
        if self._ranked is None:
            self._ranked = rank_and_crowding([m[1] for m in self.members], self.directions)
        return self._ranked

    def _tournament(self) -> int:
        rank, crowd = self._ranking()
        i = self.rng.randrange(len(self.members))
        j = self.rng.randrange(len(self.members))
        return min(i, j, key=lambda k: (rank[k], -crowd[k]))

    def _offspring(self) -> Any:
        first = self._tournament()
        if self.rng.random() < self.crossover_rate:
            second = self._tournament()
            rank, crowd = self._ranking()
            a, b = sorted((first, second), key=lambda k: (rank[k], -crowd[k]))
            child = crossover(self, self.members[a][0], self.members[b][0], self.rng)
            if self.rng.random() < self.mutation_rate:
                child = self.mutate_valid(child)
            return child
        return self.mutate_valid(self.members[first][0])

    # ------------------------------------------------------------------ tell
    def tell(self, observation: Observation) -> None:
        if observation.status != "ok":
            return
        values = self.values(observation)
        if values is None:
            return
        key = genome_key(self.space, observation.genome)
        if any(m[2] == key for m in self.members + self.children):  # duplicates removed
            return
        member = [observation.genome, values, key]
        if self.mode == "generational" and len(self.members) >= self.population_size:
            self.children.append(member)
            if len(self.children) >= self.population_size:
                self.members = self._select(self.members + self.children,
                                            self.population_size)
                self.children = []
        else:
            self.members.append(member)
            if len(self.members) > self.population_size:
                self.members = self._select(self.members, self.population_size)
        self._ranked = None

    def _select(self, pool: list[list[Any]], size: int) -> list[list[Any]]:
        """The ``size`` best of ``pool`` by front, then crowding distance (ties: older
        first), in their order in ``pool``."""
        rank, crowd = rank_and_crowding([m[1] for m in pool], self.directions)
        keep = sorted(range(len(pool)), key=lambda k: (rank[k], -crowd[k], k))[:size]
        return [pool[k] for k in sorted(keep)]

    def front(self) -> list[tuple[Any, list[float]]]:
        """The population's non-dominated members: (genome, objective values)."""
        rank, _ = self._ranking() if self.members else ([], [])
        return [(m[0], list(m[1])) for m, r in zip(self.members, rank) if r == 0]

    # ------------------------------------------------------------------ warm start, state
    def warm_start(self, genomes: list[Any]) -> None:
        self._seeds.extend(g for g in genomes if self.is_valid(g))

    def state_dict(self) -> dict[str, Any]:
        to = self.space.genome_to_dict
        state = super().state_dict()
        state.update(
            members=[[to(m[0]), m[1], m[2]] for m in self.members],
            children=[[to(m[0]), m[1], m[2]] for m in self.children],
            initial_asked=self.initial_asked, seeds=[to(g) for g in self._seeds],
            proposed=sorted(self.proposals.keys),
        )
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        frm = self.space.genome_from_dict
        self.members = [[frm(m[0]), [float(v) for v in m[1]], str(m[2])]
                        for m in state["members"]]
        self.children = [[frm(m[0]), [float(v) for v in m[1]], str(m[2])]
                         for m in state["children"]]
        self.initial_asked = int(state["initial_asked"])
        self._seeds = [frm(g) for g in state["seeds"]]
        self.proposals.keys = set(state["proposed"])
        self._ranked = None
