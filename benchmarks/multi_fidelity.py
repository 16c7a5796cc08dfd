"""Multi-fidelity strategies against random search and regularized evolution on the
NAS-Bench-201 table with the SYNTHETIC fidelity layer (invented learning curves), 30 seeds.

Every strategy runs through its own ``ask``/``tell`` in a discrete-event simulation with
``--workers`` workers (1 by default): an ask at budget b epochs of B = 200 is answered with the
synthetic accuracy after b epochs (``nasforge.benchmarks.fidelity``, default calibration,
fidelity seed = run seed) and costs the table's cost model times b / B simulated seconds; a
promotion that continues trial p (``Candidate.parent``) costs only the epochs it adds. A
repeated (network, budget) is answered from the earlier result at no cost, as the runner
answers it from the study. A strategy that waits (``ask`` returns None) leaves its worker idle
until the next result.

The incumbent after each result is the best network at the highest budget any network reached
(the study's ``best()``); the figure is its table accuracy (the 200-epoch CIFAR-10 test
accuracy, synthetic curves aside). Random search and evolution train every network for the
full 200 epochs. The run's simulated time is ``--budget-evals`` mean full trainings.

    python benchmarks/multi_fidelity.py [--seeds 30] [--budget-evals 100] [--workers 1]

Prints per strategy the mean best (95% t-interval) at fractions of the time budget, and
whether each multi-fidelity strategy reaches random search's final mean best within half of
random search's simulated time. Needs the optional table (pip install --no-deps
analog-nasbench==0.1.3) and statsmodels (bohb).
"""

from __future__ import annotations

import argparse
import heapq
import time
from typing import Any

import numpy as np

from nasforge.benchmarks.bench import mean_interval
from nasforge.benchmarks.fidelity import SYNTHETIC_LABEL, SyntheticFidelity
from nasforge.benchmarks.nb201_table import NB201Table, load_table
from nasforge.evaluation.budget import Budget
from nasforge.spaces import get_space
from nasforge.spaces.base import genome_key
from nasforge.strategies import Observation, Problem, available_strategies, get_strategy

RUNS: list[tuple[str, str, dict[str, Any]]] = [
    ("random", "random", {}),
    ("evolution", "evolution", {"population": 20, "sample": 5}),
    ("hyperband", "hyperband", {}),
    ("asha", "asha", {}),
    ("bohb", "bohb", {}),
    ("smbo", "smbo", {}),
]
"""(label, registered strategy, settings). A strategy not registered in this checkout (smbo,
from another branch) is skipped with a note: add a line here for a new one."""
MULTI_FIDELITY = ("hyperband", "asha", "bohb")
BASELINE = "random"
FRACTIONS = (0.1, 0.25, 0.5, 0.75, 1.0)
B = 200
PROBLEM = Problem((3, 32, 32), 10)


def simulate(name: str, settings: dict[str, Any], space: Any, table: NB201Table,
             fidelity: SyntheticFidelity, seed: int, horizon: float, workers: int
             ) -> tuple[np.ndarray, np.ndarray, int]:
    """One run: (times, incumbent table accuracy after each result, results) until the
    simulated clock passes ``horizon`` seconds."""
    strategy = get_strategy(name, space, Budget(epochs=B, width=16), PROBLEM, seed, **settings)
    store: dict[tuple[str, Budget], Observation] = {}
    trials: dict[int, tuple[Any, int]] = {}  # number -> (genome, epochs)
    top = (-1, 0.0, 0.0)  # (epochs, fitness, final acc) of the incumbent
    running: list[tuple[float, int, Any, Any, str]] = []
    clock, number, reuse = 0.0, 0, 0
    times, best = [], []

    while clock <= horizon:
        while len(running) < workers and reuse < 200:
            candidate = strategy.ask()
            if candidate is None:
                break
            key = genome_key(space, candidate.genome)
            if (key, candidate.budget) in store:
                reuse += 1
                old = store[(key, candidate.budget)]
                strategy.tell(Observation(old.number, candidate.genome, old.budget, old.status,
                                          old.fitness, old.metrics))
                continue
            reuse = 0
            epochs = candidate.budget.epochs
            done = trials[candidate.parent][1] if candidate.parent is not None else 0
            cost = fidelity.cost(candidate.genome, epochs - done)
            number += 1
            heapq.heappush(running, (clock + cost, number, candidate, key, ""))
        if not running:
            break
        clock, num, candidate, key, _ = heapq.heappop(running)
        epochs = candidate.budget.epochs
        value = fidelity.accuracy(candidate.genome, epochs) / 100.0
        trials[num] = (candidate.genome, epochs)
        obs = Observation(num, candidate.genome, candidate.budget, "ok", value, {})
        store[(key, candidate.budget)] = obs
        strategy.tell(obs)
        # the best at the highest budget reached (a network's lower-budget results rank
        # below its higher ones, so a running maximum of (epochs, fitness) is storage.best())
        top = max(top, (epochs, value, table.lookup(candidate.genome)), key=lambda v: v[:2])
        times.append(clock)
        best.append(top[2])
    return np.asarray(times), np.asarray(best), number


def best_at(times: np.ndarray, best: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Incumbent accuracy at each time of ``grid`` (NaN before the first result)."""
    idx = np.searchsorted(times, grid, side="right") - 1
    out = np.full(grid.size, np.nan)
    out[idx >= 0] = best[idx[idx >= 0]]
    return out


def plot(curves: dict[str, np.ndarray], grid: np.ndarray, target: float, horizon: float,
         path: str) -> None:
    """Mean incumbent accuracy and its 95% interval against simulated hours, per strategy;
    random search's final mean best and half its time as references."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    hours = grid / 3600
    for label, rows in curves.items():
        mean, half = mean_interval(np.nan_to_num(rows, nan=0.0))
        (line,) = ax.plot(hours, mean, label=label, lw=1.5)
        ax.fill_between(hours, mean - half, mean + half, color=line.get_color(), alpha=0.15)
    ax.axhline(target, color="grey", ls="--", lw=1, label=f"random's final mean {target:.2f}")
    ax.axvline(horizon / 7200, color="grey", ls=":", lw=1, label="half of random's time")
    ax.set_ylim(92.5, 94.1)
    ax.set_xlabel("simulated training time (h, cost model)")
    ax.set_ylabel("incumbent's table accuracy (%)")
    ax.set_title(f"NAS-Bench-201 + synthetic fidelity, {rows.shape[0]} seeds, mean and 95% CI",
                 fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--budget-evals", type=float, default=100.0,
                        help="simulated time budget in mean full (200-epoch) trainings")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--plot", default=None, help="write the figure (PNG) here")
    parser.add_argument("--only", default=None,
                        help="comma-separated labels to run (random is always run)")
    args = parser.parse_args()
    start = time.perf_counter()
    table = load_table()
    space = get_space("nb201")
    costs = np.array(list(table.seconds.values()))
    horizon = args.budget_evals * float(costs.mean())
    grid = np.linspace(0, horizon, 401)[1:]
    known = set(available_strategies())
    print(f"{SYNTHETIC_LABEL}; default calibration; table best {table.best():.2f}; "
          f"{args.seeds} seeds; {args.workers} worker(s); simulated time budget "
          f"{horizon / 3600:.1f} h = {args.budget_evals:g} mean 200-epoch trainings")
    curves: dict[str, np.ndarray] = {}
    for label, name, settings in RUNS:
        if args.only and label != BASELINE and label not in args.only.split(","):
            continue
        if name not in known:
            print(f"{label}: not registered in this checkout, skipped")
            continue
        t0 = time.perf_counter()
        rows, counts = [], []
        for seed in range(args.seeds):
            fidelity = SyntheticFidelity(table, seed=seed)
            times, best, n = simulate(name, settings, space, table, fidelity, seed, horizon,
                                      args.workers)
            rows.append(best_at(times, best, grid))
            counts.append(n)
        curves[label] = np.vstack(rows)
        mean, half = mean_interval(np.nan_to_num(curves[label], nan=0.0))
        marks = ", ".join(
            f"{f:.0%} {mean[int(f * grid.size) - 1]:.3f} +- {half[int(f * grid.size) - 1]:.3f}"
            for f in FRACTIONS)
        print(f"{label:10s} mean best (95% interval) at fractions of the time budget: {marks}; "
              f"{np.mean(counts):.0f} evaluations a run; {time.perf_counter() - t0:.1f} s")
    target = float(np.nanmean(curves[BASELINE][:, -1]))
    print(f"{BASELINE} final mean best {target:.3f} at {horizon / 3600:.1f} h")
    verdicts = []
    for label in curves:
        mean = np.nan_to_num(curves[label], nan=0.0).mean(axis=0)
        reached = np.nonzero(mean >= target)[0]
        when = grid[reached[0]] if reached.size else None
        ok = when is not None and when <= horizon / 2
        if label in MULTI_FIDELITY:
            verdicts.append(ok)
        text = (f"reaches it at {when / 3600:.2f} h = {when / horizon:.0%} of random's time"
                if when is not None else "does not reach it within the budget")
        print(f"{label:10s} {text}" + (f": {'YES' if ok else 'NO'} within half"
                                       if label in MULTI_FIDELITY else ""))
    if args.plot:
        plot(curves, grid, target, horizon, args.plot)
        print(f"figure: {args.plot}")
    print(f"summary: {sum(verdicts)}/{len(verdicts)} multi-fidelity strategies reach random "
          f"search's final mean best ({target:.3f}) within half its simulated time; "
          f"{time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
