"""Data-parallel training (nasforge.execution.data_parallel, nasforge.evaluation.ddp): 2 gloo
ranks on CPU. Every multi-process test has a hard timeout; the group timeout is cut to 5 s."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from nasforge.evaluation.ddp import FAULT_ENV, rank_share
from nasforge.evaluation.trainer import train
from nasforge.execution.data_parallel import (
    TIMEOUT_ENV,
    first_failure,
    launch,
    ranks_from_env,
)

TESTS = str(Path(__file__).resolve().parent)


@pytest.fixture
def rank_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The environment the ranks start with: this test folder importable, 5 s group timeout."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        p for p in (TESTS, os.environ.get("PYTHONPATH")) if p))
    monkeypatch.setenv(TIMEOUT_ENV, "5")
    monkeypatch.delenv(FAULT_ENV, raising=False)
    return dict(os.environ)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is not alive
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except OSError:
        return False


def _children() -> set[int]:
    """Processes whose parent is this one (Linux /proc)."""
    me = str(os.getpid())
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    if fh.read().rsplit(")", 1)[1].split()[1] == me and _alive(int(entry)):
                        found.add(int(entry))
            except (OSError, IndexError):
                continue
    return found


def test_rank_share_drops_the_tail_and_interleaves() -> None:
    perm = torch.arange(11)
    assert rank_share(perm, 0, 2).tolist() == [0, 2, 4, 6, 8]
    assert rank_share(perm, 1, 2).tolist() == [1, 3, 5, 7, 9]  # 10 dropped: 11 mod 2 = 1


def test_ranks_from_env_reads_launchers() -> None:
    assert ranks_from_env({"OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_SIZE": "4"}) == (1, 4)
    assert ranks_from_env({"PMI_RANK": "0", "PMI_SIZE": "2"}) == (0, 2)
    assert ranks_from_env({"SLURM_PROCID": "3", "SLURM_NTASKS": "4"}) == (3, 4)
    assert ranks_from_env({}) is None


@pytest.fixture(scope="module")
def three_launches() -> list[list[Any]]:
    """Three launches in a row (the tiny net without batch norm, the batch-norm broadcast,
    an all-reduce): one set of processes shared by the tests below, to keep CI short."""
    env = {**os.environ, TIMEOUT_ENV: "5",
           "PYTHONPATH": os.pathsep.join(p for p in (TESTS, os.environ.get("PYTHONPATH")) if p)}
    env.pop(FAULT_ENV, None)
    return [launch(target, args, 2, env=env)
            for target, args in (("ddp_targets:train_ranks", (False,)),
                                 ("ddp_targets:bn_sync", ()), ("ddp_targets:hello", ()))]


@pytest.mark.timeout(150)
def test_three_launches_in_a_row_exit_cleanly(three_launches: list[list[Any]]) -> None:
    for ends in three_launches:
        for end in ends:
            assert end.code == 0 and not end.killed, end.output
            low = end.output.lower()
            assert "abort" not in low and "terminate called" not in low, end.output
    assert [e.value for e in three_launches[2]] == [{"status": "ok", "sum": 3.0, "world": 2}] * 2


def test_two_ranks_match_one_process(three_launches: list[list[Any]]) -> None:
    import ddp_targets as T

    ends = three_launches[0]
    assert first_failure(ends, 5) is None, [e.output for e in ends]
    r0, r1 = ends[0].value, ends[1].value
    assert r0["steps"] == 2  # 2 epochs of 10 steps: 20 optimizer steps
    single = T.tiny_net(False)
    train(single, T.tiny_splits(), T.budget())
    for name, param in single.named_parameters():
        assert torch.equal(r0["params"][name], r1["params"][name]), name
        torch.testing.assert_close(r0["params"][name], param.detach(), rtol=1e-5, atol=1e-6)
    initial = dict(T.tiny_net(False).named_parameters())
    assert not torch.allclose(initial["3.weight"], r0["params"]["3.weight"])  # it trained


def test_batch_norm_statistics_are_rank_zeros(three_launches: list[list[Any]]) -> None:
    ends = three_launches[1]
    assert first_failure(ends, 5) is None, [e.output for e in ends]
    before = ends[0].value["before"]
    mean = "1.running_mean"
    assert not torch.allclose(before[0][mean], before[1][mean])  # each rank's own data
    for end in ends:
        for name, value in end.value["after"].items():
            assert torch.equal(value, before[0][name]), (end.rank, name)


@pytest.mark.timeout(120)
def test_killed_rank_fails_fast_and_the_run_resumes(rank_env: dict[str, str],
                                                    tmp_path: Path) -> None:
    state = tmp_path / "run.state.pt"
    # rank 1 dies at global step 15 (epoch 2): the state of epoch 1 is on disk
    env = {**rank_env, FAULT_ENV: "1:15:exit"}
    before = _children()
    started = time.monotonic()
    ends = launch("ddp_targets:train_with_state", (str(state),), 2, env=env)
    took = time.monotonic() - started
    reason = first_failure(ends, 5)
    assert reason is not None and "rank 1 of 2 exited with code 3" in reason, reason
    assert took < 60
    assert _children() <= before  # no rank left behind
    assert state.exists() and torch.load(state, weights_only=True)["epoch"] == 1
    # relaunched without the fault: resumes from epoch 1 and ends where an uncut run ends
    ends = launch("ddp_targets:train_with_state", (str(state),), 2, env=rank_env)
    assert first_failure(ends, 5) is None, [e.output for e in ends]
    import ddp_targets as T

    single = T.tiny_net(False)
    train(single, T.tiny_splits(), T.budget())
    for name, param in single.named_parameters():
        torch.testing.assert_close(ends[0].value["params"][name], param.detach(),
                                   rtol=1e-5, atol=1e-6)
    assert ends[0].value["epochs"] == [1, 2]
    assert not state.exists()  # spent once the run finished


@pytest.mark.timeout(90)
def test_hung_rank_ends_the_group_within_the_timeout(rank_env: dict[str, str]) -> None:
    env = {**rank_env, FAULT_ENV: "1:3:sleep"}
    before = _children()
    started = time.monotonic()
    ends = launch("ddp_targets:train_ranks", (False,), 2, env=env)
    took = time.monotonic() - started
    reason = first_failure(ends, 5)
    assert reason is not None and "rank 0 of 2" in reason and "hung" in reason, reason
    assert ends[1].killed
    assert took < 5 + 40  # the group timeout plus start-up on a busy machine
    assert _children() <= before


@pytest.mark.timeout(150)
def test_search_with_a_failing_data_parallel_trial_goes_on(
        rank_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import tiny_config_dict

    from nasforge.api import Search
    from nasforge.config import config_from_dict

    monkeypatch.setenv(FAULT_ENV, "1:2:exit")  # every trial's rank 1 dies at its second step
    cfg = config_from_dict(tiny_config_dict(run={"workers": 1, "max_evals": 2,
                                                 "devices_per_trial": 2}), "t")
    search = Search(cfg, tmp_path / "s.db")
    try:
        summary = search.run()
        trials = search.storage.trials()
    finally:
        search.close()
    assert summary.stop_reason != "interrupted"
    assert len(trials) == 2
    for trial in trials:
        assert trial.status == "failed"
        assert "data-parallel rank 1 of 2 exited with code 3" in (trial.error or ""), trial.error


@pytest.mark.timeout(150)
def test_train_command_with_two_processes(rank_env: dict[str, str], tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from nasforge.cli import main
    from nasforge.storage import StudyStorage

    preset = tmp_path / "tiny.yaml"
    preset.write_text(
        "name: tiny\nkind: final-training\ndata: {dataset: synthetic, val_fraction: 0.2}\n"
        "space: {name: global, settings: {max_nodes: 6, head: gap}}\n"
        "final: {top: 1, seeds: 1, budget: {epochs: 2, width: 4, batch_size: 32, "
        "optimizer: sgd, lr: 0.05, threads: 1, precision: fp32, channels_last: false}}\n")
    genome = tmp_path / "g.json"
    assert main(["space", "sample", "--json", "--n", "1", "--width", "4", "--seed", "1"]) == 0
    genome.write_text(capsys.readouterr().out)
    db = tmp_path / "t.db"
    assert main(["train", str(genome), "--preset", str(preset), "--nproc", "2",
                 "--storage", str(db)]) == 0
    assert "test acc" in capsys.readouterr().out
    storage = StudyStorage.open(db)
    try:
        runs = storage.final_runs()
    finally:
        storage.close()
    assert len(runs) == 1 and runs[0].status == "ok"
    assert json.loads(json.dumps(runs[0].metrics))["nproc"] == 2


def test_devices_per_trial_groups_gpus_and_is_checked() -> None:
    from conftest import tiny_config_dict

    from nasforge.config import config_from_dict
    from nasforge.errors import ConfigError
    from nasforge.execution.devices import device_for_worker

    gpus = ["0", "1", "2", "3"]
    assert [device_for_worker(i, available=gpus, per_worker=2) for i in range(3)] == [
        "0,1", "2,3", "0,1"]
    assert device_for_worker(1, available=gpus) == "1"
    assert device_for_worker(0, available=[], per_worker=2) is None
    cfg = config_from_dict(tiny_config_dict(run={"devices_per_trial": 2}), "t")
    assert cfg.run.devices_per_trial == 2
    with pytest.raises(ConfigError, match="devices_per_trial"):
        config_from_dict(tiny_config_dict(run={"devices_per_trial": 0}), "t")


def test_data_parallel_evaluate_needs_a_process() -> None:
    from nasforge.execution.data_parallel import DataParallelEvaluate

    with pytest.raises(Exception, match=">= 1"):
        DataParallelEvaluate(0)


def test_a_rank_that_lost_its_peer_is_not_named_as_the_cause() -> None:
    """Rank 1 exits on its own; rank 0, seen in the same poll round, fails with gloo's
    connection reset: the reason names rank 1 (a race the full suite once lost)."""
    from nasforge.execution.data_parallel import RankEnd

    reset = RankEnd(0, 1, None, 2.0, "RuntimeError: [pair.cc:537] Read error [127.0.0.1]:1: "
                    "Connection reset by peer.", poll=4)
    crashed = RankEnd(1, 3, None, 2.0, "fault: exit", poll=4)
    assert "rank 1 of 2 exited with code 3" in first_failure([reset, crashed], 5)
    later = RankEnd(1, 3, None, 2.5, "fault: exit", poll=5)
    assert "rank 1 of 2" in first_failure([reset, later], 5)
