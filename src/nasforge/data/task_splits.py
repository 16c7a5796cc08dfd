"""The splits a task's data config describes, loaded once per process.

An evaluation task (``nasforge.execution.tasks.EvalTask``) carries its data as a JSON-able
config dict (``SearchConfig.data.task_dict()``: data set name, data directory, validation
fraction, split seed, normalisation). :func:`load_splits` turns it into
:class:`~nasforge.data.DataSplits` and keeps the last two in a per-process cache, so a worker
that evaluates many tasks of one study reads its data once (and the children it forks share
it copy-on-write). It lives in the data layer so strategies (the pre-filter), reports and
studies can load a study's data without importing the execution layer.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

__all__ = ["final_splits", "load_splits"]


@functools.lru_cache(maxsize=2)
def _cached_splits(data_items: tuple[tuple[str, Any], ...]) -> Any:
    from nasforge.data.datasets import load_dataset, split_validation

    data = dict(data_items)
    dataset = load_dataset(data["dataset"], data_dir=data.get("data_dir"))
    splits = split_validation(dataset, data["val_fraction"], data["split_seed"])
    normalize = data.get("normalize")
    if normalize:
        splits = splits.with_normalization(tuple(normalize[0]), tuple(normalize[1]))
    return splits


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def load_splits(data: dict[str, Any]) -> Any:
    """The train/validation/test splits (:class:`~nasforge.data.DataSplits`) described by a
    data config dict (keys ``dataset``, ``val_fraction``, ``split_seed``, optional
    ``data_dir`` and ``normalize``), cached per process.

    Raises:
        DataError: the data set cannot be found or read (from ``load_dataset``).
    """
    items = tuple(sorted((k, _freeze(v)) for k, v in data.items()))
    return _cached_splits(items)


def final_splits(splits: Any) -> Any:
    """Splits for final training: train on train+validation (the whole training set) and
    measure on the test set. Nothing is selected on those per-epoch test figures."""
    import torch

    return dataclasses.replace(
        splits,
        train_x=torch.cat([splits.train_x, splits.val_x]),
        train_y=torch.cat([splits.train_y, splits.val_y]),
        val_x=splits.test_x,
        val_y=splits.test_y,
    )
