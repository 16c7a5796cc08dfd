"""A final step's cap that narrows the network (``final.min_width``) before it cuts epochs:
probes at each width tried, the widest that fits, the plan stored for a resume."""

from __future__ import annotations

import random
from concurrent.futures import Executor, Future

import pytest

from nasforge.config import config_from_dict
from nasforge.errors import ConfigError
from nasforge.evaluation.budget import Budget
from nasforge.execution.final_plan import WIDTH_STEP, plan_final
from nasforge.execution.results import EvalResult
from nasforge.spaces import get_space
from nasforge.storage import StudyStorage
from tests.conftest import tiny_config_dict


class WidthCostExecutor(Executor):
    """Answers probes at once: a step costs ``k * width**2`` seconds (convolutions), 100 steps
    an epoch; records the widths probed."""

    def __init__(self, k: float = 1e-4) -> None:
        self.k, self.widths = k, []

    def submit(self, fn, task, *args, **kwargs):  # noqa: ANN001 - Executor's signature
        width = int(task.budget["width"])
        self.widths.append(width)
        future: Future = Future()
        future.set_result(EvalResult(
            status="ok", speed={"setting": {"precision": "fp32", "channels_last": True,
                                            "threads": None}, "measured": False},
            speed_device="cpu/test", metrics={
                "step_seconds": self.k * width ** 2, "steps_per_epoch": 100,
                "eval_images": 0, "eval_seconds": 0.0, "probe_seconds": 0.0,
                "pipeline_seconds": 0.0}))
        return future


@pytest.fixture
def study(tmp_path):
    storage = StudyStorage.create(tmp_path / "w.db", name="w", config={}, identity={},
                                  identity_hash="x", provenance={})
    space = get_space("global", max_nodes=3)
    genome = space.sample(random.Random(0))
    yield storage, space, [("g", genome)]
    storage.close()


def _seconds(width: int, epochs: int, k: float = 1e-4) -> float:
    return epochs * 100 * k * width ** 2


def test_the_cap_narrows_the_network_to_the_widest_that_fits(study) -> None:
    storage, space, todo = study
    budget = Budget(epochs=12, width=48, batch_size=128)
    executor = WidthCostExecutor()
    cap = 0.72 * _seconds(48, 12)  # 48 does not fit; 40 does (0.69)
    plan = plan_final(storage, space, todo, budget, {}, executor, 1, max_seconds=cap,
                      min_width=16)
    assert plan.budget.epochs == 12
    assert plan.budget.width % WIDTH_STEP == 0 and 16 <= plan.budget.width < 48
    assert plan.seconds <= cap
    assert _seconds(plan.budget.width + WIDTH_STEP, 12) > cap  # the widest that fits
    assert executor.widths[0] == 48 and executor.widths[-1] == plan.budget.width
    assert "width 40 instead" in plan.note and "epoch(s) instead" not in plan.note
    # a resume finds the stored plan: same width and epochs, no cap needed
    again = plan_final(storage, space, [], budget, {}, executor, 1)
    assert (again.budget.width, again.budget.epochs) == (plan.budget.width, 12)


def test_below_min_width_the_cap_cuts_epochs(study) -> None:
    storage, space, todo = study
    budget = Budget(epochs=12, width=48, batch_size=128)
    cap = 0.25 * _seconds(48, 12)  # even width 32 (0.44) does not fit 12 epochs
    plan = plan_final(storage, space, todo, budget, {}, WidthCostExecutor(), 1,
                      max_seconds=cap, min_width=32)
    assert plan.budget.width == 32
    assert plan.budget.epochs == int(cap // _seconds(32, 1))
    assert "width 32 instead" in plan.note and "epoch(s) instead" in plan.note


def test_without_min_width_the_cap_cuts_epochs_only(study) -> None:
    storage, space, todo = study
    executor = WidthCostExecutor()
    plan = plan_final(storage, space, todo, Budget(epochs=12, width=48), {}, executor, 1,
                      max_seconds=0.5 * _seconds(48, 12))
    assert plan.budget.width == 48 and plan.budget.epochs == 6
    assert executor.widths == [48]


def test_min_width_is_checked_and_one_above_the_width_never_narrows(study) -> None:
    raw = tiny_config_dict(final={"top": 1, "min_width": 0, "budget": {"width": 48}})
    with pytest.raises(ConfigError, match="min_width' must be >= 1, got 0"):
        config_from_dict(raw, "bad")
    # quick (min_width 24) with --set final.budget.width=16: accepted, the cap cuts epochs only
    wide = tiny_config_dict(final={"top": 1, "min_width": 24, "max_seconds": 60,
                                   "budget": {"width": 16}})
    assert config_from_dict(wide, "ok").final.min_width == 24
    storage, space, todo = study
    executor = WidthCostExecutor()
    plan = plan_final(storage, space, todo, Budget(epochs=12, width=16), {}, executor, 1,
                      max_seconds=0.5 * _seconds(16, 12), min_width=24, min_epochs=6)
    assert (plan.budget.width, plan.budget.epochs) == (16, 6) and executor.widths == [16]
    ok = tiny_config_dict(final={"top": 1, "min_width": 32, "total_seconds": "9m",
                                 "budget": {"width": 48}})
    parsed = config_from_dict(ok, "ok")
    assert parsed.final.min_width == 32
    assert config_from_dict(parsed.to_dict(), "again").final.min_width == 32  # stored, resumed


def test_min_epochs_cuts_epochs_first_when_enough_fit_at_full_width(study) -> None:
    storage, space, todo = study
    executor = WidthCostExecutor()
    cap = 7.5 * _seconds(48, 1)  # 7 epochs fit at width 48
    plan = plan_final(storage, space, todo, Budget(epochs=12, width=48), {}, executor, 1,
                      max_seconds=cap, min_width=16, min_epochs=5)
    assert (plan.budget.width, plan.budget.epochs) == (48, 7)
    assert executor.widths == [48]  # no narrower width probed
    assert "training 7 epoch(s) instead" in plan.note and "narrower" not in plan.note


def test_below_min_epochs_the_cap_narrows_the_network_then_regrows_epochs(study) -> None:
    storage, space, todo = study
    executor = WidthCostExecutor()
    cap = 2.2 * _seconds(48, 1)  # 2 epochs fit at width 48, fewer than min_epochs
    plan = plan_final(storage, space, todo, Budget(epochs=12, width=48), {}, executor, 1,
                      max_seconds=cap, min_width=16, min_epochs=5)
    assert _seconds(32, 5) > cap >= _seconds(24, 5)  # 24 is the widest that fits 5 epochs
    assert plan.budget.width == 24 and executor.widths[-1] == 24
    assert plan.budget.epochs == int(cap // _seconds(24, 1)) == 8  # grown back to fill the cap
    assert plan.seconds <= cap
    assert "2 epoch(s) fit at width 48, fewer than final.min_epochs (5)" in plan.note
    assert "width 24 instead" in plan.note and "at width 24 8 epochs fit" in plan.note


def test_regrown_epochs_stop_at_the_budget_epochs(study) -> None:
    storage, space, todo = study
    cap = 2.2 * _seconds(48, 1)
    plan = plan_final(storage, space, todo, Budget(epochs=7, width=48), {}, WidthCostExecutor(),
                      1, max_seconds=cap, min_width=16, min_epochs=5)
    assert (plan.budget.width, plan.budget.epochs) == (24, 7)


def test_min_epochs_is_checked_and_stored() -> None:
    final = {"top": 1, "min_width": 32, "min_epochs": 5, "max_seconds": 60,
             "budget": {"width": 48, "epochs": 12}}
    parsed = config_from_dict(tiny_config_dict(final=final), "ok")
    assert config_from_dict(parsed.to_dict(), "again").final.min_epochs == 5
    assert config_from_dict(tiny_config_dict(final={**final, "min_epochs": 13}),
                            "above").final.min_epochs == 13  # allowed: narrows first
    for bad, match in (({"min_epochs": 0}, "must be at least 1"),
                       ({"min_width": None}, "set 'final.min_width' as well")):
        with pytest.raises(ConfigError, match=match):
            config_from_dict(tiny_config_dict(final={**final, **bad}), "bad")


@pytest.mark.parametrize("key", ["min_width", "min_epochs"])
def test_cut_settings_without_a_cap_are_refused(key: str) -> None:
    final = {"top": 1, "min_width": 24, key: 4 if key == "min_epochs" else 24,
             "budget": {"width": 48, "epochs": 8}}
    with pytest.raises(ConfigError, match=f"'final.{key}' .*: set 'final.max_seconds' or"):
        config_from_dict(tiny_config_dict(final=final), "bad")


def test_regrown_epochs_stay_within_the_time_limit_left(study) -> None:
    storage, space, todo = study
    cap = 2.2 * _seconds(48, 1)
    plan = plan_final(storage, space, todo, Budget(epochs=12, width=48), {}, WidthCostExecutor(),
                      1, max_seconds=cap, min_width=16, min_epochs=5,
                      seconds_left=6.5 * _seconds(24, 1))
    assert (plan.budget.width, plan.budget.epochs) == (24, 6)  # 8 fit the cap, 6 the limit
    assert plan.fits(6.5 * _seconds(24, 1))
