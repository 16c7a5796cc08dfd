"""ASHA: asynchronous successive halving (Li et al., MLSys 2020, Algorithm 2).

Rungs k = 0..K on the budget ladder (:mod:`nasforge.strategies.brackets`), entered at level
``early_stop_rate`` (the paper's s). Whenever a worker is free, ``ask`` looks from the
second-highest rung down for a member in the top ``floor(|rung k| / eta)`` of the results
rung k holds now that was not promoted yet, and promotes the best such member one level up;
when there is none, a new network starts at the lowest rung. No worker ever waits for a rung
to fill: ``ask`` never returns None.

**Rungs with fewer than eta results promote nothing** (``floor(n / eta) = 0``): the rule of
the paper's Algorithm 2, ``top_k(rung k, |rung k| / eta)``, which bounds the promotions out
of every rung to 1/eta of its results at any time. The libraries differ here: Optuna's
``SuccessiveHalvingPruner`` promotes the best result of a rung that holds fewer than eta
(its promotable index is raised from -1 to 0), Ray Tune's ``AsyncHyperBandScheduler`` lets a
trial continue when it is at or above the rung's (1 - 1/eta) quantile, so the first trial to
reach any rung always goes on. Chosen: the paper's, because on a CPU search with one or two
workers the first network of a search is a random one, and those rules would train it (and
the next few) to the full budget before anything is known; the paper's rule costs at most
eta - 1 extra networks at the bottom rung, the cheapest one. The incumbent comes from the
highest rung reached (:meth:`MultiFidelity.incumbent`).
"""

from __future__ import annotations

import bisect
import itertools
from typing import Any

from nasforge.errors import ConfigError
from nasforge.evaluation.budget import Budget
from nasforge.spaces.base import SearchSpace
from nasforge.strategies.base import Candidate, Observation, Problem, register_strategy
from nasforge.strategies.brackets import DEFAULT_ETA
from nasforge.strategies.multi_fidelity import MultiFidelity, rank_key


def promotable(members: list[dict[str, Any]], eta: int,
               order: list[tuple[float, int]] | None = None) -> list[int]:
    """Indices of ``members`` (one rung's results) in its top ``floor(len / eta)``, best first,
    failed ones never, that were not promoted yet. ``order``: the ok members as sorted
    ``(-fitness, index)`` pairs, when the caller keeps them (else sorted here)."""
    if order is None:
        order = sorted((-rank_key(m["fitness"]), i) for i, m in enumerate(members)
                       if m["fitness"] is not None)
    return [i for _, i in order[:len(members) // eta] if not members[i]["promoted"]]


@register_strategy("asha")
class ASHA(MultiFidelity):
    """Asynchronous successive halving (module doc). Settings: ``early_stop_rate`` (s, the
    level new networks start at, 0 = the lowest) and the ladder settings of
    :class:`MultiFidelity` (``axis``, ``eta``, ``min_epochs``, ``min_fraction``)."""

    def __init__(self, space: SearchSpace, budget: Budget, problem: Problem, seed: int,
                 axis: str = "epochs", eta: int = DEFAULT_ETA, min_epochs: int = 1,
                 min_fraction: float | None = None, early_stop_rate: int = 0,
                 novelty_tries: int = 20) -> None:
        super().__init__(space, budget, problem, seed, axis=axis, eta=eta,
                         min_epochs=min_epochs, min_fraction=min_fraction,
                         novelty_tries=novelty_tries)
        if not 0 <= early_stop_rate < len(self.ladder):
            raise ConfigError(f"asha: early_stop_rate must be in 0..{len(self.ladder) - 1}")
        self.start = early_stop_rate
        self.levels: list[list[dict[str, Any]]] = [[] for _ in self.ladder]
        self._order: list[list[tuple[float, int]]] = [[] for _ in self.ladder]  # not state

    def _sort(self) -> None:
        self._order = [sorted((-rank_key(m["fitness"]), i) for i, m in enumerate(members)
                              if m["fitness"] is not None) for members in self.levels]

    def ask(self) -> Candidate:
        for level in range(len(self.ladder) - 2, self.start - 1, -1):
            members, order = self.levels[level], self._order[level]
            chosen = next((i for _, i in itertools.islice(order, len(members) // self.eta)
                           if not members[i]["promoted"]), None)  # promotable()'s first
            if chosen is not None:
                member = members[chosen]
                member["promoted"] = True
                genome = self.space.genome_from_dict(member["genome"])
                return self._candidate(genome, level + 1, level + 1, parent=member["number"])
        return self._candidate(self.new_genome(self.start), self.start, self.start)

    def tell(self, observation: Observation) -> None:
        ask = self._match(observation)
        if ask is not None:
            members = self.levels[ask["level"]]
            members.append(self.member(observation))
            if members[-1]["fitness"] is not None:
                bisect.insort(self._order[ask["level"]],
                              (-members[-1]["fitness"], len(members) - 1))

    def rungs(self) -> list[list[dict[str, Any]]]:
        return self.levels

    def schedule(self) -> dict[str, Any]:
        info = super().schedule()
        info.update(early_stop_rate=self.start, promotion="top floor(n/eta) of each rung; "
                    "none from a rung with fewer than eta results (Li et al. 2020, Alg. 2)")
        return info

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["levels"] = self.levels
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.levels = [list(level) for level in state.get("levels", [[] for _ in self.ladder])]
        self._sort()
