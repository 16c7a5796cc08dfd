"""The Dask executor: evaluations on the workers of a Dask cluster (an existing scheduler or a
``LocalCluster`` started here), each worker bound once to its share of its host's cores and
(on GPUs) one device. Split from :mod:`nasforge.execution.executors`, which registers it as
``dask`` and imports this module only when a Dask executor is asked for."""

from __future__ import annotations

import time
from concurrent.futures import Executor
from typing import Any

from nasforge.config import RunConfig
from nasforge.errors import NasforgeError
from nasforge.execution.devices import bind_worker
from nasforge.execution.executors import (
    ExecutorStartError,
    _check_devices,
    _ignore_sigint,
    _wait_started,
    threads_per_worker,
)

__all__ = ["dask_executor"]


def _dask_bind(worker: Any, devices: tuple[int, ...] | None, known: list[str]) -> str | None:
    """Bind a Dask worker by its index among the workers of its host, with its share of that
    host's cores. A ``LocalCluster`` names its workers 0..N-1 (a restarted worker keeps its
    name); otherwise the position of its address among the ``known`` ones on its host."""
    address = worker.address
    host = address.rsplit(":", 1)[0]
    same_host = sorted(a for a in known if a.rsplit(":", 1)[0] == host)
    name = str(worker.name)
    if name.isdigit():
        index = int(name)
    elif address in same_host:
        index = same_host.index(address)
    else:
        index = len(same_host)
    _ignore_sigint()
    return bind_worker(index, devices, threads_per_worker(max(1, len(same_host))))


def _dask_bind_plugin(devices: tuple[int, ...] | None, known: list[str]) -> Any:
    """A worker plugin that binds every worker, also those that join or restart later."""
    from distributed.diagnostics.plugin import WorkerPlugin

    class BindWorker(WorkerPlugin):  # sent by value (cloudpickle)
        name = "nasforge-bind-worker"

        def setup(self, worker: Any) -> None:
            _dask_bind(worker, devices, known)

    return BindWorker()


def dask_executor(run: RunConfig, startup_timeout: float) -> Executor:
    """Workers on a Dask cluster: the one at ``run.scheduler``, or a ``LocalCluster`` of
    ``run.workers`` processes started here; each worker bound once (``_dask_bind``).

    Raises:
        ExecutorStartError: dask.distributed missing, scheduler or workers not up in
            ``startup_timeout`` seconds.
    """
    try:
        import dask
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise ExecutorStartError(
            f"--executor dask needs dask.distributed ({exc}); install it with "
            "`pip install \"dask[distributed]\"` (or `pip install nasforge[dask]`), or use "
            "--executor local"
        ) from None
    cluster = None
    settings = {
        # Dask's default MALLOC_TRIM_THRESHOLD_ makes training page-fault bound (2x slower)
        "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
        "distributed.logging.distributed": "error",
        "distributed.comm.timeouts.connect": f"{startup_timeout}s",
        # each task is one whole evaluation: no statistical profiler sampling the workers'
        # threads every 10 ms, no work stealing (the runner keeps exactly one per worker)
        "distributed.worker.profile.enabled": False,
        "distributed.scheduler.work-stealing": False,
    }
    if run.scheduler:
        hint = (f"start one with `dask scheduler` and workers with `dask worker {run.scheduler} "
                "--nthreads 1`")
        try:
            with dask.config.set(settings):
                client = Client(run.scheduler, timeout=f"{startup_timeout}s")
        except (OSError, TimeoutError) as exc:
            raise ExecutorStartError(
                f"cannot reach the Dask scheduler at {run.scheduler} within "
                f"{startup_timeout:.0f}s ({type(exc).__name__}); {hint}"
            ) from None
        try:
            client.wait_for_workers(1, timeout=startup_timeout)
        except (OSError, TimeoutError):
            client.close()
            raise ExecutorStartError(
                f"the Dask scheduler at {run.scheduler} has no workers after "
                f"{startup_timeout:.0f}s; start them with `dask worker {run.scheduler} "
                "--nthreads 1`"
            ) from None
    else:
        _check_devices(run)
        hint = "check that this machine can start Python processes (`dask[distributed]` installed)"
        with dask.config.set({**settings, "distributed.worker.daemon": False}):
            cluster = LocalCluster(n_workers=run.workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None, silence_logs=40,
                                   timeout=f"{startup_timeout}s")
            client = Client(cluster, timeout=f"{startup_timeout}s")
    executor = _DaskExecutor(client, cluster, run.workers)
    try:
        # bind each worker to its device and thread count, by its index on its host
        addresses = sorted(client.scheduler_info()["workers"])
        plugin = _dask_bind_plugin(run.devices, addresses)
        register = getattr(client, "register_plugin", None) or client.register_worker_plugin
        register(plugin)
        _wait_started(executor, startup_timeout, "Dask workers", hint)
    except NasforgeError:
        executor.shutdown(wait=False, cancel_futures=True)
        raise
    except Exception as exc:
        executor.shutdown(wait=False, cancel_futures=True)
        raise ExecutorStartError(f"Dask workers failed to start: {exc}; {hint}") from None
    return executor


class _DaskExecutor(Executor):
    """``Client.get_executor`` with ownership of the client (and the cluster it started)."""

    def __init__(self, client: Any, cluster: Any, workers: int) -> None:
        self._client = client
        self._cluster = cluster
        self._workers = workers
        self._live = workers
        self._counted_at = -1e9
        self._inner = client.get_executor(pure=False)
        self._closed = False

    @property
    def nasforge_workers(self) -> int:
        """Evaluations to keep in flight: the workers asked for on a cluster of our own; on an
        existing cluster, its worker threads now (workers that join later are used too)."""
        if self._cluster is not None or self._closed:
            return self._workers
        now = time.monotonic()
        if now - self._counted_at >= 5.0:  # ask the scheduler at most every 5 s
            self._counted_at = now
            try:
                info = self._client.scheduler_info()["workers"]
                self._live = max(1, sum(int(w.get("nthreads", 1) or 1) for w in info.values()))
            except Exception:  # a scheduler briefly unreachable: keep the last count
                pass
        return self._live

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        return self._inner.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if self._closed:
            return
        self._closed = True
        # a stop (no wait) has killed the cluster's processes already: do not wait for them
        if not wait:
            self._stop_now()
            return
        try:
            self._inner.shutdown(wait=not cancel_futures)
        finally:
            self._client.close()
            if self._cluster is not None:
                self._cluster.close()

    def _stop_now(self) -> None:
        """Close without waiting: a stop has killed (or will kill) the cluster's processes, so
        a close that waits for them, here or in Dask's own exit handler (10 s), only delays the
        exit."""
        for close in (lambda: self._inner.shutdown(wait=False), lambda: self._client.close(
                timeout=1.0), lambda: self._cluster and self._cluster.close(timeout=1.0)):
            try:
                close()
            except Exception:  # noqa: BLE001 - a timeout or a dead connection: going anyway
                pass
        if self._cluster is not None:  # Dask's exit handler would wait for it again
            self._cluster.shutdown_on_close = False
