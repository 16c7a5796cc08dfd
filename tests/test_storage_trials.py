"""The one trial model (``Trial``, status a ``TrialStatus`` str enum) and final runs as trials of
kind ``final``: stored ``running`` when submitted, so a run cut by a kill shows as running and
is trained again, in its own row, by ``--resume``."""

from __future__ import annotations

import json
import pickle
import random
import sqlite3
from concurrent.futures import Executor, Future

import pytest

from nasforge.execution.results import EvalResult

from conftest import tiny_config_dict
from nasforge.api import train_final
from nasforge.cli import main
from nasforge.config import config_from_dict
from nasforge.evaluation.budget import Budget
from nasforge.errors import StorageError
from nasforge.storage import FinalRunRecord, StudyStorage, Trial, TrialRecord, TrialStatus
from nasforge.spaces import get_space
from nasforge.storage.sqlite import STATUSES


def _create(path):
    return StudyStorage.create(path, name="t", config={}, identity={}, identity_hash="h",
                               provenance={})


def test_trial_status_is_a_str_enum_of_the_stored_strings(tmp_path) -> None:
    assert TrialRecord is Trial
    assert [s.value for s in TrialStatus] == ["running", "ok", "failed", "pruned", "interrupted"]
    assert set(STATUSES) < {s.value for s in TrialStatus}
    with _create(tmp_path / "s.db") as store:
        n = store.add_trial(genome_key="g", genome={"x": 1}, budget={"epochs": 2},
                            strategy_state=None)
        store.finish_trial(n, status=TrialStatus.PRUNED, val_acc=0.25, params=7, flops=9,
                           metrics={"latency_ms": 1.5},
                           curve=[{"epoch": 1, "val_acc": 0.2}, {"epoch": 2, "val_acc": 0.25}],
                           error=None, stderr=None, worker="w", attempts=1, started_at=10.0,
                           finished_at=12.5, checkpoint=None, strategy_state=None)
        with pytest.raises(StorageError, match="unknown trial status 'done'"):
            store.finish_trial(n, status="done", val_acc=None, params=None, flops=None,
                               metrics={}, curve=[], error=None, stderr=None, worker=None,
                               attempts=1, started_at=None, finished_at=1.0, checkpoint=None,
                               strategy_state=None)
        trial = store.trial(n)
        assert store.trials(TrialStatus.PRUNED) == store.trials("pruned") == [trial]
        assert store.count(TrialStatus.PRUNED) == 1
    with sqlite3.connect(tmp_path / "s.db") as conn:  # the file holds the plain string
        assert conn.execute("SELECT status FROM trials").fetchone()[0] == "pruned"
    assert type(trial.status) is TrialStatus and trial.status == "pruned" and trial.finished
    assert f"{trial.status:8}|" == "pruned  |"  # tables print the value, not the enum name
    assert trial.intermediate_values == {1: 0.2, 2: 0.25}
    assert trial.duration == 2.5
    assert trial.objective_values == {"val_acc": 0.25, "params": 7.0, "flops": 9.0,
                                      "latency_ms": 1.5}
    assert json.loads(json.dumps(trial.to_dict()))["status"] == "pruned"
    assert type(trial.to_dict()["status"]) is str
    assert pickle.loads(pickle.dumps(trial)) == trial  # crosses process boundaries
    assert Trial(1, "g", "b", {}, {}, "ok").status is TrialStatus.OK
    with pytest.raises(StorageError, match="known: running, ok, failed, pruned, interrupted"):
        Trial(1, "g", "b", {}, {}, "finished")


def test_a_final_run_is_a_trial_of_kind_final_finished_in_its_own_row(tmp_path) -> None:
    path = tmp_path / "f.db"
    args = dict(trial_number=3, genome_key="g", genome={"x": 1}, budget={"epochs": 2},
                seed=0)
    with _create(path) as store:
        first = store.start_final_run(**args)
        other = store.start_final_run(**{**args, "seed": 1})
    # the driver was killed: nothing finished the rows; a reader sees them running
    with StudyStorage.open(path) as store:
        runs = store.final_runs()
        assert [(r.id, r.status) for r in runs] == [(first, "running"), (other, "running")]
        assert store.final_runs(TrialStatus.RUNNING) == runs
        trial = runs[0].as_trial()
    assert (trial.kind, trial.parent, trial.number, trial.status) == ("final", 3, first, "running")
    assert not trial.finished and trial.finished_at is None
    assert runs[0].kind == "final" and runs[0].parent == 3
    # the next run of the same genome, budget and seed takes the cut row over and finishes it
    with StudyStorage.open(path, write=True) as store:
        assert store.start_final_run(**args) == first
        assert store.start_final_run(**{**args, "budget": {"epochs": 3}}) not in (first, other)
        done = store.add_final_run(**args, status="ok", val_acc=None, test_acc=0.5, params=10,
                                   metrics={"curve": [{"epoch": 1, "val_acc": 0.4}],
                                            "error": None, "flops": 20},
                                   checkpoint="w.pt")
        assert done == first
        cut = store.add_final_run(**{**args, "seed": 1}, status=TrialStatus.INTERRUPTED,
                                  val_acc=None, test_acc=None, params=None,
                                  metrics={"error": "interrupted (Ctrl-C)"}, checkpoint=None)
        assert cut == other
        # a Ctrl-C'd run keeps its row; training it again adds one (the attempts' history)
        again = store.start_final_run(**{**args, "seed": 1})
        assert again not in (first, other)
        runs = {r.id: r for r in store.final_runs()}
    assert runs[first].status == "ok" and runs[first].test_acc == 0.5
    assert runs[other].status == "interrupted" and runs[again].status == "running"
    trial = runs[first].as_trial()
    assert isinstance(runs[first], FinalRunRecord) and trial.finished
    assert trial.metrics["test_acc"] == 0.5 and trial.metrics["seed"] == 0
    assert trial.curve == [{"epoch": 1, "val_acc": 0.4}] and trial.flops == 20
    assert runs[other].as_trial().error == "interrupted (Ctrl-C)"


class _Executor(Executor):
    """Answers the cost probe with no estimate and each final run with ``outcome``: a result,
    or an exception that ends the driver, as a kill does (nothing stores the run's end)."""

    def __init__(self, outcome: dict | BaseException) -> None:
        self.outcome = outcome
        self.runs: list = []

    def submit(self, fn, /, *args, **kwargs):
        future: Future = Future()
        task = args[0]
        if task.kind == "probe":
            future.set_result(EvalResult.failure("no probe here"))
        elif isinstance(self.outcome, BaseException):
            future.set_exception(self.outcome)
        else:
            self.runs.append(task)
            future.set_result(EvalResult(**self.outcome))
        return future


def test_a_final_run_cut_by_a_kill_shows_running_and_resume_trains_it_again(tmp_path,
                                                                          capsys) -> None:
    """What ``--resume`` and ``train`` do for final runs (``api.train_final``): a run whose
    driver died is in the file as ``running`` (readers show it so) and is trained again
    under its own id; a finished one is not trained again."""
    config = config_from_dict(tiny_config_dict(), "k")
    space = get_space(config.space.name, **config.space.settings)
    genome = space.sample(random.Random(0))
    budget = Budget(epochs=1, width=4, max_steps=2)
    db = tmp_path / "k.db"
    with StudyStorage.create(db, name="k", config=config.to_dict(), identity={},
                             identity_hash="x", provenance={}) as storage:
        with pytest.raises(KeyboardInterrupt):
            train_final(storage, space, [(7, genome)], budget, 1, config.data.task_dict(),
                        _Executor(KeyboardInterrupt()))
    with StudyStorage.open(db) as store:
        (cut,) = store.final_runs()
    trial = cut.as_trial()
    assert (trial.kind, trial.parent, trial.status, trial.finished) == ("final", 7, "running",
                                                                        False)
    assert main(["best", str(db)]) == 1  # no search trial succeeded; the run is listed
    assert "trial 7 seed 0 width 4: running" in capsys.readouterr().out

    done = {"status": "ok", "test_acc": 0.75, "params": 11, "metrics": {}, "curve": [],
            "error": None, "started_at": 1.0, "finished_at": 3.0, "checkpoint": None}
    resumed = _Executor(done)
    with StudyStorage.open(db, write=True) as storage:
        (result,) = train_final(storage, space, [(7, genome)], budget, 1,
                                config.data.task_dict(), resumed)
        assert result.test_accs == [0.75] and len(resumed.runs) == 1
        (run,) = storage.final_runs()  # trained again in the cut row: nothing left running
        assert (run.id, run.status, run.test_acc, run.seed) == (cut.id, "ok", 0.75, 0)
        again = _Executor(done)
        train_final(storage, space, [(7, genome)], budget, 1, config.data.task_dict(), again)
        assert again.runs == [] and len(storage.final_runs()) == 1  # stored: not retrained
