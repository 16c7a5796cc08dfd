"""Hyperband (Li et al., JMLR 2018): successive halving in brackets over a budget ladder.

One Hyperband iteration runs brackets s = K..0 (K + 1 budget levels, see
:mod:`nasforge.strategies.brackets`); bracket s starts ``n_0`` new networks at level K - s and
runs successive halving (Jamieson & Talwalkar, AISTATS 2016): once every member of a rung has
a result, the best ``n_{i+1} = floor(n_i / eta)`` of them (failed ones never) are promoted to
the next level, up to the full budget. Over epochs a promotion continues the member's trial
(``Candidate.parent``); over data fraction it retrains on the larger nested subset.

Synchronous rungs: a bracket waits for its rung to fill. While every open bracket waits, the
next bracket is opened so no worker idles (as hpbandster runs several iterations at once);
``ask`` returns None only when ``iterations`` Hyperband iterations were all handed out.
"""

from __future__ import annotations

from typing import Any

from nasforge.evaluation.budget import Budget
from nasforge.spaces.base import SearchSpace
from nasforge.strategies.base import Candidate, Observation, Problem, register_strategy
from nasforge.strategies.brackets import (
    DEFAULT_ETA, DEFAULT_FORMULA, bracket_sizes, describe_brackets,
)
from nasforge.strategies.multi_fidelity import MultiFidelity, rank_key


@register_strategy("hyperband")
class Hyperband(MultiFidelity):
    """Hyperband brackets of successive halving (module doc).

    Settings: ``formula`` (``paper`` default, or ``bohb``: the two published bracket sizes),
    ``iterations`` (Hyperband iterations to run, None: until the run's ``max_evals``), and the
    ladder settings of :class:`MultiFidelity` (``axis``, ``eta``, ``min_epochs``,
    ``min_fraction``).
    """

    def __init__(self, space: SearchSpace, budget: Budget, problem: Problem, seed: int,
                 axis: str = "epochs", eta: int = DEFAULT_ETA, min_epochs: int = 1,
                 min_fraction: float | None = None, formula: str = DEFAULT_FORMULA,
                 iterations: int | None = None, novelty_tries: int = 20) -> None:
        super().__init__(space, budget, problem, seed, axis=axis, eta=eta,
                         min_epochs=min_epochs, min_fraction=min_fraction,
                         novelty_tries=novelty_tries)
        if iterations is not None:
            from nasforge.strategies.population import check_int

            check_int(self.name, "iterations", iterations, 1)
        self.formula = formula
        self.sizes = bracket_sizes(len(self.ladder), eta, formula)
        self.iterations = iterations
        self.brackets: list[dict[str, Any]] = []

    # ------------------------------------------------------------ brackets
    def _open(self) -> dict[str, Any] | None:
        index = len(self.brackets)
        if self.iterations is not None and index >= self.iterations * len(self.sizes):
            return None
        sizes = self.sizes[index % len(self.sizes)]
        bracket = {"id": index, "s": len(sizes) - 1, "sizes": list(sizes),
                   "asked": [0] * len(sizes), "results": [[] for _ in sizes],
                   "promote": [None] * len(sizes)}
        self.brackets.append(bracket)
        return bracket

    def _level(self, bracket: dict[str, Any], rung: int) -> int:
        return len(self.ladder) - 1 - bracket["s"] + rung

    @staticmethod
    def _target(bracket: dict[str, Any], rung: int) -> int | None:
        """How many results rung ``rung`` will hold (None: not decided yet)."""
        if rung == 0:
            return bracket["sizes"][0]
        chosen = bracket["promote"][rung]
        return None if chosen is None else len(chosen)

    def bracket_done(self, bracket: dict[str, Any]) -> bool:
        """Whether every rung of ``bracket`` holds all its results."""
        return all(self._target(bracket, i) is not None
                   and len(bracket["results"][i]) >= self._target(bracket, i)  # type: ignore
                   for i in range(len(bracket["sizes"])))

    def _decide(self, bracket: dict[str, Any]) -> None:
        """Choose the promotions of each rung whose lower rung is complete (once)."""
        for rung in range(1, len(bracket["sizes"])):
            below = self._target(bracket, rung - 1)
            if (bracket["promote"][rung] is None and below is not None
                    and len(bracket["results"][rung - 1]) >= below):
                members = bracket["results"][rung - 1]
                ok = [i for i, m in enumerate(members) if m["fitness"] is not None]
                ok.sort(key=lambda i: (-rank_key(members[i]["fitness"]), i))
                bracket["promote"][rung] = ok[:bracket["sizes"][rung]]

    def _ask_bracket(self, bracket: dict[str, Any]) -> Candidate | None:
        self._decide(bracket)
        for rung in range(len(bracket["sizes"]) - 1, 0, -1):  # promotions first
            chosen = bracket["promote"][rung]
            if chosen is not None and bracket["asked"][rung] < len(chosen):
                member = bracket["results"][rung - 1][chosen[bracket["asked"][rung]]]
                bracket["asked"][rung] += 1
                member["promoted"] = True
                genome = self.space.genome_from_dict(member["genome"])
                return self._candidate(genome, self._level(bracket, rung),
                                       [bracket["id"], rung], parent=member["number"])
        if bracket["asked"][0] < bracket["sizes"][0]:
            bracket["asked"][0] += 1
            level = self._level(bracket, 0)
            return self._candidate(self.new_genome(level), level, [bracket["id"], 0])
        return None

    # ------------------------------------------------------------ protocol
    def ask(self) -> Candidate | None:
        for bracket in self.brackets:
            if not self.bracket_done(bracket):
                candidate = self._ask_bracket(bracket)
                if candidate is not None:
                    return candidate
        bracket = self._open()  # every open bracket waits: start the next one
        return self._ask_bracket(bracket) if bracket is not None else None

    def tell(self, observation: Observation) -> None:
        ask = self._match(observation)
        if ask is None:
            return
        bracket_id, rung = ask["where"]
        self.brackets[bracket_id]["results"][rung].append(self.member(observation))
        self.observed(observation, ask["level"])

    def observed(self, observation: Observation, level: int) -> None:
        """Hook after a result joined its rung (bohb refits its model here)."""

    # ------------------------------------------------------------ reading
    def rungs(self) -> list[list[dict[str, Any]]]:
        out: list[list[dict[str, Any]]] = [[] for _ in self.ladder]
        for bracket in self.brackets:
            for rung, members in enumerate(bracket["results"]):
                out[self._level(bracket, rung)].extend(members)
        return out

    def schedule(self) -> dict[str, Any]:
        info = super().schedule()
        info.update(formula=self.formula, brackets=[list(s) for s in self.sizes],
                    starting=[s[0] for s in self.sizes], iterations=self.iterations)
        return info

    def describe_schedule(self) -> list[str]:
        total = sum(sum(s) for s in self.sizes)
        return super().describe_schedule() + [
            f"brackets ({self.formula} formula): starting networks "
            + "/".join(str(s[0]) for s in self.sizes)
            + f"; {total} evaluations per Hyperband iteration"
        ] + describe_brackets(self.sizes, self.ladder, self.axis)

    # ------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["brackets"] = self.brackets
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.brackets = [dict(b) for b in state.get("brackets", [])]
