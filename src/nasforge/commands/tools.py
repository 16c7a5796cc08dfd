"""CLI tools that need no study: ``data check``, ``train-net``, ``space sample|show`` and
``presets``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from nasforge.commands.common import add_budget_flags, budget_changes, print_table
from nasforge.errors import ConfigError, NasforgeError


def cmd_data_check(args: argparse.Namespace) -> int:
    from nasforge.data import verify_fashion_mnist

    report = verify_fashion_mnist(args.data_dir)
    print(report)
    return 0 if report.ok else 1


def cmd_train_net(args: argparse.Namespace) -> int:
    from nasforge.data import load_dataset, split_validation
    from nasforge.evaluation import Budget, baseline_cnn, set_determinism, train

    budget = Budget(epochs=2, width=32).replace(**budget_changes(args))
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
        print_table(rows)
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
    print_table(rows)
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


def register(sub: Any) -> None:
    """Add ``data``, ``train-net``, ``space`` and ``presets`` to the ``nasforge`` subparsers."""
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
    add_budget_flags(tn)
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
