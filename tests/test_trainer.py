"""The trainer and metrics on the tiny synthetic set with tiny nets (no download, seconds)."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

from nasforge.data import DataSplits, split_validation, synthetic_dataset
from nasforge.errors import ConfigError
from nasforge.evaluation import (
    Budget,
    TrainResult,
    baseline_cnn,
    count_flops,
    count_params,
    evaluate_accuracy,
    set_determinism,
    train,
)
from nasforge.evaluation.budget import OPTIMIZERS
from nasforge.evaluation.trainer import EpochRecord

NUM_CLASSES = 4


@pytest.fixture(scope="module")
def splits() -> DataSplits:
    return split_validation(synthetic_dataset(n_train=600, n_test=200, num_classes=NUM_CLASSES),
                            val_fraction=0.2, seed=0)


class TinyNet(nn.Module):
    """conv -> (BN) -> ReLU -> global average pool -> linear."""

    def __init__(self, channels: int = 1, width: int = 8, bn: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, width, 3, padding=1)
        self.bn = nn.BatchNorm2d(width) if bn else nn.Identity()
        self.fc = nn.Linear(width, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.bn(self.conv(x))).mean(dim=(2, 3)))


class NanNet(TinyNet):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * float("nan")


class CountingNet(TinyNet):
    """Counts the images it sees in training mode."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = 0
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.seen += int(x.shape[0])
            self.calls += 1
        return super().forward(x)


class BrokenNet(TinyNet):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            raise RuntimeError("boom in forward")
        return super().forward(x)


def _fit(splits: DataSplits, budget: Budget,
         model: nn.Module | Callable[[], nn.Module] | None = None, **kw: Any) -> TrainResult:
    """Train ``model`` under ``budget``; a factory (default: a width-8 baseline CNN) is called
    after seeding, so equal budgets give equal initial weights."""
    set_determinism(budget.seed)
    if model is None:
        net = baseline_cnn(splits.input_shape, NUM_CLASSES, 8)
    elif isinstance(model, nn.Module):
        net = model
    else:
        net = model()
    return train(net, splits, budget, **kw)


def test_a_net_learns(splits: DataSplits) -> None:
    seen: list[EpochRecord] = []
    result = _fit(splits, Budget(epochs=3, batch_size=32), on_epoch=seen.append)
    assert result.status == "ok" and result.reason is None
    assert result.val_acc is not None and result.val_acc > 0.7  # chance is 0.25
    assert result.epochs_run == 3 and len(result.curve) == 3 and seen == result.curve
    assert [r.epoch for r in result.curve] == [1, 2, 3]
    assert result.curve[-1].train_loss < result.curve[0].train_loss
    assert result.val_acc == result.curve[-1].val_acc
    assert result.val_loss == result.curve[-1].val_loss
    assert result.best_val_acc == max(r.val_acc for r in result.curve)
    assert result.train_seconds > 0 and result.images_per_second > 0
    assert all(r.seconds > 0 and math.isfinite(r.train_loss) for r in result.curve)


def test_nan_forward_fails_with_reason_not_exception(splits: DataSplits) -> None:
    result = _fit(splits, Budget(epochs=2, batch_size=32), model=NanNet)
    assert result.status == "failed"
    assert result.reason == "nan loss at epoch 1 step 1"
    assert result.val_acc is None and result.val_loss is None and result.test_acc is None
    assert result.curve == [] and result.epochs_run == 0


def test_huge_learning_rate_fails_with_reason(splits: DataSplits) -> None:
    result = _fit(splits, Budget(epochs=3, batch_size=32, optimizer="sgd", lr=1e30))
    assert result.status == "failed"
    assert result.reason is not None and "loss at epoch" in result.reason and "step" in result.reason


def test_other_exceptions_propagate(splits: DataSplits) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        _fit(splits, Budget(epochs=1, batch_size=32), model=BrokenNet)


def test_same_seed_same_curve_other_seed_differs(splits: DataSplits) -> None:
    budget = Budget(epochs=2, batch_size=32, max_steps=6, augment="flip+erase", seed=3)
    a, b = _fit(splits, budget), _fit(splits, budget)
    assert [(r.train_loss, r.val_loss, r.val_acc) for r in a.curve] == [
        (r.train_loss, r.val_loss, r.val_acc) for r in b.curve
    ]
    c = _fit(splits, budget.replace(seed=4))
    assert [r.train_loss for r in c.curve] != [r.train_loss for r in a.curve]


def test_evaluate_test_only_when_asked(splits: DataSplits) -> None:
    budget = Budget(epochs=1, batch_size=32, max_steps=5)
    without = _fit(splits, budget)
    with_test = _fit(splits, budget, evaluate_test=True)
    assert without.test_acc is None
    assert with_test.test_acc is not None and 0.0 <= with_test.test_acc <= 1.0


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("schedule", ["none", "cosine"])
def test_each_optimizer_and_schedule_runs(splits: DataSplits, optimizer: str, schedule: str) -> None:
    budget = Budget(epochs=2, batch_size=32, max_steps=4, optimizer=optimizer, schedule=schedule,
                    weight_decay=1e-4)
    result = _fit(splits, budget, model=TinyNet)
    assert result.status == "ok", result.reason
    assert result.epochs_run == 2 and all(math.isfinite(r.val_loss) for r in result.curve)


def test_cosine_schedule_changes_training(splits: DataSplits) -> None:
    budget = Budget(epochs=2, batch_size=32, max_steps=5, optimizer="sgd")
    flat = _fit(splits, budget, model=TinyNet)
    cosine = _fit(splits, budget.replace(schedule="cosine"), model=TinyNet)
    # the learning rate decays after the first step, so the curves part
    assert [r.train_loss for r in flat.curve] != [r.train_loss for r in cosine.curve]


@pytest.mark.parametrize(
    "changes",
    [{"precision": "bf16"}, {"channels_last": True}, {"precision": "bf16", "channels_last": True},
     {"augment": "flip"}, {"augment": "flip+erase"}],
)
def test_precision_memory_format_and_augmentation_run(splits: DataSplits, changes: dict) -> None:
    budget = Budget(epochs=2, batch_size=32, max_steps=6, **changes)
    result = _fit(splits, budget, evaluate_test=True)
    assert result.status == "ok", result.reason
    assert result.val_acc is not None and result.test_acc is not None
    assert all(math.isfinite(r.train_loss) and math.isfinite(r.val_loss) for r in result.curve)


def test_patience_stops_early(splits: DataSplits) -> None:
    # a learning rate this small leaves the weights (and so the validation accuracy) unchanged
    budget = Budget(epochs=10, batch_size=32, max_steps=2, optimizer="sgd", lr=1e-20, patience=2)
    seen: list[EpochRecord] = []
    result = _fit(splits, budget, model=lambda: TinyNet(bn=False), on_epoch=seen.append)
    assert result.status == "ok"
    assert result.epochs_run == 3 and len(result.curve) == 3 and len(seen) == 3
    assert result.best_val_acc == result.curve[0].val_acc


def test_data_fraction_and_max_steps_limit_images(splits: DataSplits) -> None:
    n = len(splits.train_y)  # 480
    full, part, capped = CountingNet(), CountingNet(), CountingNet()
    _fit(splits, Budget(epochs=1, batch_size=32), model=full)
    _fit(splits, Budget(epochs=1, batch_size=32, data_fraction=0.25), model=part)
    _fit(splits, Budget(epochs=2, batch_size=32, max_steps=3), model=capped)
    assert full.seen == n
    assert part.seen == round(0.25 * n)
    assert capped.calls == 6 and capped.seen == 6 * 32


def test_last_batch_of_one_image_is_dropped(splits: DataSplits) -> None:
    net = CountingNet()
    small = split_validation(synthetic_dataset(n_train=41, n_test=8, num_classes=NUM_CLASSES),
                             val_fraction=0.2, seed=0)  # 33 training images
    result = _fit(small, Budget(epochs=1, batch_size=32), model=net)
    assert result.status == "ok" and net.seen == 32


def test_params_flops_and_count_params() -> None:
    model = baseline_cnn((1, 28, 28), 10, 32)
    n = count_params(model)
    assert n == sum(p.numel() for p in model.parameters()) > 0
    assert 50_000 <= n <= 150_000
    assert count_flops(model, (1, 28, 28)) > 0
    frozen = nn.Linear(4, 3)
    frozen.bias.requires_grad_(False)
    assert count_params(frozen) == 12
    # a multiply-add counts as 2 FLOPs: [1,4] @ [4,3] -> 2*4*3
    assert count_flops(nn.Sequential(nn.Flatten(), nn.Linear(4, 3)), (1, 2, 2)) == 24


def test_result_reports_params_and_flops(splits: DataSplits) -> None:
    set_determinism(0)
    model = baseline_cnn(splits.input_shape, NUM_CLASSES, 8)
    result = train(model, splits, Budget(epochs=1, batch_size=32, max_steps=2))
    assert result.params == count_params(model) > 0
    assert result.flops == count_flops(model, splits.input_shape) > 0


def test_result_dict_round_trip(splits: DataSplits) -> None:
    result = _fit(splits, Budget(epochs=2, batch_size=32, max_steps=3), evaluate_test=True)
    data = json.loads(json.dumps(result.to_dict()))
    assert isinstance(data["curve"][0], dict) and data["status"] == "ok"
    again = TrainResult.from_dict(data)
    assert again == result and isinstance(again.curve[0], EpochRecord)
    with pytest.raises(ConfigError, match="nonsense"):
        TrainResult.from_dict({**data, "nonsense": 1})


def test_evaluate_accuracy_restores_mode_and_measures(splits: DataSplits) -> None:
    model = TinyNet()
    model.train()
    acc, loss = evaluate_accuracy(model, splits.val_x, splits.val_y, splits.mean, splits.std,
                                  batch_size=7)
    assert model.training
    assert 0.0 <= acc <= 1.0 and loss > 0
    acc2, loss2 = evaluate_accuracy(model, splits.val_x, splits.val_y, splits.mean, splits.std)
    assert acc2 == acc and loss2 == pytest.approx(loss, rel=1e-5)
    bf_acc, bf_loss = evaluate_accuracy(model, splits.val_x, splits.val_y, splits.mean,
                                        splits.std, precision="bf16", channels_last=True)
    assert 0.0 <= bf_acc <= 1.0 and math.isfinite(bf_loss)


def test_train_moves_and_uses_the_given_model(splits: DataSplits) -> None:
    set_determinism(0)
    model = TinyNet()
    before = [p.detach().clone() for p in model.parameters()]
    train(model, splits, Budget(epochs=1, batch_size=32, max_steps=2))
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_empty_validation_split_is_a_config_error(splits: DataSplits) -> None:
    empty = dataclasses.replace(splits, val_x=splits.val_x[:0], val_y=splits.val_y[:0])
    with pytest.raises(ConfigError, match="validation split is empty"):
        _fit(empty, Budget(epochs=1, batch_size=32, max_steps=1), model=TinyNet)


@pytest.mark.parametrize("deferred", [False, True])
def test_loss_tracker_names_first_bad_step(deferred: bool) -> None:
    from nasforge.evaluation.loss_tracker import DEVICE_CHECK_EVERY, LossTracker

    steps = DEVICE_CHECK_EVERY + 10
    tracker = LossTracker(steps, torch.device("cpu"), deferred=deferred)
    tracker.start_epoch()
    reasons = [tracker.record(torch.tensor(1.0), epoch=2) for _ in range(5)]
    reasons += [tracker.record(torch.tensor(float("inf")), epoch=2)]
    reasons += [tracker.record(torch.tensor(float("nan")), epoch=2) for _ in range(3)]
    found = [r for r in reasons if r is not None] + [tracker.flush(epoch=2)]
    assert found[0] == "inf loss at epoch 2 step 6"
    tracker.start_epoch()
    for value in (1.0, 2.0, 4.0):
        assert tracker.record(torch.tensor(value), epoch=3) is None
    assert tracker.flush(epoch=3) is None
    assert tracker.mean(3) == pytest.approx(7.0 / 3)


@pytest.mark.parametrize("schedule", ["none", "cosine"])
def test_continuation_is_exact(splits: DataSplits, schedule: str) -> None:
    """1 epoch, then continued to 3, gives the same epoch-2 and epoch-3 losses and accuracies
    as 3 epochs from scratch with the same seed (the schedule spans 3 in both), with dropout
    and flip augmentation drawing random numbers on the way."""
    budget = Budget(epochs=3, batch_size=32, schedule=schedule, augment="flip", seed=5)

    def net() -> nn.Module:
        return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Dropout2d(0.2),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, NUM_CLASSES))

    full = _fit(splits, budget, net)
    first = _fit(splits, budget.replace(epochs=1, schedule_epochs=3), net, keep_state=True)
    assert first.state is not None and first.state["epoch"] == 1
    set_determinism(123)  # the continued run must not depend on the caller's RNG or init
    rest = train(net(), splits, budget.replace(schedule_epochs=3), resume=first.state)
    assert [r.epoch for r in rest.curve] == [1, 2, 3]
    for a, b in zip(full.curve, rest.curve):
        assert a.train_loss == pytest.approx(b.train_loss, abs=1e-6)
        assert a.val_loss == pytest.approx(b.val_loss, abs=1e-6)
        assert a.val_acc == pytest.approx(b.val_acc, abs=1e-6)
    with pytest.raises(ConfigError, match="already trained"):
        train(net(), splits, budget.replace(epochs=1, schedule_epochs=3), resume=first.state)
