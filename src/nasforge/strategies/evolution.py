"""Regularized (aging) evolution (Real et al., 2019), as used by REMNet."""

from __future__ import annotations

import math
from collections import deque
from typing import Any

from nasforge.evaluation.budget import Budget
from nasforge.spaces.base import SearchSpace, genome_key
from nasforge.strategies.base import Candidate, Observation, Problem, Strategy, register_strategy


@register_strategy("evolution")
class RegularizedEvolution(Strategy):
    """Tournament selection with replacement, one mutation per child, the oldest member dies.

    The first ``population`` asks are random samples (or warm-start genomes). Afterwards each
    ask draws ``sample`` members with replacement, mutates the fittest and evaluates the child;
    every successful child joins the population and, above ``population`` members, the oldest
    is removed. Failed evaluations (and non-finite fitness) never join. Children are mutated
    from the genome as proposed, inactive genes included, so a disabled edge can come back.

    ``novelty_tries``: a sample or child whose network was already proposed is drawn again, up
    to this many times (then it is proposed anyway and the study answers it from its store).
    Mutations of inactive genes (and the identity mutation) leave the network unchanged, and
    a stored result is told again as a new member, so without retries the population fills
    with copies of its best network and the search stalls: measured on remnet-cpu, 1,207 of
    1,466 asks were networks already trained. 0 gives the published behaviour.
    """

    requires = frozenset({"mutate"})

    def __init__(
        self,
        space: SearchSpace,
        budget: Budget,
        problem: Problem,
        seed: int,
        population: int = 100,
        sample: int = 25,
        novelty_tries: int = 20,
    ) -> None:
        super().__init__(space, budget, problem, seed)
        from nasforge.strategies.population import check_int

        for key, value, low in (("population", population, 1), ("sample", sample, 1),
                                ("novelty_tries", novelty_tries, 0)):
            check_int("evolution", key, value, low)  # 'abc' or 2.5: one line naming the key
        self.population_size = population
        self.sample_size = sample
        self.novelty_tries = novelty_tries
        self.proposed: set[str] = set()  # network keys of every proposal so far
        self.population: deque[tuple[Any, float]] = deque()
        self.initial_asked = 0
        self._seeds: list[Any] = []

    def ask(self) -> Candidate:
        if self._seeds:  # warm-start genomes first, all of them, even beyond the population
            self.initial_asked = min(self.initial_asked + 1, self.population_size)
            return self._propose(self._seeds.pop(0))
        if self.initial_asked < self.population_size or not self.population:
            self.initial_asked += 1
            return self._novel(self.sample_valid)
        members = list(self.population)
        # drawn with replacement, as in Real et al. (2019) and the published REMNet code
        contenders = [self.rng.choice(members) for _ in range(self.sample_size)]
        parent = max(contenders, key=lambda m: m[1])[0]
        return self._novel(lambda: self.mutate_valid(parent))

    def _novel(self, draw: Any) -> Candidate:
        """Propose ``draw()``, drawn again while its network was proposed before, at most
        ``novelty_tries`` times more."""
        genome = draw()
        key = genome_key(self.space, genome)
        for _ in range(self.novelty_tries):
            if key not in self.proposed:
                break
            genome = draw()
            key = genome_key(self.space, genome)
        return self._propose(genome, key)

    def _propose(self, genome: Any, key: str | None = None) -> Candidate:
        self.proposed.add(key or genome_key(self.space, genome))
        return Candidate(genome, self.budget)

    def tell(self, observation: Observation) -> None:
        if (observation.status != "ok" or observation.fitness is None
                or not math.isfinite(observation.fitness)):
            return
        self.population.append((observation.genome, float(observation.fitness)))
        while len(self.population) > self.population_size:
            self.population.popleft()

    def warm_start(self, genomes: list[Any]) -> None:
        self._seeds.extend(g for g in genomes if self.is_valid(g))

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(
            population=[[self.space.genome_to_dict(g), f] for g, f in self.population],
            initial_asked=self.initial_asked,
            seeds=[self.space.genome_to_dict(g) for g in self._seeds],
            proposed=sorted(self.proposed),
        )
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.population = deque(
            (self.space.genome_from_dict(g), float(f)) for g, f in state["population"]
        )
        self.initial_asked = int(state["initial_asked"])
        self._seeds = [self.space.genome_from_dict(g) for g in state.get("seeds", [])]
        self.proposed = set(state.get("proposed", []))
