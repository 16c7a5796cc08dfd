"""Review of session 11's final plan (``final.min_epochs``): a shorter final budget set on the
command line, ``min_epochs: 1`` when even one epoch is over the cap, and a resume of a grown
plan whose budget sets ``schedule_epochs``."""

from __future__ import annotations

import random
from concurrent.futures import Future

import pytest

from nasforge.config import apply_overrides, load_config
from nasforge.errors import ConfigError
from nasforge.evaluation.budget import Budget
from nasforge.execution.final_plan import plan_final
from nasforge.execution.results import EvalResult
from tests.test_final_width_cut import WidthCostExecutor, _seconds, study  # noqa: F401


def test_quick_takes_a_final_budget_shorter_than_min_epochs() -> None:
    # the search command's own hint: "--set final.budget.epochs=N shortens it"
    quick = load_config("quick")
    short = apply_overrides(quick, ["final.budget.epochs=3"])
    assert short.final.budget.epochs == 3 and short.final.min_epochs == quick.final.min_epochs
    with pytest.raises(ConfigError, match="final.min_epochs"):
        apply_overrides(quick, ["final.min_epochs=0"])


def test_min_epochs_above_the_budget_epochs_narrows_first(study) -> None:  # noqa: F811
    storage, space, todo = study
    cap = 0.6 * _seconds(48, 4)  # 4 epochs do not fit at width 48; they do at 32 (0.44)
    plan = plan_final(storage, space, todo, Budget(epochs=4, width=48), {}, WidthCostExecutor(),
                      1, max_seconds=cap, min_width=16, min_epochs=6)
    assert (plan.budget.width, plan.budget.epochs) == (32, 4)


def test_min_epochs_one_narrows_when_one_epoch_is_over_the_cap(study) -> None:  # noqa: F811
    storage, space, todo = study
    cap = 0.5 * _seconds(48, 1)  # not even one epoch fits at width 48; one does at 32 (0.44)
    plan = plan_final(storage, space, todo, Budget(epochs=12, width=48), {}, WidthCostExecutor(),
                      1, max_seconds=cap, min_width=16, min_epochs=1)
    assert plan.budget.width < 48 and plan.seconds <= cap
    assert "training 1 epoch(s) instead" not in plan.note.split(";")[0]


def test_a_resume_trains_a_grown_plan_whose_budget_sets_schedule_epochs(study) -> None:  # noqa: F811
    storage, space, todo = study
    budget = Budget(epochs=12, width=32, schedule_epochs=12)
    grown = plan_final(storage, space, todo, budget, {}, WidthCostExecutor(), 1,
                       max_seconds=2.0 * _seconds(32, 12), max_epochs=40)
    assert grown.budget.epochs > 12
    again = plan_final(storage, space, [], budget, {}, WidthCostExecutor(), 1)
    assert again.budget == grown.budget  # same budget key: the runs stored are found


class NarrowProbeFailsExecutor(WidthCostExecutor):
    """As WidthCostExecutor, but the probe of ``genome`` fails below width 48."""

    def __init__(self, genome: dict) -> None:
        super().__init__()
        self.genome = genome

    def submit(self, fn, task, *args, **kwargs):  # noqa: ANN001 - Executor's signature
        future = super().submit(fn, task, *args, **kwargs)
        if task.genome == self.genome and int(task.budget["width"]) < 48:
            future = Future()
            future.set_result(EvalResult.failure("RuntimeError: probe lost"))
        return future


def test_a_failed_narrower_probe_of_one_genome_keeps_its_cost(study) -> None:  # noqa: F811
    storage, space, todo = study
    other = space.sample(random.Random(1))
    todo = [*todo, ("h", other)]  # two genomes, one worker: the runs take twice one's time
    executor = NarrowProbeFailsExecutor(space.genome_to_dict(other))
    cap = 2.2 * 2 * _seconds(48, 1)  # 2 epochs of both fit at width 48, fewer than min_epochs
    plan = plan_final(storage, space, todo, Budget(epochs=12, width=48), {}, executor, 1,
                      max_seconds=cap, min_width=16, min_epochs=5)
    assert set(plan.per_run) == {"g", "h"}  # both runs still counted
    assert plan.seconds <= cap
    assert (plan.budget.width, plan.budget.epochs) == (48, 2)  # the epoch cut, not a width cut
    assert "no narrower width could be estimated: epochs are cut at width 48" in plan.note
