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
