"""Kinds of work (``execution.kinds``), the evaluation result (``execution.results``) and the
runner's policy objects (``execution.policies``), tested directly."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from nasforge.errors import ConfigError
from nasforge.evaluation.budget import Budget
from nasforge.execution.kinds import KINDS, TaskKind, TaskRequest, get_kind
from nasforge.execution.policies import (
    LEAVE,
    RECORD,
    RETRY,
    RetryPolicy,
    ReusePolicy,
    WeightRetention,
)
from nasforge.execution.results import EvalResult
from nasforge.execution.tasks import EvalTask, evaluate_task
from nasforge.spaces import get_space
from nasforge.spaces.base import genome_key
from nasforge.storage import StudyStorage
from nasforge.storage.sqlite import TrialRecord

BUILT_IN = ("train", "continue", "supernet", "data_parallel", "tabular", "fidelity", "probe")


def _request(tmp_path: Path, **changes) -> TaskRequest:
    space = get_space("global", max_nodes=6, head="gap")
    import random

    genome = space.sample(random.Random(0))
    budget = Budget(epochs=2, width=4, batch_size=32, max_steps=3)
    fields = dict(
        number=7, space=space, genome=genome, genome_key=genome_key(space, genome),
        budget=budget, data={"dataset": "synthetic", "val_fraction": 0.2, "split_seed": 0},
        study_seed=3, parent=5, work={"arch_lr": 3e-4},
        checkpoint_path=str(tmp_path / "w" / "trial_7.pt"),
        state_path=str(tmp_path / "w" / "trial_7.state.pt"),
        parent_state_path=str(tmp_path / "w" / "trial_5.state.pt"),
        live_dir=tmp_path / "live", watch=True, nproc=2,
        settings={"proxies": ["synflow"], "proxy_batch": 16, "proxy_budget": budget.to_dict()},
    )
    fields.update(changes)
    return TaskRequest(**fields)


# ------------------------------------------------------------------------ the registry
@pytest.mark.parametrize("name", BUILT_IN)
def test_every_built_in_kind_is_found_by_name(name: str) -> None:
    kind = get_kind(name)
    assert isinstance(kind, TaskKind) and kind.name == name
    assert callable(kind.make_task) and callable(kind.evaluate)
    assert name in KINDS.names()


def test_an_unknown_kind_is_one_line_listing_the_known_ones() -> None:
    with pytest.raises(ConfigError) as info:
        get_kind("trian")
    text = str(info.value)
    assert "\n" not in text and "'trian'" in text
    for name in BUILT_IN:
        assert name in text


def test_only_the_table_lookup_runs_in_the_driver() -> None:
    assert [n for n in KINDS.names() if get_kind(n).inline] == ["tabular"]
    assert sorted(n for n in KINDS.names() if get_kind(n).parallel) == ["continue", "supernet", "train"]


@pytest.mark.parametrize("name", sorted(KINDS.names()))
def test_each_kinds_task_pickles_and_names_its_kind(name: str, tmp_path: Path) -> None:
    kind = get_kind(name)
    task = kind.make_task(_request(tmp_path))
    assert isinstance(task, EvalTask) and task.kind == name
    back = pickle.loads(pickle.dumps(task))
    assert back == task
    assert pickle.loads(pickle.dumps(kind.evaluate)) is kind.evaluate  # a module-level function


def test_kinds_make_the_task_their_work_needs(tmp_path: Path) -> None:
    request = _request(tmp_path)
    train = get_kind("train").make_task(request)
    assert train.checkpoint_path == request.checkpoint_path
    assert train.extra["save_state"] == request.state_path and "resume_from" not in train.extra
    assert train.progress_path and Path(train.progress_path).read_text() == ""  # live channel
    cont = get_kind("continue").make_task(request)
    assert cont.extra["resume_from"] == request.parent_state_path
    assert cont.model_seed == train.model_seed  # same network, same seed part of the budget
    par = get_kind("data_parallel").make_task(request)
    assert (par.extra["nproc"], par.extra["rank_kind"]) == (2, "continue")
    sup = get_kind("supernet").make_task(request)
    assert sup.extra == {"supernet": {"arch_lr": 3e-4}} and sup.checkpoint_path is None
    fid = get_kind("fidelity").make_task(request)
    assert fid.checkpoint_path is None and fid.extra["proxies"] == ["synflow"]
    other_seed = request.budget.replace(seed=1)
    fid1 = get_kind("fidelity").make_task(_request(tmp_path, budget=other_seed))
    assert fid1.extra["proxies"] == []  # proxies on the seed-0 reference only
    assert fid1.extra["init_seed"] != fid.extra["init_seed"]
    tab = get_kind("tabular").make_task(request)
    assert tab.progress_path is None and tab.checkpoint_path is None
    probe = get_kind("probe").make_task(request)
    assert probe.final and probe.model_seed == 0


def test_an_unknown_kind_in_a_worker_is_a_failed_result(tmp_path: Path) -> None:
    import dataclasses

    task = dataclasses.replace(get_kind("train").make_task(_request(tmp_path)), kind="nope")
    result = evaluate_task(task)
    assert isinstance(result, EvalResult) and result.status == "failed"
    assert "unknown task kind 'nope'" in result.error and "train" in result.error
    assert result.trial_number == 7


def test_a_supernet_error_is_a_failed_result_with_its_reason(tmp_path: Path) -> None:
    task = get_kind("supernet").make_task(_request(tmp_path, work={"no_such": 1}))
    result = evaluate_task(task)
    assert result.status == "failed" and "no_such" in result.error
    assert result.worker and result.started_at <= result.finished_at


# ------------------------------------------------------------------------ the result
def test_eval_result_pickles_and_reads_by_field_name() -> None:
    result = EvalResult(status="ok", val_acc=0.5, params=10, curve=[{"epoch": 1}],
                        metrics={"device": "cpu"}, retry=False)
    back = pickle.loads(pickle.dumps(result))
    assert back == result and back.ok
    assert back["val_acc"] == 0.5 and back.get("checkpoint") is None
    assert back.get("checkpoint", "none") == "none" and back.get("no_field", 1) == 1
    with pytest.raises(KeyError):
        back["no_field"]  # noqa: B018
    failed = EvalResult.failure("timeout after 3s", retry=True, trial_number=4)
    assert (failed.status, failed.retry, failed.trial_number) == ("failed", True, 4)
    assert failed.finished_at is not None and failed.wall_seconds == 0.0


# ------------------------------------------------------------------------ the policies
def _trial(status: str, error: str | None = None, kind: str = "train") -> TrialRecord:
    return TrialRecord(number=1, genome_key="g", budget_key="b", genome={}, budget={},
                       status=status, error=error, kind=kind)


@pytest.mark.parametrize("status,error,reused", [
    ("ok", None, True),
    ("pruned", None, True),
    ("failed", "ValueError: the network cannot be built", True),
    ("failed", "loss is NaN at epoch 1", True),
    ("failed", "timeout after 30s", False),
    ("failed", "out-of-memory: CUDA out of memory", False),
    ("failed", "evaluation process killed by SIGKILL", False),
    ("failed", "evaluation lost 2 times: BrokenProcessPool: gone", False),
    ("running", None, False),
])
def test_reuse_policy_reuses_only_results_that_would_come_out_the_same(status, error,
                                                                        reused) -> None:
    assert ReusePolicy().reusable(_trial(status, error)) is reused


def test_reuse_policy_never_reuses_a_supernet_search_as_training() -> None:
    assert not ReusePolicy().reusable(_trial("ok", kind="supernet"))


def test_reuse_policy_parks_a_proposal_behind_its_running_twin() -> None:
    class Flight:
        def __init__(self, key: str, budget: int) -> None:
            self.genome_key, self.budget = key, budget

    flights = [Flight("a", 1), Flight("b", 1), Flight("b", 2)]
    assert ReusePolicy().running(flights, "b", 2) is flights[2]
    assert ReusePolicy().running(flights, "c", 1) is None


def test_reuse_policy_reads_the_study(tmp_path: Path) -> None:
    store = StudyStorage.create(tmp_path / "s.db", name="t", config={}, identity={},
                                identity_hash="x", provenance={})
    with store:
        n = store.add_trial(genome_key="g", genome={}, budget={"epochs": 1}, strategy_state=None)
        store.finish_trial(n, status="failed", val_acc=None, params=None, flops=None,
                           metrics={}, curve=[], error="timeout after 1s", stderr=None,
                           worker="w", attempts=1, started_at=0.0, finished_at=1.0,
                           checkpoint=None, strategy_state=None)
        assert ReusePolicy().stored(store, "g", {"epochs": 1}) is None  # transient
        m = store.add_trial(genome_key="g", genome={}, budget={"epochs": 1}, strategy_state=None)
        store.finish_trial(m, status="ok", val_acc=0.5, params=1, flops=1, metrics={}, curve=[],
                           error=None, stderr=None, worker="w", attempts=1, started_at=0.0,
                           finished_at=1.0, checkpoint=None, strategy_state=None)
        assert ReusePolicy().stored(store, "g", {"epochs": 1}).number == m


@pytest.mark.parametrize("attempt,lost,killed,stopping,decision", [
    (1, False, False, False, RECORD),  # ended by itself (ok or failed): stored
    (1, False, False, True, RECORD),
    (1, True, False, False, RETRY),    # its worker died: once more
    (1, False, True, False, RETRY),    # killed from outside: once more
    (2, True, False, False, RECORD),   # lost again: the failure is stored
    (2, False, True, False, RECORD),
    (1, True, False, True, LEAVE),     # cut while stopping: --resume runs it
    (5, False, True, True, LEAVE),
])
def test_retry_policy(attempt, lost, killed, stopping, decision) -> None:
    assert RetryPolicy(max_retries=1).decide(attempt, lost=lost, killed=killed,
                                             stopping=stopping) == decision


def test_retry_policy_without_retries_records_at_once() -> None:
    assert RetryPolicy(0).decide(1, lost=True, killed=False, stopping=False) == RECORD


def test_weight_retention_keeps_the_best_weights_only(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    store = StudyStorage.create(db, name="t", config={}, identity={}, identity_hash="x",
                                provenance={})
    from nasforge.storage.sqlite import artifacts_dir

    weights = WeightRetention(1, artifacts_dir(db.resolve()) / "weights")
    assert WeightRetention(0, tmp_path).checkpoint_path(3) is None
    with store:
        paths = {}
        for acc in (0.2, 0.9, 0.5):
            n = store.add_trial(genome_key=f"g{acc}", genome={}, budget={}, strategy_state=None)
            path = Path(weights.checkpoint_path(n))
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"w")
            paths[n] = path
            store.finish_trial(n, status="ok", val_acc=acc, params=1, flops=1, metrics={},
                               curve=[], error=None, stderr=None, worker="w", attempts=1,
                               started_at=0.0, finished_at=1.0, checkpoint=str(path),
                               strategy_state=None)
        best = store.best(1)[0].number
        dropped = weights.prune(store)
        assert sorted(dropped) == sorted(n for n in paths if n != best)
        assert [n for n, p in paths.items() if p.exists()] == [best]
        assert [n for n, _ in store.checkpoints()] == [best]


def test_a_continuation_needs_an_ok_parent_of_the_same_network_with_its_state(tmp_path) -> None:
    from types import SimpleNamespace

    store = StudyStorage.create(tmp_path / "c.db", name="t", config={}, identity={},
                                identity_hash="x", provenance={})
    weights = WeightRetention(0, tmp_path / "weights")
    one = Budget(epochs=1, width=4)
    with store:
        n = store.add_trial(genome_key="g", genome={}, budget=one.to_dict(), strategy_state=None)
        store.finish_trial(n, status="ok", val_acc=0.5, params=1, flops=1, metrics={}, curve=[],
                           error=None, stderr=None, worker="w", attempts=1, started_at=0.0,
                           finished_at=1.0, checkpoint=None, strategy_state=None)

        def problem(parent: int, budget: Budget, gkey: str = "g") -> str | None:
            candidate = SimpleNamespace(parent=parent, budget=budget)
            return weights.continuation_problem(store, candidate, gkey)

        assert problem(99, one.replace(epochs=3)) == "no such trial"
        assert "same network" in problem(n, one.replace(epochs=3), gkey="other")
        assert "already trained 1" in problem(n, one)
        assert "more than epochs" in problem(n, one.replace(epochs=3, width=8))
        assert "state was not kept" in problem(n, one.replace(epochs=3))
        weights.state_path(n).parent.mkdir(parents=True)
        weights.state_path(n).write_bytes(b"s")
        assert problem(n, one.replace(epochs=3)) is None
