"""What a run shows and returns: progress lines, the study's log file, the run summary.

The runner (``nasforge.execution.runner``) writes through these; they hold no loop state.
"""

from __future__ import annotations

import logging
import sys
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nasforge.storage.sqlite import TrialRecord, artifacts_dir

__all__ = ["Reporter", "RunSummary", "busy_fraction", "speed_note", "study_logger",
           "worker_slots"]


@dataclass
class RunSummary:
    """What a run did: counts, best trial, wall time, why it stopped."""

    finished: int
    ok: int
    failed: int
    reused: int
    running_left: int
    best: TrialRecord | None
    wall_seconds: float
    stop_reason: str
    busy_fraction: float | None = None
    requeued: int = 0


class Reporter:
    """Progress output: one updating line on a terminal, plain lines otherwise."""

    def __init__(self, stream: Any = None, enabled: bool = True) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.live = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self._last = ""

    def status(self, done: int, total: int, running: int, failed: int, best: float | None,
               elapsed: float) -> None:
        """The running tally."""
        if not self.enabled:
            return
        eta = f"{elapsed / done * (total - done):.0f}s" if done else "?"
        best_text = f"{best:.4f}" if best is not None else "-"
        line = (
            f"[{done}/{total}] running {running}  failed {failed}  best val acc {best_text}  "
            f"elapsed {elapsed:.0f}s  eta {eta}"
        )
        if self.live and line != self._last:
            self.stream.write("\r\033[K" + line)
            self.stream.flush()
        self._last = line

    def trial(self, record: TrialRecord, text: str, done: int, total: int) -> None:
        """One finished trial."""
        if not self.enabled:
            return
        if record.status == "ok":
            msg = f"trial {record.number} ok  val acc {record.val_acc:.4f}  params {record.params}  {text}"
        elif record.status == "pruned":
            msg = (f"trial {record.number} pruned after epoch {len(record.curve)}  val acc "
                   f"{record.val_acc:.4f}  {text}")
        else:
            msg = f"trial {record.number} FAILED: {record.error}"
        prefix = "\r\033[K" if self.live else ""
        self.stream.write(f"{prefix}[{done}/{total}] {msg}\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        """A free-form line."""
        if self.enabled:
            prefix = "\r\033[K" if self.live else ""
            self.stream.write(prefix + text + "\n")
            self.stream.flush()

    def close(self) -> None:
        """End the live line."""
        if self.enabled and self.live and self._last:
            self.stream.write("\n")
            self.stream.flush()


def study_logger(storage_path: Path) -> logging.Logger:
    """A logger writing to the study's log file beside the database."""
    folder = artifacts_dir(storage_path)
    folder.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger(f"nasforge.study.{storage_path.resolve()}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    if not logger.handlers:
        handler = logging.FileHandler(folder / "search.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
    return logger


def speed_note(speed: dict[str, Any] | None) -> str:
    """`` [bf16, channels-last; measured in 0.4s]`` for a trial whose speed options were
    measured (``..., the study's default for short trainings]`` when it set that), else
    empty."""
    if not speed or not speed.get("measured"):
        return ""
    from nasforge.evaluation.speed import SpeedChoice

    choice = SpeedChoice.from_dict(speed)
    role = ", the study's default for short trainings" if choice.for_default else ""
    return f"  [{choice.setting.label()}; measured in {choice.overhead_seconds:.1f}s{role}]"


def worker_slots(executor: Executor, configured: int) -> int:
    """How many evaluations to keep in flight: the executor's own worker count where it knows
    it (the worker ranks under ``mpiexec``, the workers of an existing Dask cluster), else the
    configured ``run.workers``."""
    known = getattr(executor, "nasforge_workers", None)
    return int(known) if isinstance(known, int) and known > 0 else max(1, configured)


def busy_fraction(trials: list[TrialRecord], start: float, end: float, workers: int) -> float | None:
    """Share of worker-time spent evaluating between ``start`` and ``end``."""
    span = (end - start) * workers
    if span <= 0:
        return None
    busy = 0.0
    for t in trials:
        if t.started_at is None or t.finished_at is None:
            continue
        busy += max(0.0, min(t.finished_at, end) - max(t.started_at, start))
    return min(1.0, busy / span)
