"""A final step under its cap grows its epochs up to ``final.max_epochs`` (the time the command
was given is used), within ``GROW_MARGIN`` of the cap; the grown plan is stored for a resume."""

from __future__ import annotations

import math

import pytest

from nasforge.config import config_from_dict
from nasforge.errors import ConfigError
from nasforge.evaluation.budget import Budget
from nasforge.execution.final_plan import GROW_MARGIN, plan_final
from tests.conftest import tiny_config_dict
from tests.test_final_width_cut import WidthCostExecutor, _seconds, study  # noqa: F401


def test_room_under_the_cap_grows_the_epochs(study) -> None:  # noqa: F811
    storage, space, todo = study
    budget = Budget(epochs=12, width=32)
    cap = 2.0 * _seconds(32, 12)
    plan = plan_final(storage, space, todo, budget, {}, WidthCostExecutor(), 1,
                      max_seconds=cap, max_epochs=40)
    expected = math.floor(GROW_MARGIN * cap / _seconds(32, 1))  # 22 of the 24 that fit
    assert plan.budget.epochs == expected and expected < 24
    assert plan.seconds <= GROW_MARGIN * cap
    assert plan.budget.width == 32
    assert f"training {expected} epochs instead" in plan.note
    again = plan_final(storage, space, [], budget, {}, WidthCostExecutor(), 1)
    assert again.budget.epochs == expected  # a resume trains the grown plan


def test_growth_stops_at_max_epochs(study) -> None:  # noqa: F811
    storage, space, todo = study
    plan = plan_final(storage, space, todo, Budget(epochs=12, width=32), {},
                      WidthCostExecutor(), 1, max_seconds=10 * _seconds(32, 12), max_epochs=15)
    assert plan.budget.epochs == 15


def test_without_max_epochs_or_a_cap_nothing_grows(study) -> None:  # noqa: F811
    storage, space, todo = study
    plan = plan_final(storage, space, todo, Budget(epochs=12, width=32), {},
                      WidthCostExecutor(), 1, max_seconds=10 * _seconds(32, 12))
    assert plan.budget.epochs == 12 and plan.note is None
    plan = plan_final(storage, space, todo, Budget(epochs=12, width=24), {},
                      WidthCostExecutor(), 1, max_epochs=30)
    assert plan.budget.epochs == 12


def test_an_estimate_over_the_cap_is_still_cut(study) -> None:  # noqa: F811
    storage, space, todo = study
    plan = plan_final(storage, space, todo, Budget(epochs=12, width=32), {},
                      WidthCostExecutor(), 1, max_seconds=0.5 * _seconds(32, 12),
                      max_epochs=30)
    assert plan.budget.epochs == 6 and "6 epoch(s) instead" in plan.note


def test_max_epochs_is_checked_against_the_final_epochs() -> None:
    raw = tiny_config_dict(final={"top": 1, "max_epochs": 3, "budget": {"epochs": 5}})
    with pytest.raises(ConfigError, match="max_epochs"):
        config_from_dict(raw, "bad")
    uncapped = tiny_config_dict(final={"top": 1, "max_epochs": 30, "budget": {"epochs": 20}})
    with pytest.raises(ConfigError, match="max_seconds"):
        config_from_dict(uncapped, "no cap")
    ok = tiny_config_dict(final={"top": 1, "max_epochs": 30, "total_seconds": 600,
                                 "budget": {"epochs": 20}})
    parsed = config_from_dict(ok, "ok")
    assert parsed.final.max_epochs == 30
    assert config_from_dict(parsed.to_dict(), "again").final.max_epochs == 30  # stored, resumed


def test_growth_raises_schedule_epochs_with_the_epochs(study) -> None:  # noqa: F811
    storage, space, todo = study
    plan = plan_final(storage, space, todo, Budget(epochs=12, width=32, schedule_epochs=12), {},
                      WidthCostExecutor(), 1, max_seconds=2.0 * _seconds(32, 12), max_epochs=40)
    assert plan.budget.epochs > 12
    assert plan.budget.schedule_epochs == plan.budget.epochs


def test_growth_stays_within_the_time_limit_left(study) -> None:  # noqa: F811
    storage, space, todo = study
    left = 1.5 * _seconds(32, 12)  # the time limit leaves less than the cap
    plan = plan_final(storage, space, todo, Budget(epochs=12, width=32), {},
                      WidthCostExecutor(), 1, max_seconds=3.0 * _seconds(32, 12),
                      max_epochs=40, seconds_left=left)
    assert 12 < plan.budget.epochs <= math.floor(GROW_MARGIN * left / _seconds(32, 1))
    assert plan.fits(left)


def test_no_growth_after_a_width_cut(study) -> None:  # noqa: F811
    storage, space, todo = study
    cap = 0.72 * _seconds(48, 12)
    plan = plan_final(storage, space, todo, Budget(epochs=12, width=48), {},
                      WidthCostExecutor(), 1, max_seconds=cap, min_width=16, max_epochs=40)
    assert plan.budget.width < 48 and plan.budget.epochs == 12


def test_a_resume_says_it_trains_the_stored_plan(study) -> None:  # noqa: F811
    storage, space, todo = study
    budget = Budget(epochs=12, width=32)
    grown = plan_final(storage, space, todo, budget, {}, WidthCostExecutor(), 1,
                       max_seconds=2.0 * _seconds(32, 12), max_epochs=40)
    again = plan_final(storage, space, todo, budget, {}, WidthCostExecutor(), 1,
                       max_seconds=0.5 * _seconds(32, 12), max_epochs=13)
    assert again.budget.epochs == grown.budget.epochs
    assert f"plan stored earlier: {grown.budget.epochs} epochs" in again.note


class EvalCostExecutor(WidthCostExecutor):
    """As WidthCostExecutor, with a (flip-averaged) evaluation pass measured at 10 s."""

    def submit(self, fn, task, *args, **kwargs):  # noqa: ANN001 - Executor's signature
        future = super().submit(fn, task, *args, **kwargs)
        future.result().metrics["eval_seconds"] = 10.0
        return future


def test_a_flip_tta_estimate_counts_the_single_view_pass(study) -> None:  # noqa: F811
    storage, space, todo = study
    plans = {tta: plan_final(storage, space, todo,
                             Budget(epochs=2, width=32, validate_every="last", tta=tta), {},
                             EvalCostExecutor(), 1)
             for tta in (None, "flip")}
    assert plans[None].seconds == pytest.approx(_seconds(32, 2) + 10.0)
    assert plans["flip"].seconds == pytest.approx(_seconds(32, 2) + 15.0)
