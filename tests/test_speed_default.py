"""A study's default speed options for trainings too short to measure their own: the first
short training measures within a fixed allowance, the study keeps its choice, and later short
trainings (and reruns) take it without measuring."""

from __future__ import annotations

import random

import torch

from nasforge.evaluation.speed import (
    DEFAULT_NETWORK,
    SHORT_ALLOWANCE_SECONDS,
    SpeedSetting,
    candidate_settings,
    choose,
    speed_key,
)
from tests.test_speed import FakeClock, fake_steps

TIMES = {("fp32", False, None): 0.05, ("fp32", True, None): 0.03,
         ("bf16", False, None): 0.04, ("bf16", True, None): 0.02}


def _short(bf16: bool = True, **kw):
    settings, extra = candidate_settings("cpu", "auto", "auto", bf16, None, 2)
    clock = FakeClock()
    step, calls = fake_steps(TIMES, clock)
    return choose(settings, extra, step, 60, clock=clock, **kw), calls, clock


def test_a_short_training_takes_the_study_default_without_measuring() -> None:
    choice, calls, _ = _short(default=SpeedSetting("fp32", True, None))
    assert calls == []
    assert choice.setting == SpeedSetting("fp32", True, None)
    assert choice.source == "study default" and not choice.measured
    assert "too short" in choice.reason and "study's default" in choice.reason


def test_without_a_default_a_short_training_learns_one_within_its_allowance() -> None:
    choice, calls, clock = _short(learn_default=True)
    assert choice.measured and choice.for_default
    assert choice.setting == SpeedSetting("bf16", True, None)  # the fastest of the four
    assert {c.precision for c in calls} == {"fp32", "bf16"}
    assert clock.now <= SHORT_ALLOWANCE_SECONDS + 2 * max(TIMES.values())
    assert "default for short trainings" in choice.reason
    # without learn_default the same short training is not measured past its baseline
    plain, calls, _ = _short()
    assert plain.source == "default" and not plain.for_default and calls == []


def test_a_default_this_machine_cannot_run_is_ignored() -> None:
    """bf16 stored where the CPU had native bf16 is not used where it has none."""
    choice, calls, _ = _short(bf16=False, default=SpeedSetting("bf16", True, None))
    assert choice.setting.precision == "fp32" and choice.source == "default"
    learned, calls, _ = _short(bf16=False, default=SpeedSetting("bf16", True, None),
                               learn_default=True)
    assert learned.for_default and learned.setting == SpeedSetting("fp32", True, None)
    assert all(c.precision == "fp32" for c in calls)


def test_a_search_learns_its_default_once_and_a_rerun_reuses_it(tmp_path) -> None:
    """One worker: the first trial measures and sets the default, the others take it; a second
    search on the same study file measures nothing."""
    from nasforge.api import Search
    from nasforge.config import config_from_dict
    from nasforge.storage import StudyStorage
    from tests.conftest import tiny_config_dict

    raw = tiny_config_dict(
        budget={"epochs": 1, "width": 4, "batch_size": 8, "max_steps": None,
                "precision": "auto", "channels_last": "auto"},
        run={"max_evals": 3, "workers": 1, "keep_best": 0},
        data={"dataset": "synthetic", "val_fraction": 0.2},
    )
    config = config_from_dict(raw, "speed-default")
    search = Search(config, tmp_path / "s.db")
    search.run()
    search.close()
    with StudyStorage.open(tmp_path / "s.db") as storage:
        trials = sorted(storage.trials(), key=lambda t: t.number)
        defaults = storage.speed_choices(speed_key(DEFAULT_NETWORK, 4, 8))
    sources = [t.metrics["speed"]["source"] for t in trials]
    assert sources[0] == "measured" and trials[0].metrics["speed"]["for_default"]
    from nasforge.execution.reporting import speed_note

    assert "the study's default for short trainings" in speed_note(trials[0].metrics["speed"])
    assert speed_note(trials[1].metrics["speed"]) == ""
    assert sources[1:] == ["study default"] * (len(trials) - 1)
    assert len(defaults) == 1
    stored = next(iter(defaults.values()))
    assert stored["setting"] == trials[0].metrics["speed"]["setting"]
    assert all(t.metrics["speed"]["setting"] == stored["setting"] for t in trials)

    raw["run"]["max_evals"] = 5
    again = Search(config_from_dict(raw, "speed-default"), tmp_path / "s.db", resume=True)
    again.run()
    again.close()
    with StudyStorage.open(tmp_path / "s.db") as storage:
        later = sorted(storage.trials(), key=lambda t: t.number)[len(trials):]
    assert later and all(t.metrics["speed"]["source"] in ("study default", "stored")
                         for t in later)
    assert all(t.metrics["speed"]["setting"] == stored["setting"] for t in later)


def test_a_damaged_stored_choice_is_measured_again_not_a_failed_trial(tmp_path) -> None:
    """A stored default or network choice that does not parse is ignored (and the default is
    replaced by the next measurement): the trial trains, nothing fails."""
    from nasforge.evaluation.speed import device_key
    from nasforge.execution.tasks import STUDY_DEFAULT, EvalTask, evaluate_task
    from nasforge.config import config_from_dict
    from nasforge.spaces import get_space
    from tests.conftest import tiny_config_dict

    config = config_from_dict(tiny_config_dict(data={"dataset": "synthetic",
                                                     "val_fraction": 0.2}), "damaged")
    space = get_space(config.space.name, **config.space.settings)
    genome = space.sample(random.Random(0))
    dev = device_key("cpu", torch.get_num_threads())
    damaged = {"setting": "bf16"}
    task = EvalTask(trial_number=1, space_name=space.name, space_settings=space.settings(),
                    genome=space.genome_to_dict(genome),
                    budget={"epochs": 1, "width": 4, "batch_size": 8, "max_steps": None,
                            "precision": "auto", "channels_last": "auto"},
                    data=config.data.task_dict(), model_seed=0,
                    extra={"speed": {dev: damaged, STUDY_DEFAULT: {dev: damaged}}})
    result = evaluate_task(task)
    assert result["status"] == "ok", result.get("error")
    assert result["speed"]["for_default"] and result["speed"]["source"] == "measured"
