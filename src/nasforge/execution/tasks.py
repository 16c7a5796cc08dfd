"""What travels to a worker (an evaluation task) and the training kinds' worker side.

What comes back is an :class:`~nasforge.execution.results.EvalResult`; which function
evaluates a task is its kind's (``nasforge.execution.kinds``).

The worker side builds the network from the genome, loads the data from its own disk and
trains under the budget. It never touches the study database.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import socket
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from nasforge.errors import NasforgeError
from nasforge.execution.faults import fault_point
from nasforge.execution.results import EvalResult


@dataclass(frozen=True)
class EvalTask:
    """One evaluation: a genome of a space, a budget, where the data is, a seed, and its kind
    of work. Picklable (it crosses process, MPI and Dask boundaries). ``extra`` holds the
    kind's own settings (``save_state``, ``resume_from``, ``stop``, ``speed``, ``latency``,
    ``supernet``, ``nproc``, the fidelity study's seeds and proxies)."""

    trial_number: int
    space_name: str
    space_settings: dict[str, Any]
    genome: dict[str, Any]
    budget: dict[str, Any]
    data: dict[str, Any]
    model_seed: int
    checkpoint_path: str | None = None
    final: bool = False
    attempt: int = 1
    extra: dict[str, Any] = field(default_factory=dict)
    #: a file to append one JSON line to after every epoch (live progress of long runs)
    progress_path: str | None = None
    #: the kind of work (``nasforge.execution.kinds.KINDS``) that evaluates it
    kind: str = "train"


def __getattr__(name: str) -> Any:
    """``load_splits``, ``final_splits`` (and the cache ``_cached_splits``) live in
    :mod:`nasforge.data.task_splits`; importable from here as before, loaded on first use
    (importing this module loads no data layer and no torch)."""
    if name in ("load_splits", "final_splits", "_cached_splits"):
        from nasforge.data import task_splits

        return getattr(task_splits, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def model_seed(study_seed: int, genome_key: str, budget_key: str, salt: int = 0) -> int:
    """A seed for weight init and training that depends only on the study seed and the trial."""
    text = f"{study_seed}:{genome_key}:{budget_key}:{salt}"
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


def worker_name() -> str:
    """host:pid of this process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _progress_writer(path: str | None, final: bool = False) -> Callable[[Any], None] | None:
    """An ``on_epoch`` callback appending each epoch record to ``path`` as a JSON line; a file
    that cannot be written only costs the progress display. A final run passes the
    ``final-epoch`` fault point after each epoch (``nasforge.execution.faults``)."""
    if not path:
        return None

    def write(record: Any) -> None:
        try:
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(dataclasses.asdict(record)) + "\n")
        except OSError:
            pass
        if final:
            fault_point("final-epoch", record.epoch)

    return write


def _speed_device(device: str) -> str:
    import torch

    from nasforge.evaluation.speed import device_key

    return device_key(device, torch.get_num_threads())


def _stored_speed(task: EvalTask, device: str) -> Any:
    """The study's stored speed choice for this network on this device, if the runner sent one
    (``task.extra["speed"]``: device key -> choice dict)."""
    from nasforge.evaluation.speed import SpeedChoice

    choice = SpeedChoice.parse_stored((task.extra.get("speed") or {}).get(_speed_device(device)))
    if choice is None:  # none, or a damaged record: measure again
        return None
    choice.source, choice.measured, choice.overhead_seconds = "stored", False, 0.0
    return choice


def _default_speed(task: EvalTask, device: str) -> tuple[Any, bool]:
    """The study's default speed choice for short trainings on this device, and whether to
    learn one (the runner sent the defaults, ``task.extra["speed"]["study default"]``, and
    none is stored for this device yet)."""
    from nasforge.evaluation.speed import SpeedChoice

    defaults = (task.extra.get("speed") or {}).get(STUDY_DEFAULT)
    if not isinstance(defaults, dict):
        return None, False
    choice = SpeedChoice.parse_stored(defaults.get(_speed_device(device)))
    return choice, choice is None  # none, or damaged: learn one (the runner replaces it)


def probe_speed(model: Any, splits: Any, budget: Any, device: str, stored: Any = None) -> dict[str, Any]:
    """Choose the speed options of a coming training (or take ``stored``) and time its step,
    without training: what the driver needs to estimate a final run's cost before starting it.

    Returns ``speed`` (the choice), ``speed_device``, ``step_seconds`` (mean seconds of one
    training step in the chosen setting, fresh batches as the run takes them: the larger of
    the choice's figure and :func:`_time_pipeline`'s), ``steps_per_epoch``, ``eval_images``
    (images validated each epoch), ``eval_seconds`` (one validation pass, measured),
    ``probe_seconds`` and ``pipeline_seconds`` (the part of it spent on that timing)."""
    import torch

    from nasforge.evaluation.speed import applied, measure_training_step
    from nasforge.evaluation.trainer import _make_optimizer, _steps_per_epoch, choose_speed

    started = time.time()
    dev = torch.device(device)
    model.to(dev)
    n = int(splits.train_y.shape[0])
    if float(budget.data_fraction) < 1.0:  # train() trains on this stratified subset
        from nasforge.data.datasets import subset_size

        n = subset_size(n, float(budget.data_fraction))
    steps = _steps_per_epoch(n, min(int(budget.batch_size), n), budget.max_steps)
    choice = stored or choose_speed(model, splits, budget, dev, steps * budget.epochs)
    step_seconds = choice.step_seconds
    if step_seconds is None:  # explicit options: time them anyway, for the estimate
        from nasforge.evaluation.metrics import Normalizer

        batch = min(int(budget.batch_size), n)
        with torch.random.fork_rng(devices=[]):
            xb = Normalizer(splits.mean, splits.std, dev)(splits.train_x[:batch].to(dev))
            step = measure_training_step(model, xb, splits.train_y[:batch].to(dev),
                                         lambda m: _make_optimizer(m, budget), dev)
            with applied(choice.setting, dev):
                step(choice.setting)
                step_seconds = min(step(choice.setting) for _ in range(2))
    timed = time.time()
    pipeline_step, eval_seconds = _time_pipeline(model, splits, budget, choice.setting, dev,
                                                 min(PIPELINE_STEPS, steps * budget.epochs))
    timed = time.time() - timed
    return {
        "speed": choice.to_dict(), "speed_device": _speed_device(device),
        "step_seconds": max(float(step_seconds), pipeline_step), "steps_per_epoch": steps,
        "eval_images": int(splits.val_y.shape[0]), "eval_seconds": eval_seconds,
        "probe_seconds": time.time() - started, "pipeline_seconds": timed,
    }


#: The key of ``task.extra["speed"]`` holding the study's defaults for short trainings
#: (device key -> choice); present (possibly empty) when the runner wants one learned.
STUDY_DEFAULT = "study default"
PIPELINE_STEPS = 8
"""Steps the probe times as the run will take them (after one warm-up step)."""
PIPELINE_EVAL_IMAGES = 2048
"""Validation images the probe times (a pass over the split is scaled from them)."""


def _time_pipeline(model: Any, splits: Any, budget: Any, setting: Any, dev: Any,
                   timed_steps: int = PIPELINE_STEPS) -> tuple[float, float]:
    """(mean seconds of a training step, seconds of one validation pass) as the run takes
    them: ``timed_steps`` fresh batches (after a warm-up one) gathered from the uint8 split,
    standardised and augmented per the budget, in ``setting``, on a copy of ``model`` (the model itself, its optimizer and every
    random generator of the run are untouched). The speed choice's own timings repeat one
    batch already on the device, which ran 6-24% short of the quick preset's real epochs."""
    import copy

    import torch

    from nasforge.data.augment import EpochAugmentation
    from nasforge.evaluation.metrics import (Normalizer, autocast_context, evaluate_accuracy,
                                             grad_scaler)
    from nasforge.evaluation.speed import _sync as _sync_device
    from nasforge.evaluation.speed import applied
    from nasforge.evaluation.trainer import _make_optimizer, optimizer_step, training_loss

    n = int(splits.train_y.shape[0])
    batch = min(int(budget.batch_size), n)
    memory = torch.channels_last if setting.channels_last else torch.contiguous_format
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []), \
            applied(setting, dev):
        clone = copy.deepcopy(model).to(dev)
        if setting.channels_last:
            clone.to(memory_format=torch.channels_last)
        clone.train()
        optimizer = _make_optimizer(clone, budget)
        scaler = grad_scaler(dev, setting.precision)
        gen = torch.Generator().manual_seed(int(budget.seed) + 11)
        order = torch.randint(0, n, ((timed_steps + 1) * batch,), generator=gen)
        normalize = Normalizer(splits.mean, splits.std, dev)
        plan = EpochAugmentation(budget.augment, [batch] * (timed_steps + 1),
                                 int(splits.train_x.shape[-2]), int(splits.train_x.shape[-1]),
                                 gen, dev)
        times = []
        for step in range(timed_steps + 1):
            _sync_device(dev)
            begin = time.perf_counter()
            idx = order[step * batch:(step + 1) * batch]
            xb = plan.apply(step, normalize(splits.train_x[idx].to(dev)))
            xb = xb.contiguous(memory_format=memory)
            with autocast_context(dev, setting.precision):
                output = clone(xb)
            optimizer_step(training_loss(clone, output, splits.train_y[idx].to(dev)),
                           optimizer, scaler)
            _sync_device(dev)
            times.append(time.perf_counter() - begin)
        m = min(PIPELINE_EVAL_IMAGES, int(splits.val_y.shape[0]))
        begin = time.perf_counter()
        evaluate_accuracy(clone, splits.val_x[:m].to(dev), splits.val_y[:m].to(dev),
                          splits.mean, splits.std, precision=setting.precision,
                          channels_last=setting.channels_last, tta=budget.tta)
        _sync_device(dev)
        eval_pass = (time.perf_counter() - begin) * int(splits.val_y.shape[0]) / max(1, m)
    return sum(times[1:]) / timed_steps, eval_pass


def guarded(task: EvalTask, evaluate: Callable[[EvalTask], EvalResult]) -> EvalResult:
    """``evaluate(task)`` with the result's bookkeeping (trial number, attempt, worker, start
    and end times) filled in; every exception becomes a failed result with its reason (and
    its traceback as ``stderr``, unless it is a :class:`~nasforge.errors.NasforgeError`)."""
    started = time.time()
    try:
        result = evaluate(task)
    except NasforgeError as exc:
        result = EvalResult.failure(f"{type(exc).__name__}: {exc}")
    except Exception as exc:  # any evaluation bug is a failed trial, never a dead search
        result = EvalResult.failure(f"{type(exc).__name__}: {exc}",
                                    stderr=traceback.format_exc(limit=20))
    result.trial_number = task.trial_number
    result.attempt = task.attempt
    result.worker = worker_name()
    result.started_at = started
    result.finished_at = time.time()
    return result


@dataclass
class _Built:
    """A task's network, built in the worker: what training and probing share."""

    space: Any
    genome: Any
    budget: Any
    splits: Any
    model: Any
    flops: int
    data_seconds: float


def _build(task: EvalTask) -> _Built:
    from nasforge.data.task_splits import final_splits, load_splits
    from nasforge.evaluation.budget import Budget
    from nasforge.evaluation.metrics import count_flops
    from nasforge.evaluation.trainer import set_determinism
    from nasforge.spaces import chosen_network_space, get_space

    if task.final:  # the search's limits (max_params) do not bind the chosen network
        space = chosen_network_space(task.space_name, dict(task.space_settings))
    else:
        space = get_space(task.space_name, **task.space_settings)
    genome = space.genome_from_dict(task.genome)
    budget = Budget.from_dict(task.budget)
    if not task.final:
        fault_point("eval-start", f"{task.trial_number}.{task.attempt}")
    load_started = time.time()
    splits = load_splits(task.data)
    if task.final:
        splits = final_splits(splits)
    data_seconds = time.time() - load_started
    set_determinism(task.model_seed)
    model = space.build(genome, splits.input_shape, splits.num_classes, budget.width)
    flops = count_flops(model, splits.input_shape)
    budget = budget.replace(seed=task.model_seed % (2**31))
    if task.final:
        budget = budget.replace(patience=None)
    return _Built(space, genome, budget, splits, model, flops, data_seconds)


def _single_view_accuracy(model: Any, built: _Built, speed: dict[str, Any] | None) -> float:
    """A final run's test accuracy without test-time augmentation (printed beside the
    augmented one), in the speed setting the run trained in."""
    from nasforge.evaluation.metrics import evaluate_accuracy
    from nasforge.evaluation.speed import SpeedChoice

    setting = SpeedChoice.from_dict(speed).setting if speed else None
    precision = setting.precision if setting else built.budget.precision
    channels_last = setting.channels_last if setting else built.budget.channels_last
    splits = built.splits  # a final run's validation split is the test set (final_splits)
    return evaluate_accuracy(model, splits.val_x, splits.val_y, splits.mean, splits.std,
                             precision="fp32" if precision == "auto" else precision,
                             channels_last=channels_last is True)[0]


def _train(task: EvalTask, resume: Any, train_fn: Callable[..., Any] | None,
           device: str | None, primary: bool) -> EvalResult:
    import torch

    from nasforge.evaluation.trainer import train
    from nasforge.execution.devices import evaluation_device

    built = _build(task)
    model = built.model
    device = device or evaluation_device()
    save_state = task.extra.get("save_state")
    stop_file = task.extra.get("stop")  # a pruner's stop request (live channel)
    default, learn = _default_speed(task, device)
    outcome = (train_fn or train)(model, built.splits, built.budget, device=device,
                    on_epoch=_progress_writer(task.progress_path, task.final),
                    speed=_stored_speed(task, device), resume=resume,
                    speed_default=default, learn_speed_default=learn,
                    keep_state=bool(save_state),
                    stop=(lambda: os.path.exists(stop_file)) if stop_file else None)
    result = EvalResult(status=outcome.status, error=outcome.reason, val_acc=outcome.val_acc,
                        params=outcome.params, flops=built.flops, speed=outcome.speed,
                        speed_device=_speed_device(device), data_seconds=built.data_seconds)
    if save_state and outcome.state is not None and primary:
        Path(save_state).parent.mkdir(parents=True, exist_ok=True)
        torch.save(outcome.state, save_state)
        result.state = save_state
    metrics = outcome.to_dict()
    metrics["device"] = device
    if task.extra.get("latency") and outcome.status == "ok" and primary:  # an objective asks
        from nasforge.objectives import measure_latency

        metrics["latency_ms"] = measure_latency(model, built.splits.input_shape, device)
        metrics["latency_threads"] = torch.get_num_threads()
    metrics["flops"] = built.flops
    result.curve = metrics.pop("curve")
    result.metrics = metrics
    if task.final:
        result.test_acc = outcome.val_acc
    if task.checkpoint_path and outcome.status == "ok" and primary:
        Path(task.checkpoint_path).parent.mkdir(parents=True, exist_ok=True)
        torch.save({k: v.cpu() for k, v in model.state_dict().items()}, task.checkpoint_path)
        result.checkpoint = task.checkpoint_path
    if task.final and built.budget.tta is not None and outcome.status == "ok" and primary:
        try:  # after the weights are saved: a failure here costs this figure only
            metrics["test_acc_single_view"] = _single_view_accuracy(model, built, outcome.speed)
        except Exception as exc:  # noqa: BLE001 - e.g. out of memory on the whole test set
            metrics["test_acc_single_view_error"] = f"{type(exc).__name__}: {exc}"
    return result


def evaluate_training(task: EvalTask, *, train_fn: Callable[..., Any] | None = None,
                      device: str | None = None, primary: bool = True) -> EvalResult:
    """The ``train`` kind: build, train and measure one genome from scratch (a final run when
    ``task.final``: train+validation data, measured on the test set); every failure becomes a
    failed result.

    A data-parallel rank (``nasforge.execution.data_parallel``) passes its ``train_fn``
    (``trainer.train``'s arguments), its ``device`` and ``primary=False`` on ranks other than
    0, which then write no checkpoint, state or latency."""
    return guarded(task, lambda t: _train(t, None, train_fn, device, primary))


def evaluate_continue(task: EvalTask, *, train_fn: Callable[..., Any] | None = None,
                      device: str | None = None, primary: bool = True) -> EvalResult:
    """The ``continue`` kind: as :func:`evaluate_training`, going on from the parent trial's
    training state (``task.extra["resume_from"]``, saved by the parent's ``save_state``)."""

    def resume(t: EvalTask) -> EvalResult:
        import torch

        state = torch.load(t.extra["resume_from"], weights_only=True)
        return _train(t, state, train_fn, device, primary)

    return guarded(task, resume)


def evaluate_probe(task: EvalTask, **_: Any) -> EvalResult:
    """The ``probe`` kind: build the final run's network, choose its speed options and time
    its step without training (:func:`probe_speed`); ``metrics`` holds ``step_seconds``,
    ``steps_per_epoch``, ``eval_images`` and ``probe_seconds``."""

    def probe(t: EvalTask) -> EvalResult:
        from nasforge.execution.devices import evaluation_device

        built = _build(t)
        device = evaluation_device()
        figures = probe_speed(built.model, built.splits, built.budget, device,
                              _stored_speed(t, device))
        return EvalResult(status="ok", speed=figures.pop("speed"),
                          speed_device=figures.pop("speed_device"), metrics=figures,
                          data_seconds=built.data_seconds)

    return guarded(task, probe)


def evaluate_task(task: EvalTask, **options: Any) -> EvalResult:
    """Evaluate ``task`` by its kind (``task.kind``, a lookup in
    :data:`nasforge.execution.kinds.KINDS`): the default evaluate of every worker. An unknown
    kind is a failed result naming the known ones. ``options`` go to the kind's evaluate
    (``train_fn``, ``device``, ``primary`` for the training kinds)."""
    from nasforge.execution.kinds import KINDS

    try:
        kind = KINDS.get(task.kind)
    except NasforgeError as exc:
        return EvalResult.failure(str(exc), trial_number=task.trial_number,
                                  attempt=task.attempt, worker=worker_name())
    return kind.evaluate(task, **options)
