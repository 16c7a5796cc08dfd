"""The standard strategy comparison on the NAS-Bench-201 table (no training, seconds).

Random search and regularized evolution (population 20, sample 5), 30 seeds each, 1,000 table
queries per run; reports the mean best-found CIFAR-10 test accuracy (95% interval) and regret
at 100, 200 and 1,000 evaluations (the first n queries of a run do not depend on its length),
checks random search against the exact expectation of the best of n uniform draws, prints the
synthetic fidelity layer's rank agreement (Kendall tau-b, synthetic), and ends with one
summary line.

    python benchmarks/strategies.py [--seeds 30] [--evals 1000] [--output bench-standard]

Needs the optional table: pip install --no-deps analog-nasbench==0.1.3
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from nasforge.benchmarks.bench import mean_interval, plot, run_strategy, write_csv
from nasforge.benchmarks.fidelity import SYNTHETIC_LABEL, SyntheticFidelity
from nasforge.benchmarks.nb201_table import load_table
from nasforge.spaces import get_space


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--evals", type=int, default=1000)
    parser.add_argument("--output", default="bench-standard")
    args = parser.parse_args()
    start = time.perf_counter()
    table = load_table()
    space = get_space("nb201")
    seeds = list(range(args.seeds))
    results = [run_strategy(name, space, table, args.evals, seeds)
               for name in ("random", "evolution")]
    marks = [n for n in (100, 200, 1000) if n <= args.evals]
    print(f"table best {table.best():.2f}; sha256 {table.sha256[:16]}...; {args.seeds} seeds")
    inside = []
    final = {}
    for r in results:
        mean, half = mean_interval(r.best)
        for n in marks:
            row = (f"{r.strategy:9s} n={n:5d}: {mean[n - 1]:.3f} +- {half[n - 1]:.3f}, "
                   f"regret {max(0.0, table.best() - mean[n - 1]):.3f}")
            if r.strategy == "random":
                expected = table.expected_best_of(n)
                ok = abs(mean[n - 1] - expected) <= half[n - 1]
                inside.append(ok)
                row += f", exact E[best of {n}] {expected:.3f} ({'inside' if ok else 'OUTSIDE'})"
            print(row)
        final[r.strategy] = {n: mean[n - 1] for n in marks}
        print(f"{r.strategy:9s} {r.wall_seconds:.2f} s wall for {args.seeds} x {args.evals} "
              f"queries ({1e6 * r.wall_seconds / (args.seeds * args.evals):.0f} us each)")
    out = Path(args.output)
    write_csv(results, table, out / "curves.csv")
    plot(results, table, out / "bench.png")
    taus = SyntheticFidelity(table, seed=0).rank_agreement()
    for f, (all_cells, best_half) in taus.items():
        print(f"{SYNTHETIC_LABEL}: tau-b at {f:.0%} of B: {all_cells:.3f} all cells, "
              f"{best_half:.3f} best half")
    mean_all = float(np.mean([v[0] for v in taus.values()]))
    mean_half = float(np.mean([v[1] for v in taus.values()]))
    n_last = marks[-1]
    print(f"summary: evolution {final['evolution'][n_last]:.3f} vs random "
          f"{final['random'][n_last]:.3f} mean best at {n_last} evals (table best "
          f"{table.best():.2f}); random within its interval of the exact expectation at "
          f"{sum(inside)}/{len(inside)} checkpoints; synthetic fidelity tau-b "
          f"{mean_all:.2f}/{mean_half:.2f} (all/best half); {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
