"""Worker-to-GPU mapping, tested on CPU: no CUDA call is ever made here."""

from __future__ import annotations

import os
import sys

import pytest

from nasforge.errors import ConfigError
from nasforge.execution import devices
from nasforge.execution.devices import (
    bind_worker,
    device_for_worker,
    local_rank,
    local_size,
    usable_gpus,
    visible_gpus,
)
from nasforge.execution.executors import threads_per_worker

pytestmark = pytest.mark.timeout(30)


def test_worker_index_modulo_devices() -> None:
    gpus = ["0", "1", "2", "3"]
    assert [device_for_worker(i, available=gpus) for i in range(9)] == \
        ["0", "1", "2", "3", "0", "1", "2", "3", "0"]
    assert [device_for_worker(i, available=["0"]) for i in range(3)] == ["0", "0", "0"]


def test_devices_restrict_by_position_among_visible_gpus() -> None:
    gpus = ["0", "1", "2", "3"]
    assert [device_for_worker(i, [0, 1], gpus) for i in range(4)] == ["0", "1", "0", "1"]
    assert [device_for_worker(i, [2, 3], gpus) for i in range(3)] == ["2", "3", "2"]
    # --devices counts among the visible GPUs, as CUDA does: physical GPUs 5 and 7 here
    assert [device_for_worker(i, [1], ["5", "7"]) for i in range(2)] == ["7", "7"]
    assert [device_for_worker(i, (0, 1), ["5", "7"]) for i in range(3)] == ["5", "7", "5"]
    assert usable_gpus([1, 1, 0], ["5", "7"]) == ["7", "5"]  # repeats dropped, order kept
    with pytest.raises(ConfigError, match=r"GPU 2 does not exist.*2 GPU\(s\)"):
        device_for_worker(0, [2], ["5", "7"])


def test_no_gpu_means_none_whatever_devices_say() -> None:
    assert device_for_worker(0, available=[]) is None
    assert device_for_worker(3, [0, 1], available=[]) is None
    assert usable_gpus(None, []) == []


@pytest.mark.parametrize("value, expected", [
    ("0,1,2", ["0", "1", "2"]),
    (" 2 , 3 ", ["2", "3"]),
    ("", []),
    ("-1", []),
    ("1,-1,0", ["1"]),           # CUDA stops at the first invalid entry
    ("0,abc,1", ["0"]),
    ("GPU-8f1a2b3c-aaaa-bbbb-cccc-0123456789ab,1",
     ["GPU-8f1a2b3c-aaaa-bbbb-cccc-0123456789ab", "1"]),
    ("MIG-3e1b0c22-1111-2222-3333-444455556666", ["MIG-3e1b0c22-1111-2222-3333-444455556666"]),
])
def test_cuda_visible_devices_parsing(value: str, expected: list[str]) -> None:
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": value}) == expected


def test_without_cuda_visible_devices_the_device_files_count(monkeypatch) -> None:
    files = ["/dev/nvidia1", "/dev/nvidia0", "/dev/nvidia10", "/dev/nvidia2"]
    monkeypatch.setattr(devices.glob, "glob", lambda pattern: list(files))
    assert visible_gpus({}) == ["0", "1", "2", "10"]
    monkeypatch.setattr(devices.glob, "glob", lambda pattern: [])
    assert visible_gpus({}) == []


@pytest.mark.parametrize("env, expected", [
    ({"OMPI_COMM_WORLD_LOCAL_RANK": "1", "OMPI_COMM_WORLD_RANK": "9"}, 1),
    ({"MPI_LOCALRANKID": "2", "PMI_RANK": "14"}, 2),
    ({"SLURM_LOCALID": "3", "SLURM_PROCID": "27"}, 3),
    ({"MV2_COMM_WORLD_LOCAL_RANK": "0", "MV2_COMM_WORLD_RANK": "5"}, 0),
    ({"PALS_LOCAL_RANKID": "1", "PALS_RANKID": "33"}, 1),
    ({"LOCAL_RANK": "2", "RANK": "6"}, 2),
    # only global ranks known: never used as a device index
    ({"OMPI_COMM_WORLD_RANK": "9", "PMI_RANK": "9", "SLURM_PROCID": "9", "RANK": "9"}, None),
    ({}, None),
])
def test_local_rank_never_from_a_global_rank(env: dict[str, str], expected: int | None) -> None:
    assert local_rank(env) == expected


def test_global_rank_ten_on_a_four_gpu_node_binds_by_its_local_rank() -> None:
    # rank 10 of a job with 3 processes per node: local rank 1 -> GPU 1 (10 % 4 would be 2)
    env = {"OMPI_COMM_WORLD_RANK": "10", "OMPI_COMM_WORLD_LOCAL_RANK": "1",
           "OMPI_COMM_WORLD_LOCAL_SIZE": "3"}
    assert device_for_worker(local_rank(env), available=["0", "1", "2", "3"]) == "1"
    assert local_size(env) == 3


def test_threads_never_oversubscribe_cores() -> None:
    assert threads_per_worker(2, cores=2) == 1
    assert threads_per_worker(1, cores=2) == 2
    assert threads_per_worker(3, cores=2) == 1
    assert threads_per_worker(4, cores=16) == 4


def test_bind_worker_sets_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5")
    for key in ("NASFORGE_WORKER_INDEX", "NASFORGE_EVAL_THREADS"):
        monkeypatch.delenv(key, raising=False)
    assert bind_worker(3, None, 2) == "5"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "5"  # inside the worker its GPU is cuda:0
    assert os.environ["NASFORGE_WORKER_INDEX"] == "3"
    assert os.environ["NASFORGE_EVAL_THREADS"] == "2"
    import torch

    assert torch.get_num_threads() == 1  # the worker itself stays single-threaded
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert bind_worker(0, None, 1) is None
    assert os.environ["CUDA_VISIBLE_DEVICES"] == ""
    assert "torch.cuda" not in sys.modules or not torch.cuda.is_initialized()


def test_evaluation_device_is_cpu_when_unbound_forced_or_without_cuda(monkeypatch) -> None:
    from nasforge.execution.devices import evaluation_device

    assert evaluation_device({"CUDA_VISIBLE_DEVICES": ""}) == "cpu"  # a worker bound to no GPU
    assert evaluation_device({"NASFORGE_DEVICE": "cpu", "CUDA_VISIBLE_DEVICES": "0"}) == "cpu"
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert evaluation_device({"CUDA_VISIBLE_DEVICES": "3"}) == "cuda:0"  # the bound GPU
    assert evaluation_device({"NASFORGE_DEVICE": "cuda:1"}) == "cuda:1"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert evaluation_device({"CUDA_VISIBLE_DEVICES": "3"}) == "cpu"


def test_worker_slots_prefer_what_the_executor_knows() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from nasforge.execution.runner import worker_slots

    with ThreadPoolExecutor(1) as pool:
        assert worker_slots(pool, 3) == 3  # nothing known: the configured run.workers
        pool.nasforge_workers = 5  # e.g. five worker ranks under mpiexec
        assert worker_slots(pool, 2) == 5
        pool.nasforge_workers = 0
        assert worker_slots(pool, 0) == 1
