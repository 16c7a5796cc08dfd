"""Train a network on in-memory data under a ``Budget`` and measure it on the validation split.

The loop has no ``DataLoader`` and no per-sample Python: the uint8 images live on the device,
each step gathers a batch through a seeded permutation, standardises it with one fused
multiply-add, augments it with batched tensor ops and runs forward/backward/step. A NaN or
infinite loss ends training with a ``"failed"`` result (never an exception); any other
exception propagates to the caller, which decides what a crash means.

Reproducibility: ``train`` calls ``set_determinism(budget.seed)`` before it draws any random
number, and its batch order and augmentation use their own generators seeded from
``budget.seed``. Weight initialisation happens when the caller builds the model, so callers
that want the same run twice call ``set_determinism(seed)`` *before* building the model too.
On CPU the same seed then gives the same curve.

The optimizer, the loss and the optimizer step of one training step live in
:mod:`nasforge.evaluation.training_step`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nasforge.data import DataSplits
from nasforge.data.augment import EpochAugmentation
from nasforge.errors import ConfigError
from nasforge.evaluation.budget import Budget
from nasforge.evaluation.groups import SingleProcess
from nasforge.evaluation.loss_tracker import LossTracker
from nasforge.evaluation.metrics import (
    Normalizer,
    autocast_context,
    count_flops,
    count_params,
    grad_scaler,
)
from nasforge.evaluation.speed import (
    SpeedChoice,
    applied,
    candidate_settings,
    choose,
    has_native_bf16,
    measure_training_step,
)
from nasforge.evaluation.training_step import (
    _make_optimizer,
    _steps_per_epoch,
    optimizer_step,
    training_loss,
)

__all__ = ["EpochRecord", "TrainResult", "choose_speed", "save_atomic", "set_determinism",
           "train"]



@dataclass
class EpochRecord:
    """What one epoch measured: the mean of its per-step training losses, the validation loss
    and accuracy after it, and its wall-clock seconds (training steps plus validation).
    ``val_loss`` and ``val_acc`` are None for an epoch the budget does not validate after
    (``Budget.validate_every``): such records reach ``on_epoch`` (progress) but never a curve."""

    epoch: int
    train_loss: float
    val_loss: float | None
    val_acc: float | None
    seconds: float


@dataclass
class TrainResult:
    """The outcome of ``train``.

    ``status`` is ``"ok"``, ``"failed"`` (with ``reason``, e.g. ``"nan loss at epoch 1 step
    12"``) or ``"pruned"`` (stopped by ``train``'s ``stop``; ``val_acc`` is then the last
    epoch's). ``val_acc``/``val_loss`` are the FINAL epoch's values and ``best_val_acc`` the best
    over epochs; on failure ``val_acc``, ``val_loss`` and ``test_acc`` are None while ``curve``
    and ``best_val_acc`` keep what the finished epochs measured. ``test_acc`` is set only by
    ``train(..., evaluate_test=True)`` on success. ``flops`` counts one forward pass on one image
    (``count_flops``: a multiply-add is 2 FLOPs). ``train_seconds`` is the wall-clock time of
    the whole ``train`` call; ``images_per_second`` is training images processed per second of
    training steps (validation and setup excluded). ``epochs_run`` counts the epochs that were
    completed and validated (a failing epoch is not counted).
    """

    status: str
    reason: str | None
    val_acc: float | None
    val_loss: float | None
    best_val_acc: float | None
    test_acc: float | None
    curve: list[EpochRecord] = field(default_factory=list)
    params: int = 0
    flops: int = 0
    train_seconds: float = 0.0
    images_per_second: float = 0.0
    epochs_run: int = 0
    speed: dict[str, Any] | None = None
    #: with ``train(..., keep_state=True)``: what ``train(..., resume=state)`` goes on from
    state: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        """Whether training finished without a non-finite loss."""
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready form; ``curve`` is a list of dicts (``state`` is left out)."""
        out = dataclasses.asdict(dataclasses.replace(self, state=None))
        del out["state"]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainResult:
        """Rebuild from ``to_dict`` output; unknown keys are a ``ConfigError`` naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown train result key(s) {', '.join(unknown)}")
        values = dict(data)
        values["curve"] = [
            r if isinstance(r, EpochRecord) else EpochRecord(**r) for r in values.get("curve", [])
        ]
        return cls(**values)


def set_determinism(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and all GPUs).

    Call it before building a model so its initial weights depend only on ``seed``.
    """
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def train(
    model: nn.Module,
    data: DataSplits,
    budget: Budget,
    *,
    evaluate_test: bool = False,
    device: str | torch.device = "cpu",
    on_epoch: Callable[[EpochRecord], None] | None = None,
    speed: SpeedChoice | None = None,
    bf16_native: bool | None = None,
    speed_default: SpeedChoice | None = None,
    learn_speed_default: bool = False,
    resume: dict[str, Any] | None = None,
    keep_state: bool = False,
    stop: Callable[[], bool] | None = None,
    group: SingleProcess | None = None,
    epoch_state: str | None = None,
) -> TrainResult:
    """Train ``model`` on ``data`` under ``budget``; validate after every epoch (or as
    ``budget.validate_every`` says, always after the last).

    The model is moved to ``device`` (and to channels-last memory if the budget asks) in place
    and is left trained. Training uses ``budget.data_fraction`` of the training split
    (stratified, seeded by ``budget.seed``); validation always uses the whole validation split;
    the test split is touched only when ``evaluate_test`` is true. Training stops early after
    ``budget.patience`` epochs without a better validation accuracy. ``on_epoch`` is called with
    each epoch's record. A NaN/inf training or validation loss returns a ``"failed"`` result.

    Speed options: a ``speed`` choice (e.g. one stored in the study) is applied as given;
    otherwise ``auto`` options of the budget are chosen by timing throw-away steps on a copy of
    the model (``nasforge.evaluation.speed.choose``; at most 5% of the training's estimated
    time, under a forked RNG so the training itself is not changed by the measuring).
    ``bf16_native`` overrides the hardware check (tests). A training too short to afford the
    measuring takes ``speed_default`` (the study's default for short trainings), or, with
    ``learn_speed_default`` and no default, is measured to set one (``speed.choose``). The
    result's ``speed`` holds the choice; ``train_seconds`` includes the measuring.

    Exact continuation: with ``keep_state`` the result's ``state`` holds everything needed to
    go on (model, optimizer, scheduler, the batch-order, augmentation and torch random
    generators, the epoch, the curve, early-stopping counters, the speed choice); ``resume``
    takes such a state and trains on from the epoch after it to ``budget.epochs``. The
    learning-rate schedule spans ``budget.schedule_epochs`` (default ``epochs``), so a run of
    1 epoch continued to 3 follows the same schedule as 3 from scratch when both set
    ``schedule_epochs=3``: the curves agree (tested to 1e-6 on CPU). ``ConfigError`` if the
    state is of another network or its epoch is not below ``budget.epochs``.

    ``epoch_state``: a file the primary process rewrites after every epoch but the last with
    that state (atomically: a kill never leaves half a file); when it exists at the start the
    run continues from it (it wins over ``resume``), and it is removed when the run ends well,
    so an interrupted final run goes on where it was cut.

    ``stop`` is asked after every epoch (after ``on_epoch``); when it says True training ends
    with status ``"pruned"`` (a pruner's stop request), keeping the curve so far and the last
    epoch's validation accuracy.

    ``group``: who trains (:mod:`nasforge.evaluation.groups`); default this one process. The
    data-parallel trainer (:func:`nasforge.evaluation.ddp.train_data_parallel`) passes its
    ranks' group; ``on_epoch``, ``stop`` and ``epoch_state`` are then used on rank 0 only.
    """
    started = time.perf_counter()
    group = SingleProcess() if group is None else group
    dev = torch.device(device)
    set_determinism(budget.seed)
    if budget.data_fraction < 1.0:
        data = data.subset_train(budget.data_fraction, budget.seed)
    model.to(dev)
    usable = group.usable(int(data.train_y.shape[0]), data, budget)
    batch_size = min(int(budget.batch_size), usable)
    steps = _steps_per_epoch(usable, batch_size, budget.max_steps)
    if epoch_state and Path(epoch_state).exists():
        resume = torch.load(epoch_state, weights_only=True)
    if resume is not None:
        if int(resume["epoch"]) >= budget.epochs:
            raise ConfigError(f"cannot continue to {budget.epochs} epoch(s) a run that already "
                              f"trained {resume['epoch']}")
        group.check_resume(resume)
        speed = SpeedChoice.from_dict(resume["speed"])  # the parent's options: same numerics
        speed.source, speed.measured, speed.overhead_seconds = "stored", False, 0.0
    speed = group.choose_speed(speed, lambda: choose_speed(
        model, data, budget, dev, steps * budget.epochs, bf16_native,
        default=speed_default, learn_default=learn_speed_default))
    setting = speed.setting
    resolved = budget.replace(precision=setting.precision, channels_last=setting.channels_last,
                              threads=setting.threads)
    run = _Run(group, dev, started, steps, batch_size // group.world, speed.to_dict(),
               epoch_state)
    with applied(setting, dev):
        result = run.train(model, data, resolved, evaluate_test, on_epoch, resume,
                           keep_state or bool(epoch_state), stop)
    result.speed = speed.to_dict()
    if result.state is not None:
        result.state["speed"] = result.speed
    if epoch_state and group.primary and result.status == "ok":
        Path(epoch_state).unlink(missing_ok=True)
    return result


def choose_speed(
    model: nn.Module,
    data: DataSplits,
    budget: Budget,
    device: torch.device,
    total_steps: int,
    bf16_native: bool | None = None,
    *,
    default: SpeedChoice | None = None,
    learn_default: bool = False,
) -> SpeedChoice:
    """The speed setting for training ``model`` under ``budget`` (see ``train``): explicit
    options as given, ``auto`` ones by measurement on one real batch of ``data``; a training
    too short to measure takes ``default`` or, with ``learn_default``, sets one
    (``nasforge.evaluation.speed.choose``)."""
    native = has_native_bf16(device) if bf16_native is None else bf16_native
    settings, extra = candidate_settings(
        device.type, budget.precision, budget.channels_last, native, budget.threads,
        torch.get_num_threads(),
    )
    if len(settings) == 1 and not extra:
        return SpeedChoice(settings[0], source="explicit")
    n = int(data.train_y.shape[0])
    batch = min(int(budget.batch_size), n)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        pick = torch.randperm(n, generator=torch.Generator().manual_seed(int(budget.seed) + 7))
        idx = pick[:batch]
        normalize = Normalizer(data.mean, data.std, device)
        xb = normalize(data.train_x[idx].to(device))
        yb = data.train_y[idx].to(device)
        step = measure_training_step(model, xb, yb, lambda m: _make_optimizer(m, budget), device)
        # NASFORGE_SPEED_MIN_SECONDS: the smallest measuring allowance worth using (default 1 s)
        floor = float(os.environ.get("NASFORGE_SPEED_MIN_SECONDS", "1.0"))
        return choose(settings, extra, step, total_steps, min_seconds=floor,
                      default=None if default is None else default.setting,
                      learn_default=learn_default)


def save_atomic(state: dict[str, Any], path: str) -> None:
    """``torch.save`` ``state`` to ``path`` through a temporary file and a rename, so a kill
    never leaves half a file; the folder is created."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, target)


@dataclass
class _Run:
    """One training under concrete speed options (no ``auto`` left): the loop of ``train``."""

    group: SingleProcess
    dev: torch.device
    started: float
    steps: int
    local_batch: int
    speed: dict[str, Any]
    epoch_state: str | None

    def train(self, model: nn.Module, data: DataSplits, budget: Budget, evaluate_test: bool,
              on_epoch: Callable[[EpochRecord], None] | None, resume: dict[str, Any] | None,
              keep_state: bool, stop: Callable[[], bool] | None) -> TrainResult:
        """Train ``model``; see ``train``."""
        group, dev, steps, local_batch = self.group, self.dev, self.steps, self.local_batch
        memory_format = torch.channels_last if budget.channels_last else torch.contiguous_format
        if budget.channels_last:
            model.to(memory_format=torch.channels_last)
        params = count_params(model)
        flops = count_flops(model, data.input_shape)
        forward = group.wrap(model, dev)
        train_x, train_y = data.train_x.to(dev), data.train_y.to(dev)
        val_x, val_y = data.val_x.to(dev), data.val_y.to(dev)
        normalize = Normalizer(data.mean, data.std, dev)
        n = int(train_y.shape[0])
        optimizer = _make_optimizer(model, budget)
        scaler = grad_scaler(dev, budget.precision)
        smoothing = float(budget.label_smoothing or 0.0)
        scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
        if budget.schedule == "cosine":
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
                optimizer, T_max=budget.schedule_span * steps)
        order_gen = torch.Generator().manual_seed(int(budget.seed))
        augment_gen = group.seed_streams(int(budget.seed))
        curve: list[EpochRecord] = []
        best_acc: float | None = None
        since_best, first_epoch = 0, 1
        pruned_at: int | None = None
        if resume is not None:
            try:
                model.load_state_dict(resume["model"])
            except RuntimeError as exc:
                raise ConfigError(f"the state to continue is of another network: {exc}") from None
            optimizer.load_state_dict(resume["optimizer"])
            if scheduler is not None and resume.get("scheduler") is not None:
                scheduler.load_state_dict(resume["scheduler"])
            order_gen.set_state(resume["order_rng"])
            group.restore_streams(resume, augment_gen)
            curve = [EpochRecord(**r) for r in resume["curve"]]
            best_acc, since_best = resume["best_acc"], int(resume["since_best"])
            first_epoch = int(resume["epoch"]) + 1
        reason: str | None = None
        images, step_seconds, global_step = 0, 0.0, (first_epoch - 1) * steps
        tracker = LossTracker(steps, dev)
        state: dict[str, Any] | None = None

        def snapshot(epoch: int) -> dict[str, Any]:
            return {
                "epoch": epoch,
                "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "order_rng": order_gen.get_state(), **group.stream_state(augment_gen),
                "curve": [dataclasses.asdict(r) for r in curve],
                "best_acc": best_acc, "since_best": since_best, "speed": self.speed,
            }

        for epoch in range(first_epoch, budget.epochs + 1):
            epoch_start = time.perf_counter()
            forward.train()
            if callable(getattr(model, "schedule_drop_path", None)):  # DARTS: drop-path ramp
                model.schedule_drop_path(epoch - 1, budget.epochs)
            tracker.start_epoch()
            share = group.share(torch.randperm(n, generator=order_gen)).to(dev)
            count = int(share.shape[0])
            # the epoch's augmentation drawn at once and moved once: no blocking copy per step
            plan = EpochAugmentation(
                budget.augment,
                [min(local_batch, count - step * local_batch) for step in range(steps)],
                int(train_x.shape[-2]), int(train_x.shape[-1]), augment_gen, dev)
            done = 0
            for step in range(steps):
                global_step += 1
                group.before_step(global_step)
                idx = share[step * local_batch:(step + 1) * local_batch]
                xb = plan.apply(step, normalize(train_x[idx]))
                if budget.channels_last:
                    xb = xb.contiguous(memory_format=memory_format)
                with autocast_context(dev, budget.precision):
                    output = forward(xb)
                loss = training_loss(model, output, train_y[idx], smoothing)
                reason = tracker.record(group.mean_loss(loss), epoch)
                if reason is not None:
                    break
                optimizer_step(loss, optimizer, scaler)
                if scheduler is not None:
                    scheduler.step()
                done += 1
                images += int(idx.shape[0]) * group.world
            if reason is None:
                reason = tracker.flush(epoch)
            train_loss = tracker.mean(done)
            step_seconds += time.perf_counter() - epoch_start
            if reason is not None:
                break
            group.sync_buffers(model)
            validated = budget.validates_after(epoch)
            if validated:
                val_acc, val_loss = group.evaluate(model, val_x, val_y, data, budget)
                if not math.isfinite(val_loss):
                    reason = (f"{'nan' if math.isnan(val_loss) else 'inf'} validation loss at "
                              f"epoch {epoch}")
                    break
                record = EpochRecord(epoch, train_loss, val_loss, val_acc,
                                     time.perf_counter() - epoch_start)
                curve.append(record)
                if best_acc is None or val_acc > best_acc:
                    best_acc, since_best = val_acc, 0
                else:
                    since_best += 1
            else:  # progress only (train loss); the curve holds validations
                record = EpochRecord(epoch, train_loss, None, None,
                                     time.perf_counter() - epoch_start)
            if on_epoch is not None and group.primary:
                on_epoch(record)
            if self.epoch_state and epoch < budget.epochs:
                state = snapshot(epoch)
                if group.primary:
                    save_atomic(state, self.epoch_state)
            if not validated:
                continue
            if budget.patience is not None and since_best >= budget.patience:
                break
            if epoch < budget.epochs and group.agree(lambda: stop is not None and stop()):
                pruned_at = epoch
                break

        ips = images / step_seconds if step_seconds > 0 else 0.0
        common = dict(params=params, flops=flops, images_per_second=ips, epochs_run=len(curve))
        if reason is not None:
            return TrainResult(status="failed", reason=reason, val_acc=None, val_loss=None,
                               best_val_acc=best_acc, test_acc=None, curve=curve,
                               train_seconds=time.perf_counter() - self.started, **common)
        test_acc: float | None = None
        if evaluate_test and data.val_x is data.test_x and curve \
                and curve[-1].epoch == budget.epochs:
            test_acc = curve[-1].val_acc  # a final run validates on the test split: no 2nd pass
        elif evaluate_test:
            test_acc, _ = group.evaluate(model, data.test_x.to(dev), data.test_y.to(dev), data,
                                         budget)
        last = curve[-1]
        if keep_state:
            state = snapshot(last.epoch)
        return TrainResult(
            status="ok" if pruned_at is None else "pruned",
            reason=None if pruned_at is None else f"pruned after epoch {pruned_at}",
            val_acc=last.val_acc, val_loss=last.val_loss, best_val_acc=best_acc,
            test_acc=test_acc, curve=curve, train_seconds=time.perf_counter() - self.started,
            state=state if keep_state else None, **common)
