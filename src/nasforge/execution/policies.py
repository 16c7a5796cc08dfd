"""The runner's decisions, as small objects beside its loop (``nasforge.execution.runner``).

- :class:`ReusePolicy`: which stored or running trial answers a proposal again instead of a
  new evaluation (de-duplication);
- :class:`RetryPolicy`: what happens to an evaluation that was lost or killed from outside
  (run it again, leave it for ``--resume``, or record the failure);
- :class:`WeightRetention`: where a trial's weights and training state go, which weights
  are kept (``run.keep_best``), and whether a trial's kept state can be continued.

Each decides from plain facts (a trial record, an attempt count, whether the run is stopping),
so it is tested directly, without a run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, TypeVar

from nasforge.storage.sqlite import (
    StudyStorage,
    TrialRecord,
    is_transient_failure,
    resolve_checkpoint,
)

__all__ = ["RETRY", "LEAVE", "RECORD", "RetryPolicy", "ReusePolicy", "WeightRetention"]

F = TypeVar("F")

RETRY = "retry"
"""Run the evaluation again (a new attempt of the same trial)."""
LEAVE = "leave"
"""Leave the trial ``running`` in the study: ``--resume`` evaluates it again."""
RECORD = "record"
"""Store the outcome as it is."""


@dataclass(frozen=True)
class ReusePolicy:
    """Which earlier result answers a proposal of the same network and budget.

    A stored trial is reused only when evaluating it again would give the same answer: an
    ``ok`` or ``pruned`` trial, or one that failed for a reason of the network itself (it
    cannot be built, a NaN loss, an error in its code). A failure of the circumstances (a
    timeout, out-of-memory, a killed or lost evaluation:
    :func:`~nasforge.storage.sqlite.is_transient_failure`) is never reused, so a
    ``--resume`` with a longer timeout or fewer workers per GPU evaluates it again. A
    ``supernet`` trial (a one-shot search that *found* the network) is never reused as its
    training. A proposal equal to a running trial waits for that trial's result.
    """

    def reusable(self, record: TrialRecord) -> bool:
        """Whether ``record`` may answer a new proposal of its network and budget."""
        if record.kind == "supernet" or record.status not in ("ok", "failed", "pruned"):
            return False
        return record.status != "failed" or not is_transient_failure(record.error)

    def stored(self, storage: StudyStorage, gkey: str,
               budget: dict[str, Any]) -> TrialRecord | None:
        """The study's earliest reusable trial of network ``gkey`` under ``budget``, if any."""
        record = storage.find_finished(gkey, budget)
        return record if record is not None and self.reusable(record) else None

    def running(self, flights: Iterable[F], gkey: str, budget: Any) -> F | None:
        """The running evaluation (anything with ``genome_key`` and ``budget``) of the same
        network and budget, if any: the proposal is parked behind it."""
        for flight in flights:
            if getattr(flight, "genome_key") == gkey and getattr(flight, "budget") == budget:
                return flight
        return None


@dataclass(frozen=True)
class RetryPolicy:
    """What to do with an evaluation that did not end by itself.

    Args:
        max_retries: extra attempts for an evaluation lost (its worker died) or killed from
            outside (SIGKILL/SIGTERM, ``EvalResult.retry``); attempt ``max_retries + 1``
            is the last.
    """

    max_retries: int = 1

    def decide(self, attempt: int, *, lost: bool, killed: bool, stopping: bool) -> str:
        """:data:`RECORD`, :data:`RETRY` or :data:`LEAVE` for attempt ``attempt`` (1 =
        first) of an evaluation that was ``lost`` (no result came back) or ``killed`` (its
        result says it may be retried), while the run is ``stopping`` or not. Cut while
        stopping, it is left for ``--resume`` (most likely the stop itself cut it)."""
        if not (lost or killed):
            return RECORD
        if stopping:
            return LEAVE
        return RETRY if attempt <= self.max_retries else RECORD


@dataclass(frozen=True)
class WeightRetention:
    """Where trials keep weights and training state, and which weights stay on disk.

    Args:
        keep_best: how many of the best trials keep their weights (0: none are written).
        weights_dir: the study's weights folder (absolute, so stored paths mean the same
            from any working directory).
    """

    keep_best: int
    weights_dir: Path

    def checkpoint_path(self, number: int) -> str | None:
        """Where trial ``number`` saves its weights, or None when no weights are kept."""
        return str(self.weights_dir / f"trial_{number}.pt") if self.keep_best > 0 else None

    def state_path(self, number: int) -> Path:
        """Where trial ``number`` keeps its training state for a continuation."""
        return self.weights_dir / f"trial_{number}.state.pt"

    def continuation_problem(self, storage: StudyStorage, candidate: Any,
                             gkey: str) -> str | None:
        """Why ``candidate`` (a proposal naming ``candidate.parent``) cannot continue its
        parent trial, or None when it can: the parent must be a finished ok trial of the same
        network ``gkey`` whose budget differs only in (fewer) epochs, with its training state
        kept on disk."""
        try:
            parent = storage.trial(candidate.parent)
        except Exception:  # noqa: BLE001 - no such trial
            return "no such trial"
        if parent.status != "ok" or parent.genome_key != gkey:
            return "it is not a finished ok trial of the same network"
        mine = candidate.budget.to_dict()
        theirs = dict(parent.budget)
        if int(theirs.get("epochs", 0)) >= int(mine["epochs"]):
            return f"it already trained {theirs.get('epochs')} epoch(s)"
        theirs["epochs"] = mine["epochs"]
        if theirs != mine:
            return "its budget differs in more than epochs"
        if not self.state_path(parent.number).is_file():
            return "its training state was not kept (the strategy must set continues_trials)"
        return None

    def prune(self, storage: StudyStorage) -> list[int]:
        """Delete the weights of every trial outside the ``keep_best`` best (only files of
        this study's own folder) and clear their stored paths; returns their numbers."""
        keep = {t.number for t in storage.best(self.keep_best)}
        dropped = []
        for number, checkpoint in storage.checkpoints():
            if number not in keep:
                own = resolve_checkpoint(checkpoint, storage.path)  # never another study's
                if own is not None:
                    own.unlink(missing_ok=True)
                storage.set_checkpoint(number, None)
                dropped.append(number)
        return dropped
