"""``nasforge trials`` and ``nasforge best``: a stored study read through
``nasforge.load_study`` (never written)."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from typing import Any

from nasforge.storage.records import trial_genome


def _trial_rows(trials: list[Any]) -> list[dict[str, Any]]:
    """The columns ``trials`` prints (and writes as CSV), one dict per trial."""
    rows = []
    for t in trials:
        duration = (t.finished_at - t.started_at) if t.started_at and t.finished_at else None
        rows.append({
            "number": t.number, "status": t.status, "val_acc": t.val_acc, "params": t.params,
            "flops": t.flops, "seconds": round(duration, 2) if duration else None,
            "worker": t.worker, "attempts": t.attempts, "error": t.error,
            "genome_key": t.genome_key,
        })
    return rows


def cmd_trials(args: argparse.Namespace) -> int:
    from nasforge.study import load_study

    trials = load_study(args.file).trials()
    rows = _trial_rows(trials)
    if args.json:
        print(json.dumps([t.to_dict() for t in trials], indent=1))
    elif args.csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]) if rows else ["number"])
        writer.writeheader()
        writer.writerows(rows)
    else:
        print(f"{'#':>4} {'status':7} {'val_acc':>8} {'params':>10} {'seconds':>8}  error")
        for r in rows:
            acc = f"{r['val_acc']:.4f}" if r["val_acc"] is not None else "-"
            print(f"{r['number']:>4} {r['status']:7} {acc:>8} {r['params'] or '-':>10} "
                  f"{r['seconds'] or '-':>8}  {r['error'] or ''}")
    return 0


def cmd_best(args: argparse.Namespace) -> int:
    from nasforge.storage.records import single_view_acc
    from nasforge.study import load_study

    study = load_study(args.file)
    space, width = study.space, study.width
    best = study.best(args.k)
    if args.pareto:  # the front under the study's objectives and constraints
        from nasforge.objectives import trial_values

        objectives, constraints = study.objectives, study.constraints
        best = study.pareto_front()
        print(f"Pareto front: {len(best)} trial(s) under "
              + ", ".join(f"{o.name} ({o.direction})" for o in objectives)
              + (f"; constraints {', '.join(map(str, constraints))}" if constraints else ""))
    finals = study.final_runs()
    found = bool(best) or any(f.status == "ok" for f in finals)
    ok_trials = [t for t in study.trials() if t.status == "ok"]
    if not best and ok_trials and (args.pareto or study.constraints):  # ok, none feasible
        print(f"nasforge: {args.file}: none of its {len(ok_trials)} ok trial(s) meets the "
              f"constraints {', '.join(map(str, study.constraints))}", file=sys.stderr)
    elif not best:  # one line, whatever the output format; non-zero when nothing succeeded
        statuses = [t.status for t in study.trials()]
        print(f"nasforge: {args.file} has no successful trial ({len(statuses)} trial(s): "
              + ", ".join(f"{statuses.count(s)} {s}" for s in ("failed", "running"))
              + ")" + ("" if found else "; nothing to show"), file=sys.stderr)
    if args.json:
        print(json.dumps([t.to_dict() for t in best], indent=1))
        return 0 if found else 1
    for t in best:
        line = f"trial {t.number}: val acc {t.val_acc:.4f}, {t.params:,} params"
        if args.pareto:
            values = trial_values(t, objectives) or []
            line += "; " + ", ".join(f"{o.name} {v:g}" for o, v in zip(objectives, values))
        print(line)
        print(f"    {space.describe(trial_genome(space, t, args.file), width)}")
    if finals:
        print("final trainings:")
        from nasforge.storage import budget_key

        def attempt(f: Any) -> tuple[str, str, int]:
            return f.genome_key, budget_key(f.budget), f.seed

        # a seed cut by Ctrl-C keeps its row; a later row of it (ok or running) trained it again,
        # and a later interrupted row was a second try, itself the one --resume trains
        redone = {attempt(f): f.id for f in finals if f.status in ("ok", "running")}
        retried = {attempt(f): f.id for f in finals if f.status == "interrupted"}
        for f in finals:
            acc = f"test acc {f.test_acc:.4f}" if f.test_acc is not None else f.status
            single = single_view_acc(f.metrics)
            if single is not None:
                acc += f" (flip-averaged; single view {single:.4f})"
            if f.status == "interrupted":
                acc += (" (Ctrl-C; trained again since)" if redone.get(attempt(f), -1) > f.id
                        else " (Ctrl-C; tried again since, and cut again)"
                        if retried[attempt(f)] > f.id
                        else " (Ctrl-C; --resume trains it)")
            print(f"  trial {f.trial_number} seed {f.seed} width {f.budget.get('width')}: "
                  f"{acc}")
    return 0 if found else 1


def register(sub: Any) -> None:
    """Add ``trials`` and ``best`` to the ``nasforge`` subparsers."""
    trials = sub.add_parser("trials", help="list the trials of a study")
    trials.add_argument("file")
    fmt = trials.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true")
    fmt.add_argument("--csv", action="store_true")
    trials.set_defaults(func=cmd_trials)

    best = sub.add_parser("best", help="the best trials of a study")
    best.add_argument("file")
    best.add_argument("--k", type=int, default=5)
    best.add_argument("--json", action="store_true")
    best.add_argument("--pareto", action="store_true",
                      help="the Pareto front under the study's objectives and constraints")
    best.set_defaults(func=cmd_best)
