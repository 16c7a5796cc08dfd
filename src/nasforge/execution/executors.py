"""Executors that carry evaluations: a local process pool, MPI (mpi4py.futures) or Dask.

Every executor here is a ``concurrent.futures.Executor``; the runner, the strategy and the
study database stay in the driver process whatever the executor.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import Any

from nasforge.config import RunConfig
from nasforge.errors import ConfigError, NasforgeError
from nasforge.execution.devices import bind_worker


class ExecutorStartError(NasforgeError):
    """An executor's workers did not start (MPI spawn hang, unreachable scheduler, ...)."""


def threads_per_worker(workers: int, cores: int | None = None) -> int:
    """CPU threads each worker may use so that workers never oversubscribe the cores."""
    cores = cores or os.cpu_count() or 1
    return max(1, cores // max(1, workers))


def _init_local_worker(counter: Any, devices: tuple[int, ...] | None, threads: int) -> None:
    with counter.get_lock():
        index = counter.value
        counter.value += 1
    bind_worker(index, devices, threads)


def _ping() -> dict[str, Any]:
    import socket

    return {"host": socket.gethostname(), "pid": os.getpid(),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}


def _local_rank() -> int:
    """This MPI process's index on its node (no collective call: rank 0 takes no part)."""
    for key in ("OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID", "PMI_LOCAL_RANK"):
        if key in os.environ:
            return int(os.environ[key])
    try:
        from mpi4py import MPI

        return MPI.COMM_WORLD.Get_rank()
    except Exception:
        return 0


def _init_mpi_worker(devices: tuple[int, ...] | None, threads: int) -> None:
    # index on the node, modulo the devices: never a global rank used as a GPU index
    bind_worker(_local_rank(), devices, threads)


def _mpi_executor(run: RunConfig, startup_timeout: float) -> Executor:
    os.environ.setdefault("OMPI_MCA_rmaps_base_oversubscribe", "1")
    if os.geteuid() == 0:
        os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
        os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    try:
        from mpi4py import MPI  # noqa: F401
        from mpi4py.futures import MPIPoolExecutor
    except ImportError as exc:
        raise ExecutorStartError(
            f"--executor mpi needs mpi4py and an MPI library ({exc}); install them with "
            "`apt-get install openmpi-bin libopenmpi-dev && pip install mpi4py` (or ./setup.sh)"
        ) from None
    from mpi4py import MPI

    world = MPI.COMM_WORLD.Get_size()
    under_mpiexec = world > 1
    workers = world - 1 if under_mpiexec else run.workers
    threads = 1 if under_mpiexec else threads_per_worker(workers)
    kwargs: dict[str, Any] = {"initializer": _init_mpi_worker,
                              "initargs": (run.devices, threads)}
    if not under_mpiexec:
        kwargs["max_workers"] = run.workers
    executor = MPIPoolExecutor(**kwargs)
    _wait_started(executor, startup_timeout, "MPI workers",
                  "launch with `mpiexec -n N python -m mpi4py.futures -m nasforge search ...`, "
                  "or check that MPI can spawn processes here (OMPI_MCA_rmaps_base_oversubscribe=1)")
    return executor


def _dask_executor(run: RunConfig, startup_timeout: float) -> Executor:
    try:
        import dask
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise ExecutorStartError(
            f"--executor dask needs dask.distributed ({exc}); install it with "
            "`pip install \"dask[distributed]\"` (or ./setup.sh)"
        ) from None
    threads = threads_per_worker(run.workers)
    if run.scheduler:
        try:
            client = Client(run.scheduler, timeout=f"{startup_timeout}s")
        except (OSError, TimeoutError) as exc:
            raise ExecutorStartError(
                f"cannot reach the Dask scheduler at {run.scheduler} within {startup_timeout:.0f}s "
                f"({exc}); start one with `dask scheduler` and workers with `dask worker "
                f"{run.scheduler} --nthreads 1`"
            ) from None
        cluster = None
    else:
        with dask.config.set({"distributed.worker.daemon": False,
                              "distributed.logging.distributed": "error"}):
            cluster = LocalCluster(n_workers=run.workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None, silence_logs=40)
            client = Client(cluster)
    # bind each worker to its device and thread count, by its index on its host
    workers = sorted(client.scheduler_info()["workers"])
    by_host: dict[str, int] = {}
    for address in workers:
        host = address.rsplit(":", 1)[0]
        index = by_host.get(host, 0)
        by_host[host] = index + 1
        client.run(bind_worker, index, run.devices, threads, workers=[address])
    return _DaskExecutor(client, cluster)


class _DaskExecutor(Executor):
    """``Client.get_executor`` with ownership of the client (and the cluster it started)."""

    def __init__(self, client: Any, cluster: Any) -> None:
        self._client = client
        self._cluster = cluster
        self._inner = client.get_executor(pure=False)

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        return self._inner.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        try:
            self._inner.shutdown(wait=wait and not cancel_futures)
        finally:
            self._client.close()
            if self._cluster is not None:
                self._cluster.close()


def _wait_started(executor: Executor, timeout: float, what: str, hint: str) -> None:
    result: dict[str, Any] = {}

    def probe() -> None:
        try:
            result["ok"] = executor.submit(_ping).result()
        except BaseException as exc:  # noqa: BLE001
            result["error"] = exc

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise ExecutorStartError(f"{what} did not start within {timeout:.0f}s; {hint}")
    if "error" in result:
        raise ExecutorStartError(f"{what} failed to start: {result['error']}; {hint}")


def make_executor(run: RunConfig, startup_timeout: float = 60.0) -> Executor:
    """An executor for ``run.executor`` with ``run.workers`` workers (bound to devices)."""
    if run.executor == "local":
        ctx = multiprocessing.get_context("spawn")
        counter = ctx.Value("i", 0)
        return ProcessPoolExecutor(
            max_workers=run.workers,
            mp_context=ctx,
            initializer=_init_local_worker,
            initargs=(counter, run.devices, threads_per_worker(run.workers)),
        )
    if run.executor == "mpi":
        return _mpi_executor(run, startup_timeout)
    if run.executor == "dask":
        return _dask_executor(run, startup_timeout)
    raise ConfigError(f"unknown executor {run.executor!r}; known: local, mpi, dask")


def shutdown_now(executor: Executor) -> None:
    """Stop an executor without waiting for running evaluations (they are re-queued later)."""
    processes: dict[Any, Any] = getattr(executor, "_processes", None) or {}
    try:
        executor.shutdown(wait=False, cancel_futures=True)
    except Exception:
        pass
    for proc in list(processes.values()):
        try:
            proc.terminate()
        except Exception:
            pass
