"""Strategy protocol v2: ask() may wait (return None), a candidate may continue a finished
trial (exact continuation from its stored state), and the runner answers every ask."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from conftest import tiny_config_dict
from nasforge.api import problem_for
from nasforge.config import config_from_dict
from nasforge.evaluation.budget import Budget
from nasforge.execution.isolation import IsolatedEvaluate
from nasforge.execution.runner import Runner
from nasforge.spaces import get_space
from nasforge.storage import StudyStorage
from nasforge.strategies.base import Candidate, Observation, Strategy


class ContinueTheBetter(Strategy):
    """Asks two networks for 1 epoch, waits until both are in, then continues the better one
    to 3 epochs; then waits (and the run ends)."""

    name = "continue-the-better"
    continues_trials = True

    def __init__(self, space, budget, problem, seed) -> None:
        super().__init__(space, budget, problem, seed)
        self.rng = random.Random(seed)
        self.asked = 0
        self.results: list[Observation] = []
        self.waits = 0

    def ask(self) -> Candidate | None:
        if self.asked < 2:
            self.asked += 1
            return Candidate(self.sample_valid(), self.budget.replace(epochs=1))
        if len(self.results) < 2 or self.asked > 2:
            self.waits += 1
            return None
        self.asked += 1
        best = max(self.results, key=lambda o: o.fitness or 0.0)
        return Candidate(best.genome, self.budget.replace(epochs=3), parent=best.number)

    def tell(self, observation: Observation) -> None:
        self.results.append(observation)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def _runner(tmp_path, strategy_cls, max_evals: int):
    raw = tiny_config_dict(run={"max_evals": max_evals, "workers": 2, "keep_best": 0},
                           budget={"epochs": 3, "schedule_epochs": 3, "width": 4,
                                   "batch_size": 32, "max_steps": 4})
    config = config_from_dict(raw, "p")
    space = get_space(config.space.name, **config.space.settings)
    strategy = strategy_cls(space, config.budget, problem_for(config), 0)
    storage = StudyStorage.create(tmp_path / "p.db", name="p", config=config.to_dict(),
                                  identity={}, identity_hash="x", provenance={})
    executor = ThreadPoolExecutor(2)
    runner = Runner(config=config, storage=storage, space=space, strategy=strategy,
                    executor=executor, evaluate=IsolatedEvaluate())
    return runner, storage, executor, strategy, config


@pytest.mark.timeout(120)
def test_a_strategy_waits_then_continues_the_better_trial_exactly(tmp_path) -> None:
    runner, storage, executor, strategy, config = _runner(tmp_path, ContinueTheBetter, 5)
    try:
        summary = runner.run()
        trials = storage.trials()
    finally:
        executor.shutdown()
        storage.close()
    assert strategy.waits >= 1 and summary.stop_reason == "the strategy waits with nothing running"
    assert len(trials) == 3 and all(t.status == "ok" for t in trials)
    first, second, child = trials
    parent = {t.number: t for t in (first, second)}[child.metrics["parent"]]
    assert parent.val_acc == max(first.val_acc, second.val_acc)
    assert child.metrics["kind"] == "continue" == child.kind and child.parent == parent.number
    assert child.genome_key == parent.genome_key and child.budget["epochs"] == 3
    assert [r["epoch"] for r in child.curve] == [1, 2, 3]
    assert child.curve[0]["train_loss"] == parent.curve[0]["train_loss"]
    # the same network trained 3 epochs from scratch has the same epochs 2 and 3
    from nasforge.execution.runner import model_seed, seed_part
    from nasforge.execution.tasks import EvalTask, evaluate_task
    from nasforge.storage.sqlite import budget_key

    task = EvalTask(trial_number=99, space_name=config.space.name,
                    space_settings=dict(config.space.settings), genome=child.genome,
                    budget=child.budget, data=config.data.task_dict(),
                    model_seed=model_seed(config.seed, child.genome_key,
                                          budget_key(seed_part(child.budget))))
    scratch = evaluate_task(task)
    assert scratch["status"] == "ok"
    for a, b in zip(scratch["curve"], child.curve, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-6)
        assert a["val_acc"] == pytest.approx(b["val_acc"], abs=1e-6)


class BadParent(ContinueTheBetter):
    """Asks one network, then 'continues' a trial of another network."""

    def ask(self) -> Candidate | None:
        if self.asked == 0:
            self.asked += 1
            return Candidate(self.sample_valid(), self.budget.replace(epochs=1))
        if not self.results or self.asked > 1:
            return None
        self.asked += 1
        other = self.sample_valid()
        while self.space.canonical(other) == self.space.canonical(self.results[0].genome):
            other = self.sample_valid()
        return Candidate(other, self.budget.replace(epochs=3), parent=self.results[0].number)


@pytest.mark.timeout(60)
def test_a_bad_continuation_is_one_failed_trial_told_to_the_strategy(tmp_path) -> None:
    runner, storage, executor, strategy, _ = _runner(tmp_path, BadParent, 5)
    try:
        runner.run()
        trials = storage.trials()
    finally:
        executor.shutdown()
        storage.close()
    assert [t.status for t in trials] == ["ok", "failed"]
    assert "cannot continue trial 1" in trials[1].error
    assert len(strategy.results) == 2 and strategy.results[1].status == "failed"


class PruneAtEpoch2:
    """A pruner that stops every trial once it reports epoch 2 (to test the live channel)."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, float]] = []

    def should_prune(self, epoch, value, history) -> bool:
        self.seen.append((epoch, value))
        return epoch >= 2


@pytest.mark.timeout(120)
def test_a_pruner_stops_a_running_trial_from_its_live_values(tmp_path) -> None:
    from nasforge.strategies.random_search import RandomSearch

    raw = tiny_config_dict(run={"max_evals": 1, "workers": 1, "keep_best": 0},
                           budget={"epochs": 400, "width": 4, "batch_size": 32, "max_steps": 2})
    config = config_from_dict(raw, "p")
    space = get_space(config.space.name, **config.space.settings)
    strategy = RandomSearch(space, config.budget, problem_for(config), 0)
    storage = StudyStorage.create(tmp_path / "p.db", name="p", config=config.to_dict(),
                                  identity={}, identity_hash="x", provenance={})
    executor = ThreadPoolExecutor(1)
    pruner = PruneAtEpoch2()
    try:
        runner = Runner(config=config, storage=storage, space=space, strategy=strategy,
                        executor=executor, evaluate=IsolatedEvaluate())
        runner.pruner = pruner  # a stand-in policy object beside the runner
        runner.live_dir.mkdir(parents=True, exist_ok=True)
        runner.run()
        (trial,) = storage.trials()
    finally:
        executor.shutdown()
        storage.close()
    assert trial.status == "pruned" and "pruned after epoch" in (trial.metrics.get("reason") or "")
    assert 2 <= len(trial.curve) < 400 and trial.val_acc == trial.curve[-1]["val_acc"]
    assert pruner.seen[0][0] == 1 and (2, trial.curve[1]["val_acc"]) in pruner.seen
    assert not list(runner.live_dir.iterdir())  # live files removed with the trial


def test_median_and_halving_rules() -> None:
    from nasforge.execution.pruners import HalvingPruner, MedianPruner, make_pruner

    median = MedianPruner(warmup_epochs=1, min_trials=3)
    history = {1: [0.5, 0.6, 0.7], 2: [0.6, 0.7, 0.8]}
    assert not median.should_prune(1, 0.1, history)  # warm-up
    assert median.should_prune(2, 0.65, history) and not median.should_prune(2, 0.75, history)
    assert not median.should_prune(3, 0.0, history)  # nobody reported epoch 3 yet
    halving = HalvingPruner(min_epochs=1, eta=3)
    assert [e for e in range(1, 30) if halving.is_rung(e)] == [1, 3, 9, 27]
    rung = {3: [0.9, 0.8, 0.7, 0.6, 0.5]}
    assert not halving.should_prune(3, 0.85, rung)  # top 2 of 6
    assert halving.should_prune(3, 0.75, rung) and not halving.should_prune(2, 0.0, rung)
    with pytest.raises(Exception, match="known: none, median, halving"):
        make_pruner("hyper")


class AskTwiceThenWait(Strategy):
    """Asks one genome twice (the second is a duplicate parked behind the first), then waits;
    counts what it is told."""

    name = "ask-twice"

    def __init__(self, space, budget, problem, seed, genome=None) -> None:
        super().__init__(space, budget, problem, seed)
        self.genome = genome if genome is not None else self.sample_valid()
        self.asks = 0
        self.told: list[Observation] = []

    def ask(self) -> Candidate | None:
        if self.asks >= 2:
            return None
        self.asks += 1
        return Candidate(self.genome, self.budget)

    def tell(self, observation: Observation) -> None:
        self.told.append(observation)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class NeverExecutor(ThreadPoolExecutor):
    """Accepts tasks and never runs them (a driver killed while they run)."""

    def submit(self, fn, /, *args, **kwargs):
        from concurrent.futures import Future

        return Future()


@pytest.mark.timeout(60)
def test_a_parked_duplicate_ask_is_answered_after_a_kill_and_resume(tmp_path) -> None:
    raw = tiny_config_dict(run={"max_evals": 3, "workers": 2, "keep_best": 0})
    config = config_from_dict(raw, "w")
    space = get_space(config.space.name, **config.space.settings)
    problem = problem_for(config)
    first = AskTwiceThenWait(space, config.budget, problem, 0)
    storage = StudyStorage.create(tmp_path / "w.db", name="w", config=config.to_dict(),
                                  identity={}, identity_hash="x", provenance={})
    runner = Runner(config=config, storage=storage, space=space, strategy=first,
                    executor=NeverExecutor(1), evaluate=IsolatedEvaluate())
    assert runner._ask_one() and runner._ask_one()  # trial 1 submitted, the duplicate parked
    assert [t.status for t in storage.trials()] == ["running"]
    storage.close()  # killed here: the parked ask was never answered

    resumed = AskTwiceThenWait(space, config.budget, problem, 0, genome=first.genome)
    resumed.asks = 2  # it asks nothing new
    storage = StudyStorage.open(tmp_path / "w.db", write=True)
    executor = ThreadPoolExecutor(1)
    try:
        Runner(config=config, storage=storage, space=space, strategy=resumed,
               executor=executor, evaluate=IsolatedEvaluate()).run()
        assert [t.status for t in storage.trials()] == ["ok"]
        assert storage.meta_values("waiters:") == {}
    finally:
        executor.shutdown()
        storage.close()
    assert [o.number for o in resumed.told] == [1, 1]  # the trial and its parked duplicate
