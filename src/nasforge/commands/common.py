"""Helpers shared by the CLI's command modules: the budget flags and a two-column table."""

from __future__ import annotations

import argparse
from typing import Any

from nasforge.errors import ConfigError

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


def add_budget_flags(parser: argparse.ArgumentParser) -> Any:
    """The ``budget`` flag group (one flag per ``BUDGET_FLAGS`` entry, ``--channels-last``,
    ``--threads``), every flag defaulting to None (not given); returns the group, so a command
    can add flags of its own to it."""
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
    group.add_argument("--validate-every", dest="validate_every", default=None,
                       help="validate after every K-th epoch and the last, or 'last' (after "
                            "the last only); default every epoch")
    return group


def budget_changes(args: argparse.Namespace) -> dict[str, Any]:
    """The budget fields the flags set, for ``Budget.replace``; ConfigError for a bad
    ``--threads``."""
    changes = {k: getattr(args, k) for k in BUDGET_FLAGS if getattr(args, k, None) is not None}
    flag = getattr(args, "channels_last", None)
    if flag is not None:
        changes["channels_last"] = {"on": True, "off": False}.get(flag, flag)
    threads = getattr(args, "threads", None)
    if threads is not None:
        if threads != "auto" and not str(threads).isdigit():
            raise ConfigError(f"--threads must be a positive number or auto, got {threads!r}")
        changes["threads"] = threads if threads == "auto" else int(threads)
    every = getattr(args, "validate_every", None)
    if every is not None:
        if every != "last" and not str(every).isdigit():
            raise ConfigError(f"--validate-every must be a positive number or last, got "
                              f"{every!r}")
        changes["validate_every"] = every if every == "last" else int(every)
    return changes


def print_table(rows: list[tuple[str, Any]]) -> None:
    """Print ``(key, value)`` rows with the keys padded to one width."""
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key.ljust(width)}  {value}")
