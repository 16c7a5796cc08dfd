"""The standard strategy comparison on the NAS-Bench-201 table (no training, seconds).

Random search, regularized evolution (population 20, sample 5), the genetic algorithm, the
ant colony (DeepSwarm), REINFORCE (its default lr 0.03 and the published 1e-3; with
``--lstm`` also the LSTM controller) and SMBO (BANANAS' settings: MLP ensemble, independent
Thompson sampling; only up to ``SMBO_EVALS`` queries: each batch of 10 refits 5 MLPs, about a
second each), 30 seeds each, 1,000 table queries per run; reports the mean best-found CIFAR-10 test accuracy
(95% interval) and regret at 100, 200 and 1,000 evaluations (the first n queries of a run do
not depend on its length), whether each beats random search with non-overlapping intervals,
the policy entropy of aco and reinforce over time, checks random search against the exact
expectation of the best of n uniform draws, then NSGA-II on (accuracy, parameters at C=16,
N=5): hypervolume of the evaluated points after 100/200 evaluations as a fraction of the
table's true front (all 15,625 cells), beside random search's. Prints the synthetic fidelity
layer's rank agreement (Kendall tau-b, synthetic) and ends with one summary line.

    python benchmarks/strategies.py [--seeds 30] [--evals 1000] [--output bench-standard] [--lstm]

Needs the optional table: pip install --no-deps analog-nasbench==0.1.3
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from nasforge.benchmarks.bench import mean_interval, plot, run_strategy, write_csv
from nasforge.benchmarks.fidelity import SYNTHETIC_LABEL, SyntheticFidelity
from nasforge.benchmarks.nb201_table import NB201Table, load_table
from nasforge.evaluation.budget import Budget
from nasforge.spaces import get_space
from nasforge.spaces.base import SearchSpace
from nasforge.spaces.nb201 import all_genomes
from nasforge.strategies import Observation, Problem, get_strategy
from nasforge.strategies.pareto import hypervolume_2d

RUNS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("random", "random", {}),
    ("evolution", "evolution", {}),
    ("genetic", "genetic", {}),
    ("aco", "aco", {}),
    ("reinforce", "reinforce", {}),
    ("reinforce-lr1e-3", "reinforce", {"lr": 1e-3}),
    ("smbo", "smbo", {}),
)
"""(label, strategy, settings); bench's own defaults apply beneath (evolution 20/5).
``reinforce``'s default lr is 0.03 (measured here); ``reinforce-lr1e-3`` is NAS-Bench-201's."""
LSTM_RUN = ("reinforce-lstm", "reinforce", {"controller": "lstm"})
"""Added with ``--lstm`` (Zoph & Le's controller; about 10x slower per query)."""
MUST_BEAT = {"evolution": 200, "genetic": 200, "aco": 1000, "reinforce": 1000,
             "reinforce-lstm": 1000, "smbo": 200}
"""Evaluations at which each must beat random search (issue 19; the published lr 1e-3 is
shown, not required)."""
SMBO_EVALS = 200
"""SMBO runs stop here (model fits dominate its time; 1,000 would take hours for 30 seeds)."""
ENTROPY_MARKS = (0, 50, 100, 200, 500, 1000)
HV_REFERENCE = (1.0, 1.1)
"""Reference point of the hypervolume in scaled objectives (1 - accuracy, log10 params
normalised to [0, 1] over the table's cells): slightly worse than the worst cell in size, so
the largest cells on the front count. Most of that area lies below 90% accuracy, where any
search covers it, so the fraction is also printed for ``HV_REFERENCE_TOP`` (only the part of
the front above 90% accuracy counts)."""
HV_REFERENCE_TOP = (0.1, 1.1)
PROBLEM = Problem((3, 32, 32), 10)
BUDGET = Budget(epochs=200, width=16)


def entropy_trace(strategy: str, settings: dict[str, Any], space: SearchSpace,
                  table: NB201Table, evals: int, seeds: list[int]) -> dict[int, float]:
    """Mean over seeds of the strategy's ``entropy()`` (nats per step) after n results."""
    marks = [m for m in ENTROPY_MARKS if m <= evals]
    out = {m: 0.0 for m in marks}
    for seed in seeds:
        s = get_strategy(strategy, space, BUDGET, PROBLEM, seed, **settings)
        for i in range(evals + 1):
            if i in out:
                out[i] += s.entropy() / len(seeds)  # type: ignore[attr-defined]
            if i == evals:
                break
            g = s.ask().genome
            s.tell(Observation(i, g, BUDGET, "ok", table.lookup(g) / 100.0, {}))
    return out


def hv_fractions(space: SearchSpace, table: NB201Table, seeds: list[int], marks: list[int],
                 reference: tuple[float, float]) -> tuple[dict[str, np.ndarray], float]:
    """Per strategy (nsga2, random) and mark the hypervolume of the evaluated points as a
    fraction of the true front's, [seeds, marks]; and the true front's hypervolume."""
    genomes = all_genomes()
    params = {g: space.count_params(g, PROBLEM.input_shape, PROBLEM.num_classes, 16)
              for g in genomes}
    logs = np.log10(np.array(list(params.values()), dtype=float))
    lo, hi = float(logs.min()), float(logs.max())

    def scaled(g: Any) -> tuple[float, float]:
        return (1.0 - table.lookup(g) / 100.0, (math.log10(params[g]) - lo) / (hi - lo))

    true_hv = hypervolume_2d([scaled(g) for g in genomes], reference)
    out = {}
    for name in ("nsga2", "random"):
        frac = np.zeros((len(seeds), len(marks)))
        for row, seed in enumerate(seeds):
            s = get_strategy(name, space, BUDGET, PROBLEM, seed)
            points = []
            for i in range(max(marks)):
                g = s.ask().genome
                points.append(scaled(g))
                s.tell(Observation(i, g, BUDGET, "ok", table.lookup(g) / 100.0,
                                   {"params": params[g]}))
                if i + 1 in marks:
                    frac[row, marks.index(i + 1)] = hypervolume_2d(points, reference) / true_hv
        out[name] = frac
    return out, true_hv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--evals", type=int, default=1000)
    parser.add_argument("--output", default="bench-standard")
    parser.add_argument("--lstm", action="store_true", help="also REINFORCE's LSTM controller")
    args = parser.parse_args()
    runs = RUNS + ((LSTM_RUN,) if args.lstm else ())
    start = time.perf_counter()
    table = load_table()
    space = get_space("nb201")
    seeds = list(range(args.seeds))
    results = []
    for label, name, settings in runs:
        evals = min(args.evals, SMBO_EVALS) if name == "smbo" else args.evals
        r = run_strategy(name, space, table, evals, seeds, settings)
        r.strategy = label
        results.append(r)
    marks = [n for n in (100, 200, 1000) if n <= args.evals]
    print(f"table best {table.best():.2f}; sha256 {table.sha256[:16]}...; {args.seeds} seeds")
    inside = []
    final: dict[str, dict[int, tuple[float, float]]] = {}
    for r in results:
        mean, half = mean_interval(r.best)
        for n in [m for m in marks if m <= r.best.shape[1]]:
            row = (f"{r.strategy:16s} n={n:5d}: {mean[n - 1]:.3f} +- {half[n - 1]:.3f}, "
                   f"regret {max(0.0, table.best() - mean[n - 1]):.3f}")
            if r.strategy == "random":
                expected = table.expected_best_of(n)
                ok = abs(mean[n - 1] - expected) <= half[n - 1]
                inside.append(ok)
                row += f", exact E[best of {n}] {expected:.3f} ({'inside' if ok else 'OUTSIDE'})"
            print(row)
        final[r.strategy] = {n: (mean[n - 1], half[n - 1]) for n in marks
                             if n <= r.best.shape[1]}
        print(f"{r.strategy:16s} {r.settings or ''} {r.wall_seconds:.2f} s wall for "
              f"{args.seeds} x {r.best.shape[1]} queries "
              f"({1e6 * r.wall_seconds / (args.seeds * r.best.shape[1]):.0f} us each)")
    verdicts = []
    for label, n in MUST_BEAT.items():
        if n not in final.get("random", {}) or n not in final.get(label, {}):
            continue
        (m, h), (rm, rh) = final[label][n], final["random"][n]
        beats = m - h > rm + rh
        verdicts.append(beats)
        print(f"{label} vs random at n={n}: {m:.3f} +- {h:.3f} vs {rm:.3f} +- {rh:.3f}: "
              f"{'beats (intervals do not overlap)' if beats else 'DOES NOT beat'}")
    fractions: dict[str, np.ndarray] = {}
    for label, name, settings in runs:
        if name in ("aco", "reinforce"):
            trace = entropy_trace(name, settings, space, table, args.evals, seeds)
            print(f"{label} policy entropy (nats per step, mean of {len(seeds)} seeds; uniform "
                  f"{math.log(5):.3f}): " + ", ".join(f"n={n} {v:.3f}" for n, v in trace.items()))
    hv_marks = [n for n in (100, 200, 1000) if n <= args.evals]
    for reference in (HV_REFERENCE, HV_REFERENCE_TOP):
        fracs, true_hv = hv_fractions(space, table, seeds, hv_marks, reference)
        fractions = fracs if reference == HV_REFERENCE else fractions
        print(f"hypervolume, objectives (1 - accuracy, log10 params at C=16, N=5 normalised "
              f"over the table), reference {reference}; true front (all 15,625 cells) "
              f"{true_hv:.4f}")
        for name, frac in fracs.items():
            mean, half = mean_interval(frac)
            print(f"  {name:6s} fraction of the true front's: " + ", ".join(
                f"n={n} {mean[k]:.4f} +- {half[k]:.4f}" for k, n in enumerate(hv_marks)))
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
    hv_at = 200 if 200 in hv_marks else hv_marks[-1]
    hv_k = hv_marks.index(hv_at)
    print("summary: " + ", ".join(f"{k} {v[n_last][0]:.3f}" for k, v in final.items()
                                  if n_last in v)
          + f" mean best at {n_last} evals (table best {table.best():.2f}); "
          f"{sum(verdicts)}/{len(verdicts)} beat random where required; random within its "
          f"interval of the exact expectation at {sum(inside)}/{len(inside)} checkpoints; "
          f"nsga2 hypervolume {fractions['nsga2'][:, hv_k].mean():.3f} vs random "
          f"{fractions['random'][:, hv_k].mean():.3f} of the true front at {hv_at}; "
          f"synthetic fidelity tau-b {mean_all:.2f}/{mean_half:.2f} (all/best half); "
          f"{time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
