"""Command-line interface: parses flags, loads configs, calls the library."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Sequence

from nasforge import __version__
from nasforge.errors import ConfigError, NasforgeError
from nasforge.report import commands as report_commands

BUDGET_FLAGS: dict[str, tuple[type, str]] = {
    "epochs": (int, "training epochs"),
    "data_fraction": (float, "fraction of the training split to train on (stratified)"),
    "batch_size": (int, "mini-batch size"),
    "optimizer": (str, "sgd | adam | adamw | adamax | rmsprop"),
    "lr": (float, "learning rate (default per optimizer)"),
    "weight_decay": (float, "weight decay"),
    "schedule": (str, "none | cosine"),
    "augment": (str, "none | flip | flip+erase | cutout | flip+cutout"),
    "precision": (str, "auto | fp32 | bf16 | fp16 | tf32 (auto: the fastest, measured on the "
                       "real network; bf16 only where the hardware has it)"),
    "width": (int, "base channel count C"),
    "patience": (int, "early-stopping patience in epochs"),
    "max_steps": (int, "cap on optimizer steps per epoch"),
}


def _add_budget_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("budget")
    for name, (kind, help_text) in BUDGET_FLAGS.items():
        group.add_argument("--" + name.replace("_", "-"), dest=name, type=kind, default=None,
                           help=help_text)
    group.add_argument("--channels-last", dest="channels_last", nargs="?", const="on", default=None,
                       choices=("auto", "on", "off"),
                       help="channels-last memory format: on (the flag alone), off, or auto "
                            "(measured)")
    group.add_argument("--threads", dest="threads", default=None,
                       help="intra-op CPU threads of each run: a number or auto (measured)")


def _budget_changes(args: argparse.Namespace) -> dict[str, Any]:
    changes = {k: getattr(args, k) for k in BUDGET_FLAGS if getattr(args, k, None) is not None}
    flag = getattr(args, "channels_last", None)
    if flag is not None:
        changes["channels_last"] = {"on": True, "off": False}.get(flag, flag)
    threads = getattr(args, "threads", None)
    if threads is not None:
        if threads != "auto" and not str(threads).isdigit():
            raise ConfigError(f"--threads must be a positive number or auto, got {threads!r}")
        changes["threads"] = threads if threads == "auto" else int(threads)
    return changes


def _print_table(rows: list[tuple[str, Any]]) -> None:
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key.ljust(width)}  {value}")


# ---------------------------------------------------------------- commands
def cmd_data_check(args: argparse.Namespace) -> int:
    from nasforge.data import verify_fashion_mnist

    report = verify_fashion_mnist(args.data_dir)
    print(report)
    return 0 if report.ok else 1


def cmd_train_net(args: argparse.Namespace) -> int:
    from nasforge.data import load_dataset, split_validation
    from nasforge.evaluation import Budget, baseline_cnn, set_determinism, train

    budget = Budget(epochs=2, width=32).replace(**_budget_changes(args))
    if args.seed is not None:
        budget = budget.replace(seed=args.seed)
    dataset = load_dataset(args.dataset, data_dir=args.data_dir)
    splits = split_validation(dataset, args.val_fraction, seed=0)
    set_determinism(budget.seed)
    model = baseline_cnn(splits.input_shape, splits.num_classes, budget.width)
    if not args.json:
        print(f"training the baseline CNN on {dataset.name}: {len(splits.train_y)} train / "
              f"{len(splits.val_y)} validation images, {budget.epochs} epoch(s), "
              f"{budget.optimizer}", file=sys.stderr)
    result = train(model, splits, budget, evaluate_test=args.test,
                   on_epoch=None if args.json else (lambda r: print(
                       f"  epoch {r.epoch}: train loss {r.train_loss:.4f}  val acc "
                       f"{r.val_acc:.4f}  ({r.seconds:.1f}s)", file=sys.stderr)))
    data = result.to_dict()
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        rows = [("status", result.status)]
        if result.reason:
            rows.append(("reason", result.reason))
        rows += [
            ("val accuracy", f"{result.val_acc:.4f}" if result.val_acc is not None else "-"),
            ("val loss", f"{result.val_loss:.4f}" if result.val_loss is not None else "-"),
        ]
        if result.test_acc is not None:
            rows.append(("test accuracy", f"{result.test_acc:.4f}"))
        rows += [
            ("epochs run", result.epochs_run),
            ("parameters", f"{result.params:,}"),
            ("FLOPs", f"{result.flops:,}"),
            ("train seconds", f"{result.train_seconds:.1f}"),
            ("images/s", f"{result.images_per_second:.0f}"),
        ]
        _print_table(rows)
    return 0 if result.status == "ok" else 1


def _space_from_args(args: argparse.Namespace) -> Any:
    from nasforge.spaces import get_space

    settings: dict[str, Any] = {}
    if getattr(args, "head", None):
        settings["head"] = args.head
    if getattr(args, "merge", None):
        settings["merge_policy"] = args.merge
    return get_space(args.space, **settings)


def cmd_space_sample(args: argparse.Namespace) -> int:
    import random

    space = _space_from_args(args)
    rng = random.Random(args.seed)
    for i in range(args.n):
        genome = space.sample(rng)
        if args.json:
            print(json.dumps(space.genome_to_dict(genome)))
        else:
            print(f"{i + 1}: {space.describe(genome, args.width)}")
    return 0


def _parse_genome(space: Any, data: Any, where: str) -> Any:
    try:
        return space.genome_from_dict(data)
    except NasforgeError as exc:
        raise type(exc)(f"{where}: {exc}") from None


def _read_genome(space: Any, path: str) -> Any:
    """The one genome of a genome file (see nasforge.spaces.genome_file)."""
    from nasforge.spaces.genome_file import read_one_genome_item

    return _parse_genome(space, read_one_genome_item(path), path)


def cmd_space_show(args: argparse.Namespace) -> int:
    from nasforge.config import parse_shape
    from nasforge.spaces.genome_file import read_genome_items

    space = _space_from_args(args)
    shape = parse_shape(args.input)
    if hasattr(space, "parse") and not Path(args.file).exists() and args.file != "-":
        genomes = [space.parse(args.file)]  # a cell in its text form, e.g. an NB201 string
    else:
        items = read_genome_items(args.file)
        if not items:
            raise ConfigError(f"{args.file} holds no genome")
        genomes = [_parse_genome(space, item, args.file if len(items) == 1 else
                                 f"{args.file} (genome {i})") for i, item in enumerate(items, 1)]
    failed = 0
    for i, genome in enumerate(genomes, 1):
        if len(genomes) > 1:
            print(f"{'' if i == 1 else chr(10)}genome {i} of {len(genomes)}:")
        failed += _show_genome(space, genome, shape, args)
    return 1 if failed else 0


def _show_genome(space: Any, genome: Any, shape: tuple[int, int, int],
                 args: argparse.Namespace) -> int:
    """Print one genome's text form, parameters, FLOPs and key; 1 when it is invalid."""
    import torch

    from nasforge.evaluation.metrics import count_flops
    from nasforge.execution.runner import genome_key

    reasons = space.validate(genome)
    try:
        print(space.describe(genome, args.width, input_shape=shape))
    except TypeError:  # a space whose text form does not know input shapes
        print(space.describe(genome, args.width))
    if reasons:
        print("invalid: " + "; ".join(reasons))
        return 1
    params = space.count_params(genome, shape, args.classes, args.width)
    rows: list[tuple[str, Any]] = [("parameters", f"{params:,}")]
    if args.max_flops_params is None or params <= args.max_flops_params:
        model = space.build(genome, shape, args.classes, args.width)
        with torch.no_grad():
            rows.append(("FLOPs", f"{count_flops(model, shape):,}"))
    rows.append(("canonical key", genome_key(space, genome)))
    if getattr(args, "table", False):  # the NAS-Bench-201 table's value of this exact cell
        if space.name != "nb201":
            raise ConfigError("--table answers nb201 cells only (the NAS-Bench-201 table)")
        from nasforge.benchmarks.commands import table_rows

        rows += table_rows(genome)
    _print_table(rows)
    return 0


def _describe_budget(budget: Any) -> str:
    return (f"{budget.epochs} epoch(s) at width {budget.width}, data fraction "
            f"{budget.data_fraction}")


def cmd_presets(args: argparse.Namespace) -> int:
    from nasforge.config import available_presets, load_config, preset_text

    if args.name:
        print(preset_text(args.name), end="")
        return 0
    for name in available_presets():
        cfg = load_config(name)
        final = cfg.final
        if cfg.kind == "final-training" and final is not None:
            print(f"{name:20s} final training (no search): {final.budget.epochs} epoch(s) at "
                  f"width {final.budget.width}, {final.budget.optimizer}, {final.seeds} "
                  f"seed(s); use with `nasforge train GENOME.json|STUDY.db --preset {name}`")
            continue
        line = (f"{name:20s} search: {cfg.space.name} space, {cfg.strategy.name}, "
                f"{cfg.run.max_evals} trials, {_describe_budget(cfg.budget)}")
        if final is not None:
            line += (f"; then final training of the best {final.top}: {final.budget.epochs} "
                     f"epoch(s) at width {final.budget.width}, {final.seeds} seed(s)")
        print(line)
    return 0


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


def final_picks(storage: Any, config: Any) -> list[Any]:
    """The trials final training takes (``final.pick``, see ``nasforge.objectives``): the
    ``final.top`` best by the first objective among feasible trials, or the front's best."""
    from nasforge.objectives import feasible, of_config, pareto_trials, trial_value

    objectives = of_config(config)
    pool = [t for t in storage.best(10**9) if feasible(t, config.constraints)]
    if config.final.pick == "front":
        pool = pareto_trials(pool, objectives, config.constraints)
    elif objectives[0].name != "val_acc" or objectives[0].direction != "max":
        sign = -1.0 if objectives[0].direction == "max" else 1.0
        pool = sorted((t for t in pool if trial_value(t, objectives[0].name) is not None),
                      key=lambda t: (sign * trial_value(t, objectives[0].name), t.number))
    return pool[:config.final.top]


def _print_hypervolume(search: Any, config: Any) -> None:
    """A study of two or more objectives: its scaled hypervolume (``nasforge.hypervolume``)."""
    if len(config.objectives) < 2:
        return
    if len(config.objectives) > 2:
        print(f"hypervolume: 2-D only; this study has {len(config.objectives)} objectives")
        return
    from nasforge.hypervolume import space_param_range, study_hypervolume

    hv = study_hypervolume(search.storage.trials(), config.objectives, config.constraints,
                           space_param_range(search.space, search.problem.input_shape,
                                             search.problem.num_classes, config.budget.width))
    print(hv.line(config.objectives) if hv is not None else
          "hypervolume: none (needs val_acc and one size objective with counted trials)")


def cmd_search(args: argparse.Namespace) -> int:
    from nasforge.api import Search, data_dict, train_final
    from nasforge.execution.executors import make_executor
    from nasforge.execution.runner import Reporter, worker_slots

    config = _search_config(args)
    storage = Path(args.storage or default_storage(args.config, config))
    reporter = Reporter(enabled=not args.quiet)
    started = time.time()
    search = Search(config, storage, resume=args.resume, force=args.force,
                    init_from=args.init_from, reporter=reporter)
    try:
        done_before = search.storage.count_finished()
        try:
            if search.tabular:
                from nasforge.execution.tabular import InlineExecutor

                executor = InlineExecutor(config.run.workers)
            else:
                executor = make_executor(config.run)
        except NasforgeError as exc:
            if search.discard_if_empty():
                raise type(exc)(f"{exc} (the new, empty study {storage} was removed)") from None
            raise
        reporter.message(
            f"study {storage} ({'resumed with ' + str(done_before) + ' finished trials' if args.resume else 'new'}): "
            f"{config.space.name} space, {config.strategy.name}, {config.run.max_evals} trials, "
            f"{worker_slots(executor, config.run.workers)} worker(s) on "
            f"{getattr(executor, 'nasforge_kind', config.run.executor)}"
        )
        if config.run.time_limit is not None:  # the limit covers the whole command
            search.config = dataclasses.replace(config, run=dataclasses.replace(
                config.run, time_limit=max(1.0, config.run.time_limit - (time.time() - started))))
        stopped = True  # until the search and its final step end normally
        try:
            summary = search.run(executor)
            stopped = False
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
                picks = final_picks(search.storage, config)
                best, meets = (picks[0], " (best meeting the constraints)") if picks else (
                    best, " (no trial meets the constraints)")
            genome = search.space.genome_from_dict(best.genome)
            print(f"best: trial {best.number}, val acc {best.val_acc:.4f}, {best.params:,} params"
                  f"{meets}")
            print(f"      {search.space.describe(genome, config.budget.width)}")
            _print_hypervolume(search, config)
            if search.tabular:
                metrics = best.metrics
                print(f"tabular benchmark run: the best cell's table value is "
                      f"{metrics.get('test_accuracy')} (CIFAR-10 test accuracy, percent; "
                      f"{metrics.get('simulated_seconds', 0):.0f} simulated seconds); no final "
                      "training")
            elif config.final is not None and not args.no_final and summary.stop_reason != "interrupted":
                entries = [(t.number, search.space.genome_from_dict(t.genome))
                           for t in final_picks(search.storage, config)]
                reporter.message(
                    f"final training of the best {len(entries)} on the whole training set: "
                    f"{config.final.budget.epochs} epoch(s) at width {config.final.budget.width}, "
                    f"{config.final.seeds} seed(s)"
                )
                # a fresh pool sized to the final runs, so a single run gets every core
                executor.shutdown(wait=True, cancel_futures=True)
                final_workers = max(1, min(config.run.workers, len(entries) * config.final.seeds))
                executor = make_executor(dataclasses.replace(config.run, workers=final_workers))
                elapsed = time.time() - started
                caps = [c for c in (config.final.max_seconds,
                                    None if config.final.total_seconds is None
                                    else config.final.total_seconds - elapsed) if c is not None]
                results = train_final(
                    search.storage, search.space, entries, config.final.budget,
                    config.final.seeds, data_dict(config), executor, config.seed, reporter,
                    workers=final_workers, max_seconds=max(1.0, min(caps)) if caps else None,
                    nproc=config.run.devices_per_trial,
                    seconds_left=(None if config.run.time_limit is None
                                  else config.run.time_limit - (time.time() - started)),
                    grace_period=config.run.grace_period)
                if results is None:
                    print("final training left for --resume (it does not fit in the time limit)")
                    results = []
                for res in results:
                    if res.interrupted:
                        stopped = True
                        print(f"final: trial {res.trial_number}: seed(s) "
                              f"{', '.join(map(str, res.interrupted))} interrupted; "
                              "continue with --resume")
                    if res.mean is not None:
                        print(f"final: trial {res.trial_number}: test acc {res.mean:.4f} "
                              f"± {res.std:.4f} over {len(res.test_accs)} seed(s), "
                              f"{res.params:,} params at width {config.final.budget.width}")
                    elif not res.interrupted:
                        print(f"final: trial {res.trial_number} failed: {res.failures}")
            stopped = stopped or summary.stop_reason == "interrupted"
        finally:
            _close_executor(executor, stopped)
        print(f"study stored in {storage}; total {time.time() - started:.0f}s")
    finally:
        search.close()
    return 0


def _trial_rows(path: str) -> list[dict[str, Any]]:
    from nasforge.api import read_trials

    rows = []
    for t in read_trials(path):
        duration = (t.finished_at - t.started_at) if t.started_at and t.finished_at else None
        rows.append({
            "number": t.number, "status": t.status, "val_acc": t.val_acc, "params": t.params,
            "flops": t.flops, "seconds": round(duration, 2) if duration else None,
            "worker": t.worker, "attempts": t.attempts, "error": t.error,
            "genome_key": t.genome_key,
        })
    return rows


def cmd_trials(args: argparse.Namespace) -> int:
    rows = _trial_rows(args.file)
    if args.json:
        from nasforge.api import read_trials

        print(json.dumps([t.to_dict() for t in read_trials(args.file)], indent=1))
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
    from nasforge.spaces import get_space
    from nasforge.storage import StudyStorage

    with StudyStorage.open(args.file) as storage:
        study = storage.study()
        space_cfg = study["config"]["space"]
        space = get_space(space_cfg["name"], **space_cfg.get("settings", {}))
        width = study["config"]["budget"]["width"]
        best = storage.best(args.k)
        if args.pareto:  # the front under the study's objectives and constraints
            from nasforge.config import config_from_dict
            from nasforge.objectives import of_config, pareto_trials, trial_values

            config = config_from_dict(study["config"], args.file)
            objectives = of_config(config)
            best = pareto_trials(storage.best(10**9), objectives, config.constraints)
            print(f"Pareto front: {len(best)} trial(s) under "
                  + ", ".join(f"{o.name} ({o.direction})" for o in objectives)
                  + (f"; constraints {', '.join(map(str, config.constraints))}"
                     if config.constraints else ""))
        finals = storage.final_runs()
        found = bool(best) or any(f.status == "ok" for f in finals)
        if not best:  # one line, whatever the output format; non-zero when nothing succeeded
            statuses = [t.status for t in storage.trials()]
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
            print(f"    {space.describe(space.genome_from_dict(t.genome), width)}")
        if finals:
            print("final trainings:")
            for f in finals:
                acc = f"test acc {f.test_acc:.4f}" if f.test_acc is not None else f.status
                if f.status == "interrupted":
                    acc += " (Ctrl-C; --resume trains it)"
                print(f"  trial {f.trial_number} seed {f.seed} width {f.budget.get('width')}: "
                      f"{acc}")
    return 0 if found else 1


def cmd_train(args: argparse.Namespace) -> int:
    from nasforge.api import data_dict, train_final
    from nasforge.config import DataConfig, SearchConfig, load_config
    from nasforge.evaluation.budget import Budget
    from nasforge.execution.executors import make_executor
    from nasforge.execution.runner import Reporter
    from nasforge.spaces import get_space
    from nasforge.storage import StudyStorage

    for flag in ("seeds", "top", "workers"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise ConfigError(f"--{flag} must be at least 1, got {value}")
    source = Path(args.source)
    preset = load_config(args.preset) if args.preset else None
    if source.suffix == ".json":
        storage_path = Path(args.storage or f"studies/train-{source.stem}.db")
        storage = StudyStorage.open(storage_path, write=True) if storage_path.exists() else None
        if preset is not None:
            config = preset
        elif storage is not None:  # an existing study keeps its data set, space and budget
            from nasforge.config import config_from_dict

            config = config_from_dict(storage.study()["config"], str(storage_path))
        else:
            config = SearchConfig(name=f"train-{source.stem}")
        if args.data_dir:
            config = dataclasses.replace(config, data=dataclasses.replace(config.data, data_dir=args.data_dir))
        configured = preset is not None or storage is not None
        space_settings: dict[str, Any] = dict(config.space.settings) if configured else {}
        if args.head:
            space_settings["head"] = args.head
        space = get_space(args.space or (config.space.name if configured else "global"), **space_settings)
        genome = _read_genome(space, args.source)
        entries = [(None, genome)]
        if storage is None:
            from nasforge.api import provenance

            storage = StudyStorage.create(storage_path, name=config.name, config=config.to_dict(),
                                          identity=json.loads(json.dumps(config.identity(), default=list)),
                                          identity_hash=config.identity_hash(),
                                          provenance=provenance())
    else:
        storage = StudyStorage.open(source, write=True)
        study = storage.study()
        from nasforge.config import config_from_dict

        config = config_from_dict(study["config"], str(source))
        if args.data_dir:
            config = dataclasses.replace(config, data=dataclasses.replace(config.data, data_dir=args.data_dir))
        space = get_space(config.space.name, **config.space.settings)
        if args.trial is not None:
            trials = [storage.trial(args.trial)]
        else:
            trials = storage.best(args.top or 1)
        if not trials:
            raise NasforgeError(f"{source} has no successful trial to train")
        entries = [(t.number, space.genome_from_dict(t.genome)) for t in trials]
    base = preset.final.budget if preset is not None and preset.final is not None else (
        config.final.budget if config.final is not None else Budget(epochs=5, width=config.budget.width))
    budget = base.replace(**_budget_changes(args))
    final_cfg = preset.final if preset is not None else config.final
    seeds = args.seeds or (final_cfg.seeds if final_cfg is not None else 1)
    nproc = args.nproc or config.run.devices_per_trial
    if nproc < 1:
        raise ConfigError(f"--nproc must be at least 1, got {nproc}")
    run_cfg = dataclasses.replace(config.run, workers=args.workers or min(seeds * len(entries), config.run.workers),
                                  devices_per_trial=nproc)
    executor = make_executor(run_cfg)
    reporter = Reporter()
    results: list[Any] | None = None
    try:
        reporter.message(f"training {len(entries)} genome(s) x {seeds} seed(s): {budget.epochs} "
                         f"epoch(s), {budget.optimizer}, width {budget.width}, on the whole training set")
        results = train_final(storage, space, entries, budget, seeds, data_dict(config), executor,
                              config.seed, reporter, retrain=args.retrain,
                              workers=run_cfg.workers, nproc=nproc,
                              grace_period=config.run.grace_period) or []
    finally:
        _close_executor(executor, results is None or any(r.interrupted for r in results))
        storage.close()
    for res in results:
        label = f"trial {res.trial_number}" if res.trial_number is not None else res.description
        if res.interrupted:
            print(f"{label}: seed(s) {', '.join(map(str, res.interrupted))} interrupted; run the "
                  "same command again to finish them")
        if res.mean is not None:
            print(f"{label}: test acc {res.mean:.4f} ± {res.std:.4f} over {len(res.test_accs)} seed(s) "
                  f"{[round(a, 4) for a in res.test_accs]}, {res.params:,} params at width {budget.width}")
        else:
            print(f"{label}: failed: {res.failures}")
    if any(r.interrupted for r in results):
        return 130
    return 0 if all(r.mean is not None for r in results) else 1


def _close_executor(executor: Any, stopped: bool) -> None:
    """Shut an executor down: waiting for it after a normal end, killing what it started
    after a stop or an error (a wait would wait for trainings that go on)."""
    from nasforge.execution.executors import shutdown_now

    if stopped:
        shutdown_now(executor)
    else:
        executor.shutdown(wait=True, cancel_futures=True)


# ------------------------------------------------------------------ parser
def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``nasforge`` command."""
    parser = argparse.ArgumentParser(prog="nasforge", description="Neural architecture search on PyTorch.")
    parser.add_argument("--version", action="version", version=f"nasforge {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    data = sub.add_parser("data", help="data set tools")
    data_sub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    check = data_sub.add_parser("check", help="verify Fashion-MNIST and print shapes, class counts, checksums")
    check.add_argument("--data-dir", default=None)
    check.set_defaults(func=cmd_data_check)

    tn = sub.add_parser("train-net", help="train the built-in baseline CNN under a budget")
    tn.add_argument("--dataset", default="fashion-mnist", help="fashion-mnist | synthetic | FILE.npz")
    tn.add_argument("--data-dir", default=None)
    tn.add_argument("--val-fraction", type=float, default=0.1)
    tn.add_argument("--seed", type=int, default=None)
    tn.add_argument("--test", action="store_true", help="also measure test accuracy")
    tn.add_argument("--json", action="store_true")
    _add_budget_flags(tn)
    tn.set_defaults(func=cmd_train_net)

    space = sub.add_parser("space", help="search-space tools")
    space_sub = space.add_subparsers(dest="space_command", metavar="SUBCOMMAND")
    sample = space_sub.add_parser("sample", help="print random genomes")
    sample.add_argument("--space", default="global")
    sample.add_argument("--n", type=int, default=5)
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--width", type=int, default=None)
    sample.add_argument("--json", action="store_true",
                        help="one genome per line as JSON: a genome file for `space show`, "
                             "`train`, `draw` and `search --init-from`")
    sample.set_defaults(func=cmd_space_sample)
    show = space_sub.add_parser(
        "show", help="print a genome, its parameter count and FLOPs",
        description="Print each genome of a genome file with its parameter count and FLOPs. "
                    "A genome file (GENOME.json) is what `nasforge space sample --json` "
                    "writes (one genome per line; `--n 1 > GENOME.json` for one), a single "
                    "JSON object or list, or a trial from `nasforge trials --json`.")
    show.add_argument("file", help="GENOME.json (or - for standard input), or a cell's text "
                                   "form for spaces that have one (nb201: its string)")
    show.add_argument("--table", action="store_true",
                      help="nb201: also print the cell's NAS-Bench-201 CIFAR-10 table value")
    show.add_argument("--space", default="global")
    show.add_argument("--width", type=int, default=16)
    show.add_argument("--input", default="1x28x28")
    show.add_argument("--classes", type=int, default=10)
    show.add_argument("--head", default=None, help="gap | remnet")
    show.add_argument("--merge", default=None, help="merge policy name")
    show.add_argument("--max-flops-params", type=int, default=50_000_000, help=argparse.SUPPRESS)
    show.set_defaults(func=cmd_space_show)

    presets = sub.add_parser("presets", help="list presets, or show one")
    presets.add_argument("action", nargs="?", choices=["show"])
    presets.add_argument("name", nargs="?")
    presets.set_defaults(func=cmd_presets)

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
    _add_budget_flags(tr)
    tr.set_defaults(func=cmd_train)

    report_commands.register(sub)
    __import__("nasforge.dashboard.commands").dashboard.commands.register(sub)
    from nasforge.studies import commands as study_commands

    study_commands.register(sub)
    from nasforge.benchmarks import commands as bench_commands

    bench_commands.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; user errors are one line on stderr and a non-zero exit."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    import signal

    from nasforge.execution.stops import interrupt_now

    previous = None
    try:  # Ctrl-C outside the phases that let running work finish: stop at once
        previous = signal.signal(signal.SIGINT, interrupt_now)
    except ValueError:  # not the main thread (main() called from a thread)
        pass
    try:
        return int(args.func(args) or 0)
    except NasforgeError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"nasforge: error: {exc}", file=sys.stderr)
        from nasforge.execution.executors import ExecutorStartError

        if isinstance(exc, ExecutorStartError):
            # a hung MPI spawn or Dask connection can leave threads that block a normal exit
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(2)
        return 2
    except KeyboardInterrupt:
        print("nasforge: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:  # an unexpected bug: one line, traceback with --debug
        if args.debug:
            traceback.print_exc()
        print(f"nasforge: internal error: {type(exc).__name__}: {exc} (run with --debug for the "
              "traceback)", file=sys.stderr)
        return 3
    finally:  # main() called in-process (tests, scripts) leaves the caller's handler as it was
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
