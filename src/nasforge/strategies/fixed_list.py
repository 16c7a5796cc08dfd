"""The fixed-list strategy: asks a given list of candidates in order (the fidelity study's)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from nasforge.errors import ConfigError
from nasforge.evaluation.budget import Budget
from nasforge.spaces.base import SearchSpace, genome_key
from nasforge.strategies.base import Candidate, Observation, Problem, Strategy, register_strategy


@register_strategy("fixed-list")
class FixedListStrategy(Strategy):
    """Asks every genome under every budget, budget-major (a partly run list holds whole
    budgets), then wraps around (the runner answers a finished candidate from the study).

    The list is rebuilt from the settings alone, so a resumed study (whose config stores them)
    gets the same list; the state is the position in it.

    Settings:

    - ``genomes``: the genome mappings to ask, in order. Without them (or with an empty list:
      refused with ``ConfigError``) the strategy asks ``count`` distinct valid genomes sampled
      from the space with its seed; that list is kept in the state.
    - ``count``: how many genomes to sample when no ``genomes`` are given (default 10).
    - ``fidelity``: the identity of a fidelity study (``FidelityConfig.identity()``); its
      training runs (``nasforge.studies.fidelity.plan.run_budgets``) are the budgets. Without
      it the only budget is the study's.
    """

    def __init__(self, space: SearchSpace, budget: Budget, problem: Problem, seed: int,
                 genomes: Sequence[Mapping[str, Any]] | None = None, count: int = 10,
                 fidelity: Mapping[str, Any] | None = None) -> None:
        super().__init__(space, budget, problem, seed)
        if genomes is not None and not genomes:
            raise ConfigError("fixed-list strategy: 'genomes' is empty; give at least one "
                              "genome, or leave it out to sample 'count' genomes")
        if genomes is None and (not isinstance(count, int) or count < 1):
            raise ConfigError(f"fixed-list strategy: 'count' must be a positive integer, "
                              f"got {count!r}")
        if fidelity is not None:
            from nasforge.studies.fidelity.plan import run_budgets

            self.budgets = run_budgets(fidelity)
        else:
            self.budgets = [budget]
        self.sampled = genomes is None
        self.genomes = (self._sample(count) if genomes is None
                        else [space.genome_from_dict(dict(g)) for g in genomes])
        self.position = 0

    def _sample(self, count: int) -> list[Any]:
        out: list[Any] = []
        keys: set[str] = set()
        for _ in range(20 * count):
            if len(out) == count:
                break
            genome = self.sample_valid()
            key = genome_key(self.space, genome)
            if key not in keys:
                keys.add(key)
                out.append(genome)
        return out

    @property
    def candidates(self) -> list[Candidate]:
        """The whole list: every genome under the first budget, then under the next, ..."""
        return [Candidate(g, b) for b in self.budgets for g in self.genomes]

    def ask(self) -> Candidate:
        """The next candidate of the list (wrapping around at its end)."""
        n = len(self.genomes)
        i = self.position % (n * len(self.budgets))
        self.position += 1
        return Candidate(self.genomes[i % n], self.budgets[i // n])

    def tell(self, observation: Observation) -> None:
        """Nothing to learn."""
        return None

    def state_dict(self) -> dict[str, Any]:
        """The position in the list (and the list itself when it was sampled)."""
        state: dict[str, Any] = {"position": self.position}
        if self.sampled:
            state["genomes"] = [self.space.genome_to_dict(g) for g in self.genomes]
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the position (and a sampled list)."""
        self.position = int(state.get("position", 0))
        if self.sampled and state.get("genomes"):
            self.genomes = [self.space.genome_from_dict(g) for g in state["genomes"]]
