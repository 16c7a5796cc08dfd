"""Label smoothing (``Budget.label_smoothing``): the training loss mixes the hard label with a
uniform target; validation is unchanged; old budgets keep their stored keys."""

from __future__ import annotations

import math

import pytest
import torch

from nasforge.data import split_validation, synthetic_dataset
from nasforge.errors import ConfigError
from nasforge.evaluation import Budget, evaluate_accuracy, set_determinism, train
from nasforge.evaluation.trainer import training_loss
from nasforge.storage.sqlite import budget_key
from tests.test_trainer import TinyNet


def test_the_loss_is_the_smoothed_cross_entropy() -> None:
    logits = torch.tensor([[4.0, 0.0, -1.0], [0.5, 0.2, 3.0]])
    labels = torch.tensor([0, 2])
    log_p = torch.log_softmax(logits, dim=1)
    hard = -log_p[torch.arange(2), labels].mean()
    uniform = -log_p.mean(dim=1).mean()
    eps = 0.1
    got = training_loss(torch.nn.Identity(), logits, labels, eps)
    assert math.isclose(float(got), float((1 - eps) * hard + eps * uniform), rel_tol=1e-6)
    assert math.isclose(float(training_loss(torch.nn.Identity(), logits, labels)), float(hard),
                        rel_tol=1e-6)


def test_training_with_smoothing_changes_the_training_loss_only() -> None:
    splits = split_validation(synthetic_dataset(n_train=300, n_test=50, num_classes=4),
                              val_fraction=0.2, seed=0)
    losses = {}
    for eps in (None, 0.2):
        set_determinism(0)
        model = TinyNet()
        result = train(model, splits, Budget(epochs=2, batch_size=32, label_smoothing=eps))
        assert result.status == "ok" and result.val_acc is not None
        losses[eps] = result.curve[-1].train_loss
        # the validation loss is the hard-label cross-entropy of the trained weights
        _, hard = evaluate_accuracy(model, splits.val_x, splits.val_y, splits.mean, splits.std)
        assert result.val_loss == pytest.approx(hard, rel=1e-6)
    # a smoothed target can never be matched exactly: its loss stays above the hard one here
    assert losses[0.2] > losses[None]


def test_budget_checks_and_keeps_old_keys() -> None:
    for bad in (1.0, -0.1, "0.1", True):
        with pytest.raises(ConfigError, match="label_smoothing"):
            Budget(label_smoothing=bad)
    plain = Budget(epochs=3)
    assert "label_smoothing" not in plain.to_dict()
    assert "label_smoothing" not in Budget(epochs=3, label_smoothing=0).to_dict()
    assert budget_key(plain.to_dict()) != budget_key(
        Budget(epochs=3, label_smoothing=0.1).to_dict())
