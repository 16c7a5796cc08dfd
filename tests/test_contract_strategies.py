"""Contract tests: every registered strategy on every registered space that has what it needs.

Parametrised over ``available_strategies()`` x ``available_spaces()`` (timm's pattern): a new
strategy or space is tested here without a new test. A strategy is driven the way the runner
drives it (``execution/runner.py``: ``ask``; a network already evaluated at that budget is
answered from the store by telling the stored result again; every other ask is evaluated and
told once), against a fake evaluator: no training, the fitness is a deterministic hash of the
network key, and one network in seven "fails". Two evaluations are kept in flight, as with two
workers, so asks run ahead of tells.

The pre-filter (``strategies/prefilter.py``) is not registered: it wraps another strategy and
needs a proxy batch, so it is tested separately below, wrapped around every registered one.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import deque
from typing import Any

import pytest
import torch
from test_contract_spaces import make_space

from nasforge.errors import ConfigError
from nasforge.evaluation.budget import Budget
from nasforge.spaces import NB201Space, SearchSpace, available_spaces, genome_key
from nasforge.strategies import (
    Candidate,
    Observation,
    Problem,
    Strategy,
    available_strategies,
    get_strategy,
)
from nasforge.strategies.prefilter import PrefilterStrategy

TINY_SETTINGS: dict[str, dict[str, Any]] = {
    # small populations so 20 rounds reach the strategy's model-driven phase
    "evolution": {"population": 4, "sample": 2},
    "genetic": {"population": 4, "sample": 2},
    "nsga2": {"population": 4},
    "smbo": {"initial": 4, "batch": 3, "candidates": 8, "parents": 3,
             "predictor_settings": {"epochs": 5}},
}
"""Per-strategy settings for speed; a strategy not listed runs with its defaults."""

ROUNDS = 20
IN_FLIGHT = 2
BUDGET = Budget(epochs=1, width=4, batch_size=8)
PROBLEM = Problem((1, 12, 12), 3)


def strategy_class(name: str) -> type[Strategy]:
    from nasforge.strategies.base import STRATEGIES

    return STRATEGIES.get(name)


def pairs() -> list[tuple[str, str]]:
    """(strategy, space) for every space that has the capabilities the strategy requires."""
    out = []
    for strategy in available_strategies():
        for space in available_spaces():
            if not strategy_class(strategy).missing_capabilities(make_space(space)):
                out.append((strategy, space))
    return out


PAIRS = pairs()


def make_strategy(name: str, space: SearchSpace, seed: int = 0) -> Strategy:
    return get_strategy(name, space, BUDGET, PROBLEM, seed, **TINY_SETTINGS.get(name, {}))


def fake_fitness(key: str) -> float | None:
    """A deterministic fitness in [0, 1) from the network key; None (failed) for 1 in 7."""
    value = int(hashlib.sha256(key.encode()).hexdigest()[:12], 16)
    return None if value % 7 == 0 else (value % 10_000) / 10_000


class FakeRunner:
    """The runner's ask/tell protocol with a fake evaluator and ``IN_FLIGHT`` workers."""

    def __init__(self, strategy: Strategy) -> None:
        self.strategy = strategy
        self.space = strategy.space
        self.store: dict[tuple[str, Budget], Observation] = {}
        self.inflight: deque[tuple[int, Candidate, str]] = deque()
        self.asked: list[Candidate] = []
        self.told = 0
        self.number = 0

    def _observation(self, number: int, candidate: Candidate, key: str) -> Observation:
        fitness = fake_fitness(key)
        return Observation(
            number=number,
            genome=candidate.genome,
            budget=candidate.budget,
            status="failed" if fitness is None else "ok",
            fitness=fitness,
            metrics={} if fitness is None else {"val_acc": fitness, "params": 1},
        )

    def ask_one(self) -> None:
        candidate = self.strategy.ask()
        self.asked.append(candidate)
        key = genome_key(self.space, candidate.genome)
        stored = self.store.get((key, candidate.budget))
        if stored is not None:  # the runner answers a known network from the study
            self.strategy.tell(Observation(stored.number, candidate.genome, stored.budget,
                                           stored.status, stored.fitness, stored.metrics))
            self.told += 1
            return
        self.number += 1
        self.inflight.append((self.number, candidate, key))

    def finish_one(self) -> None:
        number, candidate, key = self.inflight.popleft()
        observation = self._observation(number, candidate, key)
        self.store[(key, candidate.budget)] = observation
        self.strategy.tell(observation)
        self.told += 1

    def rounds(self, count: int) -> None:
        """``count`` asks; results come back in submission order with IN_FLIGHT running."""
        for _ in range(count):
            while len(self.inflight) >= IN_FLIGHT:
                self.finish_one()
            self.ask_one()

    def drain(self) -> None:
        while self.inflight:
            self.finish_one()


def describe(space: SearchSpace, candidates: list[Candidate]) -> list[tuple[str, Budget]]:
    return [(json.dumps(space.genome_to_dict(c.genome), sort_keys=True), c.budget)
            for c in candidates]


@pytest.mark.parametrize(("strategy_name", "space_name"), PAIRS)
def test_twenty_rounds_give_valid_asks_each_answered_once(strategy_name, space_name) -> None:
    space = make_space(space_name)
    strategy = make_strategy(strategy_name, space)
    assert strategy.name == strategy_name and not strategy.missing_capabilities(space)
    runner = FakeRunner(strategy)
    runner.rounds(ROUNDS)
    runner.drain()
    assert len(runner.asked) == ROUNDS and runner.told == ROUNDS  # every ask answered once
    for candidate in runner.asked:
        assert isinstance(candidate, Candidate) and candidate.budget == BUDGET
        assert space.validate(candidate.genome) == []
        assert strategy.is_valid(candidate.genome)
    keys = {genome_key(space, c.genome) for c in runner.asked}
    assert len(keys) > 1  # the strategy explores
    json.dumps(strategy.state_dict())  # JSON-ready at any point


@pytest.mark.parametrize(("strategy_name", "space_name"), PAIRS)
def test_state_round_trip_gives_identical_next_asks(strategy_name, space_name) -> None:
    space = make_space(space_name)
    runner, twin = resumed_twin(lambda seed: make_strategy(strategy_name, space, seed=seed))
    assert describe(space, twin.asked) == describe(space, runner.asked[ROUNDS // 2:])


def resumed_twin(make: Any) -> tuple[FakeRunner, FakeRunner]:
    """A strategy made by ``make(seed)`` run ROUNDS // 2 rounds, its state stored as JSON and
    loaded into one made with another seed (the state rules), then both run ROUNDS // 2 more
    rounds on the same store: (the original's runner, the restored one's)."""
    original = make(3)
    runner = FakeRunner(original)
    runner.rounds(ROUNDS // 2)
    runner.drain()  # as after a resume: nothing in flight (running trials are re-queued)
    state = json.loads(json.dumps(original.state_dict()))  # as stored in the study
    restored = make(99)
    restored.load_state_dict(state)
    twin = FakeRunner(restored)
    twin.store = dict(runner.store)
    twin.number = runner.number
    runner.rounds(ROUNDS // 2)
    twin.rounds(ROUNDS // 2)
    return runner, twin


@pytest.mark.parametrize(("strategy_name", "space_name"), PAIRS)
def test_warm_start_genomes_are_asked_first(strategy_name, space_name) -> None:
    space = make_space(space_name)
    strategy = make_strategy(strategy_name, space)
    seeds = [space.sample(random.Random(i)) for i in (101, 102)]
    try:
        strategy.warm_start(seeds)
    except ConfigError as exc:  # the documented refusal of a strategy without warm starts
        assert "warm start" in str(exc)
        return
    assert [strategy.ask().genome for _ in seeds] == seeds


class BareSpace(NB201Space):
    """The nb201 space declaring no optional capability."""

    name = "bare"
    capabilities = frozenset()


@pytest.mark.parametrize("strategy_name", available_strategies())
def test_a_space_without_the_required_capabilities_is_refused(strategy_name) -> None:
    space = BareSpace(cells=1)
    requires = strategy_class(strategy_name).requires
    if requires:
        with pytest.raises(ConfigError, match=f"strategy {strategy_name!r} needs space "
                                              "capabilities"):
            make_strategy(strategy_name, space)
    else:  # needs nothing: runs on a space that offers nothing but the required methods
        runner = FakeRunner(make_strategy(strategy_name, space))
        runner.rounds(5)
        assert all(space.validate(c.genome) == [] for c in runner.asked)


# ---------------------------------------------------------------------- the pre-filter wrapper
def proxy_batch() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.randn(4, *PROBLEM.input_shape, generator=gen), torch.tensor([0, 1, 2, 0])


@pytest.mark.parametrize("strategy_name", available_strategies())
def test_prefilter_wraps_every_strategy(strategy_name) -> None:
    space_name = next(sp for st, sp in PAIRS if st == strategy_name)
    space = make_space(space_name)

    def wrapped(seed: int) -> PrefilterStrategy:
        # "params": the cheapest proxy (a build and a count), enough to test the wrapping
        return PrefilterStrategy(make_strategy(strategy_name, space, seed), "params:3:1",
                                 proxy_batch(), seed)

    strategy = wrapped(0)
    runner = FakeRunner(strategy)
    runner.rounds(6)
    runner.drain()
    assert runner.told == 6 and len(strategy.scored) == 18  # 3 proposals per kept one
    kept = [s for s in strategy.scored if s[3]]
    assert len(kept) == 6
    for i in range(0, 18, 3):  # each kept proposal has the best score of its three
        group = strategy.scored[i:i + 3]
        best = max(s[2] for s in group if s[2] is not None)
        assert [s for s in group if s[3]][0][2] == best
    state = json.loads(json.dumps(strategy.state_dict()))
    restored = wrapped(5)
    restored.load_state_dict(state)
    twin = FakeRunner(restored)
    twin.store = dict(runner.store)
    runner.rounds(3)
    twin.rounds(3)
    assert describe(space, twin.asked) == describe(space, runner.asked[6:])
