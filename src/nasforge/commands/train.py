"""``nasforge train``: the parser and the printing; ``nasforge.workflow.train_genomes`` does
the work."""

from __future__ import annotations

import argparse
from typing import Any

from nasforge.commands.common import add_budget_flags, budget_changes
from nasforge.evaluation.budget import TTA_MODES
from nasforge.errors import ConfigError

DESCRIPTION = (
    "Final training of a study's best trial(s) or of a genome file on the whole training set. "
    "The budget is the preset's final budget (--preset), else the study's. A preset's final "
    "section's caps apply as in `nasforge search`'s final step: the cost is estimated from a "
    "measured step time, then final.max_seconds / final.total_seconds (all of it: train has no "
    "search) cut the epochs (with final.min_width, narrow the width; with final.min_epochs, "
    "epochs first down to it), and final.max_epochs grows them into room left under the cap; "
    "the plan is printed and stored, so the same command again trains the same runs. "
    "--epochs and --width given on the command line are kept as set: the cap changes only the "
    "other size, and a plan still over the cap is trained as set, its line saying so. "
    "Without --preset no cap applies (a plan the study's search stored for the same budget is "
    "still trained). --no-cap turns the caps (and a plan stored earlier) off: the budget "
    "exactly as given.")


def train_budget_changes(args: argparse.Namespace) -> dict[str, Any]:
    """The budget flags of ``nasforge train``: ``budget_changes`` plus ``--tta`` and
    ``--label-smoothing``; ``ConfigError`` (one line) for a smoothing outside [0, 1) (Szegedy
    et al. 2016, section 7: eps of the uniform target mixture, 1 would be no label at all)."""
    changes = budget_changes(args)
    if args.tta is not None:
        changes["tta"] = args.tta
    smoothing = args.label_smoothing
    if smoothing is not None:
        if not 0.0 <= smoothing < 1.0:  # also NaN
            raise ConfigError(f"--label-smoothing must be in [0, 1), got {smoothing:g}")
        changes["label_smoothing"] = smoothing
    return changes


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
        budget_changes=train_budget_changes(args), no_cap=args.no_cap)
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
    tr = sub.add_parser("train", help="final training of a study's best genomes or a genome file",
                        description=DESCRIPTION)
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
    tr.add_argument("--no-cap", action="store_true",
                    help="train the budget exactly as given: the final section's time caps "
                         "(max_seconds, total_seconds) and a plan stored earlier are not applied")
    group = add_budget_flags(tr)
    group.add_argument("--tta", default=None, choices=TTA_MODES,
                       help="test-time augmentation of the test accuracy: flip averages the "
                            "image and its mirror (the single view is reported beside it); "
                            "none turns a preset's off")
    group.add_argument("--label-smoothing", dest="label_smoothing", type=float, default=None,
                       metavar="EPS", help="label smoothing of the training loss, in [0, 1) "
                                           "(0: hard labels)")
    tr.set_defaults(func=cmd_train)
