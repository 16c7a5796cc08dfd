"""Every registered strategy on every space it runs on, with a ``params`` constraint kept
before training (``Problem.constraints``, session 12) that about half of the space's random
networks break: no ask breaks it, and a resumed strategy asks what the uninterrupted one
asks (the contract of ``test_contract_strategies``, under constraints)."""

from __future__ import annotations

import random
from functools import lru_cache

import pytest
from test_contract_spaces import make_space
from test_contract_strategies import (
    BUDGET, PAIRS, PROBLEM, ROUNDS, TINY_SETTINGS, describe, resumed_twin,
)

from nasforge.objectives import parse_constraints
from nasforge.strategies import Problem, get_strategy
from nasforge.strategies.base import static_values

# one-shot strategies ask supernet searches (a stand-in genome), not networks to train
TRAINED = [(st, sp) for st, sp in PAIRS
           if "supernet" not in make_space(sp).capabilities or st not in ("darts", "darts2",
                                                                           "gdas")]


@lru_cache(maxsize=None)
def half_bound(space_name: str) -> int:
    """A params bound that about half of the space's random networks (at BUDGET) break."""
    space = make_space(space_name)
    rng = random.Random(0)
    sizes = []
    while len(sizes) < 30:
        genome = space.sample(rng)
        validate_for = getattr(space, "validate_for", None)
        if validate_for is not None and validate_for(genome, PROBLEM.input_shape,
                                                     PROBLEM.num_classes, BUDGET.width):
            continue
        sizes.append(static_values(space, genome, PROBLEM, BUDGET.width, ["params"])["params"])
    return sorted(sizes)[len(sizes) // 2]


def constrained(space_name: str) -> Problem:
    bound = half_bound(space_name)
    return Problem(PROBLEM.input_shape, PROBLEM.num_classes,
                   tuple(parse_constraints([f"params <= {bound}"])))


@pytest.mark.parametrize(("strategy_name", "space_name"), TRAINED)
def test_no_ask_breaks_the_constraint_and_a_resume_asks_the_same(strategy_name,
                                                                 space_name) -> None:
    space = make_space(space_name)
    problem = constrained(space_name)
    bound = problem.constraints[0].bound

    def make(seed: int):
        return get_strategy(strategy_name, space, BUDGET, problem, seed,
                            **TINY_SETTINGS.get(strategy_name, {}))

    runner, twin = resumed_twin(make)
    assert describe(space, twin.asked) == describe(space, runner.asked[ROUNDS // 2:])
    sizes = [static_values(space, c.genome, PROBLEM, c.budget.width, ["params"])["params"]
             for c in runner.asked]
    assert max(sizes) <= bound, (bound, sizes)
