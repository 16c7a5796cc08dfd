"""Adversarial checks of the stored final plan (session 11): a damaged plan in the study is
planned again with a note, never an internal error; a grown plan whose budget has
``schedule_epochs`` is found again by a resume."""

from __future__ import annotations

import pytest

from nasforge.evaluation.budget import Budget
from nasforge.execution.final_plan import _plan_key, plan_final
from tests.test_final_width_cut import WidthCostExecutor, _seconds, study  # noqa: F401


@pytest.mark.parametrize("damaged", [
    {"epochs": 0, "width": 32}, {"epochs": "abc", "width": 32}, {"width": 32}, [3],
    {"epochs": 3, "width": -2}, {"epochs": 2.7, "width": 32}, {"epochs": True, "width": 32},
    "x",
])
def test_a_damaged_stored_plan_is_planned_again(study, damaged) -> None:  # noqa: F811
    storage, space, todo = study
    budget = Budget(epochs=12, width=32)
    storage.set_meta_value(_plan_key(budget), damaged)
    first = plan_final(storage, space, [], budget, {}, WidthCostExecutor(), 1)
    assert (first.budget.epochs, first.budget.width) == (12, 32)  # the config's budget
    assert "damaged" in first.note and repr(damaged) in first.note
    plan = plan_final(storage, space, todo, budget, {}, WidthCostExecutor(), 1,
                      max_seconds=0.5 * _seconds(32, 12))
    assert plan.budget.epochs == 6 and "damaged" in plan.note  # capped afresh
    assert storage.meta_value(_plan_key(budget))["epochs"] == 6  # the new plan replaces it
    again = plan_final(storage, space, [], budget, {}, WidthCostExecutor(), 1)
    assert again.budget.epochs == 6 and "damaged" not in again.note


def test_a_plan_deferred_by_the_time_limit_is_not_stored(study) -> None:  # noqa: F811
    """A final step that does not fit in what the time limit leaves trains nothing (left for
    ``--resume``): its plan must not be stored, or the resume, with time enough, would train
    the config's epochs instead of growing them."""
    storage, space, todo = study
    budget = Budget(epochs=12, width=32)
    left = 0.5 * _seconds(32, 12)
    deferred = plan_final(storage, space, todo, budget, {}, WidthCostExecutor(), 1,
                          max_seconds=3.0 * _seconds(32, 12), max_epochs=40, seconds_left=left)
    assert not deferred.fits(left)
    assert storage.meta_value(_plan_key(budget)) is None
    resumed = plan_final(storage, space, todo, budget, {}, WidthCostExecutor(), 1,
                         max_seconds=3.0 * _seconds(32, 12), max_epochs=40)
    assert resumed.budget.epochs == 33  # grown: floor(0.92 * 3 * 12)
    assert storage.meta_value(_plan_key(budget))["epochs"] == 33
