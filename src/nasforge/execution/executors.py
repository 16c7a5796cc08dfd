"""Executors that carry evaluations: a local process pool, MPI (mpi4py.futures) or Dask.

Every executor here is a ``concurrent.futures.Executor``; the runner, the strategy and the
study database stay in the driver process whatever the executor, so a study file is the same
whichever engine filled it and ``--resume`` may continue it on another.

Each worker is bound once, when it starts, to its CPU thread count and (on GPUs) one device,
by its index on its node (:mod:`nasforge.execution.devices`); each evaluation then runs in a
child process the worker forks (:mod:`nasforge.execution.isolation`).

Start-up of MPI and Dask workers is guarded by a timeout (``NASFORGE_STARTUP_TIMEOUT`` seconds,
default 60): an MPI spawn that hangs or a Dask scheduler that cannot be reached becomes one
:class:`ExecutorStartError` saying what to install or launch.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable

from nasforge.config import RunConfig
from nasforge.errors import ConfigError, NasforgeError
from nasforge.execution.guard import broken_pool_hint
from nasforge.execution.isolation import die_with_parent
from nasforge.registry import Registry
from nasforge.execution.devices import (
    bind_worker,
    local_rank,
    local_size,
    usable_cores,
    usable_gpus,
)

STARTUP_TIMEOUT_ENV = "NASFORGE_STARTUP_TIMEOUT"
DEFAULT_STARTUP_TIMEOUT = 60.0


class ExecutorStartError(NasforgeError):
    """An executor's workers did not start (MPI spawn hang, unreachable scheduler, ...)."""


def startup_timeout_seconds(value: float | None = None) -> float:
    """The start-up timeout: ``value`` if given, else ``$NASFORGE_STARTUP_TIMEOUT``, else 60 s."""
    if value is not None:
        return float(value)
    text = os.environ.get(STARTUP_TIMEOUT_ENV, "").strip()
    if text:
        try:
            seconds = float(text)
        except ValueError:
            raise ConfigError(f"{STARTUP_TIMEOUT_ENV}={text!r} is not a number of seconds") from None
        if seconds > 0:
            return seconds
    return DEFAULT_STARTUP_TIMEOUT


def threads_per_worker(workers: int, cores: int | None = None) -> int:
    """CPU threads each worker may use so that workers never oversubscribe the cores."""
    cores = cores or usable_cores()
    return max(1, cores // max(1, workers))


def _ignore_sigint() -> None:
    # Ctrl-C in a terminal goes to the whole foreground process group; the runner handles it
    # (no new evaluations, running ones finish within the grace period), so workers ignore it.
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread
        pass


def _ping() -> dict[str, Any]:
    import socket

    try:
        affinity = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    return {"host": socket.gethostname(), "pid": os.getpid(),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "worker_index": os.environ.get("NASFORGE_WORKER_INDEX"),
            "eval_threads": os.environ.get("NASFORGE_EVAL_THREADS"), "affinity": affinity}


def _check_devices(run: RunConfig) -> None:
    """Refuse ``--devices`` that this machine does not have, in the driver (a worker would fail
    in its initializer, which breaks a pool without a readable reason)."""
    if run.devices:
        usable_gpus(run.devices)


# ------------------------------------------------------------------------------- local
def _init_local_worker(counter: Any, devices: tuple[int, ...] | None, threads: int,
                       per_worker: int = 1) -> None:
    _ignore_sigint()
    # pool processes are started from the runner's (main) thread by submit(): they end with
    # the driver even when it is killed outright
    die_with_parent()
    with counter.get_lock():
        index = counter.value
        counter.value += 1
    bind_worker(index, devices, threads, per_worker)


class _LocalExecutor(Executor):
    """A spawn-context ``ProcessPoolExecutor`` that replaces itself when it breaks.

    A pool process that dies (the kernel's OOM killer, a kill from outside) marks every future
    of the pool failed and refuses new work. Evaluations run in children of the pool
    processes, so that is rare; when it happens the runner sees the lost futures as lost
    evaluations (and retries each once), and the next ``submit`` starts a fresh pool instead of
    ending the search.
    """

    def __init__(self, workers: int, devices: tuple[int, ...] | None, threads: int,
                 per_worker: int = 1) -> None:
        self._workers = workers
        self._per_worker = per_worker
        self._devices = devices
        self._threads = threads
        self._lock = threading.Lock()
        self._ctx = multiprocessing.get_context("spawn")
        self._counter = self._ctx.Value("i", 0)
        self._pool = self._new_pool()
        self.restarts = 0

    def _new_pool(self) -> ProcessPoolExecutor:
        with self._counter.get_lock():
            self._counter.value = 0  # a fresh pool binds its workers from index 0 again
        return ProcessPoolExecutor(
            max_workers=self._workers, mp_context=self._ctx, initializer=_init_local_worker,
            initargs=(self._counter, self._devices, self._threads, self._per_worker),
        )

    @property
    def _processes(self) -> dict[int, Any]:
        return getattr(self._pool, "_processes", None) or {}

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        with self._lock:
            try:
                future = self._pool.submit(fn, *args, **kwargs)
            except BrokenProcessPool:
                self._pool.shutdown(wait=False, cancel_futures=True)
                # no worker got past start-up (the counter counts initialised workers) under
                # a user's script: it lacks its __main__ guard; a new pool would die alike
                hint = broken_pool_hint(self._counter.value)
                if hint is not None:
                    raise hint from None
                self._pool = self._new_pool()
                self.restarts += 1
                future = self._pool.submit(fn, *args, **kwargs)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=cancel_futures)


# --------------------------------------------------------------------------------- mpi
def _init_mpi_worker(devices: tuple[int, ...] | None, threads: int | None,
                     per_worker: int = 1) -> None:
    _ignore_sigint()
    # the index on the node, modulo the devices: never a global rank used as a GPU index
    index = local_rank()
    if threads is None:  # share this node's cores among the job's processes on it
        threads = threads_per_worker(local_size() or 1)
    bind_worker(index if index is not None else 0, devices, threads, per_worker)


def _mpi_executor(run: RunConfig, startup_timeout: float) -> Executor:
    # Open MPI reads this when MPI starts (at `import mpi4py.MPI`): without it, spawning more
    # processes than cores fails and mpi4py's pool then waits forever (see _wait_started)
    user_set = "OMPI_MCA_rmaps_base_oversubscribe" in os.environ
    initialised_before = "mpi4py.MPI" in sys.modules
    os.environ.setdefault("OMPI_MCA_rmaps_base_oversubscribe", "1")
    if os.geteuid() == 0:
        os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
        os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    try:
        from mpi4py import MPI
        from mpi4py.futures import MPIPoolExecutor
    except ImportError as exc:
        raise ExecutorStartError(
            f"--executor mpi needs mpi4py and an MPI library ({exc}); install them with "
            "`apt-get install openmpi-bin libopenmpi-dev && pip install mpi4py` "
            "(or `pip install nasforge[mpi]`), or use --executor local"
        ) from None
    _check_devices(run)
    world = MPI.COMM_WORLD.Get_size()
    under_mpiexec = world > 1
    kwargs: dict[str, Any] = {"initializer": _init_mpi_worker}
    if under_mpiexec:
        # `mpiexec -n N python -m mpi4py.futures -m nasforge ...`: rank 0 runs this search,
        # the other N-1 ranks are the workers; each takes its share of its node's cores
        kwargs["initargs"] = (run.devices, None, run.devices_per_trial)
        what = f"the {world - 1} MPI worker rank(s)"
        if run.workers != world - 1:
            # the runner keeps one evaluation in flight per worker rank (nasforge_workers)
            print(f"nasforge: note: mpiexec gives {world - 1} worker rank(s); keeping "
                  f"{world - 1} evaluation(s) in flight (run.workers={run.workers} is ignored)",
                  file=sys.stderr, flush=True)
    else:
        kwargs["initargs"] = (run.devices, threads_per_worker(run.workers), run.devices_per_trial)
        kwargs["max_workers"] = run.workers
        what = f"{run.workers} spawned MPI worker(s)"
        if initialised_before and not user_set and "Open MPI" in MPI.Get_library_version():
            # MPI started before we could set the variable: ask for it on the spawn itself
            kwargs["mpi_info"] = {"map_by": "slot:OVERSUBSCRIBE"}
    executor = MPIPoolExecutor(**kwargs)
    thread_errors: list[BaseException] = []
    previous_hook = threading.excepthook

    def hook(args: Any) -> None:  # mpi4py's manager thread fails alone (MPI_ERR_SPAWN)
        if args.exc_type is not SystemExit:
            thread_errors.append(args.exc_value)

    threading.excepthook = hook
    try:
        _wait_started(executor, startup_timeout, what,
                      "launch with `mpiexec -n N python -m mpi4py.futures -m nasforge search ...`, "
                      "or check that MPI can spawn processes here "
                      "(OMPI_MCA_rmaps_base_oversubscribe=1, `--oversubscribe`)", thread_errors)
    except ExecutorStartError:
        try:
            executor.shutdown(wait=False, cancel_futures=True)
        except Exception:
            pass
        raise
    finally:
        threading.excepthook = previous_hook
    executor.nasforge_workers = world - 1 if under_mpiexec else run.workers  # type: ignore[attr-defined]
    executor.nasforge_kind = "mpi"  # type: ignore[attr-defined]
    return executor


def _dask_executor(run: RunConfig, startup_timeout: float) -> Executor:
    """A Dask executor (:mod:`nasforge.execution.dask_executor`; imported when asked for)."""
    from nasforge.execution.dask_executor import dask_executor

    return dask_executor(run, startup_timeout)


# ------------------------------------------------------------------------------ common
def _wait_started(executor: Executor, timeout: float, what: str, hint: str,
                  thread_errors: list[BaseException] | None = None) -> None:
    """Run one no-op task within ``timeout``; any failure or hang is an ExecutorStartError.

    ``thread_errors`` collects exceptions raised in the executor's own threads (mpi4py's
    manager thread raises MPI_ERR_SPAWN there and the task would then wait forever)."""
    result: dict[str, Any] = {}

    def probe() -> None:
        try:
            result["ok"] = executor.submit(_ping).result()
        except BaseException as exc:  # noqa: BLE001
            result["error"] = exc

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while thread.is_alive() and time.monotonic() < deadline and not thread_errors:
        thread.join(0.1)
    error = result.get("error") or (thread_errors[0] if thread_errors else None)
    if error is not None:
        raise ExecutorStartError(f"{what} failed to start ({type(error).__name__}: {error}); {hint}")
    if thread.is_alive():
        raise ExecutorStartError(f"{what} did not start within {timeout:.0f}s; {hint}")


def _under_mpi4py_futures() -> bool:
    """Whether this is rank 0 of ``python -m mpi4py.futures`` (the other ranks serve it)."""
    core = sys.modules.get("mpi4py.futures._core")
    return getattr(core, "SharedPool", None) is not None


def _mpi_ranks_from_env() -> int:
    """The size of the MPI job this process was launched in, from the launcher's environment."""
    for key in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE", "PMIX_SIZE"):
        value = os.environ.get(key, "").strip()
        if value.isdigit():
            return int(value)
    return 1


def _local_executor(run: RunConfig, startup_timeout: float) -> Executor:
    _check_devices(run)
    per_trial = max(1, run.devices_per_trial)
    workers = run.workers
    gpus = usable_gpus(run.devices)
    if per_trial > 1 and gpus:  # each trial takes a group of GPUs: trials in flight = GPUs / N
        workers = max(1, min(workers, len(gpus) // per_trial))
    executor = _LocalExecutor(workers, run.devices, threads_per_worker(workers), per_trial)
    if workers != run.workers:
        executor.nasforge_workers = workers  # type: ignore[attr-defined]
    return executor


ExecutorFactory = Callable[[RunConfig, float], Executor]
EXECUTORS: Registry[ExecutorFactory] = Registry("executor", sort_names=False)
"""The executors by name: ``factory(run, startup_timeout_s) -> Executor`` with ``run.workers``
workers. ``nasforge.config.EXECUTORS`` lists the same names for config checks (the config
does not import the execution layer; a test keeps the two equal)."""
EXECUTORS.register("local", _local_executor)
EXECUTORS.register("mpi", _mpi_executor)
EXECUTORS.register("dask", _dask_executor)


def make_executor(run: RunConfig, startup_timeout: float | None = None) -> Executor:
    """An executor for ``run.executor`` with ``run.workers`` workers (bound to devices).

    ``startup_timeout`` (default ``$NASFORGE_STARTUP_TIMEOUT`` or 60 s) bounds how long MPI or
    Dask workers may take to start before an :class:`ExecutorStartError`.

    Raises:
        ConfigError: an unknown ``run.executor`` (listing the known ones), a missing device.
        ExecutorStartError: workers did not start in time.
    """
    timeout = startup_timeout_seconds(startup_timeout)
    if _under_mpi4py_futures() and run.executor != "mpi":
        # `mpiexec -n N python -m mpi4py.futures -m nasforge search ...`: the other ranks are
        # waiting to be this search's workers, whatever the config's default executor says
        print(f"nasforge: note: running under `python -m mpi4py.futures`: using the MPI "
              f"worker ranks (--executor mpi), not --executor {run.executor}",
              file=sys.stderr, flush=True)
        run = dataclasses.replace(run, executor="mpi")
    elif _mpi_ranks_from_env() > 1 and run.executor != "mpi":
        raise ExecutorStartError(
            f"this process is one of {_mpi_ranks_from_env()} MPI ranks, each of which would run "
            "its own search; launch as `mpiexec -n N python -m mpi4py.futures -m nasforge "
            "search ...` (rank 0 searches, the others evaluate)"
        )
    from nasforge.execution.stops import descendants

    before = set(descendants())
    executor = EXECUTORS.get(run.executor)(run, timeout)
    if not isinstance(executor, _LocalExecutor):  # what it started, for shutdown_now
        try:
            executor.nasforge_pids = sorted(set(descendants()) - before)  # type: ignore[attr-defined]
        except AttributeError:  # an executor class with __slots__
            pass
    return executor


def owned_processes(executor: Executor) -> list[int]:
    """Process ids the executor started: a local pool's processes, else the child processes
    of this one that appeared while it was made (``orted`` of a spawned MPI pool, a local Dask
    cluster's nannies); their descendants (the evaluations) go with them."""
    pids = [p.pid for p in (getattr(executor, "_processes", None) or {}).values()
            if getattr(p, "pid", None)]
    return pids + list(getattr(executor, "nasforge_pids", ()))


def shutdown_now(executor: Executor) -> None:
    """Stop an executor without waiting for running evaluations (they are re-queued later):
    the evaluation children under the processes it started are killed (their workers stay,
    so the tasks end at once and neither a later ``shutdown(wait=True)`` nor the engine's exit
    handler waits on a training that goes on; an MPI pool stays usable for a final step). A
    second Ctrl-C kills the workers too (``stops.hard_stop``)."""
    from nasforge.execution.stops import kill_evaluations

    owned = owned_processes(executor) or [os.getpid()]
    try:
        executor.shutdown(wait=False, cancel_futures=True)
    except Exception:
        pass
    kill_evaluations(owned)
