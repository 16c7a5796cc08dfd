"""What the multi-fidelity strategies (``hyperband``, ``asha``, ``bohb``) share: the budget
ladder, matching results to asks, promotions as candidates, the incumbent, a JSON state.

Results are matched to asks by (network key, budget), not by trial number: the runner may
answer an ask from an earlier trial of the same network and budget, and tells that trial's
number. A promotion over epochs names the trial it continues (``Candidate.parent``); over data
fraction it retrains the network on the larger, nested subset.

Resume: the state (every rung's members with their trial numbers and results, the asks still
out, the random generator) is stored by the runner with every trial it adds or finishes, so
``--resume`` restores exactly the decisions already taken: a promotion asked before a kill is
not asked again (its trial is re-queued by the runner and told when it ends).
"""

from __future__ import annotations

import math
from typing import Any

from nasforge.evaluation.budget import Budget
from nasforge.spaces.base import SearchSpace, genome_key
from nasforge.strategies.base import Candidate, Observation, Problem, Strategy
from nasforge.strategies.brackets import DEFAULT_ETA, budget_ladder, level_label

WORST = -math.inf


def rank_key(fitness: float | None) -> float:
    """Sort key of a result, larger better: a failed or non-finite result ranks last."""
    return fitness if fitness is not None and math.isfinite(fitness) else WORST


class MultiFidelity(Strategy):
    """Base of the ladder strategies: settings ``axis`` (epochs | data_fraction | both),
    ``eta`` (3), ``min_epochs`` (1), ``min_fraction`` (data_fraction / eta**2) and
    ``novelty_tries`` (a new network already proposed is drawn again up to this many times).

    Each member of a rung is a dict ``{"key", "genome", "number", "fitness", "promoted"}``.
    """

    requires = frozenset()

    def __init__(self, space: SearchSpace, budget: Budget, problem: Problem, seed: int,
                 axis: str = "epochs", eta: int = DEFAULT_ETA, min_epochs: int = 1,
                 min_fraction: float | None = None, novelty_tries: int = 20) -> None:
        super().__init__(space, budget, problem, seed)
        from nasforge.strategies.population import check_int

        check_int(self.name, "novelty_tries", novelty_tries, 0)
        self.axis = axis
        self.eta = eta
        self.novelty_tries = novelty_tries
        self.ladder = budget_ladder(budget, axis, eta, min_epochs, min_fraction)
        #: the runner keeps each trial's training state only for strategies that continue
        self.continues_trials = axis == "epochs" and len(self.ladder) > 1
        self.pending: list[dict[str, Any]] = []  # asks not yet told: key, level, where
        self.proposed: set[str] = set()
        self._seeds: list[Any] = []

    # ------------------------------------------------------------ proposals
    def new_genome(self, level: int) -> Any:
        """A network not proposed before (warm-start genomes first); overridden by bohb."""
        if self._seeds:
            return self._seeds.pop(0)
        genome = self.sample_valid()
        for _ in range(self.novelty_tries):
            if genome_key(self.space, genome) not in self.proposed:
                break
            genome = self.sample_valid()
        return genome

    def _candidate(self, genome: Any, level: int, where: Any, parent: int | None = None
                   ) -> Candidate:
        key = genome_key(self.space, genome)
        self.proposed.add(key)
        self.pending.append({"key": key, "level": level, "where": where})
        cont = parent if (parent is not None and self.continues_trials) else None
        return Candidate(genome, self.ladder[level], parent=cont)

    def _match(self, observation: Observation) -> dict[str, Any] | None:
        """Remove and return the oldest pending ask this observation answers."""
        key = genome_key(self.space, observation.genome)
        for i, ask in enumerate(self.pending):
            if ask["key"] == key and self.ladder[ask["level"]] == observation.budget:
                return self.pending.pop(i)
        return None

    def member(self, observation: Observation) -> dict[str, Any]:
        """The rung member an observation makes."""
        fitness = observation.fitness
        ok = observation.status == "ok" and fitness is not None and math.isfinite(fitness)
        return {"key": genome_key(self.space, observation.genome),
                "genome": self.space.genome_to_dict(observation.genome),
                "number": observation.number, "fitness": float(fitness) if ok else None,
                "promoted": False}

    def warm_start(self, genomes: list[Any]) -> None:
        """Known genomes become the first new networks (at the lowest level they enter)."""
        self._seeds.extend(g for g in genomes if self.is_valid(g))

    # ------------------------------------------------------------ reading
    def rungs(self) -> list[list[dict[str, Any]]]:
        """Every finished member by level (all brackets together), lowest level first."""
        raise NotImplementedError

    def incumbent(self) -> dict[str, Any] | None:
        """The best member of the highest level that has an ok result (the incumbent comes
        from the highest rung reached), with its ``level``; None before any ok result."""
        for level in range(len(self.ladder) - 1, -1, -1):
            ok = [m for m in self.rungs()[level] if m["fitness"] is not None]
            if ok:
                return dict(max(ok, key=lambda m: m["fitness"]), level=level)
        return None

    def schedule(self) -> dict[str, Any]:
        """What is stored in the study's meta under ``multi_fidelity`` and printed before the
        run: the strategy, axis, eta and each level's budget."""
        return {"strategy": self.name, "axis": self.axis, "eta": self.eta,
                "levels": [{"epochs": b.epochs, "data_fraction": b.data_fraction,
                            "label": level_label(b, self.axis)} for b in self.ladder]}

    def describe_schedule(self) -> list[str]:
        """Lines printed before the run."""
        labels = ", ".join(level_label(b, self.axis) for b in self.ladder)
        return [f"{self.name}: eta {self.eta} over {self.axis}, levels {labels}"]

    # ------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(pending=[dict(p) for p in self.pending], proposed=sorted(self.proposed),
                     seeds=[self.space.genome_to_dict(g) for g in self._seeds])
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.pending = [dict(p) for p in state.get("pending", [])]
        self.proposed = set(state.get("proposed", []))
        self._seeds = [self.space.genome_from_dict(g) for g in state.get("seeds", [])]


__all__ = ["MultiFidelity", "rank_key"]
