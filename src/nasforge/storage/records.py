"""The stored trial (``Trial``, Optuna's ``FrozenTrial`` is the model), its status, and final runs.

A ``Trial`` is one evaluation of a genome under a budget: what the runner stores, what
strategies are told (``Observation`` carries one), what reports and the API read. Final
trainings live in their own table (``FinalRunRecord``, one row per seed and attempt) and are
presented as trials of kind ``final`` (``FinalRunRecord.as_trial``) whose ``parent`` is the
search trial they came from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from nasforge.errors import StorageError
from nasforge.storage.schema import budget_key


class TrialStatus(StrEnum):
    """The state of a trial or final run; a ``str`` (``TrialStatus.OK == "ok"``), stored as
    its value.

    ``running``: submitted and not ended; in a study no driver holds, one cut short by a kill
    (``--resume`` runs it again in the same row). ``ok``: ended with its results. ``failed``:
    ended with ``error``. ``pruned``: stopped early by a pruner from its intermediate values,
    curve kept (search trials only). ``interrupted``: a final run cut by Ctrl-C and stored so
    (final runs only; ``--resume`` trains it again in a new row). All but ``running`` are final.
    """

    RUNNING = "running"
    OK = "ok"
    FAILED = "failed"
    PRUNED = "pruned"
    INTERRUPTED = "interrupted"

    @property
    def finished(self) -> bool:
        """Whether the state is final (everything but ``running``)."""
        return self is not TrialStatus.RUNNING

    @classmethod
    def parse(cls, value: str) -> "TrialStatus":
        """The status named ``value``; raises ``StorageError`` (one line) for an unknown name."""
        try:
            return cls(value)
        except ValueError:
            known = ", ".join(s.value for s in cls)
            raise StorageError(f"unknown trial status {value!r} (known: {known})") from None


STATUSES: tuple[str, ...] = ("running", "ok", "failed", "pruned")
"""The statuses a search trial can have (the ``trials`` table's CHECK)."""

FINAL_STATUSES: tuple[str, ...] = ("running", "ok", "failed", "interrupted")
"""The statuses a final run can have."""

KIND_FINAL = "final"
"""The ``kind`` of a final run presented as a trial."""

TRANSIENT_FAILURES: tuple[str, ...] = (
    "timeout", "out-of-memory", "evaluation process killed", "evaluation process exited",
    "evaluation lost", "final run lost",
)
"""Starts of the error texts (``execution.isolation`` and the runner) of failures caused by the
circumstances of one evaluation rather than by the network."""


def is_transient_failure(error: str | None) -> bool:
    """Whether a failed trial's ``error`` names a failure of the circumstances (timeout,
    out-of-memory, a killed or lost evaluation) that another attempt might not repeat."""
    text = (error or "").strip().lower()
    return any(text.startswith(prefix) for prefix in TRANSIENT_FAILURES)


def single_view_acc(metrics: Any) -> float | None:
    """A final run's stored test accuracy without test-time augmentation
    (``metrics["test_acc_single_view"]``, a fraction; written beside the flip-averaged one of a
    ``budget.tta`` run); None without one or when the stored value is not a finite number in
    [0, 1] (a damaged row: readers leave the figure out)."""
    value = metrics.get("test_acc_single_view") if isinstance(metrics, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if 0.0 <= float(value) <= 1.0 else None


def json_column(where: str, name: str, text: Any, empty: Any, kind: type) -> Any:
    """A JSON column's value (``empty`` when NULL/empty); a ``StorageError`` naming ``where``
    and the column when it is not JSON or not of ``kind`` (a row edited or damaged by hand)."""
    try:
        value = json.loads(text) if text else empty
    except (TypeError, ValueError) as exc:
        raise StorageError(f"{where}: column {name} is damaged (not JSON: {exc})") from None
    if not isinstance(value, kind):
        raise StorageError(f"{where}: column {name} is damaged (holds {type(value).__name__}, "
                           f"expected {kind.__name__})")
    return value


def trial_genome(space: Any, record: Any, source: Any) -> Any:
    """The genome of a stored trial (a ``TrialRecord``/``Trial`` with ``number`` and
    ``genome``) decoded by ``space`` (``genome_from_dict``). Raises ``StorageError`` naming
    ``source`` (the study file), the trial and the column when the stored genome is not one
    of ``space`` (an operation it lacks, a missing field: a row edited or damaged by hand)."""
    from nasforge.errors import NasforgeError

    try:
        return space.genome_from_dict(record.genome)
    except NasforgeError as exc:
        raise StorageError(f"{source}: trial {record.number}: column genome_json is damaged "
                           f"({exc})") from None


def number_column(where: str, name: str, value: Any) -> Any:
    """A numeric column's value (None allowed); a ``StorageError`` when it holds text."""
    if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        return value
    raise StorageError(f"{where}: column {name} is damaged (holds {value!r}, expected a number)")


@dataclass
class Trial:
    """One stored trial: an evaluation of a genome under a budget.

    Identity: ``number`` (1, 2, ... in submission order; a final run's own id when ``kind`` is
    ``final``), ``genome_key`` (the canonical key of the network, equal for equal networks),
    ``budget_key`` (``budget_key(budget)``), ``genome`` (the space's JSON form) and ``budget``
    (``Budget.to_dict()``: epochs, width, data fraction, ...). ``kind``: the kind of work
    (``train`` from scratch, ``continue`` from ``parent``'s checkpoint, ``supernet``, ``final``,
    ...). ``parent``: the trial number this one went on from (a continued or promoted trial; the
    search trial of a final run), else None.

    Outcome: ``status`` (``TrialStatus``); ``val_acc`` (validation accuracy after the last
    epoch, a fraction in [0, 1]; None unless ok or pruned); ``params`` (trainable parameters);
    ``flops`` (FLOPs of one forward pass of one image, a multiply-add counting 2); ``metrics``
    (further measurements by name: ``latency_ms`` in milliseconds, ``train_seconds``,
    ``images_per_second``, ...); ``curve`` (one dict per finished epoch: ``epoch`` from 1,
    ``train_loss`` and ``val_loss`` in nats per example, ``val_acc``, ``seconds`` of that epoch);
    ``error`` (why it failed, one line) and ``stderr`` (the tail of the worker's error output).

    Execution: ``worker`` (where it ran), ``attempts`` (submissions, re-queues after an
    interrupted run included), ``checkpoint`` (its kept weights file, relative to the study's
    folder or absolute; None when not kept), and ``submitted_at``, ``started_at``,
    ``finished_at`` in Unix seconds (None while not started or not finished).

    ``status`` may be given as its string; it is stored as a ``TrialStatus`` (a ``str``, so
    ``trial.status == "ok"`` holds). Raises ``StorageError`` for an unknown status.
    """

    number: int
    genome_key: str
    budget_key: str
    genome: dict[str, Any]
    budget: dict[str, Any]
    status: TrialStatus
    val_acc: float | None = None
    params: int | None = None
    flops: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    curve: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    stderr: str | None = None
    worker: str | None = None
    attempts: int = 0
    checkpoint: str | None = None
    submitted_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    kind: str = "train"
    parent: int | None = None

    def __post_init__(self) -> None:
        self.status = TrialStatus.parse(self.status)

    @classmethod
    def from_row(cls, row: tuple[Any, ...], source: str = "study") -> "Trial":
        """A trial from one row of ``schema.trial_columns`` (JSON columns parsed). Raises
        ``StorageError`` naming ``source``, the trial and the column when a column is damaged
        (not JSON, the wrong JSON type, text in a numeric column)."""
        where = f"{source}: trial {row[0]}"
        return cls(
            number=row[0], genome_key=row[1], budget_key=row[2],
            genome=json_column(where, "genome_json", row[3], {}, dict),
            budget=json_column(where, "budget_json", row[4], {}, dict), status=row[5],
            val_acc=number_column(where, "val_acc", row[6]),
            params=number_column(where, "params", row[7]),
            flops=number_column(where, "flops", row[8]),
            metrics=json_column(where, "metrics_json", row[9], {}, dict),
            curve=json_column(where, "curve_json", row[10], [], list), error=row[11],
            stderr=row[12], worker=row[13], attempts=row[14], checkpoint=row[15],
            submitted_at=row[16], started_at=row[17], finished_at=row[18], kind=row[19],
            parent=row[20],
        )

    @property
    def finished(self) -> bool:
        """True when the trial ended (ok, failed, pruned or interrupted)."""
        return self.status.finished

    @property
    def duration(self) -> float | None:
        """Seconds from start to end of its evaluation, None until both are known."""
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    @property
    def intermediate_values(self) -> dict[int, float]:
        """Validation accuracy (a fraction) after each finished epoch, by epoch (from 1): what
        a pruner compares (Optuna's ``FrozenTrial.intermediate_values``)."""
        return {int(p["epoch"]): float(p["val_acc"]) for p in self.curve
                if p.get("epoch") is not None and p.get("val_acc") is not None}

    @property
    def objective_values(self) -> dict[str, float | None]:
        """Every known objective's value by name (``nasforge.objectives.KNOWN_OBJECTIVES``:
        ``val_acc`` fraction, ``params`` count, ``flops`` per image, ``latency_ms``
        milliseconds); None where not measured. ``objectives.trial_values`` picks a study's."""
        from nasforge.objectives import KNOWN_OBJECTIVES, trial_value

        return {name: trial_value(self, name) for name in KNOWN_OBJECTIVES}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: every field by name, ``status`` as its plain string."""
        values = dict(self.__dict__)
        values["status"] = str(self.status.value)
        return values


TrialRecord = Trial
"""The name ``Trial`` had before it became the one trial model (kept for existing imports)."""


@dataclass
class FinalRunRecord:
    """One final training of a genome on the full training set, with its test accuracy.

    ``id``: its row (1, 2, ... over the study's final runs, one row per seed and attempt);
    ``trial_number``: the search trial it trains (None for a genome from a file);
    ``genome_key``, ``genome``, ``budget``: as a ``Trial``'s; ``seed``: the seed index (0, 1,
    ...); ``status``: ``running`` (training, or cut by a kill), ``ok``, ``failed`` or
    ``interrupted`` (cut by Ctrl-C); ``val_acc``: None (final runs train on the whole training
    set); ``test_acc``: accuracy on the test split, a fraction (None unless ok); ``params``:
    trainable parameters; ``metrics``: its measurements plus ``curve`` (per epoch, ``val_acc``
    there being the test accuracy), ``error``, ``wall_seconds`` and ``estimated_seconds``;
    ``checkpoint``: its weights file; ``created_at``: when it was stored, Unix seconds.

    ``status`` may be given as its string (see ``Trial``)."""

    id: int
    trial_number: int | None
    genome_key: str
    genome: dict[str, Any]
    budget: dict[str, Any]
    seed: int
    status: TrialStatus
    val_acc: float | None
    test_acc: float | None
    params: int | None
    metrics: dict[str, Any]
    checkpoint: str | None
    created_at: float

    def __post_init__(self) -> None:
        self.status = TrialStatus.parse(self.status)

    @classmethod
    def from_row(cls, row: tuple[Any, ...], source: str = "study") -> "FinalRunRecord":
        """A final run from one row of ``schema.FINAL_RUN_COLUMNS``. Raises ``StorageError``
        naming ``source``, the run and the column when a column is damaged."""
        where = f"{source}: final run {row[0]} (trial {row[1]}, seed {row[5]})"
        return cls(
            id=row[0], trial_number=row[1], genome_key=row[2],
            genome=json_column(where, "genome_json", row[3], {}, dict),
            budget=json_column(where, "budget_json", row[4], {}, dict), seed=row[5],
            status=row[6], val_acc=number_column(where, "val_acc", row[7]),
            test_acc=number_column(where, "test_acc", row[8]),
            params=number_column(where, "params", row[9]),
            metrics=json_column(where, "metrics_json", row[10], {}, dict), checkpoint=row[11],
            created_at=row[12],
        )

    @property
    def kind(self) -> str:
        """``final``: the kind of work of every final run."""
        return KIND_FINAL

    @property
    def parent(self) -> int | None:
        """The search trial this run trains (``trial_number``), as a trial's ``parent``."""
        return self.trial_number

    @property
    def finished(self) -> bool:
        """True when the run ended (ok, failed or interrupted)."""
        return self.status.finished

    def as_trial(self) -> Trial:
        """This run as a ``Trial`` of kind ``final``: ``number`` is the run's ``id``,
        ``parent`` its search trial, ``metrics`` its own plus ``test_acc`` and ``seed``,
        ``curve`` and ``error`` from its metrics, ``submitted_at`` its ``created_at``."""
        metrics = {k: v for k, v in self.metrics.items() if k not in ("curve", "error")}
        metrics.update(test_acc=self.test_acc, seed=self.seed)
        return Trial(
            number=self.id, genome_key=self.genome_key, budget_key=budget_key(self.budget),
            genome=self.genome, budget=self.budget, status=self.status, val_acc=self.val_acc,
            params=self.params, flops=self.metrics.get("flops"), metrics=metrics,
            curve=list(self.metrics.get("curve") or []), error=self.metrics.get("error"),
            attempts=1, checkpoint=self.checkpoint, submitted_at=self.created_at,
            finished_at=self.created_at if self.finished else None, kind=KIND_FINAL,
            parent=self.trial_number,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: every field by name, ``status`` as its plain string."""
        values = dict(self.__dict__)
        values["status"] = str(self.status.value)
        return values
