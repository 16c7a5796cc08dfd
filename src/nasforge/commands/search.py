"""``nasforge search``: the parser and the printing; ``nasforge.workflow.SearchJob`` runs the
search and its final step."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def default_storage(config_arg: str, config: Any) -> Path:
    """Where ``search`` stores a study without ``--storage``: ``studies/NAME.db`` for a preset,
    ``studies/STEM.db`` for a config file (``my.yaml`` copied from a preset keeps the preset's
    ``name`` but must not share its study)."""
    path = Path(config_arg)
    is_file = config_arg.endswith((".yaml", ".yml")) or path.is_file()
    return Path("studies") / f"{path.stem if is_file else config.name}.db"


def _final_step_note(args: argparse.Namespace, config: Any) -> str | None:
    """A line saying that --max-evals leaves the final step as configured, when it runs."""
    final = config.final
    if (getattr(args, "max_evals", None) is None or final is None or config.kind != "search"
            or getattr(args, "no_final", False)):
        return None  # (a final-training preset is refused by Search with its own line)
    return (f"note: --max-evals limits the search only; the final training runs as configured "
            f"({final.budget.epochs} epoch(s) at width {final.budget.width}, {final.seeds} "
            f"seed(s) of the best {final.top}): --no-final skips it, --set "
            f"final.budget.epochs=N shortens it")


def _search_config(args: argparse.Namespace) -> Any:
    """The config ``search`` runs: the preset or file with the flags and ``--set`` applied;
    prints the ``--max-evals`` note on the final step (unless ``--quiet``)."""
    from nasforge.config import apply_overrides, load_config

    config = load_config(args.config)
    overrides = list(args.set or [])
    mapping = {
        "space": "space.name", "strategy": "strategy.name", "workers": "run.workers",
        "max_evals": "run.max_evals", "time_limit": "run.time_limit", "seed": "seed",
        "executor": "run.executor", "scheduler": "run.scheduler", "data_dir": "data.data_dir",
        "keep_best": "run.keep_best", "target": "run.target_accuracy",
        "evaluator": "run.evaluator",
    }
    for attr, key in mapping.items():
        value = getattr(args, attr, None)
        if value is not None:
            overrides.insert(0, f"{key}={value}")
    if getattr(args, "devices", None):
        overrides.insert(0, f"run.devices=[{args.devices}]")
    if args.space and args.space != config.space.name:
        # space settings and constraints (e.g. quick's FLOPs window) belong to the config's space
        overrides[:0] = ["space.settings={}", "constraints=[]"]
    if args.strategy and args.strategy != config.strategy.name:
        overrides.insert(0, "strategy.settings={}")
    if getattr(args, "prefilter", None):
        overrides.append(f"prefilter={args.prefilter}")
    config = apply_overrides(config, overrides) if overrides else config
    note = _final_step_note(args, config)
    if note and not getattr(args, "quiet", False):
        print(note)
    return config


def cmd_search(args: argparse.Namespace) -> int:
    from nasforge.execution.runner import Reporter
    from nasforge.workflow import SearchJob

    config = _search_config(args)
    storage = Path(args.storage or default_storage(args.config, config))
    reporter = Reporter(enabled=not args.quiet)
    with SearchJob(config, storage, resume=args.resume, force=args.force,
                   init_from=args.init_from, reporter=reporter) as job:
        summary = job.search()
        print(f"search: {summary.finished} trials ({summary.ok} ok, {summary.failed} failed, "
              f"{summary.reused} duplicate proposals reused) in {summary.wall_seconds:.0f}s; "
              f"stopped: {summary.stop_reason}")
        if summary.busy_fraction is not None:
            print(f"workers busy {summary.busy_fraction:.0%} of the run")
        if summary.running_left:
            print(f"{summary.running_left} evaluation(s) left running; continue with --resume")
        best = summary.best
        if best is None:
            print("no trial succeeded")
            return 1
        meets = ""
        if config.constraints:  # the trial the final step takes (final_picks), if any
            from nasforge.final_training import final_picks

            picks = final_picks(job.search_.storage, config)
            best, meets = (picks[0], " (best meeting the constraints)") if picks else (
                best, " (no trial meets the constraints)")
        from nasforge.storage.records import trial_genome

        genome = trial_genome(job.space, best, storage)
        print(f"best: trial {best.number}, val acc {best.val_acc:.4f}, {best.params:,} params"
              f"{meets}")
        print(f"      {job.space.describe(genome, config.budget.width)}")
        line = job.hypervolume_line()
        if line is not None:
            print(line)
        if job.tabular:
            metrics = best.metrics
            print(f"tabular benchmark run: the best cell's table value is "
                  f"{metrics.get('test_accuracy')} (CIFAR-10 test accuracy, percent; "
                  f"{metrics.get('simulated_seconds', 0):.0f} simulated seconds); no final "
                  "training")
        elif job.wants_final(args.no_final):
            _print_final(job.final(), config, deferral_said=reporter.enabled)
        elif config.final is not None and not args.no_final and summary.stop_reason == "interrupted":
            print("final training not started: the search was interrupted; --resume finishes "
                  "the search and then trains")
        total = job.finish()
        print(f"study stored in {storage}; total {total:.0f}s")
    return 0


def _print_final(results: Any, config: Any, deferral_said: bool = False) -> None:
    """The final step's lines: one per trial (test accuracy, interrupted seeds or failure).
    ``results`` None: the step was left for --resume, said here unless the progress output
    already said it with its reason (``deferral_said``)."""
    if results is None:
        if not deferral_said:
            print("final training left for --resume (it does not fit in the time limit)")
        results = []
    elif not results:
        print("final: nothing trained: no successful trial meets the constraints")
    for res in results:
        if res.interrupted:
            print(f"final: trial {res.trial_number}: seed(s) "
                  f"{', '.join(map(str, res.interrupted))} interrupted; "
                  "continue with --resume")
        if res.mean is not None:
            print(f"final: trial {res.trial_number}: test acc {res.mean:.4f} "
                  f"± {res.std:.4f} over {len(res.test_accs)} seed(s){res.tta_note()}, "
                  f"{res.params:,} params at width {res.width or config.final.budget.width}")
        elif not res.interrupted:
            print(f"final: trial {res.trial_number} failed: {res.failures}")


def register(sub: Any) -> None:
    """Add ``search`` to the ``nasforge`` subparsers."""

    search = sub.add_parser("search", help="run (or resume) a search")
    search.add_argument("config", nargs="?", default="quick",
                        help="preset name (`nasforge presets`) or CONFIG.yaml (e.g. a copy of "
                             "`nasforge presets show quick`)")
    search.add_argument("--space", default=None,
                        help="a space other than the config's starts from its default "
                             "settings and without the config's constraints")
    search.add_argument("--strategy", default=None)
    search.add_argument("--workers", type=int, default=None)
    search.add_argument("--executor", default=None, help="local | mpi | dask")
    search.add_argument("--evaluator", default=None,
                        help="train (default) | tabular:nb201 (answer each trial from the "
                             "NAS-Bench-201 CIFAR-10 table in this process: a benchmark run)")
    search.add_argument("--scheduler", default=None, help="Dask scheduler address")
    search.add_argument("--devices", default=None, help="GPU indices to use, e.g. 0,1")
    search.add_argument("--storage", default=None,
                        help="study file (default studies/NAME.db for a preset, "
                             "studies/STEM.db for a config file: my.yaml -> studies/my.db)")
    search.add_argument("--resume", action="store_true")
    search.add_argument("--force", action="store_true", help="resume even if the study settings changed")
    search.add_argument("--max-evals", type=int, default=None,
                        help="trials of the search (the final training is not scaled by it)")
    search.add_argument("--time-limit", default=None, metavar="DURATION",
                        help="limit on the whole command, search and final training: seconds or "
                             "90m, 23h, 1d. No new evaluation starts after it; evaluations cut "
                             "at the limit stay running in the study, and the final step starts "
                             "only if its estimate fits in the time left; --resume continues")
    search.add_argument("--target", type=float, default=None, help="stop at this validation accuracy")
    search.add_argument("--seed", type=int, default=None,
                        help="study seed (strategy choices, network initialisation); repeatable "
                             "with 1 worker only: with 2 or more an evolution search's proposals "
                             "depend on which evaluation ends first")
    search.add_argument("--keep-best", type=int, default=None, help="keep weights of the best K")
    search.add_argument("--data-dir", default=None)
    search.add_argument("--init-from", default=None, help="STUDY.db or genomes.json to seed the strategy")
    search.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key")
    search.add_argument("--prefilter", default=None, metavar="PROXY:M[:K]",
                        help="train only the best K (default 1) of every M proposals by a zero-cost proxy")
    search.add_argument("--no-final", action="store_true", help="skip the final training step")
    search.add_argument("--quiet", action="store_true")
    search.set_defaults(func=cmd_search)
