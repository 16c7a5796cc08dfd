"""Tabular evaluation inside an ordinary search: ``--evaluator tabular:nb201``.

A trial is answered from the NAS-Bench-201 CIFAR-10 table (``nasforge.benchmarks.nb201_table``)
instead of being trained: in the driver's own process (no fork, no pool: a lookup costs
microseconds), through the ordinary runner, strategy and study file, so a tabular study can be
read, reported, compared and resumed like any other.

What a tabular trial is: it answers by exact cell (isomorphic cells have different table
values, up to 17 pp apart: training noise), every query counts as an evaluation (as in
NAS-Bench-201's protocol; a repeated query is answered from the study's earlier trial and,
unlike in `nasforge bench`, does not count toward `max_evals`), and its one
number is a CIFAR-10 *test* accuracy. The trial stores it as ``val_acc`` (the fitness the
strategy sees, as a fraction) and again as ``metrics["test_accuracy"]`` (percent), with
``metrics["benchmark"] = "tabular:nb201"`` and ``metrics["simulated_seconds"]`` (the table's
cost model). Such a study is a benchmark run: the rule "fitness from a validation split" holds
for real data, not here. There is no final training.
"""

from __future__ import annotations

import functools
import time
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any, Callable

from nasforge.errors import ConfigError, NasforgeError
from nasforge.execution.results import EvalResult
from nasforge.execution.tasks import EvalTask

EVALUATORS: tuple[str, ...] = ("train", "tabular:nb201")
TABLE_PROBLEM: tuple[tuple[int, int, int], int] = ((3, 32, 32), 10)
"""Input shape and classes of the table's data set (CIFAR-10)."""


def check_evaluator(name: str, space_name: str) -> None:
    """``ConfigError`` unless ``name`` is a known evaluator usable with ``space_name``."""
    if name not in EVALUATORS:
        raise ConfigError(f"unknown evaluator {name!r}; known: {', '.join(EVALUATORS)}")
    if name == "tabular:nb201" and space_name != "nb201":
        raise ConfigError(f"evaluator {name} answers the nb201 space only, not {space_name!r}")


class InlineExecutor(Executor):
    """An executor that runs each call at once in the calling thread (for evaluations that
    need no isolation, such as a table lookup); ``workers`` is what the runner keeps in flight.
    An exception of the call is set on its future."""

    nasforge_kind = "inline"

    def __init__(self, workers: int = 1) -> None:
        self.nasforge_workers = max(1, int(workers))

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - the runner reads it from the future
            future.set_exception(exc)
        return future


class TabularEvaluate:
    """Answers an ``EvalTask`` of the nb201 space from the table (loaded once, when made: a
    missing or corrupt table is one line before any study is written)."""

    def __init__(self, table: Any = None) -> None:
        from nasforge.benchmarks.nb201_table import load_table

        self.table = table if table is not None else load_table()

    def __call__(self, task: EvalTask) -> EvalResult:
        return lookup(self.table, task)


def lookup(table: Any, task: EvalTask) -> EvalResult:
    """The result of ``task`` (a genome of the nb201 space) read from ``table``; a lookup
    keeps a marker file where a promotion would look for a training state."""
    from nasforge.benchmarks.nb201_table import PUBLISHED_SETUP
    from nasforge.spaces import get_space

    started = time.time()
    space = get_space(task.space_name, **task.space_settings)
    genome = space.genome_from_dict(task.genome)
    value = table.lookup(genome)
    shape, classes = PUBLISHED_SETUP["input_shape"], PUBLISHED_SETUP["num_classes"]
    width = PUBLISHED_SETUP["channels"]
    if task.extra.get("save_state"):  # a lookup has no training state; the marker lets a
        Path(task.extra["save_state"]).parent.mkdir(parents=True, exist_ok=True)
        Path(task.extra["save_state"]).write_text("tabular")  # promotion "continue" it
    return EvalResult(
        status="ok", trial_number=task.trial_number, attempt=task.attempt, worker="driver",
        val_acc=value / 100.0, params=space.count_params(genome, shape, classes, width),
        flops=None, curve=[],
        metrics={"benchmark": "tabular:nb201", "test_accuracy": value,
                 "simulated_seconds": table.cost(genome), "table_sha256": table.sha256},
        started_at=started, finished_at=time.time())


@functools.lru_cache(maxsize=1)
def _default_table() -> Any:
    from nasforge.benchmarks.nb201_table import load_table

    return load_table()


def evaluate_tabular(task: EvalTask) -> EvalResult:
    """The ``tabular`` kind's evaluate: :func:`lookup` in the default table (loaded once per
    process); a table that cannot be loaded is a failed result with its one-line reason."""
    try:
        table = _default_table()
    except NasforgeError as exc:
        return EvalResult.failure(str(exc), trial_number=task.trial_number,
                                  attempt=task.attempt, worker="driver")
    return lookup(table, task)
