"""What the report's figures and the dashboard plot, as plain data: the ok trials, best-so-far
series by trial and by time, the Pareto front, per-worker busy time and the comparison's
per-group aggregate.

No matplotlib here (the figures are ``nasforge.report.plots``, which re-exports these names).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from nasforge.storage.sqlite import TrialRecord

__all__ = ["CurveSeries", "WorkerStats", "aggregate_group", "best_so_far_by_number",
           "best_so_far_by_time", "ok_trials", "pareto_front", "study_start", "worker_stats"]


# ------------------------------------------------------------------ trials
def ok_trials(trials: Sequence[TrialRecord]) -> list[TrialRecord]:
    """Trials that ended ok with a validation accuracy."""
    return [t for t in trials if t.status == "ok" and t.val_acc is not None]


def study_start(trials: Sequence[TrialRecord]) -> float | None:
    """The earliest submission time of the trials, if any."""
    times = [t.submitted_at for t in trials if t.submitted_at]
    times += [t.started_at for t in trials if t.started_at]
    return min(times) if times else None


# ------------------------------------------------------------------ series
def best_so_far_by_number(trials: Sequence[TrialRecord]) -> tuple[list[int], list[float | None]]:
    """Trial numbers of finished trials (in order) and the best val accuracy up to each."""
    xs: list[int] = []
    ys: list[float | None] = []
    best: float | None = None
    for t in sorted((t for t in trials if t.finished), key=lambda t: t.number):
        if t.status == "ok" and t.val_acc is not None:
            best = t.val_acc if best is None else max(best, t.val_acc)
        xs.append(t.number)
        ys.append(best)
    return xs, ys


def best_so_far_by_time(
    trials: Sequence[TrialRecord], start: float | None = None
) -> tuple[list[float], list[float | None]]:
    """Seconds since ``start`` at which trials finished, and the best val accuracy by then."""
    done = sorted((t for t in trials if t.finished and t.finished_at), key=lambda t: t.finished_at or 0)
    if start is None:
        start = study_start(trials)
    if start is None:
        return [], []
    xs: list[float] = []
    ys: list[float | None] = []
    best: float | None = None
    for t in done:
        if t.status == "ok" and t.val_acc is not None:
            best = t.val_acc if best is None else max(best, t.val_acc)
        xs.append(float(t.finished_at or 0) - start)
        ys.append(best)
    return xs, ys


def pareto_front(costs: Sequence[float], accs: Sequence[float]) -> list[int]:
    """Indices of the points not dominated by a cheaper-or-equal, at-least-as-accurate point
    (cost minimised, accuracy maximised), ordered by increasing cost."""
    from nasforge.strategies.pareto import non_dominated_sort  # the one sort strategies use

    if not costs:
        return []
    first = non_dominated_sort([(c, a) for c, a in zip(costs, accs)], ["min", "max"])[0]
    return sorted(first, key=lambda i: (costs[i], -accs[i], i))


# ------------------------------------------------------------------ workers
@dataclass
class WorkerStats:
    """Busy time of one worker between the study's first start and last end."""

    worker: str
    trials: int
    failed: int
    busy_seconds: float
    span_seconds: float

    @property
    def busy_fraction(self) -> float:
        """Share of the span this worker spent evaluating."""
        return self.busy_seconds / self.span_seconds if self.span_seconds > 0 else 0.0


def worker_stats(trials: Sequence[TrialRecord]) -> list[WorkerStats]:
    """Per worker (``host:pid``): trials run and busy share of the whole run's span."""
    timed = [t for t in trials if t.started_at and t.finished_at and t.worker]
    if not timed:
        return []
    start = min(float(t.started_at or 0) for t in timed)
    end = max(float(t.finished_at or 0) for t in timed)
    span = end - start
    by_worker: dict[str, list[TrialRecord]] = {}
    for t in sorted(timed, key=lambda t: t.started_at or 0):
        by_worker.setdefault(str(t.worker), []).append(t)
    return [
        WorkerStats(
            worker=w,
            trials=len(ts),
            failed=sum(1 for t in ts if t.status == "failed"),
            busy_seconds=sum(float(t.finished_at or 0) - float(t.started_at or 0) for t in ts),
            span_seconds=span,
        )
        for w, ts in by_worker.items()
    ]


# ------------------------------------------------------------------ comparison
@dataclass
class CurveSeries:
    """One study's best-so-far curve for the comparison figure."""

    label: str
    group: str
    xs: list[float]
    ys: list[float]


def _value_at(xs: Sequence[float], ys: Sequence[float], x: float) -> float | None:
    """The step function (xs, ys) at x; None before the first point or past the last."""
    if not xs or x < xs[0] or x > xs[-1]:
        return None
    value = ys[0]
    for xi, yi in zip(xs, ys):
        if xi > x:
            break
        value = yi
    return value


def aggregate_group(series: Sequence[CurveSeries], grid: Sequence[float]) -> dict[str, list[float | None]]:
    """Mean, std, min and max across the series of one group at each grid point (only the
    series that reach that point count)."""
    out: dict[str, list[float | None]] = {"mean": [], "std": [], "min": [], "max": [], "n": []}
    for x in grid:
        vals = [v for s in series if (v := _value_at(s.xs, s.ys, x)) is not None]
        if not vals:
            for key in out:
                out[key].append(None)
            continue
        out["mean"].append(statistics.fmean(vals))
        out["std"].append(statistics.pstdev(vals) if len(vals) > 1 else 0.0)
        out["min"].append(min(vals))
        out["max"].append(max(vals))
        out["n"].append(float(len(vals)))
    return out
