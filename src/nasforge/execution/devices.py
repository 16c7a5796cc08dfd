"""Worker-to-device binding, decided before any CUDA call.

A worker binds to one GPU by its index *on its node* (a pool index, an MPI local rank, a Dask
worker's position on its host) modulo the usable GPUs, never by a global MPI rank: rank 9 of a
job with 4 GPUs per node is not ``cuda:9``. Binding sets ``CUDA_VISIBLE_DEVICES`` to that one GPU,
so inside the worker (and the evaluation children it forks) the GPU is ``cuda:0`` and no
process ever creates a context on another GPU.
"""

from __future__ import annotations

import glob
import os
import sys
from typing import Mapping, Sequence

from nasforge.errors import ConfigError

#: Environment variables that launchers set to a process's rank *on its node*, by launcher:
#: Open MPI, MPICH/Intel MPI (Hydra), MVAPICH2, Cray PALS, Cray PMI, SLURM srun, torchrun.
LOCAL_RANK_VARS: tuple[str, ...] = (
    "OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "MV2_COMM_WORLD_LOCAL_RANK",
    "PALS_LOCAL_RANKID", "PMI_LOCAL_RANK", "SLURM_LOCALID", "LOCAL_RANK",
)
#: The same for the number of processes on this node.
LOCAL_SIZE_VARS: tuple[str, ...] = (
    "OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "MV2_COMM_WORLD_LOCAL_SIZE",
    "PALS_LOCAL_SIZE", "PMI_LOCAL_SIZE", "LOCAL_WORLD_SIZE",
)


def _env(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if environ is None else environ


def visible_gpus(environ: Mapping[str, str] | None = None) -> list[str]:
    """GPU ids this process may use, without touching CUDA.

    ``CUDA_VISIBLE_DEVICES`` when set, parsed as CUDA does: a comma-separated list of indices or
    ``GPU-``/``MIG-`` UUIDs, read up to the first invalid entry (``-1`` or an empty value hides
    every GPU); otherwise the ``/dev/nvidiaN`` device files.
    """
    value = _env(environ).get("CUDA_VISIBLE_DEVICES")
    if value is not None:
        ids: list[str] = []
        for item in value.split(","):
            item = item.strip()
            if item.isdigit() or item.startswith(("GPU-", "MIG-")):
                ids.append(item)
            else:  # CUDA ignores this entry and every one after it
                break
        return ids
    return sorted((p[len("/dev/nvidia"):] for p in glob.glob("/dev/nvidia[0-9]*")), key=int)


def usable_gpus(devices: Sequence[int | str] | None = None,
                available: Sequence[str] | None = None) -> list[str]:
    """The GPU ids workers may bind to: ``available`` (default: :func:`visible_gpus`),
    restricted to the positions ``devices`` (``--devices 0,1``) when given.

    ``--devices`` counts among the *visible* GPUs, as CUDA does: with
    ``CUDA_VISIBLE_DEVICES=2,3``, ``--devices 1`` is physical GPU 3. Without any GPU the list is
    empty (CPU), whatever ``devices`` says. An index past the visible GPUs is a ``ConfigError``.
    """
    pool = list(available if available is not None else visible_gpus())
    if not pool or not devices:
        return pool
    chosen: list[str] = []
    for d in devices:
        index = int(d)
        if not 0 <= index < len(pool):
            raise ConfigError(
                f"--devices {','.join(str(x) for x in devices)}: GPU {index} does not exist; "
                f"this machine shows {len(pool)} GPU(s) (indices 0-{len(pool) - 1})"
            )
        if pool[index] not in chosen:
            chosen.append(pool[index])
    return chosen


def device_for_worker(
    local_index: int, devices: Sequence[int | str] | None = None, available: Sequence[str] | None = None,
    per_worker: int = 1,
) -> str | None:
    """The GPU id a worker binds to: its index on the node modulo the usable devices.

    ``devices`` restricts the choice (``--devices 0,1``, positions among the visible GPUs);
    ``None`` is returned when there is no GPU. The index is the worker's index *on its node*,
    never a global rank. With ``per_worker`` k > 1 (``run.devices_per_trial``: a data-parallel
    trial) worker i gets the k GPUs from position i*k on, comma-joined (``"2,3"``); fewer if
    the node has fewer than k.
    """
    pool = usable_gpus(devices, available)
    if not pool:
        return None
    k = max(1, int(per_worker))
    if k == 1:
        return pool[local_index % len(pool)]
    if k >= len(pool):
        return ",".join(pool)
    groups = len(pool) // k
    start = (local_index % groups) * k
    return ",".join(pool[start:start + k])


def local_rank(environ: Mapping[str, str] | None = None) -> int | None:
    """This process's rank on its node, from the launcher's environment; ``None`` if no
    launcher said. Global ranks (``OMPI_COMM_WORLD_RANK``, ``PMI_RANK``, ``SLURM_PROCID``) are
    deliberately never read."""
    env = _env(environ)
    for key in LOCAL_RANK_VARS:
        value = env.get(key, "").strip()
        if value.isdigit():
            return int(value)
    return None


def local_size(environ: Mapping[str, str] | None = None) -> int | None:
    """How many processes of this job run on this node, from the launcher's environment."""
    env = _env(environ)
    for key in LOCAL_SIZE_VARS:
        value = env.get(key, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return None


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, e.g. under a batch system)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def bind_worker(local_index: int, devices: Sequence[int | str] | None, threads: int,
                per_worker: int = 1) -> str | None:
    """Set CPU threads and ``CUDA_VISIBLE_DEVICES`` for this worker process; returns the GPU id.

    Must run before the process makes any CUDA call; inside the worker, the bound GPU is
    ``cuda:0``. ``threads`` is what each evaluation child may use (``NASFORGE_EVAL_THREADS``).
    """
    gpu = device_for_worker(local_index, devices, per_worker=per_worker)
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    os.environ["NASFORGE_WORKER_INDEX"] = str(local_index)
    os.environ["NASFORGE_EVAL_THREADS"] = str(max(1, int(threads)))
    if "torch" not in sys.modules:
        # OpenMP reads this once, when torch loads: then every thread of the worker (Dask runs
        # tasks in pool threads, whose OpenMP settings are per thread) starts at one thread.
        os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    # The worker itself stays single-threaded: a process that has started an OpenMP thread
    # pool cannot fork a child that computes (the child hangs). Each evaluation child sets
    # ``threads`` for itself.
    torch.set_num_threads(1)
    return gpu


def evaluation_device(environ: Mapping[str, str] | None = None) -> str:
    """The torch device an evaluation trains on: ``cuda:0`` (the worker's bound GPU) when CUDA is
    usable in this process, else ``cpu``. ``NASFORGE_DEVICE=cpu`` forces the CPU.

    Call it only in the process that computes (the evaluation child): asking CUDA in a worker
    before it forks would leave the children an unusable CUDA context."""
    env = _env(environ)
    wanted = env.get("NASFORGE_DEVICE", "").strip().lower()
    if wanted == "cpu" or env.get("CUDA_VISIBLE_DEVICES", None) == "":
        return "cpu"
    import torch

    if wanted.startswith("cuda") or not wanted:
        if torch.cuda.is_available():
            return wanted if wanted.startswith("cuda") else "cuda:0"
    return "cpu"
