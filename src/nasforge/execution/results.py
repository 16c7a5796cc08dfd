"""What an evaluation sends back: :class:`EvalResult`.

Every evaluate function of a kind of work (``nasforge.execution.kinds``) returns one, the
isolation layer (a forked child, ``nasforge.execution.isolation``), the data-parallel launcher
and the executors (process pool, MPI, Dask) carry it back pickled, and the runner turns it into
the stored trial (``nasforge.execution.runner``). It holds only what crosses that boundary:
the trial's outcome and the facts about the evaluation the driver needs (where its weights
went, which speed options it measured, whether a lost evaluation may be retried).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["EvalResult"]

_FIELDS: frozenset[str] = frozenset()  # filled below, after the class exists


@dataclass
class EvalResult:
    """The outcome of one evaluation.

    Attributes:
        status: ``ok``, ``failed`` or ``pruned`` (stopped by the pruner at an epoch; its
            ``val_acc`` and ``curve`` are those of the last epoch run).
        trial_number: the task's trial number (-1 for a final run of a genome file).
        attempt: which attempt of the trial this was (1 = first).
        worker: ``host:pid`` of the worker process that ran it.
        started_at, finished_at: wall-clock times (seconds since the epoch).
        val_acc: validation accuracy as a fraction (a final run: the test accuracy).
        params: trainable parameters of the built network.
        flops: multiply-accumulates of one forward pass of one image (None where unknown).
        curve: one mapping per epoch (``epoch``, ``val_acc``, ``train_loss``, ...).
        metrics: what else the evaluation measured (trainer figures, ``latency_ms``,
            ``proxies``, ``nproc``, a probe's timings, a supernet's history, ...); stored
            with the trial as its ``metrics``.
        error: one-line reason of a failure (None when ok).
        stderr: the tail of the evaluation's standard error, or a traceback.
        test_acc: a final run's test accuracy (fraction), else None.
        checkpoint: path of the weights it saved (``run.keep_best``, a final run), if any.
        state: path of the training state it saved for a continued trial, if any.
        speed: the speed choice it trained under (``SpeedChoice.to_dict()``), if any.
        speed_device: the device key that choice is for (``evaluation.speed.device_key``).
        genome: a ``supernet`` trial's found genome (as the space's JSON), else None.
        data_seconds: seconds spent loading the data.
        retry: the evaluation was killed from outside (SIGKILL/SIGTERM/...); the runner
            may run it again.
        child_pid: the evaluation child's process id (``isolation``), if forked.
        nproc: data-parallel processes that trained it, if run by the launcher.
    """

    status: str = "failed"
    trial_number: int | None = None
    attempt: int = 1
    worker: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    val_acc: float | None = None
    params: int | None = None
    flops: int | None = None
    curve: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    stderr: str | None = None
    test_acc: float | None = None
    checkpoint: str | None = None
    state: str | None = None
    speed: dict[str, Any] | None = None
    speed_device: str | None = None
    genome: dict[str, Any] | None = None
    data_seconds: float | None = None
    retry: bool = False
    child_pid: int | None = None
    nproc: int | None = None

    @classmethod
    def failure(cls, error: str, *, stderr: str | None = None, retry: bool = False,
                **known: Any) -> EvalResult:
        """A failed result with reason ``error`` (finished now unless ``finished_at`` is
        given); ``known`` sets other fields (``trial_number``, ``worker``, ...)."""
        known.setdefault("finished_at", time.time())
        return cls(status="failed", error=error, stderr=stderr, retry=retry, **known)

    @property
    def ok(self) -> bool:
        """Whether the evaluation succeeded."""
        return self.status == "ok"

    @property
    def wall_seconds(self) -> float:
        """Seconds from start to end (0 where either is unknown)."""
        if self.started_at is None or self.finished_at is None:
            return 0.0
        return self.finished_at - self.started_at

    def replace(self, **changes: Any) -> EvalResult:
        """A copy with ``changes`` applied (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain data (JSON-able when the metrics are), e.g. for a result file
        written by a cluster launch."""
        return dataclasses.asdict(self)

    # read access by field name (tests and scripts written against the former result dict;
    # the library reads the fields)
    def get(self, name: str, default: Any = None) -> Any:
        """The field ``name``, or ``default`` when it is None or no such field exists."""
        value = getattr(self, name, None) if name in _FIELDS else None
        return default if value is None else value

    def __getitem__(self, name: str) -> Any:
        if name not in _FIELDS:
            raise KeyError(name)
        return getattr(self, name)


_FIELDS = frozenset(f.name for f in dataclasses.fields(EvalResult))
