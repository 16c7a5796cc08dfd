"""Random search: independent samples from the space."""

from __future__ import annotations

from typing import Any

from nasforge.evaluation.budget import Budget
from nasforge.spaces.base import SearchSpace
from nasforge.strategies.base import Candidate, Observation, Problem, Strategy, register_strategy


@register_strategy("random")
class RandomSearch(Strategy):
    """Samples every candidate independently; warm-start genomes are evaluated first."""

    def __init__(self, space: SearchSpace, budget: Budget, problem: Problem, seed: int) -> None:
        super().__init__(space, budget, problem, seed)
        self._queue: list[Any] = []

    def ask(self) -> Candidate:
        if self._queue:
            return Candidate(self._queue.pop(0), self.budget)
        return Candidate(self.sample_valid(), self.budget)

    def tell(self, observation: Observation) -> None:
        return None

    def warm_start(self, genomes: list[Any]) -> None:
        self._queue.extend(g for g in genomes if self.is_valid(g))

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["queue"] = [self.space.genome_to_dict(g) for g in self._queue]
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._queue = [self.space.genome_from_dict(g) for g in state.get("queue", [])]
