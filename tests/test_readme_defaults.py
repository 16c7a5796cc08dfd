"""Every default the README quotes is the code's default (the README once said the grace
period was 60 s while the code used 30)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from nasforge.cli import build_parser
from nasforge.config import FinalConfig, RunConfig, available_presets, load_config
from nasforge.execution.executors import DEFAULT_STARTUP_TIMEOUT
from nasforge.objectives import measure_latency

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def _flat(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def test_grace_period_and_startup_timeout_defaults_match_the_code() -> None:
    text = _flat(README)
    assert f"`run.grace_period` seconds (default {RunConfig().grace_period:g})" in text
    assert f"`NASFORGE_STARTUP_TIMEOUT` seconds ({DEFAULT_STARTUP_TIMEOUT:g} by default)" in text


def test_final_pick_latency_and_dashboard_defaults_match_the_code() -> None:
    text = _flat(README)
    assert f"`final.pick: {FinalConfig().pick}` (the default)" in text
    params = inspect.signature(measure_latency).parameters
    assert (f"the median of {params['runs'].default} timed passes after "
            f"{params['warmup'].default} warm-up ones") in text
    sub = build_parser()._subparsers._group_actions[0].choices["dashboard"]  # noqa: SLF001
    poll = {a.dest: a.default for a in sub._actions}["poll"]  # noqa: SLF001
    assert f"every {poll:g} seconds (`--poll SECONDS`)" in text


def test_quick_preset_figures_the_readme_quotes() -> None:
    quick = load_config("quick")
    text = _flat(README)
    assert (f"({quick.run.max_evals} trials: {quick.budget.epochs} epochs each on a stratified "
            f"{quick.budget.data_fraction:.0%} of the training split at width "
            f"{quick.budget.width}") in text
    assert (f"(up to {quick.final.budget.epochs} epochs, Adam with cosine schedule and flips, "
            f"width {quick.final.budget.width})") in text
    assert f"`final.total_seconds: {quick.final.total_seconds:g}`" in text


def test_every_preset_is_named_in_the_readme() -> None:
    missing = [name for name in available_presets() if f"`{name}`" not in README]
    assert not missing, f"presets the README never names: {missing}"
