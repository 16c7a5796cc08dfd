"""Evaluating a network: the training budget, the trainer and measurements.

The names are re-exported lazily (PEP 562), so importing ``nasforge.evaluation.budget`` (as the
configuration code does) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from nasforge.evaluation.budget import Budget

if TYPE_CHECKING:
    from nasforge.evaluation.metrics import count_flops, count_params, evaluate_accuracy
    from nasforge.evaluation.trainer import EpochRecord, TrainResult, set_determinism, train
    from nasforge.models.baseline import baseline_cnn

__all__ = [
    "Budget",
    "EpochRecord",
    "TrainResult",
    "baseline_cnn",
    "count_flops",
    "count_params",
    "evaluate_accuracy",
    "set_determinism",
    "train",
]

_LAZY: dict[str, str] = {
    "EpochRecord": "nasforge.evaluation.trainer",
    "TrainResult": "nasforge.evaluation.trainer",
    "set_determinism": "nasforge.evaluation.trainer",
    "train": "nasforge.evaluation.trainer",
    "count_flops": "nasforge.evaluation.metrics",
    "count_params": "nasforge.evaluation.metrics",
    "evaluate_accuracy": "nasforge.evaluation.metrics",
    "baseline_cnn": "nasforge.models.baseline",
}


def __getattr__(name: str) -> Any:
    """Import a re-exported name on first use."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
