"""Compare search strategies on the NAS-Bench-201 table over many seeds, without training.

Each strategy of the registry runs in this process through its own ``ask``/``tell``: every
ask is answered from the table (by exact cell; every query counts as an evaluation, repeats
included, as in NAS-Bench-201's protocol) and told back as an ``Observation`` whose fitness is
the table's test accuracy as a fraction. A simulated clock adds each answer's cost (the
table's cost model). This is a **benchmark run**: the one number is a test accuracy, so the
search here selects on test accuracy, unlike a real search (validation split).
"""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from nasforge.benchmarks.nb201_table import (
    SECONDS_PER_FLOP, TABLE_PACKAGE, TABLE_VERSION, NB201Table,
)
from nasforge.errors import ConfigError
from nasforge.evaluation.budget import Budget
from nasforge.spaces.base import SearchSpace
from nasforge.strategies import Observation, Problem, get_strategy

EVALUATORS: tuple[str, ...] = ("tabular:nb201",)
DEFAULT_SETTINGS: dict[str, dict[str, Any]] = {"evolution": {"population": 20, "sample": 5}}
"""Bench defaults where a strategy's own defaults suit a 100-1,000-evaluation run poorly
(evolution's registry default is population 100, sample 25)."""

PUBLISHED: tuple[tuple[str, str], ...] = (
    ("random search", "93.70 +- 0.36"),
    ("REINFORCE", "93.85 +- 0.37"),
    ("REA", "93.92 +- 0.30"),
    ("BOHB", "93.61 +- 0.52"),
    ("best cell", "94.37"),
)
"""NAS-Bench-201 (Dong & Yang, ICLR 2020, Table 5), CIFAR-10 test accuracy, mean +- std over
500 runs. Context only: they searched on 12-epoch validation accuracy under a 12,000 s
measured-time budget and report the 200-epoch test accuracy (mean over seeds) of the pick;
this table has one seed's 200-epoch test accuracy and cannot replay that budget."""


@dataclass
class BenchResult:
    """Curves of one strategy: ``accuracy``, ``best`` (best so far) in percent and
    ``seconds`` (cumulative simulated seconds), each shaped [seeds, evals]."""

    strategy: str
    settings: dict[str, Any]
    seeds: list[int]
    accuracy: np.ndarray
    best: np.ndarray
    seconds: np.ndarray
    wall_seconds: float


def check_evaluator(evaluator: str, space: SearchSpace) -> None:
    """``ConfigError`` unless ``evaluator`` is a known tabular evaluator for ``space``."""
    if evaluator not in EVALUATORS:
        raise ConfigError(f"nasforge bench needs a tabular evaluator; known: "
                          f"{', '.join(EVALUATORS)} (got {evaluator!r})")
    if space.name != "nb201":
        raise ConfigError(f"evaluator {evaluator} answers the nb201 space, not {space.name!r}")


def run_strategy(name: str, space: SearchSpace, table: NB201Table, evals: int,
                 seeds: Sequence[int], settings: Mapping[str, Any] | None = None) -> BenchResult:
    """Run strategy ``name`` for ``evals`` table queries on each seed; ``ConfigError`` for an
    unknown strategy or bad settings."""
    if evals < 1 or not seeds:
        raise ConfigError("bench: need evals >= 1 and at least one seed")
    chosen = dict(DEFAULT_SETTINGS.get(name, {}))
    chosen.update(settings or {})
    budget = Budget(epochs=200, width=16)
    problem = Problem((3, 32, 32), 10)
    acc = np.zeros((len(seeds), evals))
    secs = np.zeros((len(seeds), evals))
    start = time.perf_counter()
    for row, seed in enumerate(seeds):
        strategy = get_strategy(name, space, budget, problem, int(seed), **chosen)
        if len(getattr(strategy, "ladder", ())) > 1:  # every answer here is the 200-epoch one
            raise ConfigError(f"bench: {name!r} trains on several budgets; compare it with "
                              "python benchmarks/multi_fidelity.py (synthetic fidelity layer)")
        clock = 0.0
        for i in range(evals):
            candidate = strategy.ask()
            if candidate is None or candidate.kind == "supernet":
                # a supernet's genome is a stand-in until its search ends: no table answer
                why = ("is a one-shot strategy (its trials train a supernet, which the table "
                       "cannot answer); run it with `nasforge search`" if candidate is not None
                       else "waited with nothing running (it needs a runner)")
                raise ConfigError(f"bench: {name!r} {why}")
            value = table.lookup(candidate.genome)
            clock += table.cost(candidate.genome)
            acc[row, i], secs[row, i] = value, clock
            strategy.tell(Observation(i, candidate.genome, candidate.budget, "ok", value / 100.0,
                                      {"test_accuracy": value, "simulated_seconds": clock}))
    return BenchResult(name, chosen, list(seeds), acc, np.maximum.accumulate(acc, axis=1),
                       secs, time.perf_counter() - start)


def mean_interval(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean over axis 0 and the half-width of its 95% t-interval (0 for one seed)."""
    from scipy.stats import t as student_t

    n = values.shape[0]
    mean = values.mean(axis=0)
    if n < 2:
        return mean, np.zeros_like(mean)
    half = student_t.ppf(0.975, n - 1) * values.std(axis=0, ddof=1) / np.sqrt(n)
    return mean, half


def best_at_times(result: BenchResult, grid: np.ndarray) -> np.ndarray:
    """Best-so-far accuracy of each seed at each simulated time of ``grid``, [seeds, len(grid)]
    (NaN before a seed's first answer; a seed's final best after its last)."""
    out = np.full((len(result.seeds), grid.size), np.nan)
    for row in range(len(result.seeds)):
        idx = np.searchsorted(result.seconds[row], grid, side="right") - 1
        ok = idx >= 0
        out[row, ok] = result.best[row, idx[ok]]
    return out


def checkpoints(evals: int) -> list[int]:
    """The evaluation counts reported: 10, 20, 50, 100, 200, 500, 1000, ... up to ``evals``."""
    marks = [m for m in (10, 20, 50, 100, 200, 500, 1000, 2000, 5000) if m < evals]
    return marks + [evals]


def summary_lines(results: Sequence[BenchResult], table: NB201Table) -> list[str]:
    """The printed comparison: per strategy and checkpoint the mean best (95% interval),
    regret to the table's best and, for random search, the exact expectation."""
    best = table.best()
    lines = [f"table: {TABLE_PACKAGE} {TABLE_VERSION}, CIFAR-10 test accuracy after 200 epochs "
             f"(1 seed), best cell {best:.2f}; sha256 {table.sha256[:16]}..."]
    for r in results:
        lines.append(f"{r.strategy} {r.settings or ''} -- {len(r.seeds)} seeds, "
                     f"{r.best.shape[1]} evaluations, {r.wall_seconds:.2f} s wall")
        mean, half = mean_interval(r.best)
        t_mean, _ = mean_interval(r.seconds)
        for n in checkpoints(r.best.shape[1]):
            text = (f"  n={n:5d}: mean best {mean[n - 1]:.3f} +- {half[n - 1]:.3f}, regret "
                    f"{best - mean[n - 1]:.3f}, simulated {t_mean[n - 1] / 3600:.1f} h")
            if r.strategy == "random":
                expected = table.expected_best_of(n)
                inside = abs(mean[n - 1] - expected) <= half[n - 1]
                text += (f"; exact E[best of {n}] {expected:.3f} "
                         f"({'inside' if inside else 'OUTSIDE'} the interval)")
            lines.append(text)
    lines.append("published NAS-Bench-201 (CIFAR-10 test, 12-epoch validation search under "
                 "12,000 s; context only): " + "; ".join(f"{k} {v}" for k, v in PUBLISHED))
    return lines


def write_csv(results: Sequence[BenchResult], table: NB201Table, path: Path) -> None:
    """One row per (strategy, seed, evaluation): accuracy, best so far, simulated seconds;
    comment lines first name the table and its sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        fh.write(f"# nasforge bench, evaluator tabular:nb201; table {TABLE_PACKAGE} "
                 f"{TABLE_VERSION} data.anb sha256={table.sha256}\n")
        fh.write("# accuracy: CIFAR-10 test accuracy (percent) after 200 epochs, 1 seed; "
                 f"simulated_seconds: cumulative, k = {SECONDS_PER_FLOP:g} s per FLOP\n")
        writer = csv.writer(fh)
        writer.writerow(["strategy", "seed", "evaluation", "accuracy", "best_so_far",
                         "simulated_seconds"])
        for r in results:
            for row, seed in enumerate(r.seeds):
                for i in range(r.best.shape[1]):
                    writer.writerow([r.strategy, seed, i + 1, f"{r.accuracy[row, i]:.4f}",
                                     f"{r.best[row, i]:.4f}", f"{r.seconds[row, i]:.1f}"])


def plot(results: Sequence[BenchResult], table: NB201Table, path: Path) -> None:
    """Two panels, mean best-found accuracy with its 95% interval against evaluations and
    against simulated time (log axes); the table's best and random search's exact
    expectation as references."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_n, ax_t) = plt.subplots(1, 2, figsize=(11, 4.2))
    evals = max(r.best.shape[1] for r in results)
    n = np.arange(1, evals + 1)
    ax_n.plot(n, [table.expected_best_of(int(k)) for k in n], "k:", lw=1,
              label="random, exact expectation")
    t_max = max(float(r.seconds[:, -1].max()) for r in results)
    t_min = max(float(r.seconds[:, 0].max()) for r in results)
    grid = np.geomspace(t_min, t_max, 200)
    for r in results:
        mean, half = mean_interval(r.best)
        x = np.arange(1, r.best.shape[1] + 1)
        (line,) = ax_n.plot(x, mean, label=r.strategy)
        ax_n.fill_between(x, mean - half, mean + half, color=line.get_color(), alpha=0.2)
        mean_t, half_t = mean_interval(best_at_times(r, grid))
        ax_t.plot(grid / 3600, mean_t, color=line.get_color(), label=r.strategy)
        ax_t.fill_between(grid / 3600, mean_t - half_t, mean_t + half_t,
                          color=line.get_color(), alpha=0.2)
    for ax, label in ((ax_n, "evaluations (table queries)"),
                      (ax_t, "simulated training time (h, cost model)")):
        ax.axhline(table.best(), color="grey", lw=1, ls="--", label=f"table best {table.best():.2f}")
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("best-found CIFAR-10 test accuracy (%)")
        ax.set_ylim(max(85.0, ax.get_ylim()[0]), table.best() + 0.3)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(f"NAS-Bench-201 table ({TABLE_PACKAGE} {TABLE_VERSION}), "
                 f"{len(results[0].seeds)} seeds, mean and 95% interval")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
