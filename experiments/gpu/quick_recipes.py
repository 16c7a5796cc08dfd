"""Which final-training recipe gives the `quick` preset's networks the best *validation*
accuracy in few epochs (issue 15: `quick` must reach 92.5% test within 10 minutes on 2 cores).

Accuracy after a fixed number of epochs does not depend on the device (fp32 here, TF32 off), so
the recipes are compared on a GPU, many trainings at once (one process each), and only the
chosen recipe is then timed and measured on the test set once, on a 2-core CPU, by
`nasforge search quick`. Nothing here touches the test split: every figure is the accuracy on
the 6,000-image validation split after training on the other 54,000 images.

    python3 experiments/gpu/quick_recipes.py GENOMES.json [--dry-run] [--procs 8] [--deadline 150]

GENOMES.json is a list of global-space genome dicts (networks that `quick` searches picked).
Prints one line per (genome, recipe) as it ends, then a table of the mean validation accuracy
of each recipe over the genomes, last.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from typing import Any

# recipe name -> budget fields (everything else: the quick preset's final budget)
RECIPES: dict[str, dict[str, Any]] = {
    "A adam1e-3 w48 e7 (preset)": {"optimizer": "adam", "lr": 1e-3, "epochs": 7},
    "B adam3e-3 w48 e7": {"optimizer": "adam", "lr": 3e-3, "epochs": 7},
    "C adamw3e-3 wd.05 e7": {"optimizer": "adamw", "lr": 3e-3, "weight_decay": 0.05, "epochs": 7},
    "D sgd.1 wd5e-4 e7": {"optimizer": "sgd", "lr": 0.1, "weight_decay": 5e-4, "epochs": 7},
    "E adam3e-3 noaug e7": {"optimizer": "adam", "lr": 3e-3, "augment": "none", "epochs": 7},
    "F adam3e-3 w64 e7": {"optimizer": "adam", "lr": 3e-3, "width": 64, "epochs": 7},
    "G adam3e-3 w48 e10": {"optimizer": "adam", "lr": 3e-3, "epochs": 10},
    "H adam3e-3 b256 e7": {"optimizer": "adam", "lr": 3e-3, "batch_size": 256, "epochs": 7},
    "I adamax2e-3 erase e7": {"optimizer": "adamax", "lr": 2e-3, "augment": "flip+erase",
                              "epochs": 7},
    "J adam3e-3 w32 e7": {"optimizer": "adam", "lr": 3e-3, "width": 32, "epochs": 7},
}


def one(job: tuple[int, dict[str, Any], str, dict[str, Any], bool]) -> dict[str, Any]:
    """Train one genome under one recipe in this (fresh) process; the validation accuracy."""
    index, genome_dict, name, fields, dry = job
    import torch

    torch.set_num_threads(2)
    from nasforge.config import load_config
    from nasforge.evaluation.budget import Budget
    from nasforge.evaluation.trainer import set_determinism, train
    from nasforge.execution.tasks import load_splits
    from nasforge.spaces import chosen_network_space

    config = load_config("quick")
    base = config.final.budget.to_dict()
    base.update(fields, precision="fp32", channels_last=False, threads=None, seed=0)
    if dry:
        base.update(max_steps=3, epochs=1, width=8)
    budget = Budget.from_dict(base)
    splits = load_splits(config.data.task_dict())
    space = chosen_network_space(config.space.name, dict(config.space.settings))
    genome = space.genome_from_dict(genome_dict)
    set_determinism(0)
    model = space.build(genome, splits.input_shape, splits.num_classes, budget.width)
    device = "cuda" if torch.cuda.is_available() and not dry else "cpu"
    started = time.time()
    out = train(model, splits, budget, device=device)
    return {"genome": index, "recipe": name, "val_acc": out.val_acc, "params": out.params,
            "seconds": round(time.time() - started, 1), "status": out.status,
            "curve": [round(e.val_acc, 4) for e in out.curve if e.val_acc is not None]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("genomes")
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--procs", type=int, default=8)
    parser.add_argument("--deadline", type=float, default=150.0, help="seconds; no new job after")
    args = parser.parse_args()
    genomes = json.load(open(args.genomes))
    if args.dry_run:
        genomes = genomes[:2]
    jobs = [(i, g, name, fields, args.dry_run)
            for name, fields in RECIPES.items() for i, g in enumerate(genomes)]
    started = time.time()
    results: list[dict[str, Any]] = []
    pending = list(jobs)
    with ProcessPoolExecutor(max_workers=args.procs, mp_context=get_context("spawn")) as pool:
        running = set()
        while pending or running:
            while pending and len(running) < args.procs and time.time() - started < args.deadline:
                running.add(pool.submit(one, pending.pop(0)))
            if not running:
                break
            done, running = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                try:
                    r = future.result()
                except Exception as exc:  # one failed training is a line, not a dead sweep
                    print(f"job failed: {type(exc).__name__}: {exc}", flush=True)
                    continue
                results.append(r)
                print(f"[{time.time() - started:6.1f}s] genome {r['genome']} {r['recipe']:<28} "
                      f"val {r['val_acc']:.4f} params {r['params']:,} {r['seconds']} s "
                      f"{r['status']}", flush=True)
    print(f"\n{len(results)} of {len(jobs)} trainings in {time.time() - started:.0f} s "
          f"(validation split, 6,000 images; fp32)")
    print(f"{'recipe':<30} {'n':>2} {'mean val':>9} {'min':>7} {'max':>7} {'s each':>7}")
    for name in RECIPES:
        vals = [r["val_acc"] for r in results if r["recipe"] == name and r["val_acc"] is not None]
        secs = [r["seconds"] for r in results if r["recipe"] == name]
        if vals:
            print(f"{name:<30} {len(vals):>2} {statistics.mean(vals):>9.4f} {min(vals):>7.4f} "
                  f"{max(vals):>7.4f} {statistics.mean(secs):>7.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
