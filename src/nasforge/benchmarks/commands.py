"""The ``bench`` subcommand: ``nasforge bench random evolution --space nb201 --evaluator
tabular:nb201 --evals 200 --seeds 30``. ``register(subparsers)`` adds it to the CLI.

Also :func:`table_rows`, the table's answer for one cell, for ``nasforge space show --table``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import yaml

from nasforge.errors import ConfigError


def parse_settings(items: list[str] | None) -> dict[str, dict[str, Any]]:
    """``["evolution:population=20,sample=5", ...]`` -> ``{"evolution": {"population": 20,
    "sample": 5}}`` (values read as YAML scalars); ``ConfigError`` on a malformed item."""
    out: dict[str, dict[str, Any]] = {}
    for item in items or []:
        name, sep, rest = item.partition(":")
        if not sep or not name:
            raise ConfigError(f"--settings expects STRATEGY:key=value,..., got {item!r}")
        for pair in filter(None, rest.split(",")):
            key, eq, value = pair.partition("=")
            if not eq or not key.strip():
                raise ConfigError(f"--settings expects key=value pairs, got {pair!r} in {item!r}")
            try:
                out.setdefault(name, {})[key.strip()] = yaml.safe_load(value)
            except yaml.YAMLError:
                raise ConfigError(f"--settings: cannot read value {value!r}") from None
    return out


def table_rows(genome: Any, table: Any = None) -> list[tuple[str, Any]]:
    """Rows for ``nasforge space show --space nb201 'CELL' --table``: the exact cell's table
    accuracy, its simulated training time and its NB201 class key. Loads the table when
    ``table`` is None (``TableMissingError`` in one line when the package is missing)."""
    from nasforge.benchmarks.nb201_table import load_table, naslib_key
    from nasforge.spaces.nb201 import as_genome, nb201_key

    g = as_genome(genome)
    t = load_table() if table is None else table
    return [
        ("table test accuracy", f"{t.lookup(g):.2f}% (CIFAR-10, 200 epochs, 1 seed)"),
        ("table key (NASLib)", str(naslib_key(g))),
        ("simulated seconds", f"{t.cost(g):,.0f} (cost model)"),
        ("NB201 class", nb201_key(g)),
    ]


def cmd_bench(args: argparse.Namespace) -> int:
    """Run the strategies on the table, print the comparison, write the CSV and the plot."""
    from nasforge.benchmarks.bench import (
        check_evaluator, plot, run_strategy, summary_lines, write_csv,
    )
    from nasforge.benchmarks.nb201_table import load_table
    from nasforge.spaces import get_space
    from nasforge.strategies import available_strategies

    if not args.strategies:
        raise ConfigError(f"name at least one strategy; known: {', '.join(available_strategies())}")
    if args.evals < 1 or args.seeds < 1:
        raise ConfigError("--evals and --seeds must be >= 1")
    settings = parse_settings(args.settings)
    unknown = sorted(set(settings) - set(args.strategies))
    if unknown:
        raise ConfigError(f"--settings for strategies not run: {', '.join(unknown)}")
    space = get_space(args.space)
    check_evaluator(args.evaluator, space)
    out = Path(args.output)
    if out.exists() and not out.is_dir():  # found before the runs, not after them
        raise ConfigError(f"-o {out}: exists and is not a folder")
    start = time.perf_counter()
    table = load_table()
    seeds = list(range(args.seed, args.seed + args.seeds))
    results = [run_strategy(name, space, table, args.evals, seeds, settings.get(name))
               for name in args.strategies]
    try:
        write_csv(results, table, out / "curves.csv")
        if not args.no_plot:
            plot(results, table, out / "bench.png")
    except OSError as exc:  # a folder that cannot be written
        raise ConfigError(f"-o {out}: cannot write the results ({exc.strerror or exc})") from None
    for line in summary_lines(results, table):
        print(line)
    wrote = f"{out / 'curves.csv'}" + ("" if args.no_plot else f", {out / 'bench.png'}")
    print(f"wrote {wrote}; total {time.perf_counter() - start:.1f} s")
    return 0


def register(sub: Any) -> None:
    """Add the ``bench`` subcommand to the ``nasforge`` subparsers."""
    bench = sub.add_parser("bench", help="compare strategies on a tabular benchmark (no training)")
    bench.add_argument("strategies", nargs="+", metavar="STRATEGY",
                       help="registered strategy names, e.g. random evolution")
    bench.add_argument("--space", default="nb201")
    bench.add_argument("--evaluator", default="tabular:nb201")
    bench.add_argument("--evals", type=int, default=200, help="table queries per run")
    bench.add_argument("--seeds", type=int, default=30, help="runs per strategy")
    bench.add_argument("--seed", type=int, default=0, help="first seed")
    bench.add_argument("--settings", action="append", metavar="STRATEGY:key=value,...",
                       help="strategy settings (repeatable); default evolution:population=20,"
                            "sample=5")
    bench.add_argument("--output", "-o", default="bench-nb201",
                       help="folder for curves.csv and bench.png")
    bench.add_argument("--no-plot", action="store_true")
    bench.set_defaults(func=cmd_bench)
