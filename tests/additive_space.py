"""A tiny in-memory space for strategy tests: a genome is 6 choices of 5 options, and a
made-up additive fitness (a random weight per step and option) has one known optimum."""

from __future__ import annotations

import random
from typing import Any, Mapping, Sequence

from torch import nn

from nasforge.errors import GenomeError
from nasforge.spaces.base import SearchSpace

STEPS, OPTIONS = 6, 5


class AdditiveSpace(SearchSpace):
    """6 decisions of 5 options each; identity canonical form (no two genomes share a key)."""

    name = "additive"
    capabilities = frozenset({"mutate", "crossover", "decisions"})

    def sample(self, rng: random.Random) -> tuple[int, ...]:
        return tuple(rng.randrange(OPTIONS) for _ in range(STEPS))

    def mutate(self, genome: tuple[int, ...], rng: random.Random) -> tuple[int, ...]:
        seq = list(genome)
        k = rng.randrange(STEPS)
        seq[k] = rng.choice([o for o in range(OPTIONS) if o != seq[k]])
        return tuple(seq)

    def crossover(self, a: Any, b: Any, rng: random.Random) -> tuple[int, ...]:
        return tuple(x if rng.random() < 0.5 else y for x, y in zip(a, b))

    def validate(self, genome: Any) -> list[str]:
        ok = (isinstance(genome, tuple) and len(genome) == STEPS
              and all(isinstance(g, int) and 0 <= g < OPTIONS for g in genome))
        return [] if ok else [f"not an additive genome: {genome!r}"]

    def canonical(self, genome: Any) -> Any:
        return genome

    def build(self, genome: Any, input_shape: Any, num_classes: int, width: int) -> nn.Module:
        raise GenomeError("the additive test space builds no network")

    def count_params(self, genome: Any, input_shape: Any, num_classes: int, width: int) -> int:
        return 1000 + 100 * sum(genome)

    def genome_to_dict(self, genome: Any) -> dict[str, Any]:
        return {"choices": list(genome)}

    def genome_from_dict(self, data: Mapping[str, Any]) -> tuple[int, ...]:
        return tuple(int(c) for c in data["choices"])

    def describe(self, genome: Any, width: int | None = None) -> str:
        return str(genome)

    decision_length = STEPS

    def decision_choices(self, prefix: Sequence[Any]) -> tuple[int, ...]:
        if len(prefix) >= STEPS:
            raise GenomeError("complete")
        return tuple(range(OPTIONS))

    def to_decisions(self, genome: Any) -> tuple[int, ...]:
        return tuple(genome)

    def from_decisions(self, seq: Sequence[Any]) -> tuple[int, ...]:
        return tuple(int(s) for s in seq)


def additive_weights(seed: int) -> list[list[float]]:
    """Per step and option a weight; fitness = their sum / STEPS, in [0, 1]."""
    rng = random.Random(1000 + seed)
    return [[rng.random() for _ in range(OPTIONS)] for _ in range(STEPS)]


def fitness(weights: list[list[float]], genome: Sequence[int]) -> float:
    """The made-up additive fitness of a genome, in [0, 1]."""
    return sum(weights[s][c] for s, c in enumerate(genome)) / STEPS


def optimum(weights: list[list[float]]) -> tuple[int, ...]:
    """The one best genome: the best option at every step."""
    return tuple(max(range(OPTIONS), key=lambda o: w[o]) for w in weights)
