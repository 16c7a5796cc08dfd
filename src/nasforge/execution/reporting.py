"""What a run shows and returns: progress lines, the study's log file, the run summary.

The runner (``nasforge.execution.runner``) writes through these; they hold no loop state.
"""

from __future__ import annotations

import logging
import sys
import time
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nasforge.storage.sqlite import TrialRecord, artifacts_dir

__all__ = ["Reporter", "RunSummary", "TimeBounds", "busy_fraction", "clock", "speed_note",
           "study_logger", "worker_slots"]


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


def clock(seconds: float) -> str:
    """A duration (seconds, rounded to whole ones) as progress lines show it: ``45s``,
    ``15m02s``, ``1h05m00s``; a negative one is ``0s``."""
    whole = max(0, int(round(seconds)))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _limit_text(seconds: float) -> str:
    """A configured limit (seconds) without its zero tail: ``20m``, ``1h``, ``1h30m``, ``90s``
    is ``1m30s``."""
    text = clock(seconds)
    while len(text) > 3 and text[-3:] in ("00s", "00m"):
        text = text[:-3]
    return text


@dataclass(frozen=True)
class TimeBounds:
    """The time limits of one run of a search, for its progress lines.

    Attributes:
        search_seconds: ``run.search_seconds`` (seconds): the search's own budget, counted over
            every run of the study; None: none.
        spent_before: seconds of that budget earlier runs of the study spent (the study's
            ``search_seconds_spent``).
        time_limit: ``run.time_limit`` (seconds) of this run, counted from its start; None: none.
        start: when this run started (``time.time()``); a line given no elapsed time counts
            from it.
    """

    search_seconds: float | None = None
    spent_before: float = 0.0
    time_limit: float | None = None
    start: float | None = None

    def binding(self, elapsed: float) -> tuple[float, float, str] | None:
        """``(used, limit, label)`` in seconds of the time bound that ends first after
        ``elapsed`` seconds of this run: the search budget (label ``""``, used over all runs)
        or, where it leaves less time, the time limit (label ``" limit"``); None without a
        search budget (a time limit alone leaves the count against ``max_evals`` shown)."""
        if self.search_seconds is None:
            return None
        used = self.spent_before + elapsed
        if self.time_limit is not None and (self.time_limit - elapsed
                                            < self.search_seconds - used):
            return elapsed, self.time_limit, " limit"
        return used, self.search_seconds, ""


class Reporter:
    """Progress output: one updating line on a terminal, plain lines otherwise.

    Each line starts with what bounds the search: ``[573/2000]`` (finished trials of
    ``run.max_evals``), or with a search time budget (``bounds``, set by the runner)
    ``[573 | 15m02s of 20m]`` (seconds searched over all runs of the study, of
    ``run.search_seconds``), or ``[573 | 9m58s of 10m limit]`` where ``run.time_limit`` ends
    this run first.
    """

    def __init__(self, stream: Any = None, enabled: bool = True) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.live = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self._last = ""
        self.bounds = TimeBounds()

    def _elapsed(self, elapsed: float | None) -> float:
        if elapsed is not None:
            return elapsed
        return 0.0 if self.bounds.start is None else time.time() - self.bounds.start

    def prefix(self, done: int, total: int, elapsed: float | None = None) -> str:
        """``[done/total]``, or ``[done | used of limit]`` under a search time budget
        (``elapsed``: seconds of this run; default: since ``bounds.start``)."""
        bound = self.bounds.binding(self._elapsed(elapsed))
        if bound is None:
            return f"[{done}/{total}]"
        used, limit, label = bound
        return f"[{done} | {clock(used)} of {_limit_text(limit)}{label}]"

    def eta(self, done: int, total: int, elapsed: float) -> str:
        """Time left: of the binding time bound under a search budget, else extrapolated from
        the time per finished trial to ``total`` (no more than ``run.time_limit`` leaves)."""
        bound = self.bounds.binding(elapsed)
        if bound is not None:
            return clock(bound[1] - bound[0])
        if not done:
            return "?"
        left = elapsed / done * (total - done)
        if self.bounds.time_limit is not None:
            left = max(0.0, min(left, self.bounds.time_limit - elapsed))
        return f"{left:.0f}s"

    def status(self, done: int, total: int, running: int, failed: int, best: float | None,
               elapsed: float) -> None:
        """The running tally."""
        if not self.enabled:
            return
        best_text = f"{best:.4f}" if best is not None else "-"
        line = (
            f"{self.prefix(done, total, elapsed)} running {running}  failed {failed}  best val "
            f"acc {best_text}  elapsed {elapsed:.0f}s  eta {self.eta(done, total, elapsed)}"
        )
        if self.live and line != self._last:
            self.stream.write("\r\033[K" + line)
            self.stream.flush()
        self._last = line

    def trial(self, record: TrialRecord, text: str, done: int, total: int,
              elapsed: float | None = None) -> None:
        """One finished trial (``elapsed``: seconds of this run; default: since
        ``bounds.start``)."""
        if not self.enabled:
            return
        if record.status == "ok":
            msg = f"trial {record.number} ok  val acc {record.val_acc:.4f}  params {record.params}  {text}"
        elif record.status == "pruned":
            msg = (f"trial {record.number} pruned after epoch {len(record.curve)}  val acc "
                   f"{record.val_acc:.4f}  {text}")
        else:
            msg = f"trial {record.number} FAILED: {record.error}"
        clear = "\r\033[K" if self.live else ""
        self.stream.write(f"{clear}{self.prefix(done, total, elapsed)} {msg}\n")
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


def close_study_logger(storage_path: Path) -> None:
    """Close the log file :func:`study_logger` opened for this study (if any), so that the
    file can be removed and a later logger of the same path opens it anew."""
    logger = logging.getLogger(f"nasforge.study.{Path(storage_path).resolve()}")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()


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
