"""The training budget: defaults, validation naming the field, dict round trip, hashing."""

from __future__ import annotations

import dataclasses

import pytest

from nasforge.errors import ConfigError
from nasforge.evaluation.budget import DEFAULT_LR, OPTIMIZERS, Budget


def test_defaults() -> None:
    b = Budget()
    assert (b.epochs, b.data_fraction, b.batch_size, b.optimizer) == (1, 1.0, 128, "adam")
    assert b.lr is None and b.learning_rate == DEFAULT_LR["adam"]
    assert (b.schedule, b.augment, b.precision, b.channels_last) == ("none", "none", "fp32", False)
    assert b.patience is None and b.max_steps is None and b.seed == 0
    assert b.weight_decay == 0.0 and b.width == 16


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_learning_rate_default_per_optimizer_and_explicit(name: str) -> None:
    assert Budget(optimizer=name).learning_rate == DEFAULT_LR[name]
    assert Budget(optimizer=name, lr=0.123).learning_rate == 0.123


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"epochs": 0}, "epochs"),
        ({"epochs": 1.5}, "epochs"),
        ({"epochs": True}, "epochs"),
        ({"data_fraction": 0.0}, "data_fraction"),
        ({"data_fraction": 1.5}, "data_fraction"),
        ({"batch_size": 0}, "batch_size"),
        ({"optimizer": "lion"}, "optimizer"),
        ({"lr": 0.0}, "lr"),
        ({"lr": -1.0}, "lr"),
        ({"weight_decay": -0.1}, "weight_decay"),
        ({"schedule": "step"}, "schedule"),
        ({"augment": "mixup"}, "augment"),
        ({"precision": "fp8"}, "precision"),
        ({"channels_last": "maybe"}, "channels_last"),
        ({"threads": 0}, "threads"),
        ({"threads": "many"}, "threads"),
        ({"width": 0}, "width"),
        ({"patience": 0}, "patience"),
        ({"max_steps": 0}, "max_steps"),
    ],
)
def test_bad_values_raise_config_error_naming_the_field(changes: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        Budget(**changes)
    with pytest.raises(ConfigError, match=field):
        Budget().replace(**changes)


def test_bad_value_message_names_the_value() -> None:
    with pytest.raises(ConfigError, match="lion"):
        Budget(optimizer="lion")
    with pytest.raises(ConfigError, match="-3"):
        Budget(batch_size=-3)


def test_dict_round_trip_and_unknown_key() -> None:
    b = Budget(epochs=3, optimizer="sgd", lr=0.1, schedule="cosine", augment="flip+erase",
               precision="bf16", channels_last=True, patience=2, max_steps=10, seed=7)
    d = b.to_dict()
    assert d["optimizer"] == "sgd" and d["lr"] == 0.1
    assert Budget.from_dict(d) == b
    with pytest.raises(ConfigError, match="epochz"):
        Budget.from_dict({"epochz": 3})
    with pytest.raises(ConfigError, match="epochs"):
        Budget.from_dict({"epochs": -1})


def test_hashable_equal_and_frozen() -> None:
    a, b = Budget(epochs=2, seed=1), Budget(epochs=2, seed=1)
    assert a == b and hash(a) == hash(b)
    assert len({a, b, Budget(epochs=3, seed=1)}) == 2
    assert a != a.replace(seed=2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.epochs = 5  # type: ignore[misc]


def test_replace_leaves_original_untouched() -> None:
    a = Budget()
    b = a.replace(epochs=4)
    assert a.epochs == 1 and b.epochs == 4
