"""`nasforge.load_study`: one read-only handle for a stored study (config, space, trials,
best, Pareto front, final runs) that agrees with what `nasforge best` prints and never
writes the file."""

from __future__ import annotations

import hashlib
import json
import random
import re
from pathlib import Path

import pytest

import nasforge
from conftest import tiny_config_dict
from nasforge.cli import main
from nasforge.config import config_from_dict
from nasforge.errors import ConfigError, StorageError
from nasforge.execution.runner import genome_key
from nasforge.spaces import get_space
from nasforge.storage import StudyStorage

# (val_acc, params) of five networks; network 0 also has a smaller-budget trial with a higher
# accuracy, which must not be what ranks it (the highest budget it reached does)
POINTS = [(0.80, 5000), (0.85, 9000), (0.70, 3000), (0.75, 9500), (0.60, 2000)]


def _make_study(path: Path) -> Path:
    raw = tiny_config_dict(
        objectives=[{"name": "val_acc", "direction": "max"},
                    {"name": "params", "direction": "min"}],
        constraints=["params <= 9000"])
    config = config_from_dict(raw, "t")
    space = get_space(config.space.name, **config.space.settings)
    rng = random.Random(3)
    genomes: list = []
    while len(genomes) < len(POINTS):  # distinct networks
        g = space.sample(rng)
        if genome_key(space, g) not in {genome_key(space, h) for h in genomes}:
            genomes.append(g)
    big = config.budget.to_dict()
    small = config.budget.replace(data_fraction=0.5).to_dict()
    with StudyStorage.create(path, name="handle", config=config.to_dict(), identity={},
                             identity_hash="h", provenance={}) as storage:
        def add(genome, budget, status, acc, params):
            n = storage.add_trial(genome_key=genome_key(space, genome),
                                  genome=space.genome_to_dict(genome), budget=budget,
                                  strategy_state=None)
            storage.finish_trial(n, status=status, val_acc=acc, params=params, flops=params and params * 10,
                                 metrics={}, curve=[], error=None if status == "ok" else "boom",
                                 stderr=None, worker="w", attempts=1, started_at=1.0,
                                 finished_at=2.0, checkpoint=None, strategy_state=None)
            return n

        add(genomes[0], small, "ok", 0.99, POINTS[0][1])
        for genome, (acc, params) in zip(genomes, POINTS):
            add(genome, big, "ok", acc, params)
        add(genomes[4], big, "failed", None, None)
        storage.add_final_run(trial_number=3, genome_key=genome_key(space, genomes[1]),
                              genome=space.genome_to_dict(genomes[1]), budget=big, seed=0,
                              status="ok", val_acc=None, test_acc=0.84, params=9000, metrics={},
                              checkpoint=None)
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_handle_reads_config_space_trials_and_finals(tmp_path) -> None:
    db = _make_study(tmp_path / "s.db")
    before = _digest(db)
    study = nasforge.load_study(db)
    assert isinstance(study, nasforge.StoredStudy) and study.name == "handle"
    stored = json.loads(json.dumps(study.raw_config))
    assert study.config.to_dict() == config_from_dict(stored, "x").to_dict()
    expected = get_space(stored["space"]["name"], **stored["space"]["settings"])
    assert study.space.name == expected.name and study.space.settings() == expected.settings()
    assert study.space is study.space  # built once
    assert [o.name for o in study.objectives] == ["val_acc", "params"]
    trials = study.trials()
    assert [t.number for t in trials] == [1, 2, 3, 4, 5, 6, 7]
    assert [t.number for t in study.trials("failed")] == [7]
    assert study.trial(3).val_acc == pytest.approx(0.85)
    assert [(f.trial_number, f.test_acc) for f in study.final_runs()] == [(3, 0.84)]
    assert study.genome(3) == study.space.genome_from_dict(trials[2].genome)
    assert study.describe(3) == study.space.describe(study.genome(3), study.width)
    with pytest.raises(StorageError):
        study.trial(99)
    assert _digest(db) == before  # reading wrote nothing
    with pytest.raises(StorageError, match="not found"):
        nasforge.load_study(tmp_path / "missing.db")


def test_best_ranks_each_network_at_its_highest_budget_and_by_objective(tmp_path) -> None:
    db = _make_study(tmp_path / "s.db")
    study = nasforge.load_study(db)
    # trial 1 (0.99 at half the data) is not network 0's representative: trial 2 is
    assert [t.number for t in study.best(10)] == [3, 2, 5, 4, 6]
    assert [t.number for t in study.best(2)] == [3, 2]
    assert [t.number for t in study.best(3, by="params")] == [6, 4, 2]
    with pytest.raises(ConfigError, match="not an objective"):
        study.best(3, by="flops")


def test_best_and_the_front_match_what_the_cli_prints(tmp_path, capsys) -> None:
    db = _make_study(tmp_path / "s.db")
    before = _digest(db)
    study = nasforge.load_study(db)
    assert main(["best", str(db), "--k", "3"]) == 0
    printed = [int(n) for n in re.findall(r"^trial (\d+):", capsys.readouterr().out, re.M)]
    assert printed == [t.number for t in study.best(3)]
    assert main(["best", str(db), "--pareto"]) == 0
    out = capsys.readouterr().out
    printed = [int(n) for n in re.findall(r"^trial (\d+):", out, re.M)]
    front = study.pareto_front()
    assert printed == [t.number for t in front]
    # independently: (val_acc max, params min) among trials meeting params <= 9000 at the
    # highest budget: networks 0 (0.80, 5000), 1 (0.85, 9000), 2 (0.70, 3000), 4 (0.60, 2000)
    # are mutually non-dominated; network 3 breaks the constraint
    assert [t.number for t in front] == [3, 2, 4, 6]
    assert main(["best", str(db), "--json"]) == 0
    as_json = json.loads(capsys.readouterr().out)
    assert [t["number"] for t in as_json] == [t.number for t in study.best(5)]
    assert _digest(db) == before


def test_the_api_front_is_the_handles(tmp_path) -> None:
    from nasforge.api import pareto_trials

    db = _make_study(tmp_path / "s.db")
    assert [t.number for t in pareto_trials(db)] == [
        t.number for t in nasforge.load_study(db).pareto_front()]
