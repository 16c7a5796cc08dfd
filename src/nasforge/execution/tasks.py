"""What travels to a worker (an evaluation task) and what comes back (a result dict).

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

from nasforge.data.task_splits import _cached_splits, final_splits, load_splits  # noqa: F401
from nasforge.execution.faults import fault_point
from nasforge.errors import NasforgeError


@dataclass(frozen=True)
class EvalTask:
    """One evaluation: a genome of a space, a budget, where the data is, a seed."""

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

    stored = (task.extra.get("speed") or {}).get(_speed_device(device))
    if stored is None:
        return None
    choice = SpeedChoice.from_dict(stored)
    choice.source, choice.measured, choice.overhead_seconds = "stored", False, 0.0
    return choice


def probe_speed(model: Any, splits: Any, budget: Any, device: str, stored: Any = None) -> dict[str, Any]:
    """Choose the speed options of a coming training (or take ``stored``) and time its step,
    without training: what the driver needs to estimate a final run's cost before starting it.

    Returns ``speed`` (the choice), ``speed_device``, ``step_seconds`` (mean seconds of one
    training step in the chosen setting), ``steps_per_epoch``, ``eval_images`` (images
    validated each epoch) and ``probe_seconds``."""
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
    return {
        "speed": choice.to_dict(), "speed_device": _speed_device(device),
        "step_seconds": step_seconds, "steps_per_epoch": steps,
        "eval_images": int(splits.val_y.shape[0]), "probe_seconds": time.time() - started,
    }


def evaluate_task(task: EvalTask, *, train_fn: Callable[..., Any] | None = None,
                  device: str | None = None, primary: bool = True) -> dict[str, Any]:
    """Build, train and measure one genome; every failure becomes a failed result dict.

    A data-parallel rank (``nasforge.execution.data_parallel``) passes its ``train_fn``
    (``trainer.train``'s arguments), its ``device`` and ``primary=False`` on ranks other than
    0, which then write no checkpoint, state or latency. A task with ``extra["kind"] ==
    "supernet"`` is a one-shot search instead (:func:`nasforge.oneshot.search.evaluate_supernet`):
    its result names the genome found."""
    started = time.time()
    result: dict[str, Any] = {
        "trial_number": task.trial_number,
        "worker": worker_name(),
        "started_at": started,
        "attempt": task.attempt,
    }
    try:
        if task.extra.get("kind") == "supernet":  # one-shot search (nasforge.oneshot)
            from nasforge.oneshot.search import evaluate_supernet

            result.update(evaluate_supernet(task))
            result["finished_at"] = time.time()
            return result
        import torch

        from nasforge.evaluation.budget import Budget
        from nasforge.evaluation.metrics import count_flops
        from nasforge.evaluation.trainer import set_determinism, train
        from nasforge.execution.devices import evaluation_device
        from nasforge.spaces import chosen_network_space, get_space

        if task.final:  # the search's limits (max_params) do not bind the chosen network
            space = chosen_network_space(task.space_name, dict(task.space_settings))
        else:
            space = get_space(task.space_name, **task.space_settings)
        genome = space.genome_from_dict(task.genome)
        budget = Budget.from_dict(task.budget)
        if not task.final and not task.extra.get("probe"):
            fault_point("eval-start", f"{task.trial_number}.{task.attempt}")
        load_started = time.time()
        splits = load_splits(task.data)
        if task.final:
            splits = final_splits(splits)
        result["data_seconds"] = time.time() - load_started
        set_determinism(task.model_seed)
        model = space.build(genome, splits.input_shape, splits.num_classes, budget.width)
        flops = count_flops(model, splits.input_shape)
        budget = budget.replace(seed=task.model_seed % (2**31))
        if task.final:
            budget = budget.replace(patience=None)
        device = device or evaluation_device()
        stored = _stored_speed(task, device)
        if task.extra.get("probe"):
            result.update(probe_speed(model, splits, budget, device, stored), status="ok")
            result["finished_at"] = time.time()
            return result
        resume = None
        if task.extra.get("resume_from"):  # the ``continue`` kind: go on from a parent's state
            resume = torch.load(task.extra["resume_from"], weights_only=True)
        save_state = task.extra.get("save_state")
        stop_file = task.extra.get("stop")  # a pruner's stop request (live channel)
        outcome = (train_fn or train)(model, splits, budget, device=device,
                        on_epoch=_progress_writer(task.progress_path, task.final), speed=stored,
                        resume=resume, keep_state=bool(save_state),
                        stop=(lambda: os.path.exists(stop_file)) if stop_file else None)
        if save_state and outcome.state is not None and primary:
            Path(save_state).parent.mkdir(parents=True, exist_ok=True)
            torch.save(outcome.state, save_state)
            result["state"] = save_state
        out = outcome.to_dict()
        out["device"] = device
        if task.extra.get("latency") and outcome.status == "ok" and primary:  # an objective asks for it
            from nasforge.objectives import measure_latency

            out["latency_ms"] = measure_latency(model, splits.input_shape, device)
            out["latency_threads"] = torch.get_num_threads()
        result["speed"] = outcome.speed
        result["speed_device"] = _speed_device(device)
        out["flops"] = flops
        result.update(
            status=outcome.status,
            error=outcome.reason,
            val_acc=outcome.val_acc,
            params=outcome.params,
            flops=flops,
            curve=out.pop("curve"),
            metrics=out,
        )
        if task.final:
            result["test_acc"] = outcome.val_acc
        if task.checkpoint_path and outcome.status == "ok" and primary:
            Path(task.checkpoint_path).parent.mkdir(parents=True, exist_ok=True)
            torch.save({k: v.cpu() for k, v in model.state_dict().items()}, task.checkpoint_path)
            result["checkpoint"] = task.checkpoint_path
    except NasforgeError as exc:
        result.update(status="failed", error=f"{type(exc).__name__}: {exc}")
    except Exception as exc:  # any evaluation bug is a failed trial, never a dead search
        result.update(
            status="failed",
            error=f"{type(exc).__name__}: {exc}",
            stderr=traceback.format_exc(limit=20),
        )
    result["finished_at"] = time.time()
    return result
