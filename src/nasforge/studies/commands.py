"""The ``study`` subcommand of the CLI: ``study fidelity CONFIG``, ``study report STUDY.db`` and
``study upgrade STUDY.db``.

``register(subparsers)`` adds them to the ``nasforge`` parser; handlers return an exit code and
raise ``NasforgeError`` subclasses for user errors.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from nasforge.errors import ConfigError


def _default_output(storage: Path) -> Path:
    return storage.with_name(storage.stem + "_fidelity")


def cmd_study_fidelity(args: argparse.Namespace) -> int:
    """Run (or resume) a fidelity study, then write its tables and plots."""
    from nasforge.execution.runner import Reporter
    from nasforge.studies.fidelity import analyse, load_fidelity_config, run_fidelity, write_outputs

    cfg = load_fidelity_config(args.config)
    run = cfg.run
    if args.workers is not None:
        if args.workers < 1:
            raise ConfigError(f"--workers must be >= 1, got {args.workers}")
        run = dataclasses.replace(run, workers=args.workers)
    if args.executor is not None:
        run = dataclasses.replace(run, executor=args.executor)
    if args.time_limit is not None:
        from nasforge.config import parse_duration

        run = dataclasses.replace(run, time_limit=parse_duration(args.time_limit))
    if args.data_dir is not None:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, data_dir=args.data_dir))
    cfg = dataclasses.replace(cfg, run=run)
    storage = Path(args.storage or f"{cfg.name}.db")
    summary = run_fidelity(cfg, storage, resume=args.resume, force=args.force,
                           reporter=Reporter(enabled=not args.quiet))
    print(f"{cfg.name}: {summary.stop_reason}; {summary.ok} ok, {summary.failed} failed, "
          f"{summary.running_left} left running ({summary.wall_seconds:.0f}s)")
    out = Path(args.output) if args.output else _default_output(storage)
    written = write_outputs(analyse(storage), out)
    print(f"tables and plots written to {out}/ ({', '.join(p.name for p in written)})")
    return 0


def cmd_study_report(args: argparse.Namespace) -> int:
    """Regenerate a fidelity study's tables and plots from its database."""
    from nasforge.studies.fidelity import analyse, summary_lines, write_outputs

    storage = Path(args.study)
    if not storage.is_file():
        raise ConfigError(f"study {storage} not found")
    res = analyse(storage)
    out = Path(args.output) if args.output else _default_output(storage)
    written = write_outputs(res, out)
    for line in summary_lines(res):
        print(line.replace("**", ""))
    print(f"tables and plots written to {out}/ ({', '.join(p.name for p in written)})",
          file=sys.stderr)
    return 0


def cmd_study_upgrade(args: argparse.Namespace) -> int:
    """Migrate a study file to the current schema (after a copy to FILE.v1.bak)."""
    from nasforge.storage import StudyStorage
    from nasforge.storage.sqlite import SCHEMA_VERSION

    with StudyStorage.open(args.study, lock=True) as storage:  # not under a running driver
        before = storage.schema
        backup = storage.upgrade()
    if backup is None:
        print(f"{args.study} is already at schema {before}; nothing to do")
    else:
        print(f"{args.study}: schema {before} -> {SCHEMA_VERSION}; the original is kept as "
              f"{backup}")
    return 0


def cmd_study_predictors(args: argparse.Namespace) -> int:
    """Score the performance predictors on a stored study (tau-b and Spearman on held-out
    networks, against training-set size, beside parameter count)."""
    from nasforge.predictors import available_predictors
    from nasforge.predictors.scoring import (
        default_sizes, load_study_data, score_predictors, table_lines,
    )

    names = args.predictors.split(",") if args.predictors else available_predictors()
    unknown = [n for n in names if n not in available_predictors()]
    if unknown:
        raise ConfigError(f"unknown predictor(s) {unknown}; known: "
                          f"{', '.join(available_predictors())}")
    data = load_study_data(args.study)
    try:
        sizes = ([int(s) for s in args.sizes.split(",")] if args.sizes
                 else default_sizes(len(data.genomes)))
    except ValueError:
        raise ConfigError(f"--sizes must be integers separated by commas, got {args.sizes!r}")
    scores = score_predictors(data, names, sizes, repeats=args.repeats, seed=args.seed,
                              max_test=args.max_test)
    for line in table_lines(data, scores, args.repeats):
        print(line)
    return 0


def register(subparsers: Any) -> None:
    """Add ``study fidelity`` and ``study report`` to ``subparsers``."""
    study = subparsers.add_parser("study", help="studies of search itself (fidelity of cheap "
                                                "evaluations, zero-cost proxies)")
    sub = study.add_subparsers(dest="study_command", metavar="SUBCOMMAND")
    fid = sub.add_parser("fidelity", help="rank agreement of reduced training and zero-cost "
                                          "proxies with a reference budget")
    fid.add_argument("config", help="study YAML file or preset name (fidelity-cpu, "
                                    "fidelity-full, fidelity-reduced)")
    fid.add_argument("--storage", default=None, help="study database (default NAME.db)")
    fid.add_argument("-o", "--output", default=None,
                     help="folder for tables and plots (default STUDY_fidelity/)")
    fid.add_argument("--resume", action="store_true", help="continue an existing study")
    fid.add_argument("--force", action="store_true",
                     help="resume even if the study config changed")
    fid.add_argument("--workers", type=int, default=None)
    fid.add_argument("--executor", default=None, choices=["local", "mpi", "dask"])
    fid.add_argument("--time-limit", default=None, metavar="DURATION",
                     help="stop submitting after this long: seconds or 90m, 23h, 1d (resume later)")
    fid.add_argument("--data-dir", default=None)
    fid.add_argument("--quiet", action="store_true", help="no progress lines")
    fid.set_defaults(func=cmd_study_fidelity)

    rep = sub.add_parser("report", help="regenerate a fidelity study's tables and plots")
    rep.add_argument("study", help="STUDY.db")
    rep.add_argument("-o", "--output", default=None,
                     help="folder for tables and plots (default STUDY_fidelity/)")
    rep.set_defaults(func=cmd_study_report)

    pred = sub.add_parser("predictors", help="score the performance predictors on a stored "
                                             "study (Kendall tau-b, Spearman) beside params")
    pred.add_argument("study", help="STUDY.db (a search or a fidelity study)")
    pred.add_argument("--sizes", default=None,
                      help="training-set sizes, e.g. 10,20 (default: by the study's size)")
    pred.add_argument("--repeats", type=int, default=20, help="random splits per size")
    pred.add_argument("--predictors", default=None,
                      help="comma-separated (default: all: gp, mlp_ensemble, random_forest)")
    pred.add_argument("--max-test", type=int, default=500, help="held-out networks at most")
    pred.add_argument("--seed", type=int, default=0)
    pred.set_defaults(func=cmd_study_predictors)

    up = sub.add_parser("upgrade", help="migrate a study file to the current schema (reading "
                                        "commands never write; --resume and train migrate too)")
    up.add_argument("study", help="STUDY.db")
    up.set_defaults(func=cmd_study_upgrade)
