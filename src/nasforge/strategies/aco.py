"""Ant colony optimisation as in DeepSwarm (Byla & Pang, UKCI 2019), over decision sequences.

Every (step, choice) of the space's decision sequence carries a pheromone value, ``start``
(0.1) until touched. An ant builds a sequence step by step: with probability ``greediness``
(0.5) it takes the choice with the most pheromone x heuristic (ties at random), otherwise it
draws one with probability proportional to pheromone x heuristic. The heuristic is 1 on the
cell spaces (DeepSwarm's transition heuristics belong to its own layer graph; the global DAG
space has no decision sequence, so this strategy is refused there). Local update, as each ant
is asked: each (step, choice) on its path moves toward the start value,
``tau = (1 - local_decay) tau + local_decay * start`` (0.1), which makes later ants of the
same iteration explore. Global update, after each iteration of ``ants`` (16) results: the
best ant so far (over all iterations, as DeepSwarm's code keeps ``best_ant``; ant colony
system's global-best rule) gets ``tau = (1 - evaporation) tau + evaporation * fitness`` (0.1)
on its path, fitness being its accuracy. Failed ants count toward the iteration with no
fitness. All constants: DeepSwarm's published settings. Measured on the synthetic additive
test (6 steps x 5 options, 300 evaluations, 40 seeds): updating with the iteration's best
ant instead found the optimum in 24 of 40 seeds, the best so far in more (see the tests).
"""

from __future__ import annotations

import math
from typing import Any

from nasforge.errors import ConfigError
from nasforge.evaluation.budget import Budget
from nasforge.spaces.base import SearchSpace
from nasforge.strategies.base import Candidate, Observation, Problem, Strategy, register_strategy
from nasforge.strategies.decisions import (
    decision_choices, decision_length, from_decisions, to_decisions,
)
from nasforge.strategies.population import check_float, check_int


@register_strategy("aco")
class AntColony(Strategy):
    """DeepSwarm's ant colony over a space's decision sequence (see the module doc)."""

    requires = frozenset({"decisions"})

    def __init__(self, space: SearchSpace, budget: Budget, problem: Problem, seed: int,
                 ants: int = 16, greediness: float = 0.5, start: float = 0.1,
                 local_decay: float = 0.1, evaporation: float = 0.1) -> None:
        super().__init__(space, budget, problem, seed)
        self.ants = check_int(self.name, "ants", ants, 1)
        self.greediness = check_float(self.name, "greediness", greediness, 0.0, 1.0)
        self.start = check_float(self.name, "start", start, 0.0)
        if self.start <= 0:
            raise ConfigError(f"{self.name}: start must be > 0, got {start!r}")
        self.local_decay = check_float(self.name, "local_decay", local_decay, 0.0, 1.0)
        self.evaporation = check_float(self.name, "evaporation", evaporation, 0.0, 1.0)
        self.length = decision_length(space)
        self.pheromone: list[dict[Any, float]] = [{} for _ in range(self.length)]
        self.told = 0  # results of the current iteration
        self.iteration = 0
        self.best: tuple[float, list[Any]] | None = None  # best ant so far

    def tau(self, step: int, choice: Any) -> float:
        """The pheromone on ``choice`` at ``step``."""
        return self.pheromone[step].get(choice, self.start)

    def heuristic(self, step: int, choice: Any) -> float:
        """The transition heuristic: 1 (cell spaces)."""
        return 1.0

    def ask(self) -> Candidate:
        for _ in range(50):  # a sequence the space rejects (limits) is walked again
            seq: list[Any] = []
            for step in range(self.length):
                allowed = decision_choices(self.space, seq)
                scores = [self.tau(step, c) * self.heuristic(step, c) for c in allowed]
                if self.rng.random() < self.greediness:
                    top = max(scores)
                    seq.append(self.rng.choice([c for c, s in zip(allowed, scores) if s == top]))
                else:
                    seq.append(self.rng.choices(allowed, weights=scores)[0])
            genome = from_decisions(self.space, seq)
            if self.is_valid(genome):
                break
        for step, choice in enumerate(seq):  # local update
            self.pheromone[step][choice] = ((1 - self.local_decay) * self.tau(step, choice)
                                            + self.local_decay * self.start)
        return Candidate(genome, self.budget)

    def tell(self, observation: Observation) -> None:
        fitness = observation.fitness
        if observation.status == "ok" and fitness is not None and math.isfinite(fitness):
            if self.best is None or fitness > self.best[0]:
                self.best = (float(fitness), list(to_decisions(self.space, observation.genome)))
        self.told += 1
        if self.told >= self.ants:
            if self.best is not None:  # global update on the best ant so far
                value, seq = self.best
                for step, choice in enumerate(seq):
                    self.pheromone[step][choice] = ((1 - self.evaporation) * self.tau(step, choice)
                                                    + self.evaporation * value)
            self.told = 0
            self.iteration += 1

    def entropy(self) -> float:
        """Mean over steps of the entropy (nats) of an ant's choice at that step, greedy and
        proportional draws mixed, along the current greedy path (a measure of exploration)."""
        seq: list[Any] = []
        total = 0.0
        for step in range(self.length):
            allowed = decision_choices(self.space, seq)
            scores = [self.tau(step, c) * self.heuristic(step, c) for c in allowed]
            top = max(scores)
            winners = [s == top for s in scores]
            probs = [(1 - self.greediness) * s / sum(scores)
                     + self.greediness * w / sum(winners) for s, w in zip(scores, winners)]
            total -= sum(p * math.log(p) for p in probs if p > 0)
            seq.append(allowed[scores.index(top)])
        return total / self.length

    def warm_start(self, genomes: list[Any]) -> None:
        raise ConfigError("strategy 'aco' does not support warm starts (--init-from): its "
                          "pheromone starts uniform (DeepSwarm); warm-start evolution or "
                          "genetic instead")

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(
            pheromone=[[[c, v] for c, v in step.items()] for step in self.pheromone],
            told=self.told, iteration=self.iteration,
            best=None if self.best is None else [self.best[0], self.best[1]],
        )
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.pheromone = [{c: float(v) for c, v in step} for step in state["pheromone"]]
        self.told, self.iteration = int(state["told"]), int(state["iteration"])
        best = state["best"]
        self.best = None if best is None else (float(best[0]), list(best[1]))
