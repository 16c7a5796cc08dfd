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

Not yet here: the DARTS supernet. Its architecture weights are parameters of the supernet, so
wrapping it in ``DistributedDataParallel`` would all-reduce their gradients too and keep them
identical on every rank; but DARTS alternates a weight step on training batches with an
architecture step on validation batches, with its own optimizer, in its own loop
that the DARTS issue is building (not in this branch). Once that loop
exists it needs: the architecture step's batches split like the weight step's, both steps
through the DDP wrapper (or an explicit all-reduce of the architecture gradients), and a test
that every rank discretises to the same genome.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch import nn

from nasforge.data import DataSplits, augment_batch
from nasforge.errors import ConfigError
from nasforge.evaluation.budget import Budget
from nasforge.evaluation.metrics import (
    Normalizer,
    autocast_context,
    count_flops,
    count_params,
    evaluate_accuracy,
    grad_scaler,
)
from nasforge.evaluation.speed import SpeedChoice, applied
from nasforge.evaluation.trainer import (
    EpochRecord,
    TrainResult,
    _LossTracker,
    _make_optimizer,
    _steps_per_epoch,
    choose_speed,
    optimizer_step,
    set_determinism,
    training_loss,
)

__all__ = ["FAULT_ENV", "rank_share", "sync_buffers", "train_data_parallel"]

_EVAL_BATCH = 1024
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


def _evaluate_sharded(model: nn.Module, x: torch.Tensor, y: torch.Tensor, data: DataSplits,
                      budget: Budget, rank: int, world: int, dev: torch.device) -> tuple[float, float]:
    """(accuracy, mean loss) over all of ``x``/``y``, each rank measuring a contiguous 1/world."""
    n = int(y.shape[0])
    lo, hi = n * rank // world, n * (rank + 1) // world
    totals = torch.zeros(3, dtype=torch.float64, device=dev)
    if hi > lo:
        acc, loss = evaluate_accuracy(model, x[lo:hi], y[lo:hi], data.mean, data.std,
                                      batch_size=_EVAL_BATCH, precision=budget.precision,
                                      channels_last=budget.channels_last)
        count = hi - lo
        totals += torch.tensor([round(acc * count), loss * count, count], dtype=torch.float64,
                               device=dev)
    dist.all_reduce(totals)
    correct, loss_sum, count = (float(v) for v in totals.cpu())
    return correct / count, loss_sum / count


def _flag(value: bool, group: Any, dev: torch.device) -> bool:
    """Rank 0's ``value`` on every rank (over ``group``, which must allow rank 0's delays)."""
    flag = torch.tensor([1 if value else 0], dtype=torch.int32,
                        device=dev if group is None else "cpu")
    dist.broadcast(flag, src=0, group=group)
    return bool(flag.item())


def _shared_speed(model: nn.Module, data: DataSplits, budget: Budget, dev: torch.device,
                  total_steps: int, speed: SpeedChoice | None, group: Any,
                  bf16_native: bool | None) -> SpeedChoice:
    """The speed choice: rank 0's (given or measured on its copy of the model), on every rank."""
    box: list[Any] = [None]
    if dist.get_rank() == 0:
        if speed is None:
            speed = choose_speed(model, data, budget, dev, total_steps, bf16_native)
        box[0] = speed.to_dict()
    dist.broadcast_object_list(box, src=0, group=group)
    return SpeedChoice.from_dict(box[0])


def train_data_parallel(
    model: nn.Module,
    data: DataSplits,
    budget: Budget,
    *,
    evaluate_test: bool = False,
    device: str | torch.device = "cpu",
    on_epoch: Callable[[EpochRecord], None] | None = None,
    speed: SpeedChoice | None = None,
    bf16_native: bool | None = None,
    resume: dict[str, Any] | None = None,
    keep_state: bool = False,
    stop: Callable[[], bool] | None = None,
    slow_group: Any = None,
    epoch_state: str | None = None,
) -> TrainResult:
    """Train ``model`` data-parallel on every rank of the default process group (see the module
    docstring); the same arguments and result as ``trainer.train``, on every rank.

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
    started = time.perf_counter()
    rank, world = dist.get_rank(), dist.get_world_size()
    group = slow_group
    dev = torch.device(device)
    if int(budget.batch_size) % world:
        raise ConfigError(f"batch_size {budget.batch_size} is the global batch and must be "
                          f"divisible by the {world} data-parallel ranks")
    set_determinism(budget.seed)
    if budget.data_fraction < 1.0:
        data = data.subset_train(budget.data_fraction, budget.seed)
    model.to(dev)
    n = int(data.train_y.shape[0])
    if n < world or len(data.val_y) == 0:
        raise ConfigError(f"{data.name}: too few images to split over {world} ranks")
    usable = n - n % world
    batch_size = min(int(budget.batch_size), usable - usable % world)
    steps = _steps_per_epoch(usable, batch_size, budget.max_steps)
    if epoch_state and Path(epoch_state).exists():
        resume = torch.load(epoch_state, weights_only=True)
    if resume is not None:
        if int(resume["epoch"]) >= budget.epochs:
            raise ConfigError(f"cannot continue to {budget.epochs} epoch(s) a run that already "
                              f"trained {resume['epoch']}")
        if resume.get("ranks") is not None and len(resume["ranks"]) != world:
            raise ConfigError(f"the state to continue was trained by {len(resume['ranks'])} "
                              f"rank(s), not {world}")
        speed = SpeedChoice.from_dict(resume["speed"])
        speed.source, speed.measured, speed.overhead_seconds = "stored", False, 0.0
    speed = _shared_speed(model, data, budget, dev, steps * budget.epochs, speed, group,
                          bf16_native)
    setting = speed.setting
    resolved = budget.replace(precision=setting.precision, channels_last=setting.channels_last,
                              threads=setting.threads)
    with applied(setting, dev):
        result = _loop(model, data, resolved, evaluate_test, dev, on_epoch, started, steps,
                       batch_size // world, resume, keep_state or bool(epoch_state), stop,
                       group, speed.to_dict(), epoch_state)
    result.speed = speed.to_dict()
    if result.state is not None:
        result.state["speed"] = result.speed
    if epoch_state and rank == 0 and result.status == "ok":
        Path(epoch_state).unlink(missing_ok=True)
    return result


def _save_atomic(state: dict[str, Any], path: str) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, target)


def _loop(model: nn.Module, data: DataSplits, budget: Budget, evaluate_test: bool,
          dev: torch.device, on_epoch: Callable[[EpochRecord], None] | None, started: float,
          steps: int, local_batch: int, resume: dict[str, Any] | None, keep_state: bool,
          stop: Callable[[], bool] | None, group: Any, speed: dict[str, Any],
          epoch_state: str | None) -> TrainResult:
    """The data-parallel training loop under concrete speed options."""
    from torch.nn.parallel import DistributedDataParallel

    rank, world = dist.get_rank(), dist.get_world_size()
    if budget.channels_last:
        model.to(memory_format=torch.channels_last)
    params = count_params(model)
    flops = count_flops(model, data.input_shape)
    # no buffer broadcast before every forward (rank 0's buffers are broadcast before each
    # evaluation instead); torch >= 2.13 names the switch forward_sync_buffers
    import inspect

    no_sync = ("forward_sync_buffers"
               if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
               else "broadcast_buffers")
    ddp = DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None,
                                  **{no_sync: False})
    train_x, train_y = data.train_x.to(dev), data.train_y.to(dev)
    val_x, val_y = data.val_x.to(dev), data.val_y.to(dev)
    normalize = Normalizer(data.mean, data.std, dev)
    n = int(train_y.shape[0])
    optimizer = _make_optimizer(model, budget)
    scaler = grad_scaler(dev, budget.precision)
    scheduler = None
    if budget.schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=budget.schedule_span * steps)
    order_gen = torch.Generator().manual_seed(int(budget.seed))
    augment_gen = torch.Generator().manual_seed(int(budget.seed) + 1 + _RANK_SEED_STRIDE * rank)
    torch.manual_seed(int(budget.seed) + _RANK_SEED_STRIDE * rank)  # dropout masks per rank
    curve: list[EpochRecord] = []
    best_acc: float | None = None
    since_best, first_epoch, pruned_at = 0, 1, None
    if resume is not None:
        try:
            model.load_state_dict(resume["model"])
        except RuntimeError as exc:
            raise ConfigError(f"the state to continue is of another network: {exc}") from None
        optimizer.load_state_dict(resume["optimizer"])
        if scheduler is not None and resume.get("scheduler") is not None:
            scheduler.load_state_dict(resume["scheduler"])
        order_gen.set_state(resume["order_rng"])
        ranks = resume.get("ranks")
        if ranks is not None:
            augment_gen.set_state(ranks[rank]["augment_rng"])
            torch.set_rng_state(ranks[rank]["torch_rng"])
        elif rank == 0:  # a one-process state: rank 0 goes on with its streams
            augment_gen.set_state(resume["augment_rng"])
            torch.set_rng_state(resume["torch_rng"])
        curve = [EpochRecord(**r) for r in resume["curve"]]
        best_acc, since_best = resume["best_acc"], int(resume["since_best"])
        first_epoch = int(resume["epoch"]) + 1
    reason: str | None = None
    images, step_seconds, global_step = 0, 0.0, (first_epoch - 1) * steps
    tracker = _LossTracker(steps, dev)
    state: dict[str, Any] | None = None

    for epoch in range(first_epoch, budget.epochs + 1):
        epoch_start = time.perf_counter()
        ddp.train()
        if callable(getattr(model, "schedule_drop_path", None)):
            model.schedule_drop_path(epoch - 1, budget.epochs)
        tracker.start_epoch()
        share = rank_share(torch.randperm(n, generator=order_gen), rank, world).to(dev)
        done = 0
        for step in range(steps):
            global_step += 1
            _fault(rank, global_step)
            idx = share[step * local_batch:(step + 1) * local_batch]
            xb = normalize(train_x[idx])
            if budget.augment != "none":
                xb = augment_batch(xb, budget.augment, augment_gen)
            if budget.channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with autocast_context(dev, budget.precision):
                output = ddp(xb)
            loss = training_loss(model, output, train_y[idx])
            shared = loss.detach().float().clone()
            dist.all_reduce(shared)
            reason = tracker.record(shared / world, epoch)
            if reason is not None:
                break
            optimizer_step(loss, optimizer, scaler)
            if scheduler is not None:
                scheduler.step()
            done += 1
            images += int(idx.shape[0]) * world
        if reason is None:
            reason = tracker.flush(epoch)
        train_loss = tracker.mean(done)
        step_seconds += time.perf_counter() - epoch_start
        if reason is not None:
            break
        sync_buffers(model)
        val_acc, val_loss = _evaluate_sharded(model, val_x, val_y, data, budget, rank, world, dev)
        if not math.isfinite(val_loss):
            reason = f"{'nan' if math.isnan(val_loss) else 'inf'} validation loss at epoch {epoch}"
            break
        record = EpochRecord(epoch, train_loss, val_loss, val_acc, time.perf_counter() - epoch_start)
        curve.append(record)
        if on_epoch is not None and rank == 0:
            on_epoch(record)
        if best_acc is None or val_acc > best_acc:
            best_acc, since_best = val_acc, 0
        else:
            since_best += 1
        if keep_state:
            rngs = [None] * world
            dist.all_gather_object(rngs, {"augment_rng": augment_gen.get_state(),
                                          "torch_rng": torch.get_rng_state()}, group=group)
            state = {
                "epoch": epoch,
                "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "order_rng": order_gen.get_state(), "augment_rng": rngs[0]["augment_rng"],
                "torch_rng": rngs[0]["torch_rng"], "ranks": rngs,
                "curve": [dataclasses.asdict(r) for r in curve],
                "best_acc": best_acc, "since_best": since_best, "speed": speed,
            }
            if epoch_state and rank == 0 and epoch < budget.epochs:
                _save_atomic(state, epoch_state)
        if budget.patience is not None and since_best >= budget.patience:
            break
        if epoch < budget.epochs and _flag(rank == 0 and stop is not None and stop(), group, dev):
            pruned_at = epoch
            break

    ips = images / step_seconds if step_seconds > 0 else 0.0
    common = dict(params=params, flops=flops, images_per_second=ips, epochs_run=len(curve))
    if reason is not None:
        return TrainResult(status="failed", reason=reason, val_acc=None, val_loss=None,
                           best_val_acc=best_acc, test_acc=None, curve=curve,
                           train_seconds=time.perf_counter() - started, **common)
    test_acc = None
    if evaluate_test:
        test_acc, _ = _evaluate_sharded(model, data.test_x.to(dev), data.test_y.to(dev), data,
                                        budget, rank, world, dev)
    last = curve[-1]
    return TrainResult(
        status="ok" if pruned_at is None else "pruned",
        reason=None if pruned_at is None else f"pruned after epoch {pruned_at}",
        val_acc=last.val_acc, val_loss=last.val_loss, best_val_acc=best_acc, test_acc=test_acc,
        curve=curve, train_seconds=time.perf_counter() - started, state=state, **common)
