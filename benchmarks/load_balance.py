"""Steady-state runner versus a generation-synchronous loop on networks of different sizes.

64 evaluations whose durations are drawn from a log-normal distribution (median 0.5 s, sigma
1.0, seed 0) are run on 2 and on 4 workers of one executor (``--executor local|mpi|dask``):

(a) by the real steady-state ``Runner`` (real strategy, real SQLite storage in a temporary
    folder, every evaluation forked by ``IsolatedEvaluate`` in its worker): trial ``n`` sleeps
    for duration ``n`` (evaluations are numbered in submission order);
(b) by a generation-synchronous loop as in the deck's MPI broadcast loop: submit one
    evaluation per worker, wait for all of them, repeat (same durations, same order, same
    executor, same forked children).

Efficiency = the makespan of an ideal greedy schedule of the same durations on the same number
of workers (list scheduling in submission order, zero overhead) / the measured wall time from
the first submission to the last result. Process start, storage writes, ask/tell, forks and the
executor's messaging all count as overhead. The executor's workers are started (one no-op task
per worker, which also warms them) *before* timing, so process start-up is not counted.

Prints a table and, last, ``efficiency async vs sync: X vs Y`` for 2 workers.

    PYTHONPATH=src python benchmarks/load_balance.py [--executor local|mpi|dask]
"""

from __future__ import annotations

import argparse
import heapq
import math
import os
import tempfile
import time
from concurrent.futures import ALL_COMPLETED, Executor, wait
from pathlib import Path
from typing import Any

import numpy as np

from nasforge.execution.results import EvalResult
from nasforge.api import Search
from nasforge.config import RunConfig, SearchConfig, config_from_dict
from nasforge.execution.executors import make_executor
from nasforge.execution.isolation import IsolatedEvaluate, warm_up
from nasforge.execution.runner import Runner
from nasforge.execution.tasks import EvalTask


def durations(n: int = 64, median: float = 0.5, sigma: float = 1.0, seed: int = 0) -> list[float]:
    """Evaluation durations in seconds, log-normal."""
    rng = np.random.default_rng(seed)
    return [float(d) for d in rng.lognormal(math.log(median), sigma, n)]


def ideal_makespan(times: list[float], workers: int) -> float:
    """Greedy list scheduling in submission order: each job to the first free worker."""
    free = [0.0] * workers
    for d in times:
        start = heapq.heappop(free)
        heapq.heappush(free, start + d)
    return max(free)


def sync_ideal(times: list[float], workers: int) -> float:
    """What a zero-overhead generation-synchronous loop takes: the sum of generation maxima."""
    return sum(max(times[i:i + workers]) for i in range(0, len(times), workers))


class SleepEvaluate:
    """Sleeps for the duration of its trial number (1-based), then reports an ok trial."""

    def __init__(self, times: list[float]) -> None:
        self.times = times

    def __call__(self, task: EvalTask) -> EvalResult:
        started = time.time()
        time.sleep(self.times[(task.trial_number - 1) % len(self.times)])
        return EvalResult(status="ok", val_acc=(task.trial_number % 97) / 97, params=1000,
                          flops=1000, started_at=started, finished_at=time.time())


def _prestart(seconds: float) -> int:
    warm_up()  # what the first evaluation of a worker would otherwise pay
    time.sleep(seconds)
    return os.getpid()


def prestart(executor: Executor, workers: int) -> int:
    """Start (and warm) every worker before timing: one no-op task per worker at once."""
    pids: set[int] = set()
    for _ in range(5):
        futures = [executor.submit(_prestart, 0.5) for _ in range(workers)]
        pids |= {f.result() for f in futures}
        if len(pids) >= workers:
            break
    return len(pids)


def study_config(evals: int, workers: int, executor: str) -> SearchConfig:
    return config_from_dict({
        "name": "load-balance", "seed": 0,
        "data": {"dataset": "synthetic", "val_fraction": 0.2},
        "space": {"name": "global", "settings": {"max_nodes": 8, "head": "gap"}},
        "strategy": {"name": "evolution", "settings": {"population": 8, "sample": 3}},
        "budget": {"epochs": 1, "width": 4, "batch_size": 32, "max_steps": 1},
        "run": {"max_evals": evals, "workers": workers, "executor": executor, "keep_best": 0},
    }, "load-balance")


def run_async(executor: Executor, times: list[float], workers: int, name: str,
              folder: Path) -> tuple[float, float | None]:
    """The real runner; returns (wall seconds to the last result, busy fraction)."""
    cfg = study_config(len(times), workers, name)
    search = Search(cfg, folder / f"async-{name}-{workers}.db")
    try:
        runner = Runner(config=cfg, storage=search.storage, space=search.space,
                        strategy=search.strategy, executor=executor,
                        evaluate=IsolatedEvaluate(evaluate=SleepEvaluate(times)))
        started = time.perf_counter()
        summary = runner.run()
        wall = time.perf_counter() - started
        assert summary.finished == len(times) and summary.ok == len(times), summary
        return wall, summary.busy_fraction
    finally:
        search.close()


def run_sync(executor: Executor, times: list[float], workers: int) -> float:
    """Generation-synchronous: submit one per worker, wait for all, repeat."""
    data = {"dataset": "synthetic", "val_fraction": 0.2, "split_seed": 0, "normalize": None}
    evaluate = IsolatedEvaluate(evaluate=SleepEvaluate(times))
    started = time.perf_counter()
    for first in range(0, len(times), workers):
        futures = [
            executor.submit(evaluate, EvalTask(n + 1, "global", {}, {}, {}, data, 0))
            for n in range(first, min(first + workers, len(times)))
        ]
        wait(futures, return_when=ALL_COMPLETED)
        for f in futures:
            assert f.result()["status"] == "ok"
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--executor", default="local", choices=["local", "mpi", "dask"])
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--evals", type=int, default=64)
    parser.add_argument("--median", type=float, default=0.5)
    parser.add_argument("--sigma", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    times = durations(args.evals, args.median, args.sigma, args.seed)
    print(f"{args.evals} evaluations, log-normal durations (median {args.median} s, sigma "
          f"{args.sigma}, seed {args.seed}): total {sum(times):.1f} s, longest {max(times):.1f} s; "
          f"executor {args.executor}; workers started and warmed before timing")
    header = (f"{'executor':<9} {'workers':>7} {'loop':<6} {'ideal s':>8} {'wall s':>8} "
              f"{'efficiency':>10}  note")
    print(header)
    print("-" * len(header))
    results: dict[tuple[int, str], float] = {}
    with tempfile.TemporaryDirectory(prefix="nasforge-lb-") as tmp:
        for workers in args.workers:
            executor = make_executor(RunConfig(workers=workers, executor=args.executor))
            try:
                started = prestart(executor, workers)
                ideal = ideal_makespan(times, workers)
                wall, busy = run_async(executor, times, workers, args.executor, Path(tmp))
                results[(workers, "async")] = ideal / wall
                print(f"{args.executor:<9} {workers:>7} {'async':<6} {ideal:>8.2f} {wall:>8.2f} "
                      f"{ideal / wall:>10.3f}  steady-state Runner + SQLite; busy "
                      f"{(busy or 0):.0%}; {started} workers pre-started")
                wall = run_sync(executor, times, workers)
                results[(workers, "sync")] = ideal / wall
                print(f"{args.executor:<9} {workers:>7} {'sync':<6} {ideal:>8.2f} {wall:>8.2f} "
                      f"{ideal / wall:>10.3f}  generation-synchronous; zero-overhead sync "
                      f"would take {sync_ideal(times, workers):.2f} s "
                      f"({ideal / sync_ideal(times, workers):.3f})")
            finally:
                executor.shutdown(wait=True)
    key = 2 if 2 in args.workers else args.workers[0]
    print(f"efficiency async vs sync: {results[(key, 'async')]:.3f} vs "
          f"{results[(key, 'sync')]:.3f}")


if __name__ == "__main__":
    main()
