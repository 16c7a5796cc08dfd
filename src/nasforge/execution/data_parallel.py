"""Start the ranks of one data-parallel training, watch them, and turn their end into a result.

One trial trained by N processes (``nasforge train --nproc N``, ``run.devices_per_trial: N``):

- **Fresh ranks.** :func:`launch` starts N new Python interpreters (``python -m
  nasforge.execution.data_parallel rank DIR``, as torchrun does): never a fork of a process that
  has used torch's thread pool. They meet on a free loopback port (``MASTER_ADDR=127.0.0.1``)
  with gloo on CPU or NCCL on GPU (rank r on ``cuda:r`` of the GPUs the worker was bound to).
  On CPU the ranks share the worker's cores: each gets ``threads // N`` threads.
- **Failure.** A rank that exits non-zero, is killed, or returns a failed result ends the whole
  group at once (the others are killed) and the trial fails with that rank's reason. A rank
  that hangs stops the others at their next collective; they give up after the group timeout
  (:data:`TIMEOUT_ENV`, default :data:`DEFAULT_TIMEOUT` seconds) and the trial fails with
  "timed out". After a rank ended well, the others must end within that timeout too. Every rank
  dies with its launcher (``PR_SET_PDEATHSIG``) and shares its process group, so no rank is left
  behind however the launcher ends. Waits on rank 0's one-off work (speed measurement, saving
  the per-epoch state) use a second group with a longer timeout (:data:`SLOW_TIMEOUT_ENV`,
  default 600 s).
- **Supernets.** A ``supernet`` trial (DARTS, GDAS) is searched by the N ranks too
  (:func:`_search_rank`): each takes its share of both halves' batches and the weight and
  architecture gradients are averaged, so every rank holds the same architecture parameters
  and discretises to the same genome (``nasforge.oneshot.search.fit_supernet``).
- **Clean exit.** A rank that succeeded flushes its output, destroys the process group and
  leaves normally; a failed one flushes and leaves at once.
- **Clusters.** ``mpiexec -n N`` or ``srun -n N`` can launch the ranks of one training as the
  whole job (``python -m nasforge.execution.data_parallel train GENOME.json ...``, see
  :func:`main`): the rank and world size come from the launcher's environment
  (:data:`RANK_VARS`, :data:`SIZE_VARS`), the meeting point from ``MASTER_ADDR`` and
  ``MASTER_PORT``.

How each rank ended and which failure is the reason: :mod:`nasforge.execution.rank_ends`.
"""

from __future__ import annotations

import importlib
import os
import pickle
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from nasforge.errors import ConfigError
from nasforge.execution.rank_ends import RankEnd, _failed_value, first_failure
from nasforge.execution.results import EvalResult
from nasforge.execution.tasks import EvalTask, worker_name

TIMEOUT_ENV = "NASFORGE_DDP_TIMEOUT"
DEFAULT_TIMEOUT = 20.0
"""Seconds a rank waits for the others at a collective (and the others for a finished rank to
be joined) before the group is ended."""
SLOW_TIMEOUT_ENV = "NASFORGE_DDP_SLOW_TIMEOUT"
DEFAULT_SLOW_TIMEOUT = 600.0
#: Global rank, by launcher: torchrun, Open MPI, MPICH/Intel MPI (Hydra, PMI), SLURM srun, PMIx.
RANK_VARS: tuple[str, ...] = ("RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK", "SLURM_PROCID",
                              "PMIX_RANK")
#: The job's size, in the same order.
SIZE_VARS: tuple[str, ...] = ("WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_NTASKS",
                              "PMIX_SIZE")
DEFAULT_PORT = 29511
"""``MASTER_PORT`` when a cluster launch sets none."""
_TAIL = 3000


def _seconds(env: str, default: float) -> float:
    text = os.environ.get(env, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{env}={text!r} is not a number of seconds") from None
    if value <= 0:
        raise ConfigError(f"{env} must be positive, got {text}")
    return value


def group_timeout() -> float:
    """The group timeout in seconds: ``$NASFORGE_DDP_TIMEOUT``, default 20."""
    return _seconds(TIMEOUT_ENV, DEFAULT_TIMEOUT)


def ranks_from_env(environ: Mapping[str, str] | None = None) -> tuple[int, int] | None:
    """(rank, world size) set by a launcher (torchrun, mpiexec, srun), or None if none did."""
    env = os.environ if environ is None else environ
    for rank_key, size_key in zip(RANK_VARS, SIZE_VARS):
        rank, size = env.get(rank_key, "").strip(), env.get(size_key, "").strip()
        if rank.isdigit() and size.isdigit() and int(rank) < int(size):
            return int(rank), int(size)
    return None


@dataclass
class RankContext:
    """What a rank's target function gets first: its rank, the world size, its rank on its
    node, its torch device and a gloo group with the long timeout (for waits on rank 0)."""

    rank: int
    world: int
    local_rank: int
    device: str
    slow_group: Any = None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    return data[-_TAIL:].decode("utf-8", "replace")


def _load(path: Path) -> Any:
    try:
        with open(path, "rb") as fh:
            return pickle.load(fh)
    except (OSError, EOFError, pickle.UnpicklingError):
        return None


def launch(target: str, args: Sequence[Any], nproc: int, *, threads: int | None = None,
           timeout: float | None = None, env: Mapping[str, str] | None = None) -> list[RankEnd]:
    """Run ``target`` (``"module:function"``, called as ``function(RankContext, *args)``) in
    ``nproc`` fresh processes joined in one process group; each rank's return value comes
    back. Never raises for what a rank does: a rank that fails (non-zero exit, killed, or a
    result whose status is not ok) ends the others at once; after a rank ended well the
    others get ``timeout`` seconds (default :func:`group_timeout`) to end, then are killed.

    ``threads``: CPU threads of all ranks together (default ``$NASFORGE_EVAL_THREADS`` or 1);
    each rank gets ``threads // nproc`` (at least 1). Returns one :class:`RankEnd` per rank,
    by rank. ``ConfigError`` for ``nproc`` < 1.
    """
    if nproc < 1:
        raise ConfigError(f"the number of data-parallel processes must be >= 1, got {nproc}")
    timeout = group_timeout() if timeout is None else float(timeout)
    total = threads or int(os.environ.get("NASFORGE_EVAL_THREADS", "0") or 0) or 1
    per_rank = max(1, total // nproc)
    workdir = Path(tempfile.mkdtemp(prefix="nasforge-ddp-"))
    src = str(Path(__file__).resolve().parents[2])  # this nasforge, whatever the cwd
    procs: list[subprocess.Popen[bytes]] = []
    ends: dict[int, RankEnd] = {}
    poll = 0
    try:
        with open(workdir / "job.pkl", "wb") as fh:
            pickle.dump({"target": target, "args": tuple(args)}, fh)
        base = dict(os.environ if env is None else env)
        base.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()),
                    WORLD_SIZE=str(nproc), LOCAL_WORLD_SIZE=str(nproc),
                    OMP_NUM_THREADS=str(per_rank), NASFORGE_EVAL_THREADS=str(per_rank),
                    NASFORGE_DDP_LOCAL="1", TORCH_NCCL_ASYNC_ERROR_HANDLING="1",
                    PYTHONPATH=os.pathsep.join(p for p in (src, base.get("PYTHONPATH")) if p))
        base.setdefault(TIMEOUT_ENV, str(timeout))
        for rank in range(nproc):
            out = open(workdir / f"rank{rank}.log", "wb")
            try:
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "nasforge.execution.data_parallel", "rank",
                     str(workdir)],
                    env={**base, "RANK": str(rank), "LOCAL_RANK": str(rank)},
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    close_fds=True))
            finally:
                out.close()
        deadline: float | None = None
        while len(ends) < nproc:
            poll += 1
            for rank, proc in enumerate(procs):
                if rank in ends or proc.poll() is None:
                    continue
                value = _load(workdir / f"result{rank}.pkl")
                ends[rank] = RankEnd(rank, proc.returncode, value, time.time(),
                                     _tail(workdir / f"rank{rank}.log"), poll=poll)
                if proc.returncode != 0 or _failed_value(value):
                    deadline = 0.0  # a failed rank ends the group now
                elif deadline is None:
                    deadline = time.time() + timeout
            if deadline is not None and time.time() >= deadline and len(ends) < nproc:
                break
            time.sleep(0.05)
    finally:
        for rank, proc in enumerate(procs):
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if rank not in ends:
                ends[rank] = RankEnd(rank, proc.returncode, _load(workdir / f"result{rank}.pkl"),
                                     time.time(), _tail(workdir / f"rank{rank}.log"), killed=True,
                                     poll=poll + 1)
        shutil.rmtree(workdir, ignore_errors=True)
    return [ends[r] for r in sorted(ends)]


def as_data_parallel(task: EvalTask, nproc: int) -> EvalTask:
    """``task`` as a ``data_parallel`` task of ``nproc`` ranks, each evaluating it as its own
    kind (``extra["rank_kind"]``); a task whose kind cannot run data-parallel (a table
    lookup, a probe) or is already data-parallel comes back as is."""
    from nasforge.execution.kinds import get_kind

    if task.kind == "data_parallel" or not get_kind(task.kind).parallel:
        return task
    import dataclasses

    return dataclasses.replace(task, kind="data_parallel",
                               extra={**task.extra, "nproc": int(nproc), "rank_kind": task.kind})


def evaluate_data_parallel(task: EvalTask, timeout: float | None = None) -> EvalResult:
    """The ``data_parallel`` kind's evaluate: train ``task`` with ``task.extra["nproc"]``
    ranks; rank 0's result comes back with ``nproc`` set, or a failed result naming the
    first rank that failed (with every rank's output tail as ``stderr``)."""
    started = time.time()
    nproc = int(task.extra.get("nproc", 1))
    timeout = group_timeout() if timeout is None else timeout
    ends = launch("nasforge.execution.data_parallel:evaluate_rank", (task,), nproc,
                  timeout=timeout)
    reason = first_failure(ends, timeout)
    value = ends[0].value
    result = value if isinstance(value, EvalResult) else EvalResult(
        trial_number=task.trial_number, attempt=task.attempt, started_at=started)
    if reason is not None:
        result = result.replace(status="failed", error=reason, stderr="\n".join(
            f"--- rank {e.rank} ---\n{e.output[-1500:]}" for e in ends))
    result.worker = worker_name()
    result.nproc = nproc
    result.finished_at = time.time()
    return result


class DataParallelEvaluate:
    """A picklable evaluate function (as ``tasks.evaluate_task``) that trains a task with
    ``nproc`` data-parallel ranks (:func:`as_data_parallel`, :func:`evaluate_data_parallel`).
    Used inside ``isolation.IsolatedEvaluate`` so trial timeouts and memory limits still
    hold."""

    loads_data = False

    def __init__(self, nproc: int, timeout: float | None = None) -> None:
        if nproc < 1:
            raise ConfigError(f"devices per trial must be >= 1, got {nproc}")
        self.nproc = int(nproc)
        self.timeout = timeout

    def __call__(self, task: EvalTask) -> EvalResult:
        task = as_data_parallel(task, self.nproc)
        if task.kind != "data_parallel":  # runs in this one process rather than N times over
            from nasforge.execution.tasks import evaluate_task

            return evaluate_task(task)
        return evaluate_data_parallel(task, self.timeout)


def evaluate_rank(ctx: RankContext, task: EvalTask) -> EvalResult:
    """One rank's part of a data-parallel evaluation: the task's own kind
    (``extra["rank_kind"]``, default ``train``) with the data-parallel trainer; only rank 0
    writes checkpoints and state. A task's ``extra["epoch_state"]`` names the per-epoch state
    file an interrupted run resumes from. A ``supernet`` task is a one-shot search over the
    ranks (:func:`_search_rank`)."""
    import dataclasses

    if task.extra.get("rank_kind") == "supernet":
        return _search_rank(ctx, task)

    from torch import nn

    from nasforge.evaluation.ddp import train_data_parallel
    from nasforge.execution.tasks import evaluate_task

    def train_fn(model: Any, splits: Any, budget: Any, **kwargs: Any) -> Any:
        if ctx.device.startswith("cuda"):
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return train_data_parallel(model, splits, budget, slow_group=ctx.slow_group,
                                   epoch_state=task.extra.get("epoch_state"), **kwargs)

    own = dataclasses.replace(task, kind=str(task.extra.get("rank_kind", "train")))
    result = evaluate_task(own, train_fn=train_fn, device=ctx.device, primary=ctx.rank == 0)
    if result.metrics:
        result.metrics["nproc"] = ctx.world  # stored with the trial / final run
    return result


def _search_rank(ctx: RankContext, task: EvalTask) -> EvalResult:
    """One rank's part of a data-parallel supernet search
    (``oneshot.search.evaluate_supernet`` with the ranks' group): every rank returns the same
    result (the architecture parameters are identical on all), rank 0's is stored; a search
    that fails (e.g. a diverged supernet, which every rank sees at the same step) is a failed
    result with the reason (``tasks.guarded``)."""
    import dataclasses

    from nasforge.evaluation.ddp import RankGroup
    from nasforge.execution.tasks import guarded
    from nasforge.oneshot.search import evaluate_supernet

    own = dataclasses.replace(task, kind="supernet")
    result = guarded(own, lambda t: evaluate_supernet(
        t, device=ctx.device, group=RankGroup(ctx.slow_group, ctx.device)))
    if isinstance(result.metrics, dict):
        result.metrics["nproc"] = ctx.world
    return result


def ping(ctx: RankContext) -> dict[str, Any]:
    """A rank's smallest job: all-reduce its rank + 1 (a check that the group works; the sum
    over N ranks is N(N+1)/2)."""
    import torch
    import torch.distributed as dist

    value = torch.tensor([float(ctx.rank + 1)], device=ctx.device)
    dist.all_reduce(value)
    return {"status": "ok", "sum": float(value.item()), "world": ctx.world, "device": ctx.device}


def _rank_device(local_rank: int, world_on_node: int) -> str:
    """``cuda:<local rank>`` when CUDA is usable here (``ConfigError`` if this node shows fewer
    GPUs than ranks: NCCL refuses two ranks on one GPU), else ``cpu``."""
    from nasforge.execution.devices import evaluation_device

    if evaluation_device() == "cpu":
        return "cpu"
    import torch

    count = torch.cuda.device_count()
    if count < world_on_node:
        raise ConfigError(f"{world_on_node} data-parallel ranks on this node need as many GPUs; "
                          f"it shows {count} (NCCL refuses two ranks on one GPU; "
                          "NASFORGE_DEVICE=cpu trains on CPU with gloo)")
    return f"cuda:{local_rank}"


def _rank_main(workdir: Path) -> None:
    """Body of one rank started by :func:`launch`; never returns."""
    if os.environ.get("NASFORGE_DDP_LOCAL") == "1":
        from nasforge.execution.isolation import die_with_parent

        die_with_parent()
    code = 0
    ok = False
    try:
        with open(workdir / "job.pkl", "rb") as fh:
            job = pickle.load(fh)
        module, _, name = job["target"].partition(":")
        function = getattr(importlib.import_module(module), name)
        ctx = _join_group()
        value = function(ctx, *job["args"])
        tmp = workdir / f"result{ctx.rank}.pkl.tmp"
        with open(tmp, "wb") as fh:
            pickle.dump(value, fh)
        os.replace(tmp, workdir / f"result{ctx.rank}.pkl")
        ok = not _failed_value(value)
    except BaseException:  # noqa: BLE001 - the launcher reads the traceback from the log
        traceback.print_exc()
        code = 1
    _leave(code, ok)


def _join_group() -> RankContext:
    """Join the process group described by the environment (rank, size, MASTER_ADDR/PORT)."""
    from datetime import timedelta

    import torch
    import torch.distributed as dist

    from nasforge.execution.devices import local_rank, local_size

    found = ranks_from_env()
    if found is None:
        raise ConfigError("no rank and world size in the environment (RANK/WORLD_SIZE, "
                          "OMPI_COMM_WORLD_*, PMI_*, SLURM_PROCID/SLURM_NTASKS)")
    rank, world = found
    local = local_rank()
    local = rank if local is None else local
    threads = int(os.environ.get("NASFORGE_EVAL_THREADS", "0") or 0)
    if threads > 0:
        torch.set_num_threads(threads)
    device = _rank_device(local, local_size() or world)
    if device.startswith("cuda"):
        torch.cuda.set_device(device)
    addr = os.environ.get("MASTER_ADDR", "127.0.0.1")
    port = int(os.environ.get("MASTER_PORT", str(DEFAULT_PORT)))
    dist.init_process_group("nccl" if device.startswith("cuda") else "gloo",
                            init_method=f"tcp://{addr}:{port}", rank=rank, world_size=world,
                            timeout=timedelta(seconds=group_timeout()))
    slow = dist.new_group(backend="gloo",
                          timeout=timedelta(seconds=_seconds(SLOW_TIMEOUT_ENV,
                                                             DEFAULT_SLOW_TIMEOUT)))
    return RankContext(rank, world, local, device, slow)


def _leave(code: int, ok: bool) -> None:
    """Flush; after success destroy the process group and exit normally, else exit at once
    (a group whose peer is gone may not be torn down politely)."""
    sys.stdout.flush()
    sys.stderr.flush()
    if code == 0 and ok:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
        sys.exit(0)
    os._exit(code)


def _train_main(argv: Sequence[str]) -> None:
    """``train GENOME.json --preset P --out DIR [--width W --epochs E]``: every rank of a
    cluster launch builds the same final-training task; rank 0 writes DIR/result.json and
    DIR/weights.pt, and DIR/state.pt after every epoch (a relaunch resumes from it)."""
    import argparse
    import json

    from nasforge.config import load_config
    from nasforge.execution.tasks import model_seed
    from nasforge.spaces import chosen_network_space
    from nasforge.spaces.base import genome_key
    from nasforge.storage.sqlite import budget_key

    parser = argparse.ArgumentParser(prog="python -m nasforge.execution.data_parallel train")
    parser.add_argument("genome")
    parser.add_argument("--preset", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(list(argv))
    config = load_config(args.preset)
    if config.final is None:
        raise ConfigError(f"{args.preset} has no final budget")
    changes = {k: v for k, v in (("width", args.width), ("epochs", args.epochs)) if v}
    budget = config.final.budget.replace(**changes)
    data = config.data.task_dict()
    if args.data_dir:
        data["data_dir"] = args.data_dir
    # a chosen network: the search's limits on candidates (input_ops) do not refuse it
    space = chosen_network_space(config.space.name, dict(config.space.settings))
    from nasforge.cli import _read_genome

    genome = _read_genome(space, args.genome)
    gkey = genome_key(space, genome)
    out = Path(args.out)
    task = EvalTask(trial_number=-1, space_name=space.name, space_settings=space.settings(),
                    genome=space.genome_to_dict(genome), budget=budget.to_dict(), data=data,
                    model_seed=model_seed(config.seed, gkey, budget_key(budget.to_dict()), 0),
                    checkpoint_path=str(out / "weights.pt"), final=True,
                    extra={"epoch_state": str(out / "state.pt")})
    ctx = _join_group()
    result = evaluate_rank(ctx, task)
    if ctx.rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        (out / "result.json").write_text(json.dumps(result.to_dict(), indent=1, default=str))
        print(f"rank 0: {result.status} test acc {result.test_acc} "
              f"error {result.error}", flush=True)
    _leave(0, not _failed_value(result))


def main(argv: Sequence[str] | None = None) -> None:
    """``rank DIR`` (a rank started by :func:`launch`) or ``train ...`` (a cluster launch)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["rank"] and len(argv) == 2:
        _rank_main(Path(argv[1]))
    elif argv[:1] == ["train"]:
        try:
            _train_main(argv[1:])
        except ConfigError as exc:
            print(f"nasforge: {exc}", file=sys.stderr, flush=True)
            os._exit(2)
    else:
        print("usage: python -m nasforge.execution.data_parallel train GENOME.json --preset P "
              "--out DIR [--width W] [--epochs E] [--data-dir D]", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()


__all__ = ["DEFAULT_TIMEOUT", "DataParallelEvaluate", "RankContext", "RankEnd", "as_data_parallel",
           "evaluate_data_parallel", "evaluate_rank", "first_failure", "group_timeout", "launch", "ping", "ranks_from_env"]
