"""Ctrl-C on a real `nasforge` process, per phase and executor.

Each test starts the command in a session of its own (as a terminal's job), sends SIGINT to
its process group (what a terminal's Ctrl-C does) at a phase it recognises from the command's
output, and checks: the command ends within the bound (a second Ctrl-C: 10 s; a first one: the
grace period plus 10 s), no process of the session is left, and what finished is stored.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import tiny_config_dict
from nasforge.storage import StudyStorage

SRC = Path(os.environ.get("NASFORGE_TEST_SRC") or Path(__file__).resolve().parent.parent / "src")
needs_mpi = pytest.mark.skipif(
    not (importlib.util.find_spec("mpi4py") and shutil.which("mpiexec")),
    reason="mpi4py or an MPI library not installed")


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1",
            "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", **extra}


SLOW_FINAL = {"NASFORGE_FAULTS": "final-epoch=sleep:0.25"}  # a final run of 40 x 0.25 s


def _session(sid: int) -> list[str]:
    """Live processes of session ``sid`` (zombies excluded): what a stop left behind."""
    out = subprocess.run(["ps", "-eo", "sid=,stat=,pid=,args="], capture_output=True,
                         text=True).stdout
    return [line for line in out.splitlines()
            if line.split()[0] == str(sid) and not line.split()[1].startswith("Z")]


class Command:
    """A `nasforge` command in its own session, stderr in a file the test can watch."""

    def __init__(self, args: list[str], folder: Path, **env: str) -> None:
        self.err_path = folder / f"err-{time.time_ns()}.txt"
        self.err = open(self.err_path, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "nasforge", *args], env=_env(**env),
                                     stdout=subprocess.PIPE, stderr=self.err, text=True,
                                     cwd=folder, start_new_session=True)

    def wait_for(self, text: str, timeout: float = 60) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline and self.proc.poll() is None:
            if text in self.err_path.read_text():
                return
            time.sleep(0.1)
        self.kill()
        raise AssertionError(f"never printed {text!r}: {self.err_path.read_text()[-2000:]}")

    def ctrl_c(self, times: int) -> float:
        """Send Ctrl-C ``times`` times (0.3 s apart); the time of the last one."""
        for i in range(times):
            if i:
                time.sleep(0.3)
            os.killpg(self.proc.pid, signal.SIGINT)
        return time.time()

    def finish(self, timeout: float) -> tuple[int, str, str, float]:
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"still running after {timeout}s: "
                                 f"{self.err_path.read_text()[-2000:]}") from None
        ended = time.time()
        self.err.close()
        time.sleep(0.3)  # processes killed at the end need a moment to be reaped
        left = _session(self.proc.pid)
        assert not left, f"processes left behind: {left}"
        return self.proc.returncode, out, self.err_path.read_text(), ended

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _final_config(folder: Path, **run) -> Path:
    """One search trial, then a final training of 40 short epochs (slowed by SLOW_FINAL)."""
    raw = tiny_config_dict(run={"max_evals": 1, "workers": 1, **run},
                           budget={"max_steps": 2, "epochs": 1, "width": 4})
    raw["final"] = {"budget": {"epochs": 40, "width": 4, "batch_size": 32, "max_steps": 3,
                               "precision": "fp32", "channels_last": False, "threads": 1},
                    "seeds": 1, "top": 1}
    path = folder / "fin.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _final_statuses(db: Path) -> list[str]:
    with StudyStorage.open(db) as store:
        return [f.status for f in store.final_runs()]


@pytest.mark.timeout(180)
def test_ctrl_c_in_planning_final_training_and_train_then_resume_finishes(tmp_path) -> None:
    """One study through every final-training phase (one search trial, then the runs):

    1. one Ctrl-C while the final step is being planned: stops at once (status 130);
    2. ``--resume``, one Ctrl-C at epoch 1 of the final run: the grace period (1 s), then
       the run is cut and stored as ``interrupted``;
    3. ``--resume`` with a long grace period, two Ctrl-C: ends within 10 s, ``interrupted``
       again, and ``nasforge best`` shows it so;
    4. ``nasforge train STUDY --best``, two Ctrl-C: the same, status 130;
    5. ``--resume`` finishes the final run.
    Each time no process of the command is left.
    """
    cfg = _final_config(tmp_path, grace_period=1)
    search = ["search", str(cfg), "--storage", "f.db"]

    cmd = Command(search, tmp_path)
    cmd.wait_for("final training of the best")
    last = cmd.ctrl_c(1)
    code, out, err, ended = cmd.finish(30)
    assert ended - last < 10 and code == 130 and "Traceback" not in err, err
    with StudyStorage.open(tmp_path / "f.db") as store:
        assert store.count("ok") == 1  # the search trial finished before: kept

    cmd = Command(search + ["--resume"], tmp_path, **SLOW_FINAL)
    cmd.wait_for("epoch 1/40")
    first = cmd.ctrl_c(1)
    code, out, err, ended = cmd.finish(30)
    assert 1 <= ended - first < 11, err
    assert "waiting up to 1s for running final runs" in err
    assert "interrupted; continue with --resume" in out and "Traceback" not in err
    assert _final_statuses(tmp_path / "f.db") == ["interrupted"]

    cmd = Command(search + ["--resume", "--set", "run.grace_period=120"], tmp_path,
                  **SLOW_FINAL)
    cmd.wait_for("epoch 1/40")
    last = cmd.ctrl_c(2)
    code, out, err, ended = cmd.finish(30)
    assert ended - last < 10 and "Traceback" not in err, err
    assert _final_statuses(tmp_path / "f.db") == ["interrupted"] * 2
    shown = subprocess.run([sys.executable, "-m", "nasforge", "best", "f.db"], env=_env(),
                           cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert "seed 0 width 4: interrupted (Ctrl-C; --resume trains it)" in shown.stdout

    cmd = Command(["train", "f.db", "--best"], tmp_path, **SLOW_FINAL)
    cmd.wait_for("epoch 1/40")
    last = cmd.ctrl_c(2)
    code, out, err, ended = cmd.finish(30)
    assert ended - last < 10 and code == 130, err
    assert "interrupted" in out and "Traceback" not in err
    assert _final_statuses(tmp_path / "f.db") == ["interrupted"] * 3

    done = subprocess.run([sys.executable, "-m", "nasforge", *search, "--resume"], env=_env(),
                          cwd=tmp_path, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr
    assert _final_statuses(tmp_path / "f.db") == ["interrupted"] * 3 + ["ok"]


def _long_trials_config(folder: Path, **run) -> Path:
    raw = tiny_config_dict(run={"max_evals": 4, "workers": 1, **run},
                           budget={"max_steps": 3, "epochs": 200, "width": 4})
    raw["final"] = None
    path = folder / "long.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _count_running(db: Path) -> int:
    try:
        return _running(db)
    except Exception:  # noqa: BLE001 - the study is still being created
        return 0


def _running(db: Path) -> int:
    with StudyStorage.open(db) as store:
        return store.count("running")


@needs_mpi
@pytest.mark.timeout(90)
def test_mpi_first_ctrl_c_honours_the_grace_period_and_leaves_nothing(tmp_path) -> None:
    cfg = _long_trials_config(tmp_path, grace_period=2)
    cmd = Command(["search", str(cfg), "--storage", "m.db", "--executor", "mpi"], tmp_path)
    cmd.wait_for("worker(s) on mpi")
    time.sleep(1.0)
    first = cmd.ctrl_c(1)
    code, out, err, ended = cmd.finish(40)
    assert ended - first < 2 + 10, err
    assert "stopped: interrupted" in out and "Traceback" not in err
    assert _running(tmp_path / "m.db") == 1  # cut after the grace period, left for --resume


@needs_mpi
@pytest.mark.timeout(90)
def test_mpi_second_ctrl_c_ends_at_once(tmp_path) -> None:
    cfg = _long_trials_config(tmp_path, grace_period=120)
    cmd = Command(["search", str(cfg), "--storage", "m.db", "--executor", "mpi"], tmp_path)
    cmd.wait_for("worker(s) on mpi")
    time.sleep(1.0)
    last = cmd.ctrl_c(2)
    code, out, err, ended = cmd.finish(30)
    assert ended - last < 10, err
    assert "Traceback" not in err
    assert _running(tmp_path / "m.db") == 1


@pytest.mark.timeout(60)
def test_second_ctrl_c_in_study_fidelity_ends_at_once(tmp_path) -> None:
    from test_fidelity import _tiny_raw

    (tmp_path / "fid.yaml").write_text(yaml.safe_dump(_tiny_raw(run={"workers": 1})))
    cmd = Command(["study", "fidelity", "fid.yaml", "--storage", "fid.db"], tmp_path,
                  NASFORGE_FAULTS="eval-start=sleep:30")  # every evaluation runs for 30 s
    deadline = time.time() + 40
    while time.time() < deadline and cmd.proc.poll() is None:
        if (tmp_path / "fid.db").exists() and _count_running(tmp_path / "fid.db"):
            break
        time.sleep(0.2)
    time.sleep(1.0)
    last = cmd.ctrl_c(2)
    code, out, err, ended = cmd.finish(30)
    assert ended - last < 10, err
    assert "Traceback" not in err
    assert _running(tmp_path / "fid.db") == 1  # the cut evaluation is left for --resume


@pytest.mark.skipif(not importlib.util.find_spec("distributed"), reason="dask not installed")
@pytest.mark.timeout(90)
def test_dask_first_then_second_ctrl_c(tmp_path) -> None:
    """Dask: the first Ctrl-C waits (the grace period is long), the second ends everything
    within 10 s, the local cluster's processes included."""
    cfg = _long_trials_config(tmp_path, grace_period=120)
    cmd = Command(["search", str(cfg), "--storage", "d.db", "--executor", "dask"], tmp_path,
                  NASFORGE_FAULTS="eval-start=sleep:30")  # tiny trials would end too soon
    cmd.wait_for("worker(s) on dask")
    deadline = time.time() + 40  # the local cluster may take a while to take the first trial
    while time.time() < deadline and cmd.proc.poll() is None:
        if _count_running(tmp_path / "d.db"):
            break
        time.sleep(0.2)
    time.sleep(1.0)
    cmd.ctrl_c(1)
    time.sleep(2.0)
    assert cmd.proc.poll() is None  # still within the grace period
    last = cmd.ctrl_c(1)
    code, out, err, ended = cmd.finish(30)
    assert ended - last < 10, err
    assert "Traceback" not in err, err
    assert _running(tmp_path / "d.db") == 1


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:  # ended meanwhile
        return ""


def _sleeps(task):  # an evaluation that would run for a minute
    time.sleep(60)
    from nasforge.execution.results import EvalResult

    return EvalResult(status="ok")


@pytest.mark.timeout(30)
def test_a_cut_kills_the_evaluation_child_and_keeps_its_worker() -> None:
    """What a grace-period cut does (``shutdown_now``): the evaluation child ends at once with
    a retryable result, the process that forked it (a worker: here this one) lives on, so an
    MPI pool stays usable for the final step."""
    from concurrent.futures import ThreadPoolExecutor

    from nasforge.execution.isolation import EVAL_PROCESS_NAME, run_isolated
    from nasforge.execution.stops import descendants, kill_evaluations
    from nasforge.execution.tasks import EvalTask

    task = EvalTask(trial_number=1, space_name="global", space_settings={}, genome={},
                    budget={}, data={"dataset": "synthetic"}, model_seed=0)
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(run_isolated, task, evaluate=_sleeps)
        deadline = time.time() + 20
        named = []
        while not named and time.time() < deadline:
            time.sleep(0.1)
            named = [p for p in descendants() if _comm(p) == EVAL_PROCESS_NAME]
        assert named, "the evaluation child is not named"
        started = time.time()
        assert kill_evaluations([os.getpid()]) == 1
        result = future.result(timeout=10)
    assert time.time() - started < 5
    assert result["status"] == "failed" and result["retry"] and "SIGKILL" in result["error"]
