"""``Budget.validate_every``: validation after chosen epochs only, without changing training;
a final run (validated on the test split) does not evaluate the test split twice."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from nasforge.data import DataSplits, split_validation, synthetic_dataset
from nasforge.errors import ConfigError
from nasforge.evaluation import Budget, baseline_cnn, set_determinism, train
from nasforge.evaluation.trainer import EpochRecord

NUM_CLASSES = 4


@pytest.fixture(scope="module")
def splits() -> DataSplits:
    return split_validation(synthetic_dataset(n_train=400, n_test=120, num_classes=NUM_CLASSES),
                            val_fraction=0.25, seed=0)


def _fit(splits: DataSplits, budget: Budget, **kw):
    set_determinism(budget.seed)
    net = baseline_cnn(splits.input_shape, NUM_CLASSES, 8)
    seen: list[EpochRecord] = []
    result = train(net, splits, budget, on_epoch=seen.append, **kw)
    return net, result, seen


def test_last_only_gives_the_same_network_and_final_accuracy(splits: DataSplits) -> None:
    budget = Budget(epochs=3, batch_size=32, max_steps=5, augment="flip+erase", seed=2,
                    schedule="cosine")
    every_net, every, every_seen = _fit(splits, budget)
    last_net, last, last_seen = _fit(splits, budget.replace(validate_every="last"))
    assert [r.epoch for r in every.curve] == [1, 2, 3]
    assert [r.epoch for r in last.curve] == [3]
    assert last.val_acc == every.val_acc and last.val_loss == every.val_loss
    for a, b in zip(every_net.state_dict().values(), last_net.state_dict().values()):
        assert torch.equal(a, b)
    # progress still sees every epoch; the skipped ones carry no validation figures
    assert [r.epoch for r in last_seen] == [1, 2, 3]
    assert [r.val_acc is None for r in last_seen] == [True, True, False]
    assert [r.train_loss for r in last_seen] == [r.train_loss for r in every_seen]


def test_every_k_validates_at_multiples_and_the_last(splits: DataSplits) -> None:
    _, result, _ = _fit(splits, Budget(epochs=5, batch_size=32, max_steps=2, validate_every=2))
    assert [r.epoch for r in result.curve] == [2, 4, 5]
    assert result.best_val_acc == max(r.val_acc for r in result.curve)


def test_a_final_run_reads_the_test_accuracy_from_its_last_validation(
        splits: DataSplits, monkeypatch: pytest.MonkeyPatch) -> None:
    final = dataclasses.replace(splits, val_x=splits.test_x, val_y=splits.test_y)
    from nasforge.evaluation import groups

    calls: list[int] = []
    real = groups.SingleProcess.evaluate

    def counting(self, model, x, y, data, budget):  # noqa: ANN001
        calls.append(int(x.shape[0]))
        return real(self, model, x, y, data, budget)

    monkeypatch.setattr(groups.SingleProcess, "evaluate", counting)
    budget = Budget(epochs=2, batch_size=32, max_steps=3, validate_every="last")
    _, result, _ = _fit(final, budget, evaluate_test=True)
    assert calls == [int(splits.test_y.shape[0])]  # one pass: after the last epoch
    assert result.test_acc == result.val_acc
    calls.clear()
    _, separate, _ = _fit(splits, budget, evaluate_test=True)  # a validation split of its own
    assert calls == [int(splits.val_y.shape[0]), int(splits.test_y.shape[0])]
    assert separate.test_acc is not None


@pytest.mark.parametrize("bad", [0, -1, "first", True, 1.5])
def test_bad_values_are_refused(bad: object) -> None:
    with pytest.raises(ConfigError, match="validate_every"):
        Budget(validate_every=bad)


def test_patience_needs_every_epoch() -> None:
    with pytest.raises(ConfigError, match="patience"):
        Budget(epochs=4, patience=2, validate_every="last")
    assert Budget(epochs=4, patience=2, validate_every=1).patience == 2


def test_unset_is_left_out_of_the_stored_budget() -> None:
    assert "validate_every" not in Budget().to_dict()
    assert Budget.from_dict(Budget(validate_every="last").to_dict()).validate_every == "last"


def test_the_cadence_keeps_the_budget_key_and_so_the_model_seed() -> None:
    from nasforge.storage.schema import budget_key

    base = Budget(epochs=3)
    assert budget_key(base.replace(validate_every="last").to_dict()) == budget_key(base.to_dict())
    assert budget_key(base.replace(epochs=4).to_dict()) != budget_key(base.to_dict())


def test_the_final_estimate_counts_measured_validation_passes() -> None:
    from nasforge.execution.final_plan import run_seconds

    probe = {"step_seconds": 0.05, "steps_per_epoch": 100, "eval_images": 1000,
             "eval_seconds": 3.0, "setup_seconds": 2.0}
    assert run_seconds(probe, 10, 128) == pytest.approx(10 * 100 * 0.05 + 10 * 3.0 + 2.0)
    assert run_seconds(probe, 10, 128, validations=1) == pytest.approx(50 + 3.0 + 2.0)


def test_the_final_step_lasts_until_its_last_run_ends() -> None:
    from nasforge.execution.final_plan import makespan

    assert makespan([100.0, 100.0, 100.0], 2) == 200.0  # 2 at once, then the third alone
    assert makespan([100.0, 100.0], 2) == 100.0
    assert makespan([300.0, 100.0, 100.0, 100.0], 2) == 300.0
    assert makespan([50.0, 50.0], 1) == 100.0
    assert makespan([], 2) == 0.0


def test_final_workers_is_read_and_checked(tmp_path) -> None:  # noqa: ANN001
    from nasforge.config import load_config

    path = tmp_path / "c.yaml"
    path.write_text("name: c\nfinal: {seeds: 3, workers: 1}\n")
    assert load_config(str(path)).final.workers == 1
    path.write_text("name: c\nfinal: {seeds: 3, workers: 0}\n")
    with pytest.raises(ConfigError, match="final.workers"):
        load_config(str(path))
