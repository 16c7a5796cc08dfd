"""Flip test-time augmentation (``budget.tta: flip``): what it computes, that validation and a
final run use it, that the single-view test accuracy is kept beside it, and that an export of
such a run carries the averaging."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from torch import nn

from conftest import tiny_config_dict
from nasforge.api import train_final
from nasforge.config import config_from_dict
from nasforge.errors import ConfigError
from nasforge.evaluation.budget import Budget
from nasforge.evaluation.metrics import evaluate_accuracy
from nasforge.evaluation.tta import FlipAverage, flip_average, predict
from nasforge.execution.tasks import load_splits
from nasforge.spaces import get_space
from nasforge.storage import StudyStorage


class LeftMinusRight(nn.Module):
    """Class 1 when the left half is brighter than the right, else class 0: a classifier that
    a mirror turns into its opposite."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = x.shape[3] // 2
        score = 10 * (x[..., :half].mean(dim=(1, 2, 3)) - x[..., half:].mean(dim=(1, 2, 3)))
        return torch.stack([-score, score], dim=1)


def _images(n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 1, 8, 8), generator=gen, dtype=torch.uint8)
    left = x[..., :4].float().mean(dim=(1, 2, 3)) > x[..., 4:].float().mean(dim=(1, 2, 3))
    return x, left.long()


def test_flip_average_is_the_log_of_the_mean_probabilities() -> None:
    x = torch.randn(5, 1, 8, 8)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    got = flip_average(model, x)
    want = ((model(x).softmax(1) + model(x.flip(3)).softmax(1)) / 2).log()
    assert got.shape == (5, 3)
    assert torch.allclose(got, want, atol=1e-6)
    assert torch.allclose(got.exp().sum(1), torch.ones(5), atol=1e-5)
    assert torch.equal(predict(model, x, None), model(x))
    assert torch.allclose(FlipAverage(model)(x), got)
    with pytest.raises(ValueError, match="test-time"):
        predict(model, x, "rotate")


def test_evaluate_accuracy_averages_over_the_mirror() -> None:
    x, y = _images()
    plain, _ = evaluate_accuracy(LeftMinusRight(), x, y, [0.5], [0.25])
    flipped, loss = evaluate_accuracy(LeftMinusRight(), x, y, [0.5], [0.25], tta="flip")
    assert plain == 1.0
    # the image and its mirror score exactly opposite: averaged, every class is a tie (0.5)
    assert flipped < 0.75
    assert loss == pytest.approx(-torch.tensor(0.5).log().item(), rel=1e-4)


def test_budget_checks_tta_and_keeps_old_keys() -> None:
    with pytest.raises(ConfigError, match="tta"):
        Budget(tta="rotate")
    assert "tta" not in Budget().to_dict()
    assert "tta" not in Budget(tta="none").to_dict()  # "none" keeps old budget keys
    assert Budget(tta="flip").to_dict()["tta"] == "flip"


@pytest.mark.timeout(240)
def test_a_final_run_with_tta_keeps_its_single_view_accuracy(tmp_path) -> None:
    config = config_from_dict(tiny_config_dict(), "tta")
    space = get_space(config.space.name, **config.space.settings)
    genome = space.sample(random.Random(1))
    budget = Budget(epochs=1, width=4, max_steps=3, batch_size=16, augment="flip", tta="flip")
    with StudyStorage.create(tmp_path / "t.db", name="t", config=config.to_dict(), identity={},
                             identity_hash="x", provenance={}) as storage, \
            ThreadPoolExecutor(1) as pool:
        results = train_final(storage, space, [(None, genome)], budget, 1,
                              config.data.task_dict(), pool)
        runs = storage.final_runs()
    assert results[0].test_accs and runs[0].status == "ok"
    single = runs[0].metrics["test_acc_single_view"]
    # the stored weights give that figure on the test set with one view, and the stored
    # test accuracy with the flip average
    splits = load_splits(config.data.task_dict())
    model = space.build(genome, splits.input_shape, splits.num_classes, 4)
    model.load_state_dict(torch.load(runs[0].checkpoint))
    plain, _ = evaluate_accuracy(model, splits.test_x, splits.test_y, splits.mean, splits.std)
    averaged, _ = evaluate_accuracy(model, splits.test_x, splits.test_y, splits.mean,
                                    splits.std, tta="flip")
    assert single == pytest.approx(plain, abs=1e-9)
    assert runs[0].test_acc == pytest.approx(averaged, abs=1e-9)
    assert results[0].single_view_accs == [single]
    assert f"single view {single:.4f}" in results[0].tta_note()
    assert runs[0].budget["tta"] == "flip"
