"""Pruners: stop a running trial early from its live intermediate values (as Optuna's pruners).

A pruner sits beside the runner, not inside a strategy: while a trial trains, its worker appends
each epoch's record to a live file in the study's folder (``<study>_files/live/trial_N.jsonl``);
the runner reads it about twice a second and asks the pruner; a True answer writes a stop file
(``trial_N.stop``) that the worker reads at the end of its next epoch and ends the training with
status ``pruned``, curve kept. The stored trial is ``pruned`` and the strategy is told so.

The live channel needs the worker to see the study's folder: always with the local executor,
and with MPI or Dask on one machine or a shared file system. Elsewhere a trial simply runs to
its end.

Rules (the value is the validation accuracy after an epoch, larger is better):

- ``median`` (Optuna's ``MedianPruner``): after ``warmup_epochs``, prune when the value is below
  the median of the values other trials had at the same epoch, once at least ``min_trials``
  trials reported that epoch.
- ``halving`` (successive-halving rule, as Optuna's ``SuccessiveHalvingPruner``; Jamieson &
  Talwalkar 2016): rungs at epochs ``min_epochs * eta**k``; at a rung, prune unless the value
  is in the top ``1/eta`` of the values trials had there (with at least ``eta`` of them).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from nasforge.errors import ConfigError


class Pruner(Protocol):
    """Decides from a trial's value at ``epoch`` and the values other trials had at each
    epoch (``history[epoch]``: their values there) whether to stop it."""

    def should_prune(self, epoch: int, value: float, history: Mapping[int, Sequence[float]]) -> bool:
        """True to stop the trial."""


class MedianPruner:
    """Below the median of the other trials at the same epoch (see the module docstring)."""

    def __init__(self, warmup_epochs: int = 1, min_trials: int = 5) -> None:
        if warmup_epochs < 0 or min_trials < 1:
            raise ConfigError("median pruner: warmup_epochs must be >= 0 and min_trials >= 1")
        self.warmup_epochs = warmup_epochs
        self.min_trials = min_trials

    def should_prune(self, epoch: int, value: float, history: Mapping[int, Sequence[float]]) -> bool:
        others = history.get(epoch, ())
        if epoch <= self.warmup_epochs or len(others) < self.min_trials:
            return False
        return value < statistics.median(others)


class HalvingPruner:
    """Successive-halving rule at rungs ``min_epochs * eta**k`` (see the module docstring)."""

    def __init__(self, min_epochs: int = 1, eta: int = 3) -> None:
        if min_epochs < 1 or eta < 2:
            raise ConfigError("halving pruner: min_epochs must be >= 1 and eta >= 2")
        self.min_epochs = min_epochs
        self.eta = eta

    def is_rung(self, epoch: int) -> bool:
        """Whether ``epoch`` is a rung."""
        rung = self.min_epochs
        while rung < epoch:
            rung *= self.eta
        return rung == epoch

    def should_prune(self, epoch: int, value: float, history: Mapping[int, Sequence[float]]) -> bool:
        others = list(history.get(epoch, ()))
        if not self.is_rung(epoch) or len(others) < self.eta:
            return False
        ranked = sorted(others + [value], reverse=True)
        keep = max(1, len(ranked) // self.eta)
        return value < ranked[keep - 1]


PRUNERS: dict[str, type] = {"median": MedianPruner, "halving": HalvingPruner}


def make_pruner(spec: str | Mapping[str, Any] | None) -> Pruner | None:
    """A pruner from a config value: None, a name (``median``, ``halving``) or a mapping
    ``{name: ..., settings...}``; ``ConfigError`` naming the known ones otherwise."""
    if spec is None or spec == "none":
        return None
    settings: dict[str, Any] = {}
    if isinstance(spec, Mapping):
        settings = dict(spec)
        spec = str(settings.pop("name", ""))
    if spec not in PRUNERS:
        raise ConfigError(f"unknown pruner {spec!r}; known: none, {', '.join(PRUNERS)}")
    try:
        return PRUNERS[spec](**settings)
    except TypeError as exc:
        raise ConfigError(f"bad settings for pruner {spec!r}: {exc}") from None
