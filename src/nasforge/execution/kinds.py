"""Kinds of work: how a trial becomes a picklable task, and how that task is evaluated.

A :class:`TaskKind` is a pair of functions, registered by name in :data:`KINDS` (a
:class:`~nasforge.registry.Registry`):

- ``make_task(request) -> EvalTask``: in the driver, from what the runner knows about a trial
  (:class:`TaskRequest`: trial number, genome, budget, data, the paths the runner keeps);
- ``evaluate(task) -> EvalResult``: in a worker (inside its isolated child), or in the
  driver's own process for a kind with ``inline=True`` (a table lookup needs no isolation).

The task names its kind (``EvalTask.kind``), so :func:`nasforge.execution.tasks.evaluate_task`
(the default evaluate of every worker) dispatches by a registry lookup. Built-in kinds:

========== ==================================================================================
train      build, train and measure a genome from scratch (today's evaluation)
continue   the same, going on from a parent trial's stored training state (``parent``)
supernet   a one-shot search (``nasforge.oneshot``); its result names the genome it found
data_parallel  ``train``/``continue`` with N data-parallel ranks (``run.devices_per_trial``)
tabular    a NAS-Bench-201 table lookup in the driver (``--evaluator tabular:nb201``)
fidelity   the fidelity study's evaluation: fixed data subset, shared initialisation, proxies
probe      time a final training's step without training (``execution.final_plan``)
========== ==================================================================================

Evaluate functions of kinds implemented elsewhere are imported when first called, so a worker
process that only imported this module can evaluate every kind.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from nasforge.evaluation.budget import Budget
from nasforge.execution.results import EvalResult
from nasforge.execution.tasks import (
    EvalTask,
    evaluate_continue,
    evaluate_probe,
    evaluate_training,
    guarded,
    model_seed,
)
from nasforge.registry import Registry
from nasforge.storage.sqlite import budget_key

__all__ = ["KINDS", "TaskKind", "TaskRequest", "get_kind", "seed_part"]


def seed_part(budget: dict[str, Any]) -> dict[str, Any]:
    """The part of a budget that seeds a trial's model (initial weights, batch order, data
    subset): everything but the epoch count and the schedule's span, so a trial trained to 3
    epochs and one continued from 1 to 3 start from the same weights and data."""
    return {k: v for k, v in budget.items() if k not in ("epochs", "schedule_epochs")}


@dataclass(frozen=True)
class TaskRequest:
    """What the runner knows about one trial when it makes its task.

    Attributes:
        number: the trial number.
        space: the study's search space.
        genome: the genome to evaluate (the space's genome object).
        genome_key: its canonical key.
        budget: the trial's budget.
        data: the data config dict workers load (``SearchConfig.data.task_dict()``).
        study_seed: the study's seed (the model seed derives from it).
        attempt: which attempt this is (1 = first).
        parent: the trial a ``continue`` trial goes on from.
        work: a ``supernet`` trial's search settings.
        checkpoint_path: where to keep the trained weights (``run.keep_best``), if anywhere.
        state_path: where to keep the training state for a later continuation, if asked.
        parent_state_path: the parent trial's training state (``continue``).
        live_dir: folder of the live channel files (``trial_N.jsonl``, ``trial_N.stop``).
        watch: whether the driver reads live values and may send a stop (a pruner is on).
        latency: whether to measure inference latency (an objective or constraint needs it).
        speed: the study's stored speed choices for this network by device key, if any.
        nproc: data-parallel processes per trial (``run.devices_per_trial``).
        settings: study-wide settings of the kind (e.g. the fidelity study's proxies).
    """

    number: int
    space: Any
    genome: Any
    genome_key: str
    budget: Budget
    data: dict[str, Any]
    study_seed: int
    attempt: int = 1
    parent: int | None = None
    work: dict[str, Any] | None = None
    checkpoint_path: str | None = None
    state_path: str | None = None
    parent_state_path: str | None = None
    live_dir: Path | None = None
    watch: bool = False
    latency: bool = False
    speed: dict[str, Any] | None = None
    nproc: int = 1
    settings: dict[str, Any] = field(default_factory=dict)

    def live_files(self) -> tuple[Path, Path]:
        """This trial's live channel: (epochs file, stop-request file); both start empty.

        Raises:
            ValueError: the request has no ``live_dir``.
        """
        if self.live_dir is None:
            raise ValueError("this task request has no live channel folder")
        self.live_dir.mkdir(parents=True, exist_ok=True)
        progress = self.live_dir / f"trial_{self.number}.jsonl"
        progress.write_text("")
        stop = self.live_dir / f"trial_{self.number}.stop"
        stop.unlink(missing_ok=True)
        return progress, stop


@dataclass(frozen=True)
class TaskKind:
    """One kind of work.

    Attributes:
        name: its registry name (stored in ``EvalTask.kind``).
        make_task: the driver side, ``TaskRequest -> EvalTask``.
        evaluate: the worker side, ``EvalTask -> EvalResult``; a module-level function (it
            is pickled with the task's callable where an executor needs it). Never raises for
            what the evaluation does: a failure is a failed result.
        inline: evaluate in the driver's process (no worker, no isolation).
        parallel: may run on data-parallel ranks (``data_parallel`` wraps it).
    """

    name: str
    make_task: Callable[[TaskRequest], EvalTask]
    evaluate: Callable[..., EvalResult]
    inline: bool = False
    parallel: bool = False


#: Every kind of work by name.
KINDS: Registry[TaskKind] = Registry("task kind")


def get_kind(name: str) -> TaskKind:
    """The kind registered as ``name``.

    Raises:
        ConfigError: unknown name (one line listing the known kinds).
    """
    return KINDS.get(name)


def _base_task(request: TaskRequest, kind: str, **fields: Any) -> EvalTask:
    bdict = request.budget.to_dict()
    return EvalTask(
        trial_number=request.number, space_name=request.space.name,
        space_settings=request.space.settings(),
        genome=request.space.genome_to_dict(request.genome), budget=bdict, data=request.data,
        model_seed=model_seed(request.study_seed, request.genome_key,
                              budget_key(seed_part(bdict))),
        attempt=request.attempt, kind=kind, **fields)


def make_train_task(request: TaskRequest) -> EvalTask:
    """A ``train`` task: weights kept at ``checkpoint_path``, training state kept for a later
    continuation, the live channel when the driver watches, latency when asked."""
    extra: dict[str, Any] = {}
    if request.speed is not None:
        extra["speed"] = request.speed
    if request.state_path:
        extra["save_state"] = request.state_path
    if request.latency:
        extra["latency"] = True
    progress = None
    if request.watch:  # the live channel: epochs out, a stop request in
        progress_file, stop_file = request.live_files()
        progress, extra["stop"] = str(progress_file), str(stop_file)
    return _base_task(request, "train", checkpoint_path=request.checkpoint_path, extra=extra,
                      progress_path=progress)


def make_continue_task(request: TaskRequest) -> EvalTask:
    """A ``continue`` task: a ``train`` task that resumes the parent's training state."""
    task = make_train_task(request)
    extra = {**task.extra, "resume_from": request.parent_state_path}
    return dataclasses.replace(task, kind="continue", extra=extra)


def make_supernet_task(request: TaskRequest) -> EvalTask:
    """A ``supernet`` task: the one-shot search settings (``work``), always a live channel
    (the driver shows its epochs), no weights kept."""
    progress, _ = request.live_files()
    return _base_task(request, "supernet", extra={"supernet": dict(request.work or {})},
                      progress_path=str(progress))


def evaluate_supernet_task(task: EvalTask, **_: Any) -> EvalResult:
    """Worker side of ``supernet``: :func:`nasforge.oneshot.search.evaluate_supernet`."""
    from nasforge.oneshot.search import evaluate_supernet

    return guarded(task, evaluate_supernet)


def make_probe_task(request: TaskRequest) -> EvalTask:
    """A ``probe`` task: the final training of the genome, timed but not run."""
    extra = {"speed": request.speed} if request.speed is not None else {}
    return dataclasses.replace(_base_task(request, "probe", final=True, extra=extra),
                               model_seed=0)


def make_data_parallel_task(request: TaskRequest) -> EvalTask:
    """A ``data_parallel`` task: the ``continue`` or ``train`` task of the trial, trained
    by ``request.nproc`` ranks."""
    from nasforge.execution.data_parallel import as_data_parallel

    base = make_continue_task(request) if request.parent is not None else make_train_task(request)
    return as_data_parallel(base, request.nproc)


def evaluate_data_parallel_task(task: EvalTask, **_: Any) -> EvalResult:
    """Worker side of ``data_parallel``: launch the ranks (``execution.data_parallel``)."""
    from nasforge.execution.data_parallel import evaluate_data_parallel

    return evaluate_data_parallel(task)


def make_tabular_task(request: TaskRequest) -> EvalTask:
    """A ``tabular`` task: the genome to look up (a marker stands in for a training state
    a promotion would continue)."""
    extra = {"save_state": request.state_path} if request.state_path else {}
    return _base_task(request, "tabular", extra=extra)


def evaluate_tabular_task(task: EvalTask, **_: Any) -> EvalResult:
    """Driver side of ``tabular``: :func:`nasforge.execution.tabular.evaluate_tabular`."""
    from nasforge.execution.tabular import evaluate_tabular

    return evaluate_tabular(task)


def make_fidelity_task(request: TaskRequest) -> EvalTask:
    """A ``fidelity`` task (:func:`nasforge.studies.fidelity.run.make_fidelity_task`)."""
    from nasforge.studies.fidelity.run import make_fidelity_task as make

    return make(request)


def evaluate_fidelity_task(task: EvalTask, **_: Any) -> EvalResult:
    """Worker side of ``fidelity`` (:func:`nasforge.studies.fidelity.run.evaluate_fidelity_task`)."""
    from nasforge.studies.fidelity.run import evaluate_fidelity_task as evaluate

    return evaluate(task)


KINDS.register("train", TaskKind("train", make_train_task, evaluate_training, parallel=True))
KINDS.register("continue", TaskKind("continue", make_continue_task, evaluate_continue,
                                    parallel=True))
KINDS.register("supernet", TaskKind("supernet", make_supernet_task, evaluate_supernet_task,
                                    parallel=True))
KINDS.register("data_parallel", TaskKind("data_parallel", make_data_parallel_task,
                                         evaluate_data_parallel_task))
KINDS.register("tabular", TaskKind("tabular", make_tabular_task, evaluate_tabular_task,
                                   inline=True))
KINDS.register("fidelity", TaskKind("fidelity", make_fidelity_task, evaluate_fidelity_task))
KINDS.register("probe", TaskKind("probe", make_probe_task, evaluate_probe))
