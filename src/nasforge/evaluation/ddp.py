"""Train one network over the ranks of a ``torch.distributed`` group (data parallelism).

The function here runs inside *every* rank of an initialised process group (gloo on CPU,
NCCL on GPU; :mod:`nasforge.execution.data_parallel` starts the ranks). It is the trainer's
loop (:mod:`nasforge.evaluation.trainer`) with these differences:

- ``budget.batch_size`` is the **global** batch: each of the N ranks takes ``batch_size / N``
  images a step (``ConfigError`` unless N divides it), and ``DistributedDataParallel`` averages
  the gradients, so a step is the step of one process on the whole batch.
- **Data split.** Every epoch each rank draws the same permutation of the training images
  from one generator seeded by ``budget.seed`` (the one-process trainer's order), *drops* its
  last ``n mod N`` entries (at most N-1 images an epoch, other ones every epoch) and takes
  every N-th of the rest, starting at its rank. Step ``s`` of rank ``r`` is then exactly the
  images of the one-process step ``s`` at positions ``r, r+N, ...``: with ``n`` divisible by N
  the run follows the one-process run step by step (tested on CPU to rtol 1e-5). Every rank
  holds the same share, so the last, partial batch is partial alike on every rank (no padding:
  a padded image would be counted twice in the mean).
- **Batch norm.** On GPU the caller converts it to ``SyncBatchNorm`` (statistics over the
  global batch). On CPU (where ``SyncBatchNorm`` refuses CPU modules) each rank keeps running
  statistics of its own shard and rank 0's buffers are broadcast to all ranks before every
  evaluation and at the end, so the evaluated and saved network is rank 0's.
- **Evaluation** is split over the ranks (each takes a contiguous 1/N of the validation
  images) and the correct counts and loss sums are all-reduced: the accuracy is exactly the
  one rank 0 alone would measure, in 1/N of the time, and no rank idles at a collective
  while another evaluates (which would trip the group's timeout). Checkpoints, progress
  lines and the stored result are written by rank 0 only.
- **Speed options** are chosen once, on rank 0 (``trainer.choose_speed``), and broadcast.
- **Consistent decisions.** The loss each rank records is the all-reduced mean over ranks, so
  a NaN loss, early stopping and the pruner's stop request (asked on rank 0, broadcast) end
  every rank at the same step.
- ``budget.threads`` (when set) is each *process's* thread count; left unset, each rank takes
  its share of the worker's threads (the launcher's ``threads // N``).

The loop itself is the trainer's (``trainer.train`` with a :class:`RankGroup`, whose hooks
make the differences above); the one-shot search (``nasforge.oneshot.search.fit_supernet``)
takes the same group to train a supernet on N ranks (its architecture gradients averaged like
the weights', so every rank holds the same architecture parameters).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from nasforge.data import DataSplits
from nasforge.errors import ConfigError
from nasforge.evaluation.budget import Budget
from nasforge.evaluation.groups import EVAL_BATCH, SingleProcess
from nasforge.evaluation.metrics import evaluate_accuracy
from nasforge.evaluation.speed import SpeedChoice
from nasforge.evaluation.trainer import TrainResult, train

__all__ = ["FAULT_ENV", "RankGroup", "rank_share", "sync_buffers", "train_data_parallel"]

_RANK_SEED_STRIDE = 7919
"""Rank r seeds its augmentation and dropout generators with seed + r * this (rank 0 keeps the
one-process run's streams)."""
FAULT_ENV = "NASFORGE_DDP_FAULT"
"""Test hook: ``RANK:STEP:exit`` makes that rank ``os._exit(3)`` before its global step STEP
(counted from 1 over the whole run); ``RANK:STEP:sleep`` makes it sleep for an hour there."""


def rank_share(perm: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """Rank ``rank``'s share of one epoch's permutation ``perm`` [n]: the last ``n mod world``
    entries dropped, then every ``world``-th entry starting at ``rank`` ([n // world])."""
    usable = perm.shape[0] - perm.shape[0] % world
    return perm[rank:usable:world]


def sync_buffers(model: nn.Module, src: int = 0) -> None:
    """Broadcast ``src``'s buffers (batch-norm running statistics and counters) to every rank
    of the default group, in place. A no-op outside an initialised group."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    for buffer in model.buffers():
        dist.broadcast(buffer.data, src=src)


def _fault(rank: int, step: int) -> None:
    spec = os.environ.get(FAULT_ENV, "")
    if not spec:
        return
    who, at, what = spec.split(":")
    if int(who) == rank and int(at) == step:
        if what == "exit":
            os._exit(3)
        time.sleep(3600)


class RankGroup(SingleProcess):
    """The ranks of the default ``torch.distributed`` group training one network (see the
    module docstring for what each hook does). ``slow_group``: a group with a long timeout
    for the waits on rank 0's one-off work (speed measurement, per-epoch saving); default:
    the default group. ``device``: this rank's device (collectives of the default group run
    there; NCCL needs CUDA tensors)."""

    def __init__(self, slow_group: Any = None, device: str | torch.device = "cpu") -> None:
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.slow_group = slow_group
        self.device = torch.device(device)

    def usable(self, n: int, data: DataSplits, budget: Budget) -> int:
        """``n`` less ``n mod world``; ``ConfigError`` unless the world divides the global
        batch and every rank gets an image."""
        if int(budget.batch_size) % self.world:
            raise ConfigError(f"batch_size {budget.batch_size} is the global batch and must be "
                              f"divisible by the {self.world} data-parallel ranks")
        if n < self.world or len(data.val_y) == 0:
            raise ConfigError(f"{data.name}: too few images to split over {self.world} ranks")
        return n - n % self.world

    def check_resume(self, resume: dict[str, Any]) -> None:
        """A state of as many ranks (or of one process) only."""
        if resume.get("ranks") is not None and len(resume["ranks"]) != self.world:
            raise ConfigError(f"the state to continue was trained by {len(resume['ranks'])} "
                              f"rank(s), not {self.world}")

    def choose_speed(self, speed: SpeedChoice | None,
                     choose: Callable[[], SpeedChoice]) -> SpeedChoice:
        """Rank 0's choice (given, or measured on its copy of the model) on every rank."""
        box: list[Any] = [None]
        if self.rank == 0:
            box[0] = (speed if speed is not None else choose()).to_dict()
        dist.broadcast_object_list(box, src=0, group=self.slow_group)
        return SpeedChoice.from_dict(box[0])

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """``DistributedDataParallel`` without a buffer broadcast before every forward (rank
        0's buffers are broadcast before each evaluation instead)."""
        import inspect

        from torch.nn.parallel import DistributedDataParallel

        # torch >= 2.13 names the switch forward_sync_buffers
        no_sync = ("forward_sync_buffers"
                   if "forward_sync_buffers" in inspect.signature(DistributedDataParallel)
                   .parameters else "broadcast_buffers")
        return DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            **{no_sync: False})

    def share(self, perm: torch.Tensor) -> torch.Tensor:
        """:func:`rank_share` of ``perm``."""
        return rank_share(perm, self.rank, self.world)

    def seed_streams(self, seed: int) -> torch.Generator:
        """Per-rank augmentation and dropout streams (rank 0's are the one-process run's)."""
        torch.manual_seed(int(seed) + _RANK_SEED_STRIDE * self.rank)  # dropout masks per rank
        return torch.Generator().manual_seed(int(seed) + 1 + _RANK_SEED_STRIDE * self.rank)

    def restore_streams(self, resume: dict[str, Any], augment: torch.Generator) -> None:
        """This rank's streams from a state of the same world; from a one-process state rank 0
        goes on with its streams and the others keep fresh ones."""
        ranks = resume.get("ranks")
        if ranks is not None:
            augment.set_state(ranks[self.rank]["augment_rng"])
            torch.set_rng_state(ranks[self.rank]["torch_rng"])
        elif self.rank == 0:
            super().restore_streams(resume, augment)

    def stream_state(self, augment: torch.Generator) -> dict[str, Any]:
        """Rank 0's streams, and every rank's under ``ranks`` (a collective)."""
        rngs: list[Any] = [None] * self.world
        dist.all_gather_object(rngs, super().stream_state(augment), group=self.slow_group)
        return {**rngs[0], "ranks": rngs}

    def before_step(self, step: int) -> None:
        """The :data:`FAULT_ENV` test hook."""
        _fault(self.rank, step)

    def mean_loss(self, loss: torch.Tensor) -> torch.Tensor:
        """The mean over ranks of ``loss`` (detached): every rank records the same value, so
        a NaN ends every rank at the same step."""
        shared = loss.detach().float().clone()
        dist.all_reduce(shared)
        return shared / self.world

    def sync_buffers(self, model: nn.Module) -> None:
        """Rank 0's buffers on every rank (:func:`sync_buffers`)."""
        sync_buffers(model)

    def evaluate(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, data: DataSplits,
                 budget: Budget) -> tuple[float, float]:
        """(accuracy, mean loss) over all of ``x``/``y``, each rank measuring a contiguous
        1/world and the counts all-reduced: what rank 0 alone would measure."""
        lo, hi = self.shard(int(y.shape[0]))
        correct = loss_sum = 0.0
        if hi > lo:
            acc, loss = evaluate_accuracy(model, x[lo:hi], y[lo:hi], data.mean, data.std,
                                          batch_size=EVAL_BATCH, precision=budget.precision,
                                          channels_last=budget.channels_last, tta=budget.tta)
            correct, loss_sum = round(acc * (hi - lo)), loss * (hi - lo)
        correct, loss_sum, count = self.total([correct, loss_sum, hi - lo])
        return correct / count, loss_sum / count

    def agree(self, ask: Callable[[], bool]) -> bool:
        """Rank 0's ``ask()`` broadcast over the slow group (rank 0 may take its time)."""
        flag = torch.tensor([1 if self.rank == 0 and ask() else 0], dtype=torch.int32,
                            device=self.device if self.slow_group is None else "cpu")
        dist.broadcast(flag, src=0, group=self.slow_group)
        return bool(flag.item())

    def average(self, tensors: Sequence[torch.Tensor | None],
                like: Sequence[torch.Tensor]) -> list[torch.Tensor | None]:
        """The mean over ranks of each tensor, in one all-reduce; where a rank has none (None:
        no gradient there) it adds zeros shaped like ``like``'s tensor, and a tensor no rank
        has stays None (so an optimizer skips it, as it would in one process)."""
        if not tensors:
            return []
        ref = like[0]
        flags = torch.tensor([0.0 if t is None else 1.0 for t in tensors], dtype=ref.dtype,
                             device=ref.device)
        flat = torch.cat([flags] + [(torch.zeros_like(w) if t is None else t).reshape(-1)
                                    for t, w in zip(tensors, like)])
        dist.all_reduce(flat)
        out: list[torch.Tensor | None] = []
        offset = len(tensors)
        for i, w in enumerate(like):
            chunk = flat[offset:offset + w.numel()]
            offset += w.numel()
            out.append(None if float(flat[i]) == 0 else (chunk / self.world).view_as(w))
        return out

    def shard(self, n: int) -> tuple[int, int]:
        """Rank r's contiguous 1/world of ``n`` items."""
        return n * self.rank // self.world, n * (self.rank + 1) // self.world

    def total(self, values: Sequence[float]) -> list[float]:
        """The sum over ranks of each of ``values`` (float64, one all-reduce)."""
        totals = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self.device)
        dist.all_reduce(totals)
        return [float(v) for v in totals.cpu()]


def train_data_parallel(model: nn.Module, data: DataSplits, budget: Budget, *,
                        slow_group: Any = None, device: str | torch.device = "cpu",
                        **options: Any) -> TrainResult:
    """Train ``model`` data-parallel on every rank of the default process group (see the module
    docstring): ``trainer.train`` with a :class:`RankGroup`; ``options`` are ``train``'s
    keyword arguments (``evaluate_test``, ``on_epoch``, ``speed``, ``bf16_native``,
    ``resume``, ``keep_state``, ``stop``, ``epoch_state``), the result is ``train``'s, on
    every rank.

    Call it on every rank with the same, identically initialised ``model`` (build it after
    ``set_determinism(seed)``; ``DistributedDataParallel`` also broadcasts rank 0's weights).
    On GPU convert batch norm to ``SyncBatchNorm`` before calling. ``on_epoch`` and ``stop`` are
    used on rank 0 only. ``slow_group``: a group with a long timeout for the waits on rank 0's
    one-off work (the speed measurement, per-epoch saving); default: the default group.

    ``epoch_state``: a file rank 0 rewrites after every epoch with the state to go on from
    (atomically: a kill never leaves half a file); when it exists at the start the run resumes
    from it (it wins over ``resume``), so an interrupted final run continues where it was cut.

    Raises:
        ConfigError: ``batch_size`` not divisible by the world size, a state of another
            network or of another world size, a state already at ``budget.epochs``.
        RuntimeError: a collective timed out (another rank died or hung).
    """
    return train(model, data, budget, device=device, group=RankGroup(slow_group, device),
                 **options)
