"""What a study keeps of its data and inputs: a data fingerprint (a resume on other data is
refused), the label mapping (in the study and in every export), `--init-from` counts, and the
export's seed rule (never chosen on the test set)."""

from __future__ import annotations

import io
import json
import random
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from conftest import tiny_config_dict
from nasforge.api import Search
from nasforge.config import config_from_dict
from nasforge.errors import StorageError
from nasforge.evaluation.budget import Budget
from nasforge.evaluation.trainer import set_determinism, train
from nasforge.execution.runner import Reporter, genome_key
from nasforge.execution.tasks import load_splits
from nasforge.report.export import export_model
from nasforge.storage import StudyStorage

WIDTH = 4


def _npz(path: Path, labels: list[int], names: list[str] | None = None, per_class: int = 12,
         seed: int = 0) -> Path:
    """A tiny 1x8x8 image file whose classes are the label values ``labels``."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.array(labels), per_class)
    x = rng.integers(0, 256, size=(len(y), 8, 8), dtype=np.uint8)
    arrays: dict[str, Any] = {"x_train": x, "y_train": y, "x_test": x[::3], "y_test": y[::3]}
    if names is not None:
        arrays["class_names"] = np.array(names)
    np.savez(path, **arrays)
    return path


def _config(npz: Path) -> Any:
    return config_from_dict(tiny_config_dict(
        data={"dataset": str(npz), "val_fraction": 0.25},
        run={"max_evals": 1, "workers": 1, "keep_best": 1}), "data-test")


def test_resume_on_other_data_is_refused_unless_forced(tmp_path: Path) -> None:
    npz = _npz(tmp_path / "d.npz", [0, 1, 2, 3])
    db = tmp_path / "s.db"
    Search(_config(npz), db).close()
    with StudyStorage.open(db) as store:
        stored = store.meta_value("data_fingerprint")
    assert stored["num_classes"] == 4 and stored["input_shape"] == [1, 8, 8]
    assert len(stored["sha256"]) == 64
    _npz(npz, list(range(10)), seed=1)  # the file replaced by a 10-class one
    from nasforge.execution import tasks

    tasks._cached_splits.cache_clear()  # noqa: SLF001 - this process read the old file
    before = db.read_bytes()
    with pytest.raises(StorageError) as err:
        Search(_config(npz), db, resume=True)
    message = str(err.value)
    assert "\n" not in message and "--force" in message
    assert "4 classes" in message and "10 classes" in message  # names both
    assert db.read_bytes() == before  # left untouched
    Search(_config(npz), db, resume=True, force=True).close()
    with StudyStorage.open(db) as store:
        assert store.meta_value("data_fingerprint")["num_classes"] == 10
    # the same data again resumes without a word
    Search(_config(npz), db, resume=True).close()


def _trained_study(tmp_path: Path, npz: Path) -> tuple[Path, Any]:
    """A study made by Search on ``npz`` with one ok trial holding real (tiny) weights."""
    config = _config(npz)
    db = tmp_path / "s.db"
    search = Search(config, db)
    splits = load_splits(config.data.task_dict())
    space = search.space
    genome = next(g for g in (space.sample(random.Random(i)) for i in range(100))
                  if not space.validate_for(g, splits.input_shape, splits.num_classes, WIDTH))
    set_determinism(0)
    model = space.build(genome, splits.input_shape, splits.num_classes, WIDTH)
    assert train(model, splits, Budget(epochs=1, width=WIDTH, batch_size=16,
                                       max_steps=2)).status == "ok"
    ckpt = tmp_path / "s_files" / "weights" / "trial_1.pt"
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), ckpt)
    store = search.storage
    number = store.add_trial(genome_key=genome_key(space, genome),
                             genome=space.genome_to_dict(genome),
                             budget=config.budget.to_dict(), strategy_state=None)
    now = time.time()
    store.finish_trial(number, status="ok", val_acc=0.5, params=1, flops=1, metrics={},
                       curve=[], error=None, stderr=None, worker="h:1", attempts=1,
                       started_at=now - 1, finished_at=now, checkpoint=str(ckpt),
                       strategy_state=None)
    search.close()
    return db, (space, genome, ckpt)


def test_label_mapping_is_stored_and_exported(tmp_path: Path) -> None:
    npz = _npz(tmp_path / "sparse.npz", [3, 7, 11], ["three", "seven", "eleven"])
    db, _ = _trained_study(tmp_path, npz)
    with StudyStorage.open(db) as store:
        assert store.meta_value("label_mapping") == {
            "labels": [3, 7, 11], "class_names": ["three", "seven", "eleven"]}
    export_model(db, tmp_path / "net.pt", "state_dict")
    meta = json.loads((tmp_path / "net.pt.json").read_text())
    assert meta["labels"] == {"labels": [3, 7, 11], "class_names": ["three", "seven", "eleven"]}


def test_export_takes_the_lowest_seed_not_the_best_test_accuracy(tmp_path: Path) -> None:
    npz = _npz(tmp_path / "d.npz", [0, 1, 2])
    db, (space, genome, ckpt) = _trained_study(tmp_path, npz)
    budget = Budget(epochs=2, width=WIDTH).to_dict()
    with StudyStorage.open(db, write=True) as store:
        for seed, acc in ((0, 0.5), (1, 0.9), (2, 0.7)):
            copy = ckpt.with_name(f"final_s{seed}.pt")
            shutil.copy(ckpt, copy)
            store.add_final_run(trial_number=1, genome_key=genome_key(space, genome),
                                genome=space.genome_to_dict(genome), budget=budget, seed=seed,
                                status="ok", val_acc=None, test_acc=acc, params=1, metrics={},
                                checkpoint=str(copy))
    result = export_model(db, tmp_path / "net.pt", "state_dict")
    metrics = result.meta["metrics"]
    assert result.meta["source"]["weights"] == "final"
    assert metrics["final_seed"] == 0 and metrics["test_acc"] == 0.5  # not seed 1's 0.9
    assert metrics["test_acc_mean"] == pytest.approx(0.7)
    assert metrics["test_acc_std"] == pytest.approx(0.2)
    assert metrics["test_acc_seeds"] == 3


def test_init_from_says_how_many_genomes_were_read_used_and_skipped(tmp_path: Path) -> None:
    npz = _npz(tmp_path / "d.npz", [0, 1, 2, 3])
    config = _config(npz)
    from nasforge.spaces import get_space

    space = get_space(config.space.name, **config.space.settings)
    good = [space.genome_to_dict(space.sample(random.Random(i))) for i in range(3)]
    foreign = json.loads(json.dumps(good[0]))
    for node in foreign["nodes"]:
        node["op"] = "conv7N"  # an operation this space lacks
    lines = [good[0], good[1], good[0], foreign, {"not": "a genome"}]
    genome_file = tmp_path / "g.json"
    genome_file.write_text("\n".join(json.dumps(item) for item in lines) + "\n")
    stream = io.StringIO()
    search = Search(config, tmp_path / "s.db", init_from=genome_file,
                    reporter=Reporter(stream=stream))
    search.close()
    text = stream.getvalue()
    assert "read 5 genome(s), using 2, skipped 3" in text, text
    assert "1 the same network as an earlier one" in text
    assert "conv7N" in text and "unreadable" in text
