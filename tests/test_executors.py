"""The engines for real: local process pool, Dask and MPI (mpi4py.futures, spawn mode).

Each runs a tiny search on the synthetic set through the real runner, storage and isolation;
one evaluation child is killed mid-evaluation from outside (it costs that evaluation one retry,
nothing else); a study started on one engine resumes on another; and bad set-ups (no mpi4py,
an unreachable Dask scheduler, an MPI spawn that fails) give one clear line quickly.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import tiny_config_dict
from nasforge.api import Search
from nasforge.config import RunConfig, config_from_dict
from nasforge.errors import StorageError
from nasforge.execution.executors import ExecutorStartError, make_executor
from nasforge.execution.isolation import IsolatedEvaluate
from nasforge.execution.runner import Runner
from nasforge.execution.tasks import EvalTask, evaluate_task
from nasforge.storage import StudyStorage

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"


def _has(module: str) -> bool:
    # find_spec, not import: importing mpi4py.MPI would start MPI in the test process
    return importlib.util.find_spec(module) is not None


needs_dask = pytest.mark.skipif(not _has("distributed"), reason="dask[distributed] not installed")
needs_mpi = pytest.mark.skipif(not (_has("mpi4py") and shutil.which("mpiexec")),
                               reason="mpi4py or an MPI library not installed")


class KillOnce:
    """Real evaluations, except that the first attempt of each trial in ``trials`` writes its
    pid to ``folder`` and sleeps until it is killed from outside."""

    def __init__(self, folder: str, trials: tuple[int, ...]) -> None:
        self.folder = folder
        self.trials = trials

    def __call__(self, task: EvalTask) -> dict[str, Any]:
        if task.trial_number in self.trials and task.attempt == 1:
            path = Path(self.folder) / f"{task.trial_number}.pid"
            path.with_suffix(".tmp").write_text(str(os.getpid()))
            path.with_suffix(".tmp").rename(path)
            time.sleep(120)
        return evaluate_task(task)


def start_killer(folder: Path, trials: tuple[int, ...]) -> tuple[threading.Event, list[int]]:
    """SIGKILL each trial's child as soon as its pid file appears; returns (stop, killed)."""
    stop = threading.Event()
    killed: list[int] = []

    def run() -> None:
        left = set(trials)
        while left and not stop.is_set():
            for trial in list(left):
                path = folder / f"{trial}.pid"
                if path.exists():
                    os.kill(int(path.read_text()), signal.SIGKILL)
                    killed.append(trial)
                    left.discard(trial)
            time.sleep(0.02)

    threading.Thread(target=run, daemon=True).start()
    return stop, killed


def run_search(db: Path, executor_name: str, max_evals: int, kill: tuple[int, ...],
               folder: Path, resume: bool = False) -> Any:
    """A tiny search on ``executor_name`` through the real runner; kills ``kill`` once each."""
    cfg = config_from_dict(tiny_config_dict(run={"max_evals": max_evals, "workers": 2,
                                                 "executor": executor_name}), "t")
    search = Search(cfg, db, resume=resume)
    executor = make_executor(cfg.run)
    stop, killed = start_killer(folder, kill)
    try:
        runner = Runner(config=cfg, storage=search.storage, space=search.space,
                        strategy=search.strategy, executor=executor,
                        evaluate=IsolatedEvaluate(evaluate=KillOnce(str(folder), kill)))
        summary = runner.run()
    finally:
        stop.set()
        executor.shutdown(wait=True)
        search.close()
    assert sorted(killed) == sorted(kill)
    return summary


def check_study(db: Path, count: int, killed: tuple[int, ...]) -> dict[int, Any]:
    with StudyStorage.open(db) as store:
        trials = {t.number: t for t in store.trials()}
        assert store.count("running") == 0
    assert sorted(trials) == list(range(1, count + 1))
    for number, t in trials.items():
        assert t.status == "ok", (number, t.error)
        assert t.attempts == (2 if number in killed else 1), (number, t.attempts)
        assert t.worker and t.started_at and t.finished_at and t.curve
    return trials


@pytest.mark.timeout(60)
def test_local_search_survives_a_killed_child(tmp_path) -> None:
    summary = run_search(tmp_path / "l.db", "local", 6, (2,), tmp_path)
    assert summary.finished == 6 and summary.failed == 0
    check_study(tmp_path / "l.db", 6, (2,))


@needs_dask
@pytest.mark.timeout(90)
def test_study_started_on_local_resumes_on_dask_with_a_kill_on_each(tmp_path) -> None:
    db = tmp_path / "r.db"
    run_search(db, "local", 4, (2,), tmp_path)
    before = {n: (t.genome_key, t.val_acc, t.finished_at) for n, t in check_study(db, 4, (2,)).items()}
    summary = run_search(db, "dask", 8, (6,), tmp_path, resume=True)
    assert summary.finished == 8 and summary.failed == 0
    trials = check_study(db, 8, (2, 6))
    # what finished on local is untouched; the rest ran on the Dask workers (other pids)
    assert {n: (trials[n].genome_key, trials[n].val_acc, trials[n].finished_at)
            for n in before} == before
    assert not {trials[n].worker for n in range(5, 9)} & {trials[n].worker for n in range(1, 5)}


MPI_SCRIPT = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from test_executors import run_search, check_study
    if __name__ == "__main__":
        folder = Path(sys.argv[1])
        summary = run_search(folder / "m.db", "mpi", 6, (2,), folder)
        trials = check_study(folder / "m.db", 6, (2,))
        print(json.dumps({"finished": summary.finished,
                          "workers": sorted({t.worker for t in trials.values()})}))
""")


def _env(**extra: str) -> dict[str, str]:
    path = os.pathsep.join([str(TESTS), str(SRC), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "NASFORGE_STARTUP_TIMEOUT": "30", **extra}


@needs_mpi
@pytest.mark.timeout(90)
def test_mpi_spawned_workers_search_survives_a_killed_child_and_resumes_on_local(tmp_path) -> None:
    script = tmp_path / "mpi_search.py"
    script.write_text(MPI_SCRIPT)
    done = subprocess.run([sys.executable, str(script), str(tmp_path)], env=_env(),
                          capture_output=True, text=True, timeout=80)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["finished"] == 6 and 1 <= len(out["workers"]) <= 2
    # the study file is the same format whatever ran it: continue it on the local pool
    summary = run_search(tmp_path / "m.db", "local", 8, (), tmp_path, resume=True)
    assert summary.finished == 8
    check_study(tmp_path / "m.db", 8, (2,))


class KillsItsWorker:
    """Trial 2's first attempt kills its worker process (the pool process, not the child)."""

    def __call__(self, task: EvalTask) -> dict[str, Any]:
        if task.trial_number == 2 and task.attempt == 1:
            os.kill(os.getppid(), signal.SIGKILL)
            time.sleep(60)  # ended by PR_SET_PDEATHSIG when its worker dies
        return evaluate_task(task)


@pytest.mark.timeout(60)
def test_a_dead_local_worker_costs_a_retry_and_the_pool_restarts(tmp_path) -> None:
    cfg = config_from_dict(tiny_config_dict(run={"max_evals": 5, "workers": 2}), "t")
    search = Search(cfg, tmp_path / "w.db")
    executor = make_executor(cfg.run)
    try:
        summary = Runner(config=cfg, storage=search.storage, space=search.space,
                         strategy=search.strategy, executor=executor,
                         evaluate=IsolatedEvaluate(evaluate=KillsItsWorker())).run()
        assert executor.restarts >= 1
    finally:
        executor.shutdown(wait=True)
        search.close()
    assert summary.finished == 5 and summary.failed == 0
    with StudyStorage.open(tmp_path / "w.db") as store:
        trials = {t.number: t for t in store.trials()}
    assert trials[2].status == "ok" and trials[2].attempts == 2
    assert all(t.status == "ok" for t in trials.values())


# --------------------------------------------------------------------------- bad input
def _cli(tmp_path: Path, *args: str, prelude: str = "", **env: str) -> subprocess.CompletedProcess:
    cfg = tmp_path / "tiny.yaml"
    if not cfg.exists():
        import yaml

        cfg.write_text(yaml.safe_dump(tiny_config_dict(run={"max_evals": 2, "workers": 2})))
    code = f"import sys\n{prelude}\nfrom nasforge.cli import main\nsys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, "search", str(cfg), "--quiet", "--no-final",
         "--storage", str(tmp_path / f"{len(list(tmp_path.glob('*.db')))}.db"), *args],
        env=_env(**env), capture_output=True, text=True, timeout=40)


def _one_error_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, (done.returncode, done.stderr)
    lines = [line for line in done.stderr.splitlines() if line.startswith("nasforge:")]
    assert len(lines) == 1 and lines[0].startswith("nasforge: error: "), done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    return lines[0]


@pytest.mark.timeout(40)
def test_mpi_without_mpi4py_is_one_clear_line(tmp_path) -> None:
    started = time.time()
    done = _cli(tmp_path, "--executor", "mpi", prelude="sys.modules['mpi4py'] = None")
    line = _one_error_line(done)
    assert "needs mpi4py and an MPI library" in line and "pip install mpi4py" in line
    assert time.time() - started < 30
    # the study it had just created is removed again, so the same command reruns as is
    assert "0.db was removed" in line
    assert not list(tmp_path.glob("*.db*")) and not (tmp_path / "0_files").exists()


@pytest.mark.timeout(40)
def test_a_failed_start_on_resume_leaves_the_study_as_it_was(tmp_path) -> None:
    done = _cli(tmp_path)  # a real tiny search: 2 trials into 0.db
    assert done.returncode == 0, done.stderr
    study = tmp_path / "0.db"
    code = ("import sys\nsys.modules['mpi4py'] = None\nfrom nasforge.cli import main\n"
            "sys.exit(main(sys.argv[1:]))")
    again = subprocess.run(
        [sys.executable, "-c", code, "search", str(tmp_path / "tiny.yaml"), "--quiet",
         "--no-final", "--storage", str(study), "--resume", "--executor", "mpi"],
        env=_env(), capture_output=True, text=True, timeout=40)
    line = _one_error_line(again)
    assert "needs mpi4py" in line and "removed" not in line
    assert study.exists()
    from nasforge.api import read_trials

    assert [t.status for t in read_trials(study)] == ["ok", "ok"]


@needs_dask
@pytest.mark.timeout(40)
def test_unreachable_dask_scheduler_is_one_clear_line_within_the_timeout(tmp_path) -> None:
    started = time.time()
    done = _cli(tmp_path, "--executor", "dask", "--scheduler", "tcp://127.0.0.1:1",
                NASFORGE_STARTUP_TIMEOUT="3")
    line = _one_error_line(done)
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:1 within 3s" in line
    assert "dask scheduler" in line and "dask worker" in line
    assert time.time() - started < 25


@needs_mpi
@pytest.mark.timeout(40)
def test_mpi_spawn_that_fails_is_one_clear_line_not_a_hang(tmp_path) -> None:
    # without oversubscription Open MPI cannot spawn more workers than cores: the spawn fails
    # in mpi4py's manager thread, where the pool would otherwise wait forever
    too_many = str((os.cpu_count() or 1) + 1)
    started = time.time()
    done = _cli(tmp_path, "--executor", "mpi", "--workers", too_many,
                OMPI_MCA_rmaps_base_oversubscribe="0", NASFORGE_STARTUP_TIMEOUT="15")
    line = _one_error_line(done)
    assert "MPI worker(s)" in line and ("failed to start" in line or "did not start" in line)
    assert time.time() - started < 30


@pytest.mark.timeout(10)
def test_startup_timeout_setting(monkeypatch) -> None:
    from nasforge.errors import ConfigError
    from nasforge.execution.executors import startup_timeout_seconds

    monkeypatch.delenv("NASFORGE_STARTUP_TIMEOUT", raising=False)
    assert startup_timeout_seconds() == 60.0
    monkeypatch.setenv("NASFORGE_STARTUP_TIMEOUT", "2.5")
    assert startup_timeout_seconds() == 2.5
    assert startup_timeout_seconds(7) == 7.0
    monkeypatch.setenv("NASFORGE_STARTUP_TIMEOUT", "soon")
    with pytest.raises(ConfigError, match="NASFORGE_STARTUP_TIMEOUT"):
        startup_timeout_seconds()


@pytest.mark.timeout(10)
def test_unknown_executor_and_missing_devices_are_config_errors(monkeypatch) -> None:
    from nasforge.errors import ConfigError

    with pytest.raises(ConfigError, match="known: local, mpi, dask"):
        make_executor(RunConfig(executor="ray"))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")  # one GPU: --devices 3 cannot be
    with pytest.raises(ConfigError, match="GPU 3 does not exist"):
        make_executor(RunConfig(executor="local", devices=(3,)))
    assert issubclass(ExecutorStartError, Exception)


@needs_mpi
@pytest.mark.timeout(120)
def test_under_mpiexec_every_worker_rank_has_an_evaluation(tmp_path) -> None:
    # `mpiexec -n 3 python -m mpi4py.futures -m nasforge search ...`: rank 0 searches and both
    # other ranks evaluate, even though the config asks for a single worker
    cfg = tmp_path / "tiny.yaml"
    import yaml

    raw = tiny_config_dict(run={"max_evals": 6, "workers": 1},
                           budget={"max_steps": 40, "epochs": 5, "width": 8})
    cfg.write_text(yaml.safe_dump(raw))
    db = tmp_path / "x.db"
    done = subprocess.run(
        ["mpiexec", "--allow-run-as-root", "--oversubscribe", "-n", "3", sys.executable, "-m",
         "mpi4py.futures", "-m", "nasforge", "search", str(cfg), "--storage", str(db),
         "--no-final"],
        env=_env(OMPI_MCA_rmaps_base_oversubscribe="1"), capture_output=True, text=True,
        timeout=110)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 worker(s) on mpi" in done.stderr + done.stdout
    with StudyStorage.open(db) as store:
        trials = store.trials()
    assert [t.status for t in trials] == ["ok"] * 6
    assert len({t.worker for t in trials}) == 2
    # two evaluations overlapped in time: both ranks were kept busy at once
    spans = sorted((t.started_at, t.finished_at) for t in trials)
    assert any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:]))


@pytest.mark.timeout(10)
def test_dask_slots_follow_an_existing_clusters_workers(monkeypatch) -> None:
    from nasforge.execution import executors

    class FakeClient:
        workers = {"tcp://a:1": {"nthreads": 1}, "tcp://a:2": {"nthreads": 1}}

        def get_executor(self, pure: bool) -> None:
            return None

        def scheduler_info(self) -> dict:
            return {"workers": dict(self.workers)}

    client = FakeClient()
    clock = [100.0]
    from nasforge.execution import dask_executor

    monkeypatch.setattr(dask_executor.time, "monotonic", lambda: clock[0])
    existing = dask_executor._DaskExecutor(client, None, workers=1)
    assert existing.nasforge_workers == 2  # the cluster's workers, not run.workers
    client.workers["tcp://b:1"] = {"nthreads": 2}  # a worker with two threads joins
    assert existing.nasforge_workers == 2  # asked again only after 5 s
    clock[0] += 6
    assert existing.nasforge_workers == 4
    own = dask_executor._DaskExecutor(client, object(), workers=3)  # a LocalCluster we started
    assert own.nasforge_workers == 3


@pytest.mark.timeout(90)
def test_pool_workers_end_with_a_driver_killed_outright(tmp_path) -> None:
    import yaml

    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config_dict(
        run={"max_evals": 50, "workers": 2}, budget={"max_steps": 200, "epochs": 50, "width": 8})))
    db = tmp_path / "d.db"
    proc = subprocess.Popen([sys.executable, "-m", "nasforge", "search", str(cfg), "--storage",
                             str(db), "--quiet", "--no-final"], env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: set[int] = set()
    deadline = time.time() + 60
    while time.time() < deadline and len(workers) < 2:
        time.sleep(0.3)
        if not db.exists():
            continue
        try:
            with StudyStorage.open(db) as store:
                workers = {int(t.worker.rsplit(":", 1)[1]) for t in store.trials() if t.worker}
        except StorageError:  # the driver is still writing the new study's schema
            continue
    assert len(workers) == 2, "both pool workers should have started evaluations"
    proc.kill()  # SIGKILL to the driver alone: no chance to shut its pool down
    proc.wait()
    deadline = time.time() + 15
    while time.time() < deadline and any(Path(f"/proc/{pid}").exists() for pid in workers):
        time.sleep(0.2)
    alive = [pid for pid in workers if Path(f"/proc/{pid}").exists()
             and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()]
    assert not alive, f"pool workers outlived their killed driver: {alive}"
