"""Matplotlib figures of a study, rendered to PNG bytes with the Agg canvas.

Every function builds its own ``Figure`` (no pyplot, no global state) and returns PNG bytes,
so the HTML report can inline them. Functions that get no data draw a figure that says so,
which keeps the report's layout stable for empty or failed studies. The data they plot
(best-so-far series, Pareto front, worker stats, comparison aggregates) is
``nasforge.report.series``, whose names are importable from here too.
"""

from __future__ import annotations

import io
import math
import statistics
from collections.abc import Sequence
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from nasforge.report.series import (  # re-exported: the report and dashboard import them here
    CurveSeries,
    WorkerStats,
    aggregate_group,
    best_so_far_by_number,
    best_so_far_by_time,
    ok_trials,
    pareto_front,
    study_start,
    worker_stats,
)
from nasforge.storage.sqlite import FinalRunRecord, TrialRecord

__all__ = [
    "FAIL_COLOUR", "FRONT_COLOUR", "OK_COLOUR", "RUN_COLOUR", "SERIES_COLOURS",
    "CurveSeries", "WorkerStats", "aggregate_group", "best_so_far_by_number",
    "best_so_far_by_time", "empty_png", "genome_text_image", "new_figure", "ok_trials",
    "pareto_front", "plot_accuracy_histogram", "plot_accuracy_vs_cost", "plot_best_by_time",
    "plot_best_by_trial", "plot_compare", "plot_final_curves", "plot_learning_curve",
    "plot_worker_timeline", "png_bytes", "si_label", "study_start", "worker_stats",
]

DPI = 100
WIDE = (7.0, 3.4)
SMALL = (4.6, 2.8)
OK_COLOUR = "#3b6fb6"
FAIL_COLOUR = "#d0453a"
RUN_COLOUR = "#9a9a9a"
FRONT_COLOUR = "#e07b00"
SERIES_COLOURS = ("#3b6fb6", "#e07b00", "#2a9d5b", "#9c4dc4", "#d0453a", "#6b6b6b", "#b8860b",
                  "#1b9aaa")


# ------------------------------------------------------------------ helpers
def new_figure(size: tuple[float, float] = WIDE) -> Figure:
    """A fresh figure on the Agg canvas."""
    fig = Figure(figsize=size, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def png_bytes(fig: Figure) -> bytes:
    """The figure as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def empty_png(message: str, size: tuple[float, float] = WIDE, title: str | None = None) -> bytes:
    """A figure that only says ``message`` (used when there is nothing to plot)."""
    fig = new_figure(size)
    ax = fig.subplots()
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=11, color="#666666",
            transform=ax.transAxes, wrap=True)
    return png_bytes(fig)


def _time_unit(span_seconds: float) -> tuple[float, str]:
    if span_seconds >= 3 * 3600:
        return 3600.0, "hours"
    if span_seconds >= 180:
        return 60.0, "minutes"
    return 1.0, "seconds"


def si_label(value: float, _pos: Any = None) -> str:
    """A tick label with SI suffixes: 1.5k, 20M, 3G."""
    v = float(value)
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:.3g}{suffix}"
    return f"{v:.3g}"


def _cost_axis(ax: Any, values: Sequence[float]) -> None:
    """Log scale when the values span more than 30x; SI tick labels either way."""
    from matplotlib.ticker import FuncFormatter

    positive = [v for v in values if v > 0]
    if len(positive) >= 2 and max(positive) / min(positive) > 30:
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, p: ""))
    ax.xaxis.set_major_formatter(FuncFormatter(si_label))


# ------------------------------------------------------------------ study figures
def plot_best_by_trial(trials: Sequence[TrialRecord]) -> bytes:
    """Best-so-far validation accuracy against trial number, with every ok trial as a dot."""
    title = "Best-so-far validation accuracy by trial"
    xs, ys = best_so_far_by_number(trials)
    ok = ok_trials(trials)
    if not ok:
        return empty_png("no successful trial yet", title=title)
    fig = new_figure()
    ax = fig.subplots()
    ax.scatter([t.number for t in ok], [t.val_acc for t in ok], s=12, color=OK_COLOUR,
               alpha=0.45, label="trial")
    failed = [t for t in trials if t.status == "failed"]
    if failed:
        low = min(t.val_acc for t in ok if t.val_acc is not None)
        ax.scatter([t.number for t in failed], [low] * len(failed), marker="x", s=18,
                   color=FAIL_COLOUR, label="failed", alpha=0.8)
    pts = [(x, y) for x, y in zip(xs, ys) if y is not None]
    ax.step([p[0] for p in pts], [p[1] for p in pts], where="post", color=FRONT_COLOUR,
            lw=2, label="best so far")
    ax.set_xlabel("trial number")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("validation accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return png_bytes(fig)


def plot_best_by_time(trials: Sequence[TrialRecord]) -> bytes:
    """Best-so-far validation accuracy against wall-clock time since the first submission."""
    title = "Best-so-far validation accuracy over wall time"
    xs, ys = best_so_far_by_time(trials)
    pts = [(x, y) for x, y in zip(xs, ys) if y is not None]
    if not pts:
        return empty_png("no successful trial yet", title=title)
    scale, unit = _time_unit(max(xs) if xs else 0.0)
    fig = new_figure()
    ax = fig.subplots()
    start = study_start(trials) or 0.0
    ok = [t for t in ok_trials(trials) if t.finished_at]
    ax.scatter([((t.finished_at or 0) - start) / scale for t in ok], [t.val_acc for t in ok],
               s=12, color=OK_COLOUR, alpha=0.45, label="trial (at its end)")
    ax.step([p[0] / scale for p in pts], [p[1] for p in pts], where="post", color=FRONT_COLOUR,
            lw=2, label="best so far")
    ax.set_xlabel(f"wall time since the first trial ({unit})")
    ax.set_ylabel("validation accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return png_bytes(fig)


def plot_accuracy_histogram(trials: Sequence[TrialRecord]) -> bytes:
    """Histogram of the validation accuracies of the ok trials, best and median marked."""
    title = "Distribution of trial validation accuracies"
    accs = [float(t.val_acc) for t in ok_trials(trials) if t.val_acc is not None]
    if not accs:
        return empty_png("no successful trial yet", title=title)
    fig = new_figure()
    ax = fig.subplots()
    bins = max(5, min(30, int(math.sqrt(len(accs)) * 2)))
    lo, hi = min(accs), max(accs)
    if hi - lo < 1e-6:
        lo, hi = lo - 0.005, hi + 0.005
    ax.hist(accs, bins=bins, range=(lo, hi), color=OK_COLOUR, alpha=0.8, edgecolor="white")
    ax.axvline(max(accs), color=FRONT_COLOUR, lw=2, label=f"best {max(accs):.4f}")
    ax.axvline(statistics.median(accs), color="#444444", lw=1.5, ls="--",
               label=f"median {statistics.median(accs):.4f}")
    ax.set_xlabel("validation accuracy")
    ax.set_ylabel("trials")
    ax.set_title(f"{title} ({len(accs)} ok)")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(loc="best", fontsize=8)
    return png_bytes(fig)


def plot_accuracy_vs_cost(trials: Sequence[TrialRecord], cost: str) -> bytes:
    """Validation accuracy against ``cost`` ("params" or "flops") with the Pareto front
    (fewest cost for the accuracy) marked."""
    label = {"params": "parameters", "flops": "FLOPs per image"}[cost]
    title = f"Accuracy vs {label}"
    pts = [(float(getattr(t, cost)), float(t.val_acc), t.number) for t in ok_trials(trials)
           if getattr(t, cost) is not None]
    if not pts:
        return empty_png(f"no successful trial with {label} yet", size=SMALL, title=title)
    costs = [p[0] for p in pts]
    accs = [p[1] for p in pts]
    front = pareto_front(costs, accs)
    fig = new_figure((5.0, 3.4))
    ax = fig.subplots()
    ax.scatter(costs, accs, s=14, color=OK_COLOUR, alpha=0.5, label="trial")
    fx = [costs[i] for i in front]
    fy = [accs[i] for i in front]
    ax.step(fx, fy, where="post", color=FRONT_COLOUR, lw=1.5)
    ax.scatter(fx, fy, s=36, color=FRONT_COLOUR, edgecolor="black", lw=0.5, zorder=3,
               label=f"Pareto front ({len(front)})")
    if len(front) <= 12:
        for i in front:
            ax.annotate(f"#{pts[i][2]}", (costs[i], accs[i]), textcoords="offset points",
                        xytext=(4, -10), fontsize=7, color="#7a4300")
    _cost_axis(ax, costs)
    ax.set_xlabel(label)
    ax.set_ylabel("validation accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return png_bytes(fig)


def plot_worker_timeline(trials: Sequence[TrialRecord], workers: int | None = None) -> bytes:
    """Gantt chart: one lane per worker, a bar per trial (ok, failed), gaps are idle time;
    trials still marked running appear in their own lane from submission to the end."""
    title = "Worker timeline"
    stats = worker_stats(trials)
    running = [t for t in trials if t.status == "running"]
    if not stats and not running:
        return empty_png("no trial with timing information", title=title)
    start = study_start(trials) or 0.0
    ends = [float(t.finished_at) for t in trials if t.finished_at]
    end = max(ends) if ends else max(t.submitted_at for t in trials)
    scale, unit = _time_unit(max(end - start, 1e-9))
    lanes = [s.worker for s in stats]
    if running:
        lanes.append("running / not finished")
    height = min(12.0, max(2.2, 0.42 * len(lanes) + 1.3))
    fig = new_figure((9.0, height))
    ax = fig.subplots()
    lane_of = {w: i for i, w in enumerate(lanes)}
    wide = len([t for t in trials if t.started_at]) <= 80
    for t in trials:
        if t.status == "running" or not (t.started_at and t.finished_at and t.worker):
            continue
        x0 = (float(t.started_at) - start) / scale
        dx = (float(t.finished_at) - float(t.started_at)) / scale
        y = lane_of[str(t.worker)]
        colour = OK_COLOUR if t.status == "ok" else FAIL_COLOUR
        ax.broken_barh([(x0, dx)], (y - 0.38, 0.76), facecolors=colour, edgecolor="white", lw=0.6)
        if wide and dx > (end - start) / scale / 45:
            ax.text(x0 + dx / 2, y, str(t.number), ha="center", va="center", fontsize=7,
                    color="white", clip_on=True)
    if running:
        y = lane_of["running / not finished"]
        for t in running:
            x0 = (float(t.submitted_at) - start) / scale
            ax.broken_barh([(x0, max((end - t.submitted_at) / scale, 1e-9))], (y - 0.3, 0.6),
                           facecolors="none", edgecolor=RUN_COLOUR, hatch="///", lw=0.8)
    labels = [f"{s.worker}\n{s.trials} trials, {s.busy_fraction:.0%} busy" for s in stats]
    if running:
        labels.append(f"running ({len(running)})")
    ax.set_yticks(range(len(lanes)), labels, fontsize=7)
    ax.set_ylim(len(lanes) - 0.5, -0.5)
    ax.set_xlim(0, (end - start) / scale * 1.01 or 1)
    ax.set_xlabel(f"wall time since the first trial ({unit})")
    total_busy = sum(s.busy_seconds for s in stats)
    n_workers = max(workers or 0, len(stats)) or 1
    span = stats[0].span_seconds if stats else 0.0
    busy = total_busy / (span * n_workers) if span > 0 else 0.0
    ax.set_title(f"{title}: {n_workers} worker(s) busy {busy:.0%} of the run "
                 "(blue ok, red failed, gaps idle)", fontsize=10)
    ax.grid(alpha=0.3, axis="x")
    return png_bytes(fig)


def plot_learning_curve(curve: Sequence[dict[str, Any]], title: str = "Learning curve",
                        acc_label: str = "val acc", train_loss_label: str = "train loss") -> bytes:
    """Accuracy (left axis) and training/validation loss (right axis) per epoch.

    ``train_loss_label`` names the training loss line: a budget with label smoothing trains on
    a smoothed loss, higher than the hard-label validation loss drawn beside it."""
    rows = [r for r in curve if isinstance(r, dict) and r.get("epoch") is not None]
    if not rows:
        return empty_png("no learning curve recorded", size=SMALL, title=title)
    fig = new_figure(SMALL)
    ax = fig.subplots()
    epochs = [r["epoch"] for r in rows]
    accs = [r.get("val_acc") for r in rows]
    ax.plot(epochs, accs, marker="o", ms=3, color=OK_COLOUR, label=acc_label)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(acc_label, color=OK_COLOUR)
    ax.grid(alpha=0.3)
    if len(epochs) == 1:
        ax.set_xlim(epochs[0] - 1, epochs[0] + 1)
    ax2 = ax.twinx()
    for key, colour, style, label in (("train_loss", "#777777", "--", train_loss_label),
                                      ("val_loss", FRONT_COLOUR, ":", "val loss")):
        values = [r.get(key) for r in rows]
        if any(v is not None for v in values):
            ax2.plot(epochs, values, ls=style, marker="s", ms=2.5, color=colour, label=label)
    ax2.set_ylabel("loss")
    handles = ax.get_legend_handles_labels()
    handles2 = ax2.get_legend_handles_labels()
    ax.legend(handles[0] + handles2[0], handles[1] + handles2[1], fontsize=7, loc="center right")
    ax.set_title(title, fontsize=10)
    return png_bytes(fig)


def plot_final_curves(finals: Sequence[FinalRunRecord]) -> bytes:
    """Test accuracy per epoch of every final training run."""
    title = "Final training: test accuracy per epoch"
    runs = [f for f in finals if isinstance(f.metrics.get("curve"), list) and f.metrics["curve"]]
    if not runs:
        return empty_png("no final-training curve recorded", title=title)
    fig = new_figure()
    ax = fig.subplots()
    for i, f in enumerate(runs):
        curve = [r for r in f.metrics["curve"] if isinstance(r, dict)]
        ax.plot([r.get("epoch") for r in curve], [r.get("val_acc") for r in curve], marker="o",
                ms=3, color=SERIES_COLOURS[i % len(SERIES_COLOURS)],
                label=f"trial {f.trial_number} seed {f.seed}")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    epochs = [r.get("epoch") for f in runs for r in f.metrics["curve"] if isinstance(r, dict)]
    epochs = [e for e in epochs if e is not None]
    if epochs and max(epochs) - min(epochs) < 2:
        ax.set_xlim(min(epochs) - 1, max(epochs) + 1)
    flip = any(isinstance(f.budget, dict) and f.budget.get("tta") == "flip" for f in runs)
    ax.set_ylabel("test accuracy (flip-averaged)" if flip else "test accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right", ncol=2 if len(runs) > 6 else 1)
    return png_bytes(fig)


# ------------------------------------------------------------------ comparison
def plot_compare(series: Sequence[CurveSeries], xlabel: str, title: str,
                 time_axis: bool = False) -> bytes:
    """Best-so-far curves grouped by strategy: a single study is a line; several studies of
    one group are their mean with a min-max band (light) and a +-std band (darker)."""
    series = [s for s in series if s.xs]
    if not series:
        return empty_png("no successful trial in any study", title=title)
    scale, unit = (1.0, "")
    if time_axis:
        scale, unit = _time_unit(max(max(s.xs) for s in series))
        xlabel = f"{xlabel} ({unit})"
    groups: dict[str, list[CurveSeries]] = {}
    for s in series:
        groups.setdefault(s.group, []).append(s)
    fig = new_figure((8.0, 3.8))
    ax = fig.subplots()
    styles = ("-", "--", "-.", ":")
    for i, (group, members) in enumerate(sorted(groups.items())):
        colour = SERIES_COLOURS[i % len(SERIES_COLOURS)]
        style = styles[i % len(styles)]
        if len(members) == 1:
            s = members[0]
            ax.step([x / scale for x in s.xs], s.ys, where="post", color=colour, lw=2, ls=style,
                    label=f"{group}: {s.label}")
            continue
        hi = max(max(s.xs) for s in members)
        lo = min(min(s.xs) for s in members)
        grid = sorted(set(x for s in members for x in s.xs) | {lo + (hi - lo) * k / 200 for k in range(201)})
        agg = aggregate_group(members, grid)
        idx = [k for k, m in enumerate(agg["mean"]) if m is not None]
        gx = [grid[k] / scale for k in idx]
        mean = [float(agg["mean"][k] or 0) for k in idx]
        std = [float(agg["std"][k] or 0) for k in idx]
        ax.fill_between(gx, [float(agg["min"][k] or 0) for k in idx],
                        [float(agg["max"][k] or 0) for k in idx], step="post", color=colour,
                        alpha=0.15, lw=0)
        ax.fill_between(gx, [m - d for m, d in zip(mean, std)], [m + d for m, d in zip(mean, std)],
                        step="post", color=colour, alpha=0.3, lw=0)
        ax.step(gx, mean, where="post", color=colour, lw=2, ls=style,
                label=f"{group}: mean of {len(members)} (band: min-max, ±std)")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("best validation accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return png_bytes(fig)


def genome_text_image(text: str, title: str | None = None, fmt: str = "png") -> bytes:
    """A plain picture (``fmt``: png, svg or pdf) of a genome's text form: the drawing
    fallback when Graphviz is missing."""
    import textwrap

    lines: list[str] = []
    for part in text.replace("; ", ";\n").splitlines():
        lines += textwrap.wrap(part, 90) or [""]
    fig = new_figure((9.0, max(1.2, 0.25 * len(lines) + 0.8)))
    ax = fig.subplots()
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=10)
    ax.text(0.0, 1.0, "\n".join(lines), ha="left", va="top", family="monospace", fontsize=9,
            transform=ax.transAxes)
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=DPI)
    return buf.getvalue()
