"""Speed options chosen by measurement: the chooser on injected timings, the trainer and the
study's stored choices, the final step's estimate and cap, and durations."""

from __future__ import annotations

import pytest
import torch

from nasforge.config import parse_duration
from nasforge.data import split_validation, synthetic_dataset
from nasforge.errors import ConfigError
from nasforge.evaluation import Budget, baseline_cnn, set_determinism, train
from nasforge.evaluation.speed import (
    SpeedChoice,
    SpeedSetting,
    candidate_settings,
    choose,
    has_native_bf16,
)
from nasforge.execution.final_plan import run_seconds


class FakeClock:
    """A clock that only moves when a fake step "runs"."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def fake_steps(times: dict[tuple[str, bool, int | None], float], clock: FakeClock,
               warmup_factor: float = 1.5):
    """A ``step`` function whose settings take the given seconds (the first call of a setting,
    its warm-up, ``warmup_factor`` times longer); records every call."""
    calls: list[SpeedSetting] = []

    def step(setting: SpeedSetting) -> float:
        seconds = times[(setting.precision, setting.channels_last, setting.threads)]
        if setting not in calls:
            seconds *= warmup_factor
        calls.append(setting)
        clock.now += seconds
        return seconds

    return step, calls


def _choose(times, precision="auto", channels_last="auto", threads=None, bf16=True,
            total_steps=5000, max_threads=2):
    settings, extra = candidate_settings("cpu", precision, channels_last, bf16, threads, max_threads)
    clock = FakeClock()
    step, calls = fake_steps(times, clock)
    return choose(settings, extra, step, total_steps, clock=clock), calls, clock


def test_picks_bf16_where_it_is_faster() -> None:
    times = {("fp32", False, None): 0.10, ("fp32", True, None): 0.08,
             ("bf16", False, None): 0.06, ("bf16", True, None): 0.04}
    choice, _, _ = _choose(times)
    assert choice.setting == SpeedSetting("bf16", True, None)
    assert choice.measured and choice.source == "measured"
    assert choice.step_seconds == pytest.approx(0.04)


def test_avoids_channels_last_where_it_is_slower() -> None:
    times = {("fp32", False, None): 0.05, ("fp32", True, None): 0.09,
             ("bf16", False, None): 0.30, ("bf16", True, None): 0.35}
    choice, _, _ = _choose(times)
    assert choice.setting == SpeedSetting("fp32", False, None)


def test_never_tries_bf16_without_native_support() -> None:
    times = {("fp32", False, None): 0.06, ("fp32", True, None): 0.05,
             ("bf16", False, None): 0.001, ("bf16", True, None): 0.001}
    choice, calls, _ = _choose(times, bf16=False)
    assert all(c.precision == "fp32" for c in calls)
    assert choice.setting == SpeedSetting("fp32", True, None)
    assert not has_native_bf16("cpu", frozenset({"avx2", "fma"}))
    assert has_native_bf16("cpu", frozenset({"avx2", "avx512_bf16"}))
    assert has_native_bf16("cpu", frozenset({"amx_bf16"}))


def test_measuring_stays_within_five_percent_of_the_training() -> None:
    times = {("fp32", False, 2): 0.10, ("fp32", True, 2): 0.09,
             ("bf16", False, 2): 0.30, ("bf16", True, 2): 0.50,
             ("fp32", True, 1): 0.12}
    total_steps = 400  # 40 s of training at the baseline: 2 s of measuring at most
    choice, calls, clock = _choose(times, threads="auto", total_steps=total_steps)
    budget = 0.05 * total_steps * 0.10
    # each step is decided before it runs, on the best time so far: one step of slack
    assert clock.now <= budget + 0.5 * 1.5
    assert choice.overhead_seconds == pytest.approx(clock.now)
    assert choice.setting == SpeedSetting("fp32", True, 2)
    assert SpeedSetting("fp32", True, 1) in calls  # fewer threads were tried on the winner


def test_a_much_slower_candidate_is_dropped_after_its_warm_up() -> None:
    times = {("fp32", False, None): 0.05, ("fp32", True, None): 0.05,
             ("bf16", False, None): 0.60, ("bf16", True, None): 0.60}
    choice, calls, _ = _choose(times)
    assert calls.count(SpeedSetting("bf16", False, None)) == 1
    assert choice.timings["bf16, contiguous"] == []


def test_short_training_and_explicit_settings_are_not_measured() -> None:
    times = {("fp32", False, None): 0.05, ("fp32", True, None): 0.04}
    short, calls, _ = _choose(times, precision="fp32", total_steps=20)
    assert not short.measured and short.source == "default" and calls == []
    assert "too short" in (short.reason or "")
    # 300 steps of 50 ms: 15 s of training, 0.75 s to measure in: the baseline's 2 steps only
    short, calls, _ = _choose(times, precision="fp32", total_steps=300)
    assert not short.measured and "too short" in (short.reason or "")
    assert calls == [SpeedSetting("fp32", False, None)] * 2
    explicit, calls, _ = _choose(times, precision="fp32", channels_last=True)
    assert explicit.source == "explicit" and calls == []
    assert explicit.setting == SpeedSetting("fp32", True, None)


def test_explicit_precision_the_device_lacks_is_refused() -> None:
    with pytest.raises(ConfigError, match="tf32"):
        candidate_settings("cpu", "tf32", False, True, None, 2)


def test_choice_round_trips_through_json() -> None:
    choice = SpeedChoice(SpeedSetting("bf16", True, 2), 0.1, True, "measured", None,
                         {"bf16, channels-last, 2 threads": [0.1]}, 0.5)
    assert SpeedChoice.from_dict(choice.to_dict()) == choice
    with pytest.raises(ConfigError):
        SpeedChoice.from_dict({"setting": {"bogus": 1}})


@pytest.fixture(scope="module")
def splits():
    return split_validation(synthetic_dataset(n_train=600, n_test=100, num_classes=4),
                            val_fraction=0.2, seed=0)


def _run(splits, budget, **kw):
    set_determinism(budget.seed)
    model = baseline_cnn(splits.input_shape, splits.num_classes, 8)
    return train(model, splits, budget, **kw)


def test_measuring_does_not_change_the_training(splits, monkeypatch) -> None:
    """A run that measured and a run given the stored choice follow the same trajectory."""
    monkeypatch.setenv("NASFORGE_SPEED_MIN_SECONDS", "0")  # tiny trainings measure too
    auto = Budget(epochs=2, batch_size=8, precision="auto", channels_last="auto")
    measured = _run(splits, auto, bf16_native=False)
    assert measured.speed["measured"] and measured.speed["source"] == "measured"
    assert set(measured.speed["timings"]) >= {"fp32, contiguous"}
    stored = SpeedChoice.from_dict(measured.speed)
    again = _run(splits, auto, speed=stored)
    assert [r.train_loss for r in again.curve] == [r.train_loss for r in measured.curve]
    assert again.val_acc == measured.val_acc
    fixed = _run(splits, Budget(epochs=2, batch_size=8,
                                channels_last=stored.setting.channels_last))
    assert [r.train_loss for r in fixed.curve] == [r.train_loss for r in measured.curve]


def test_a_search_stores_its_choices_and_a_rerun_reuses_them(tmp_path, monkeypatch) -> None:
    """The runner keeps each measured choice in the study and sends it with later tasks of the
    same network: the evaluation then trains under it without measuring."""
    monkeypatch.setenv("NASFORGE_SPEED_MIN_SECONDS", "0")
    from nasforge.config import config_from_dict
    from nasforge.evaluation.speed import device_key, speed_key
    from nasforge.execution.tasks import EvalTask, evaluate_task
    from nasforge.spaces import genome_key
    from nasforge.storage import StudyStorage
    from tests.conftest import tiny_config_dict

    from nasforge.api import Search

    raw = tiny_config_dict(
        budget={"epochs": 2, "width": 4, "batch_size": 8, "max_steps": None,
                "precision": "auto", "channels_last": "auto"},
        run={"max_evals": 2, "workers": 2, "keep_best": 0},
        data={"dataset": "synthetic", "val_fraction": 0.2},
    )
    config = config_from_dict(raw, "speed")
    search = Search(config, tmp_path / "s.db")
    search.run()
    search.close()
    with StudyStorage.open(tmp_path / "s.db") as storage:
        trial = storage.trials()[0]
        key = speed_key(trial.genome_key, 4, 8)
        stored = storage.speed_choices(key)
        assert len(stored) == 1 and next(iter(stored.values()))["measured"]
        assert trial.metrics["speed"]["source"] == "measured"
        space = search.space
        genome = space.genome_from_dict(trial.genome)
        assert genome_key(space, genome) == trial.genome_key
    # this process may run another thread count than the pool's workers: file the choice under
    # this process's device key, as a worker with that count would find it
    local = {device_key("cpu", torch.get_num_threads()): next(iter(stored.values()))}
    task = EvalTask(trial_number=trial.number, space_name=space.name,
                    space_settings=space.settings(), genome=trial.genome, budget=trial.budget,
                    data=config.data.task_dict(), model_seed=0, extra={"speed": local})
    result = evaluate_task(task)
    assert result["status"] == "ok"
    assert result["speed"]["source"] == "stored" and not result["speed"]["measured"]
    assert result["speed"]["setting"] == next(iter(stored.values()))["setting"]


def test_run_estimate_scales_with_epochs() -> None:
    probe = {"step_seconds": 0.05, "steps_per_epoch": 100, "eval_images": 1000,
             "setup_seconds": 2.0}
    one = run_seconds(probe, 1, 100)
    assert one == pytest.approx(100 * 0.05 + 1000 / 100 * 0.05 * 0.4 + 2.0)
    assert run_seconds(probe, 10, 100) - 2.0 == pytest.approx(10 * (one - 2.0))


def test_durations() -> None:
    assert parse_duration("90m") == 5400
    assert parse_duration("23h") == 82800
    assert parse_duration("1d") == 86400
    assert parse_duration("1h30m") == 5400
    assert parse_duration(45) == 45
    for bad in ("abc", "10x", "-5", "0", "m"):
        with pytest.raises(ConfigError):
            parse_duration(bad)


def test_cpu_autocast_bf16_actually_runs(splits) -> None:
    """bf16 stays an explicit option everywhere (slow where not native, but correct)."""
    result = _run(splits, Budget(epochs=1, batch_size=32, max_steps=3, precision="bf16"))
    assert result.ok and result.speed["source"] == "explicit"
    assert torch.get_num_threads() >= 1


def test_probe_counts_the_steps_of_the_subset_that_is_trained() -> None:
    """A final run on part of the data is estimated on that part: with data_fraction 0.5 the
    probe's steps per epoch are half the full set's (an estimate once said 11 min for a run
    on 10% that took 2)."""
    from nasforge.data.datasets import split_validation, synthetic_dataset
    from nasforge.execution.tasks import probe_speed

    splits = split_validation(synthetic_dataset(), 0.1, 0)
    c, h, w = splits.input_shape
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(c * h * w, splits.num_classes))
    full = probe_speed(model, splits, Budget(batch_size=16, precision="fp32"), "cpu")
    half = probe_speed(model, splits, Budget(batch_size=16, precision="fp32", data_fraction=0.5),
                       "cpu")
    assert half["steps_per_epoch"] < full["steps_per_epoch"]
    assert abs(2 * half["steps_per_epoch"] - full["steps_per_epoch"]) <= 2
