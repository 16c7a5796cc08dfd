"""Worker-to-device binding, decided before any CUDA call."""

from __future__ import annotations

import glob
import os
from typing import Sequence


def visible_gpus(environ: dict[str, str] | None = None) -> list[str]:
    """GPU ids this process may use, without touching CUDA: ``CUDA_VISIBLE_DEVICES`` when set,
    else the ``/dev/nvidiaN`` device files."""
    env = os.environ if environ is None else environ
    value = env.get("CUDA_VISIBLE_DEVICES")
    if value is not None:
        return [v.strip() for v in value.split(",") if v.strip() and v.strip() != "-1"]
    return sorted(
        (p[len("/dev/nvidia"):] for p in glob.glob("/dev/nvidia[0-9]*")), key=int
    )


def device_for_worker(
    local_index: int, devices: Sequence[int | str] | None = None, available: Sequence[str] | None = None
) -> str | None:
    """The GPU id a worker binds to: its index on the node modulo the usable devices.

    ``devices`` restricts the choice (``--devices 0,1``); ``None`` is returned when there is no
    GPU. Never derived from a global rank.
    """
    pool = [str(d) for d in devices] if devices else list(available if available is not None
                                                          else visible_gpus())
    if not pool:
        return None
    return pool[local_index % len(pool)]


def bind_worker(local_index: int, devices: Sequence[int | str] | None, threads: int) -> str | None:
    """Set CPU threads and ``CUDA_VISIBLE_DEVICES`` for this worker process; returns the GPU id.

    Must run before the process makes any CUDA call; inside the worker, the bound GPU is
    ``cuda:0``.
    """
    gpu = device_for_worker(local_index, devices)
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    os.environ["NASFORGE_WORKER_INDEX"] = str(local_index)
    os.environ["NASFORGE_EVAL_THREADS"] = str(threads)
    import torch

    # The worker itself stays single-threaded: a process that has started an OpenMP thread
    # pool cannot fork a child that computes (the child hangs). Each evaluation child sets
    # ``threads`` for itself.
    torch.set_num_threads(1)
    return gpu
