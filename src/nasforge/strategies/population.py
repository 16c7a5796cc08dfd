"""Pieces shared by the population strategies (``genetic``, ``nsga2``): proposals without
repeats, warm-start seeds, and breeding by crossover and mutation on any space."""

from __future__ import annotations

import random
from typing import Any, Callable

from nasforge.errors import ConfigError
from nasforge.spaces.base import SearchSpace, genome_key
from nasforge.spaces.global_dag import GlobalSpace
from nasforge.strategies.base import Candidate, Strategy
from nasforge.strategies.decisions import uniform_crossover

NEAT_DISABLED_STAYS = 0.75
"""Probability that a gene disabled in either parent is disabled in the child (NEAT,
Stanley & Miikkulainen 2002, Sec. 4.1)."""


def check_int(strategy: str, key: str, value: Any, low: int) -> int:
    """``value`` as an int of at least ``low``; ``ConfigError`` naming ``key`` otherwise."""
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ConfigError(f"{strategy}: {key} must be an int >= {low}, got {value!r}")
    return value


def check_float(strategy: str, key: str, value: Any, low: float,
                high: float | None = None) -> float:
    """``value`` as a float in [low, high]; ``ConfigError`` naming ``key`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < low or (
            high is not None and value > high):
        bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ConfigError(f"{strategy}: {key} must be a number {bound}, got {value!r}")
    return float(value)


def check_crossover(space: SearchSpace, strategy: str) -> None:
    """``ConfigError`` unless the space can cross two genomes (``crossover`` or
    ``decisions``)."""
    if not {"crossover", "decisions"} & space.capabilities:
        raise ConfigError(f"strategy {strategy!r} needs a space with crossover or decisions; "
                          f"space {space.name!r} has neither")


class Proposals:
    """Remembers the network key of every proposal; :meth:`novel` draws again (at most
    ``tries`` more times) while a draw repeats an earlier network, as ``evolution`` does."""

    def __init__(self, space: SearchSpace, tries: int) -> None:
        self.space = space
        self.tries = tries
        self.keys: set[str] = set()

    def novel(self, draw: Callable[[], Any]) -> Any:
        """A genome from ``draw()``, preferring a network not proposed before; recorded."""
        genome = draw()
        key = genome_key(self.space, genome)
        for _ in range(self.tries):
            if key not in self.keys:
                break
            genome = draw()
            key = genome_key(self.space, genome)
        self.keys.add(key)
        return genome


def crossover(strategy: Strategy, fitter: Any, other: Any, rng: random.Random,
              disabled_stays: float = NEAT_DISABLED_STAYS) -> Any:
    """A child of two parents, ``fitter`` the better one: on the global space NEAT's
    crossover aligned by the content-derived gene ids (disjoint genes from the fitter parent,
    a gene disabled in either parent disabled with ``disabled_stays``); on a space with
    decisions a uniform crossover of the decision sequences; else the space's own. An
    invalid child (limits) falls back to a valid mutation of ``fitter``."""
    space = strategy.space
    if isinstance(space, GlobalSpace):
        child = space.crossover(fitter, other, rng, fitter_first=True,
                                disabled_stays=disabled_stays)
    elif "decisions" in space.capabilities:
        child = uniform_crossover(space, fitter, other, rng)
    else:
        child = space.crossover(fitter, other, rng)
    return child if strategy.is_valid(child) else strategy.mutate_valid(fitter)


def propose(strategy: Strategy, genome: Any) -> Candidate:
    """The candidate for ``genome`` under the strategy's budget."""
    return Candidate(genome, strategy.budget)


def population_ask(strategy: Any) -> Candidate:
    """The ask of a population strategy (genetic, nsga2): warm-start genomes first, then random
    samples until the population is filled (``initial_asked`` counts them), then offspring
    (``strategy._offspring``); ``strategy.proposals`` redraws networks already proposed."""
    if strategy._seeds:
        strategy.initial_asked = min(strategy.initial_asked + 1, strategy.population_size)
        genome = strategy._seeds.pop(0)
        strategy.proposals.keys.add(genome_key(strategy.space, genome))
        return Candidate(genome, strategy.budget)
    if strategy.initial_asked < strategy.population_size or len(strategy.members) < 2:
        strategy.initial_asked += 1
        return Candidate(strategy.proposals.novel(strategy.sample_valid), strategy.budget)
    return Candidate(strategy.proposals.novel(strategy._offspring), strategy.budget)
