"""Command-line interface: parses flags, loads configs, calls the library.

Each area's subcommands live in a ``commands`` module with ``register(subparsers)``
(``nasforge.commands.tools|search|results|train``, ``nasforge.report.commands`` and the
dashboard, study and benchmark areas'); the work itself is in the library
(``nasforge.workflow``, ``nasforge.api``, ``nasforge.study``). The names below stay
importable from here as before.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from typing import Any, Sequence

from nasforge import __version__
from nasforge.commands import results as _results
from nasforge.commands import search as _search
from nasforge.commands import tools as _tools
from nasforge.commands import train as _train
from nasforge.commands.common import BUDGET_FLAGS
from nasforge.commands.common import add_budget_flags as _add_budget_flags
from nasforge.commands.common import budget_changes as _budget_changes
from nasforge.commands.common import print_table as _print_table
from nasforge.commands.results import cmd_best, cmd_trials
from nasforge.commands.search import _search_config, cmd_search, default_storage
from nasforge.commands.tools import (
    cmd_data_check,
    cmd_presets,
    cmd_space_sample,
    cmd_space_show,
    cmd_train_net,
)
from nasforge.commands.train import cmd_train
from nasforge.errors import NasforgeError
from nasforge.report import commands as report_commands

__all__ = [
    "BUDGET_FLAGS", "build_parser", "cmd_best", "cmd_data_check", "cmd_presets", "cmd_search",
    "cmd_space_sample", "cmd_space_show", "cmd_train", "cmd_train_net", "cmd_trials",
    "default_storage", "main",
]
_UNUSED = (_add_budget_flags, _budget_changes, _print_table, _search_config)  # importable
# from here as before the split; these load the library (torch) on first use, not at import:
_LAZY = {"final_picks": ("nasforge.final_training", "final_picks"),
         "_read_genome": ("nasforge.workflow", "read_genome"),
         "_close_executor": ("nasforge.workflow", "close_executor")}


def __getattr__(name: str) -> Any:
    """``final_picks``, ``_read_genome`` and ``_close_executor`` from the library modules."""
    if name not in _LAZY:
        raise AttributeError(f"module 'nasforge.cli' has no attribute {name!r}")
    import importlib

    module, attr = _LAZY[name]
    return getattr(importlib.import_module(module), attr)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``nasforge`` command."""
    parser = argparse.ArgumentParser(prog="nasforge", description="Neural architecture search on PyTorch.")
    parser.add_argument("--version", action="version", version=f"nasforge {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for area in (_tools, _search, _results, _train):  # the order of `nasforge --help`
        area.register(sub)
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
