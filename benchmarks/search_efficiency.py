"""Random search against regularized evolution on the same cheap Fashion-MNIST budget.

Both strategies run the same number of trials with the same space, budget and worker count,
for several seeds, in one run; each search is a real study (real training on a stratified
data subset, validation accuracy as fitness). Prints per-seed best validation accuracies, the
means, and last ``RE - random best val acc (pp): X`` (informative, not a pass/fail figure:
a handful of seeds of a short search is noisy).

    python benchmarks/search_efficiency.py [--trials 30] [--seeds 3] [--workers 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from nasforge.api import Search
from nasforge.config import apply_overrides, load_config


def run_one(strategy: str, seed: int, trials: int, workers: int, folder: Path,
            fraction: float) -> float:
    """Best validation accuracy of one search."""
    config = load_config("quick")
    settings = "{population: 10, sample: 3}" if strategy == "evolution" else "{}"
    config = apply_overrides(config, [
        f"strategy.name={strategy}", f"strategy.settings={settings}", f"seed={seed}",
        f"run.max_evals={trials}", f"run.workers={workers}", "run.keep_best=0", "final=null",
        f"budget.data_fraction={fraction}",
    ])
    search = Search(config, folder / f"{strategy}-{seed}.db")
    try:
        summary = search.run()
    finally:
        search.close()
    return summary.best.val_acc if summary.best else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--data-fraction", type=float, default=0.15)
    parser.add_argument("--keep", default=None, help="folder to keep the study files in")
    args = parser.parse_args()
    folder = Path(args.keep or tempfile.mkdtemp(prefix="nasforge-efficiency-"))
    folder.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[float]] = {"random": [], "evolution": []}
    started = time.time()
    for seed in range(args.seeds):
        for strategy in ("random", "evolution"):
            best = run_one(strategy, seed, args.trials, args.workers, folder, args.data_fraction)
            results[strategy].append(best)
            print(f"seed {seed} {strategy:9s} best val acc {best:.4f}  "
                  f"({time.time() - started:.0f}s elapsed)", flush=True)
    for strategy, values in results.items():
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        print(f"{strategy:9s} mean best val acc {statistics.fmean(values):.4f} ± {spread:.4f} "
              f"over {len(values)} seeds, {args.trials} trials each")
    diff = 100 * (statistics.fmean(results["evolution"]) - statistics.fmean(results["random"]))
    print(f"RE - random best val acc (pp): {diff:+.2f}")


if __name__ == "__main__":
    main()
