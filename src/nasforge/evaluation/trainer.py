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
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from nasforge.data import DataSplits
from nasforge.data.augment import EpochAugmentation
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
from nasforge.evaluation.speed import (
    SpeedChoice,
    applied,
    candidate_settings,
    choose,
    has_native_bf16,
    measure_training_step,
)

__all__ = ["EpochRecord", "TrainResult", "choose_speed", "set_determinism", "train"]

_EVAL_BATCH = 1024
_DEVICE_CHECK_EVERY = 32
"""On accelerators the loss is checked for NaN every this many steps (one sync each)."""


@dataclass
class EpochRecord:
    """What one epoch measured: the mean of its per-step training losses, the validation loss
    and accuracy after it, and its wall-clock seconds (training steps plus validation)."""

    epoch: int
    train_loss: float
    val_loss: float
    val_acc: float
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


def _make_optimizer(model: nn.Module, budget: Budget) -> torch.optim.Optimizer:
    """The budget's optimizer over the model's trainable parameters.

    ``momentum`` applies to SGD only (plain, not Nesterov); the other optimizers use PyTorch's
    defaults apart from the learning rate and weight decay. Where every parameter is a float
    tensor on CPU or CUDA, SGD/Adam/AdamW use PyTorch's fused kernels and Adamax/RMSprop the
    multi-tensor ("foreach") ones: the same update rule, one kernel call instead of several per
    parameter (on CPU PyTorch would otherwise pick the slowest, per-tensor loop).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    lr, wd = budget.learning_rate, float(budget.weight_decay)
    fast = bool(params) and all(
        p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params
    )
    fused: dict[str, Any] = {"fused": True} if fast else {}
    foreach: dict[str, Any] = {"foreach": True} if fast else {}
    name = budget.optimizer
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=float(budget.momentum), weight_decay=wd,
                               nesterov=False, **fused)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd, **fused)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd, **fused)
    if name == "adamax":
        return torch.optim.Adamax(params, lr=lr, weight_decay=wd, **foreach)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, weight_decay=wd, **foreach)
    raise ConfigError(f"unknown optimizer {name!r}")


def training_loss(model: nn.Module, output: Any, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the logits (computed in float32). A network that returns
    ``(logits, aux_logits)`` in training mode (the DARTS evaluation network with its auxiliary
    head; Szegedy et al. 2015) adds ``model.auxiliary_weight`` (DARTS: 0.4) times the
    auxiliary cross-entropy."""
    if isinstance(output, tuple):
        logits, aux = output
        weight = float(getattr(model, "auxiliary_weight", 0.4))
        return (nn.functional.cross_entropy(logits.float(), labels)
                + weight * nn.functional.cross_entropy(aux.float(), labels))
    return nn.functional.cross_entropy(output.float(), labels)


def optimizer_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: Any) -> None:
    """Zero the gradients, back-propagate ``loss`` and step; with a ``GradScaler`` (fp16) the
    loss is scaled and the step skipped on inf/NaN gradients, as ``torch.amp`` prescribes."""
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()


def _steps_per_epoch(n: int, batch_size: int, max_steps: int | None) -> int:
    """Optimizer steps in one epoch over ``n`` images.

    The last, partial batch is kept unless it would hold a single image (batch norm cannot
    train on one); ``max_steps`` caps the count.
    """
    steps = math.ceil(n / batch_size)
    if steps > 1 and n % batch_size == 1:
        steps -= 1
    if max_steps is not None:
        steps = min(steps, max_steps)
    return steps


class _LossTracker:
    """Per-step training losses of one epoch, checked for NaN/inf without stalling the device.

    On CPU each loss is read at once (``.item()`` costs microseconds there and syncs nothing).
    On an accelerator (or with ``deferred=True``) the losses are written into a device buffer
    and checked every ``_DEVICE_CHECK_EVERY`` steps and at ``flush``, so the host waits for the
    device only that often; the first bad step is still named exactly.
    """

    def __init__(self, steps: int, device: torch.device, deferred: bool | None = None) -> None:
        self.on_cpu = device.type == "cpu" if deferred is None else not deferred
        self.values: list[float] = []
        self.buffer = None if self.on_cpu else torch.zeros(steps, device=device)
        self.count = 0
        self.checked = 0

    def start_epoch(self) -> None:
        """Forget the previous epoch's losses."""
        self.values.clear()
        self.count = 0
        self.checked = 0

    def record(self, loss: torch.Tensor, epoch: int) -> str | None:
        """Add one step's loss; a reason (``"nan loss at epoch E step S"``) if a checked one is
        not finite."""
        if self.on_cpu:
            value = loss.item()
            self.values.append(value)
            self.count += 1
            self.checked = self.count
            return None if math.isfinite(value) else self._reason(value, epoch, self.count)
        assert self.buffer is not None
        self.buffer[self.count] = loss.detach()
        self.count += 1
        if self.count - self.checked >= _DEVICE_CHECK_EVERY:
            return self.flush(epoch)
        return None

    def flush(self, epoch: int) -> str | None:
        """Check the steps recorded since the last check (deferred mode only)."""
        if self.on_cpu or self.checked == self.count:
            return None
        assert self.buffer is not None
        pending = self.buffer[self.checked:self.count]
        finite = torch.isfinite(pending)
        start = self.checked
        self.checked = self.count
        if bool(finite.all()):
            return None
        i = int((~finite).nonzero()[0, 0])
        return self._reason(float(pending[i]), epoch, start + i + 1)

    def mean(self, steps: int) -> float:
        """Mean loss over the epoch's first ``steps`` steps (NaN for none)."""
        if steps == 0:
            return float("nan")
        if self.on_cpu:
            return math.fsum(self.values[:steps]) / steps
        assert self.buffer is not None
        return float(self.buffer[:steps].double().mean())

    @staticmethod
    def _reason(value: float, epoch: int, step: int) -> str:
        return f"{'nan' if math.isnan(value) else 'inf'} loss at epoch {epoch} step {step}"


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
    resume: dict[str, Any] | None = None,
    keep_state: bool = False,
    stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Train ``model`` on ``data`` under ``budget``; validate after every epoch.

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
    ``bf16_native`` overrides the hardware check (tests). The result's ``speed`` holds the
    choice; ``train_seconds`` includes the measuring.

    Exact continuation: with ``keep_state`` the result's ``state`` holds everything needed to
    go on (model, optimizer, scheduler, the batch-order, augmentation and torch random
    generators, the epoch, the curve, early-stopping counters, the speed choice); ``resume``
    takes such a state and trains on from the epoch after it to ``budget.epochs``. The
    learning-rate schedule spans ``budget.schedule_epochs`` (default ``epochs``), so a run of
    1 epoch continued to 3 follows the same schedule as 3 from scratch when both set
    ``schedule_epochs=3``: the curves agree (tested to 1e-6 on CPU). ``ConfigError`` if the
    state is of another network or its epoch is not below ``budget.epochs``.

    ``stop`` is asked after every epoch (after ``on_epoch``); when it says True training ends
    with status ``"pruned"`` (a pruner's stop request), keeping the curve so far and the last
    epoch's validation accuracy.
    """
    started = time.perf_counter()
    dev = torch.device(device)
    set_determinism(budget.seed)
    if budget.data_fraction < 1.0:
        data = data.subset_train(budget.data_fraction, budget.seed)
    model.to(dev)
    n = int(data.train_y.shape[0])
    if n == 0 or len(data.val_y) == 0:
        raise ConfigError(f"{data.name}: the {'training' if n == 0 else 'validation'} split is empty")
    batch_size = min(int(budget.batch_size), n)
    steps = _steps_per_epoch(n, batch_size, budget.max_steps)
    if resume is not None:
        if int(resume["epoch"]) >= budget.epochs:
            raise ConfigError(f"cannot continue to {budget.epochs} epoch(s) a run that already "
                              f"trained {resume['epoch']}")
        speed = SpeedChoice.from_dict(resume["speed"])  # the parent's options: same numerics
        speed.source, speed.measured, speed.overhead_seconds = "stored", False, 0.0
    if speed is None:
        speed = choose_speed(model, data, budget, dev, steps * budget.epochs, bf16_native)
    setting = speed.setting
    resolved = budget.replace(precision=setting.precision, channels_last=setting.channels_last,
                              threads=setting.threads)
    with applied(setting, dev):
        result = _train(model, data, resolved, evaluate_test, dev, on_epoch, started, steps,
                        resume, keep_state, stop)
    result.speed = speed.to_dict()
    if result.state is not None:
        result.state["speed"] = result.speed
    return result


def choose_speed(
    model: nn.Module,
    data: DataSplits,
    budget: Budget,
    device: torch.device,
    total_steps: int,
    bf16_native: bool | None = None,
) -> SpeedChoice:
    """The speed setting for training ``model`` under ``budget`` (see ``train``): explicit
    options as given, ``auto`` ones by measurement on one real batch of ``data``."""
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
        return choose(settings, extra, step, total_steps, min_seconds=floor)


def _train(
    model: nn.Module,
    data: DataSplits,
    budget: Budget,
    evaluate_test: bool,
    dev: torch.device,
    on_epoch: Callable[[EpochRecord], None] | None,
    started: float,
    steps: int,
    resume: dict[str, Any] | None = None,
    keep_state: bool = False,
    stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """The training loop of ``train`` under concrete speed options (no ``auto`` left)."""
    memory_format = torch.channels_last if budget.channels_last else torch.contiguous_format
    if budget.channels_last:
        model.to(memory_format=torch.channels_last)
    params = count_params(model)
    flops = count_flops(model, data.input_shape)

    train_x = data.train_x.to(dev)
    train_y = data.train_y.to(dev)
    val_x, val_y = data.val_x.to(dev), data.val_y.to(dev)
    normalize = Normalizer(data.mean, data.std, dev)
    n = int(train_y.shape[0])
    batch_size = min(int(budget.batch_size), n)

    optimizer = _make_optimizer(model, budget)
    scaler = grad_scaler(dev, budget.precision)
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
    if budget.schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=budget.schedule_span * steps
        )
    order_gen = torch.Generator().manual_seed(int(budget.seed))
    augment_gen = torch.Generator().manual_seed(int(budget.seed) + 1)
    augment = budget.augment

    curve: list[EpochRecord] = []
    best_acc: float | None = None
    since_best = 0
    first_epoch = 1
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
        augment_gen.set_state(resume["augment_rng"])
        torch.set_rng_state(resume["torch_rng"])
        curve = [EpochRecord(**r) for r in resume["curve"]]
        best_acc, since_best = resume["best_acc"], int(resume["since_best"])
        first_epoch = int(resume["epoch"]) + 1
    reason: str | None = None
    images = 0
    step_seconds = 0.0
    tracker = _LossTracker(steps, dev)

    for epoch in range(first_epoch, budget.epochs + 1):
        epoch_start = time.perf_counter()
        model.train()
        if callable(getattr(model, "schedule_drop_path", None)):  # DARTS: linear drop-path ramp
            model.schedule_drop_path(epoch - 1, budget.epochs)
        tracker.start_epoch()
        perm = torch.randperm(n, generator=order_gen).to(dev)
        # the epoch's augmentation drawn at once and moved once: no blocking copy per step
        plan = EpochAugmentation(
            augment, [min(batch_size, n - step * batch_size) for step in range(steps)],
            int(train_x.shape[-2]), int(train_x.shape[-1]), augment_gen, dev)
        done = 0
        for step in range(steps):
            idx = perm[step * batch_size:(step + 1) * batch_size]
            xb = normalize(train_x[idx])
            yb = train_y[idx]
            xb = plan.apply(step, xb)
            if budget.channels_last:
                xb = xb.contiguous(memory_format=memory_format)
            with autocast_context(dev, budget.precision):
                output = model(xb)
            loss = training_loss(model, output, yb)
            reason = tracker.record(loss, epoch)
            if reason is not None:
                break
            optimizer_step(loss, optimizer, scaler)
            if scheduler is not None:
                scheduler.step()
            done += 1
            images += int(idx.shape[0])
        if reason is None:
            reason = tracker.flush(epoch)
        train_loss = tracker.mean(done)
        step_seconds += time.perf_counter() - epoch_start
        if reason is not None:
            break

        val_acc, val_loss = evaluate_accuracy(
            model, val_x, val_y, data.mean, data.std, batch_size=_EVAL_BATCH,
            precision=budget.precision, channels_last=budget.channels_last,
        )
        if not math.isfinite(val_loss):
            reason = f"{'nan' if math.isnan(val_loss) else 'inf'} validation loss at epoch {epoch}"
            break
        record = EpochRecord(epoch, train_loss, val_loss, val_acc,
                             time.perf_counter() - epoch_start)
        curve.append(record)
        if on_epoch is not None:
            on_epoch(record)
        if best_acc is None or val_acc > best_acc:
            best_acc, since_best = val_acc, 0
        else:
            since_best += 1
        if budget.patience is not None and since_best >= budget.patience:
            break
        if stop is not None and epoch < budget.epochs and stop():
            pruned_at = epoch
            break

    ips = images / step_seconds if step_seconds > 0 else 0.0
    if reason is not None:
        return TrainResult(
            status="failed", reason=reason, val_acc=None, val_loss=None, best_val_acc=best_acc,
            test_acc=None, curve=curve, params=params, flops=flops,
            train_seconds=time.perf_counter() - started, images_per_second=ips,
            epochs_run=len(curve),
        )
    test_acc: float | None = None
    if evaluate_test:
        test_acc, _ = evaluate_accuracy(
            model, data.test_x.to(dev), data.test_y.to(dev), data.mean, data.std,
            batch_size=_EVAL_BATCH, precision=budget.precision,
            channels_last=budget.channels_last,
        )
    last = curve[-1]
    state = None
    if keep_state:
        state = {
            "epoch": last.epoch, "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "order_rng": order_gen.get_state(), "augment_rng": augment_gen.get_state(),
            "torch_rng": torch.get_rng_state(), "curve": [dataclasses.asdict(r) for r in curve],
            "best_acc": best_acc, "since_best": since_best,
        }
    return TrainResult(
        status="ok" if pruned_at is None else "pruned",
        reason=None if pruned_at is None else f"pruned after epoch {pruned_at}",
        val_acc=last.val_acc, val_loss=last.val_loss,
        best_val_acc=best_acc, test_acc=test_acc, curve=curve, params=params, flops=flops,
        train_seconds=time.perf_counter() - started, images_per_second=ips,
        epochs_run=len(curve), state=state,
    )
