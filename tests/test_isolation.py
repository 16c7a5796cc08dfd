"""Worker isolation: each way an evaluation can end becomes the right trial, and the search goes on.

Fake evaluations (importable module-level callables) run through the real ``IsolatedEvaluate``
and the real ``Runner`` on the synthetic set; a thread pool stands in for the workers (the
engines themselves are covered by test_executors.py).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from conftest import tiny_config_dict
from nasforge.execution.results import EvalResult
from nasforge.api import Search
from nasforge.config import config_from_dict
from nasforge.execution.isolation import IsolatedEvaluate, is_out_of_memory, run_isolated
from nasforge.execution.runner import Runner
from nasforge.execution.tasks import EvalTask, evaluate_task
from nasforge.storage import StudyStorage

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _task(number: int = 1, attempt: int = 1, **data: Any) -> EvalTask:
    return EvalTask(trial_number=number, space_name="global", space_settings={}, genome={},
                    budget={}, data={"dataset": "synthetic", "val_fraction": 0.2,
                                     "split_seed": 0, "normalize": None, **data},
                    model_seed=0, attempt=attempt)


# ----------------------------------------------------------------- fake evaluations
def _ok(task: EvalTask) -> EvalResult:
    return EvalResult(status="ok", val_acc=0.5, params=10, flops=10)


def _raises(task: EvalTask) -> dict[str, Any]:
    raise RuntimeError(f"boom in trial {task.trial_number}")


def _hangs(task: EvalTask) -> dict[str, Any]:
    time.sleep(120)
    return _ok(task)


def _allocates(task: EvalTask) -> dict[str, Any]:
    """Really touches memory, 64 MB at a time, up to 8 GB: stopped by the memory limit."""
    import torch

    held = []
    for _ in range(128):
        held.append(torch.ones(16 * 1024 * 1024))  # 64 MB, every page written
    return _ok(task)


def _nan_loss(task: EvalTask) -> dict[str, Any]:
    """The real trainer on a network whose output is NaN."""
    import torch

    from nasforge.evaluation.budget import Budget
    from nasforge.evaluation.trainer import train
    from nasforge.execution.tasks import load_splits

    class NanNet(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(144, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x.flatten(1)) * float("nan")

    outcome = train(NanNet(), load_splits(task.data), Budget(epochs=1, batch_size=32, max_steps=3))
    return EvalResult(status=outcome.status, error=outcome.reason, val_acc=outcome.val_acc,
                      params=outcome.params)


def _segfaults(task: EvalTask) -> dict[str, Any]:
    os.kill(os.getpid(), signal.SIGSEGV)
    time.sleep(10)
    return _ok(task)


class PidThenSleep:
    """Writes ``<trial>-<attempt>.pid`` into ``folder`` and sleeps until killed from outside."""

    def __init__(self, folder: str, seconds: float = 60.0) -> None:
        self.folder = folder
        self.seconds = seconds

    def __call__(self, task: EvalTask) -> dict[str, Any]:
        path = Path(self.folder) / f"{task.trial_number}-{task.attempt}.pid"
        path.with_suffix(".tmp").write_text(str(os.getpid()))
        path.with_suffix(".tmp").rename(path)
        time.sleep(self.seconds)
        return _ok(task)


class Killer(threading.Thread):
    """Kills (SIGKILL) the evaluation child of each (trial, attempt) in ``targets`` as soon as
    its pid file appears."""

    def __init__(self, folder: Path, targets: set[tuple[int, int]]) -> None:
        super().__init__(daemon=True)
        self.folder = folder
        self.targets = set(targets)
        self.killed: list[tuple[int, int, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set() and self.targets:
            for trial, attempt in list(self.targets):
                path = self.folder / f"{trial}-{attempt}.pid"
                if path.exists():
                    pid = int(path.read_text())
                    os.kill(pid, signal.SIGKILL)
                    self.killed.append((trial, attempt, pid))
                    self.targets.discard((trial, attempt))
            time.sleep(0.02)


# By trial number: what each evaluation of the mixed search does.
MIXED = {2: "raises", 3: "hangs", 4: "allocates", 5: "nan", 6: "segfault", 7: "killed once",
         8: "killed twice"}


class Mixed:
    """Dispatches on the trial number (see ``MIXED``); other trials train for real."""

    def __init__(self, folder: str) -> None:
        self.sleeper = PidThenSleep(folder)

    def __call__(self, task: EvalTask) -> dict[str, Any]:
        kind = MIXED.get(task.trial_number)
        if kind == "raises":
            return _raises(task)
        if kind == "hangs":
            return _hangs(task)
        if kind == "allocates":
            return _allocates(task)
        if kind == "nan":
            return _nan_loss(task)
        if kind == "segfault":
            return _segfaults(task)
        if kind == "killed once" and task.attempt > 1:
            return evaluate_task(task)
        if kind in ("killed once", "killed twice"):
            return self.sleeper(task)
        return evaluate_task(task)


# -------------------------------------------------------------------- the search
@pytest.mark.timeout(60)
def test_every_kind_of_failure_is_one_failed_trial_and_the_search_finishes(tmp_path) -> None:
    folder = tmp_path / "pids"
    folder.mkdir()
    cfg = config_from_dict(tiny_config_dict(
        run={"max_evals": 10, "workers": 4, "eval_timeout": 4, "memory_limit_mb": 400}), "t")
    search = Search(cfg, tmp_path / "m.db")
    killer = Killer(folder, {(7, 1), (8, 1), (8, 2)})
    killer.start()
    try:
        runner = Runner(config=cfg, storage=search.storage, space=search.space,
                        strategy=search.strategy, executor=ThreadPoolExecutor(4),
                        evaluate=IsolatedEvaluate(cfg.run.eval_timeout, cfg.run.memory_limit_mb,
                                                  evaluate=Mixed(str(folder))))
        started = time.time()
        summary = runner.run()
        wall = time.time() - started
    finally:
        killer.stop.set()
        search.close()
    assert summary.finished == 10 and summary.running_left == 0
    assert summary.stop_reason == "max_evals reached"
    assert wall < 40
    with StudyStorage.open(tmp_path / "m.db") as store:
        trials = {t.number: t for t in store.trials()}
    assert set(trials) == set(range(1, 11))

    def check(number: int, status: str, error: str | None, attempts: int) -> None:
        t = trials[number]
        assert (t.status, t.attempts) == (status, attempts), (number, t.status, t.error)
        if error is not None:
            assert error in (t.error or ""), (number, t.error)

    for number in (1, 9, 10):
        check(number, "ok", None, 1)
    check(2, "failed", "RuntimeError: boom in trial 2", 1)
    assert "RuntimeError" in (trials[2].stderr or "")
    check(3, "failed", "timeout after 4s", 1)
    check(4, "failed", "out-of-memory", 1)
    check(5, "failed", "nan loss at epoch 1 step 1", 1)
    check(6, "failed", "killed by SIGSEGV", 1)
    check(7, "ok", None, 2)  # killed once from outside: retried, then ok
    check(8, "failed", "killed by SIGKILL", 2)  # killed twice: failed
    assert sorted((t, a) for t, a, _ in killer.killed) == [(7, 1), (8, 1), (8, 2)]
    # every failed trial names the worker it ran on and the failure's reason
    assert all(t.worker and t.error for t in trials.values() if t.status == "failed")


# ------------------------------------------------------------- one evaluation each
@pytest.mark.timeout(30)
@pytest.mark.parametrize("evaluate, error, retry", [
    (_raises, "RuntimeError: boom in trial 1", False),
    (_allocates, "out-of-memory", False),
    (_nan_loss, "nan loss", False),
    (_segfaults, "evaluation process killed by SIGSEGV", False),
])
def test_run_isolated_turns_each_failure_into_a_result(evaluate, error, retry) -> None:
    result = run_isolated(_task(), timeout=20, memory_limit_mb=300, evaluate=evaluate)
    assert result["status"] == "failed"
    assert error in result["error"]
    assert result.retry is retry
    assert result["worker"].endswith(f":{os.getpid()}")
    assert result["child_pid"] != os.getpid()


@pytest.mark.timeout(30)
def test_timeout_counts_from_the_fork_and_kills_the_child() -> None:
    started = time.time()
    result = run_isolated(_task(), timeout=1.0, evaluate=_hangs)
    assert result["status"] == "failed" and result["error"] == "timeout after 1s"
    assert not result.get("retry")
    assert time.time() - started < 10
    with pytest.raises(ProcessLookupError):  # killed and reaped
        os.kill(result["child_pid"], 0)


def _exits(task: EvalTask) -> dict[str, Any]:
    os._exit(3)


def _term_self(task: EvalTask) -> dict[str, Any]:
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(10)
    return _ok(task)


@pytest.mark.timeout(30)
def test_exit_without_result_and_sigterm() -> None:
    result = run_isolated(_task(), evaluate=_exits)
    assert result["status"] == "failed" and "exited with code 3" in result["error"]
    result = run_isolated(_task(), evaluate=_term_self)
    assert result["status"] == "failed" and result["retry"] is True
    assert "SIGTERM" in result["error"]


def _stderr_and_fail(task: EvalTask) -> dict[str, Any]:
    print("a line on stderr from the child", file=sys.stderr, flush=True)
    os._exit(1)


@pytest.mark.timeout(30)
def test_stderr_is_captured_and_ok_results_come_back() -> None:
    result = run_isolated(_task(), evaluate=_stderr_and_fail)
    assert "a line on stderr from the child" in result["stderr"]
    ok = run_isolated(_task(), evaluate=_ok)
    assert ok["status"] == "ok" and ok["val_acc"] == 0.5 and ok.started_at is not None


@pytest.mark.timeout(10)
def test_out_of_memory_texts() -> None:
    assert is_out_of_memory("RuntimeError: [enforce fail at alloc_cpu.cpp:117] . "
                            "DefaultCPUAllocator: can't allocate memory: you tried to allocate")
    assert is_out_of_memory("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2 GiB")
    assert is_out_of_memory("MemoryError: ")
    assert not is_out_of_memory("RuntimeError: shape mismatch")


# ------------------------------------------------------------------------- memory
@pytest.mark.timeout(60)
def test_memory_of_runner_and_worker_stays_flat(tmp_path) -> None:
    """Evaluations of a ~1M-parameter network through one local worker: RSS of the runner and
    of the worker grows by < 100 MB from the 5th to the last (the benchmark does 50)."""
    sys.path.insert(0, str(BENCHMARKS))  # the worker imports the benchmark's evaluate too
    try:
        import memory_per_eval

        report = memory_per_eval.measure(evals=12, storage_dir=tmp_path, dataset="synthetic")
    finally:
        sys.path.remove(str(BENCHMARKS))
    assert report["finished"] == 12 and report["ok"] == 12
    assert 0.8e6 <= report["params"] <= 1.3e6
    assert report["worker_growth_mb"] < 100, report
    assert report["runner_growth_mb"] < 100, report
    assert report["distinct_workers"] == 1  # one worker slot did every evaluation
