"""``nasforge train``: the parser and the printing; ``nasforge.workflow.train_genomes`` does
the work."""

from __future__ import annotations

import argparse
from typing import Any

from nasforge.commands.common import add_budget_flags, budget_changes
from nasforge.errors import ConfigError


def cmd_train(args: argparse.Namespace) -> int:
    from nasforge.workflow import train_genomes

    for flag in ("seeds", "top", "workers"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise ConfigError(f"--{flag} must be at least 1, got {value}")
    outcome = train_genomes(
        args.source, preset=args.preset, trial=args.trial, top=args.top, seeds=args.seeds,
        workers=args.workers, nproc=args.nproc, space=args.space, head=args.head,
        storage=args.storage, data_dir=args.data_dir, retrain=args.retrain,
        budget_changes=budget_changes(args))
    results, width = outcome.results, outcome.budget.width
    for res in results:
        label = f"trial {res.trial_number}" if res.trial_number is not None else res.description
        if res.interrupted:
            print(f"{label}: seed(s) {', '.join(map(str, res.interrupted))} interrupted; run the "
                  "same command again to finish them")
        if res.mean is not None:
            print(f"{label}: test acc {res.mean:.4f} ± {res.std:.4f} over {len(res.test_accs)} seed(s) "
                  f"{[round(a, 4) for a in res.test_accs]}{res.tta_note()}, {res.params:,} params "
                  f"at width {res.width or width}")
        else:
            print(f"{label}: failed: {res.failures}")
    if any(r.interrupted for r in results):
        return 130
    return 0 if all(r.mean is not None for r in results) else 1


def register(sub: Any) -> None:
    """Add ``train`` to the ``nasforge`` subparsers."""
    tr = sub.add_parser("train", help="final training of a study's best genomes or a genome file")
    tr.add_argument("source", help="STUDY.db or GENOME.json (one genome, e.g. from "
                                   "`nasforge space sample --json --n 1`)")
    sel = tr.add_mutually_exclusive_group()
    sel.add_argument("--best", action="store_true", help="the best trial (default)")
    sel.add_argument("--trial", type=int, default=None)
    sel.add_argument("--top", type=int, default=None)
    tr.add_argument("--preset", default=None, help="take the final budget (and space settings) from a preset")
    tr.add_argument("--seeds", type=int, default=None)
    tr.add_argument("--workers", type=int, default=None)
    tr.add_argument("--nproc", type=int, default=None,
                    help="train each run data-parallel over N processes (GPUs; on CPU they share "
                         "the cores), batch_size being the global batch; default "
                         "run.devices_per_trial (1)")
    tr.add_argument("--space", default=None)
    tr.add_argument("--head", default=None)
    tr.add_argument("--storage", default=None, help="where to store results of a genome file")
    tr.add_argument("--data-dir", default=None)
    tr.add_argument("--retrain", action="store_true",
                    help="train again runs the study already holds (same genome, budget, seed)")
    add_budget_flags(tr)
    tr.set_defaults(func=cmd_train)
