"""SMBO against random search and regularized evolution on the NAS-Bench-201 table, seed by seed.

The same runs as ``nasforge bench`` (``nasforge.benchmarks.bench.run_strategy``: every ask a
table query, seeds 0..S-1), printed as each seed ends so a cut-short run still reports: the
best-found CIFAR-10 test accuracy after 50, 100 and 200 queries for random search, evolution
(20/5), smbo with BANANAS' settings (MLP ensemble, Thompson sampling) and smbo with the
Gaussian process; then the mean and 95% interval over the seeds done, and the simulated time
(the table's cost model) each needs to reach random search's final mean best.

    python benchmarks/smbo_nb201.py [--seeds 30] [--evals 200]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from nasforge.benchmarks.bench import mean_interval, run_strategy
from nasforge.benchmarks.nb201_table import load_table
from nasforge.spaces import get_space

RUNS = (("random", "random", {}), ("evolution", "evolution", {}),
        ("smbo", "smbo", {}), ("smbo-gp", "smbo", {"predictor": "gp"}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--evals", type=int, default=200)
    args = parser.parse_args()
    table, space = load_table(), get_space("nb201")
    marks = [n for n in (50, 100, 200) if n <= args.evals]
    best = {label: [] for label, _, _ in RUNS}
    secs = {label: [] for label, _, _ in RUNS}
    wall = {label: 0.0 for label, _, _ in RUNS}
    for seed in range(args.seeds):
        parts = []
        for label, name, settings in RUNS:
            r = run_strategy(name, space, table, args.evals, [seed], settings)
            best[label].append(r.best[0])
            secs[label].append(r.seconds[0])
            wall[label] += r.wall_seconds
            parts.append(f"{label} " + "/".join(f"{r.best[0, n - 1]:.2f}" for n in marks))
        print(f"seed {seed}: " + ", ".join(parts), flush=True)
    done = len(best["random"])
    target = float(np.mean([b[-1] for b in best["random"]]))
    print(f"\n{done} seeds; mean best (95% interval) at n = {marks}; table best {table.best():.2f}")
    for label, _, _ in RUNS:
        mean, half = mean_interval(np.array(best[label]))
        reach = [s[np.argmax(b >= target)] if (b >= target).any() else np.inf
                 for b, s in zip(best[label], secs[label])]
        reached = [x for x in reach if np.isfinite(x)]
        print(f"{label:10s} " + ", ".join(f"n={n}: {mean[n - 1]:.3f} ± {half[n - 1]:.3f}"
                                           for n in marks)
              + f"; reaches random's final mean {target:.3f} in {len(reached)}/{done} seeds, "
              f"median simulated {np.median(reach) / 3600:.1f} h"
              f"; {wall[label] / done:.1f} s wall a seed")
    rm, rh = mean_interval(np.array(best["random"]))
    for label in ("smbo", "smbo-gp"):
        m, h = mean_interval(np.array(best[label]))
        n = args.evals
        print(f"{label} vs random at n={n}: {m[n - 1]:.3f} ± {h[n - 1]:.3f} vs "
              f"{rm[n - 1]:.3f} ± {rh[n - 1]:.3f}: "
              + ("beats (intervals do not overlap)" if m[n - 1] - h[n - 1] > rm[n - 1] + rh[n - 1]
                 else "does not clearly beat"))


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"total {time.perf_counter() - start:.0f} s")
