"""Gradient-based one-shot strategies: ``darts`` (first order), ``darts2`` (second order,
unrolled) and ``gdas`` (the collapse-resistant variant), a thin facade over
:mod:`nasforge.oneshot` (NNI v3's split: the search itself is a kind of work).

**What a strategy asks.** A ``supernet`` candidate: one isolated trial that trains a supernet
of the space and ends with the genome read off its architecture parameters (stored as the
trial's genome, with the per-epoch history of the parameters, the skip connections and the
supernet's accuracy). While it runs, the trial holds a stand-in genome drawn from the
search's seed (``Candidate.kind``). When told the found cell, the strategy asks it next as an
ordinary ``train`` trial under the study's budget (``train_found``), so it is ranked on the
validation split like any other network; then it starts another supernet search with the next
seed, as DARTS' protocol does (Liu et al. 2019, Sec. 3.2: four searches with different seeds,
the best cell chosen by a short training). ``run.max_evals`` bounds the total; the preset
``darts-cpu`` runs one search and hands its cell to the final training.

**Why GDAS as the variant.** DARTS collapses to parameter-free operations on NAS-Bench-201
(54.30% CIFAR-10, an all-``skip_connect`` cell; Dong & Yang, ICLR 2020, Table 5), where GDAS
(Dong & Yang, CVPR 2019) reaches 93.61% and DrNAS (Chen et al., ICLR 2021) 94.36%. DrNAS
is the more accurate, but it still computes every operation on every edge, as DARTS does;
GDAS samples one operation per edge per step and computes only that one, about a fifth of
DARTS' work per step on NB201 (measured here: 0.05 s against 0.21 s for a forward and backward
of 16 images, C=8, one cell a stage), which decides it on a 2-core CPU. Its sampling also
keeps parameter-free ops from winning merely by being trained in every step. DARTS+' early
stop on skip connections (``max_skips``, see :mod:`nasforge.oneshot.search`) is offered for
all three.

Settings: ``cells`` (supernet cells: per stage for nb201, default the space's N, published
5; in all for darts, default 8 as published, or the space's cell count where smaller), ``epochs``, ``batch_size``, ``width``, ``data_fraction``, ``max_steps`` (the
supernet's budget where it differs from the study's; published search: 50 epochs, batch 64,
C=16), ``max_skips``, ``exclude_none`` (nb201 discretisation), ``train_found`` (default
true), ``supernet`` (any other :class:`~nasforge.oneshot.search.SupernetSettings` field, e.g.
learning rates).
"""

from __future__ import annotations

import random
from typing import Any, ClassVar, Mapping

from nasforge.errors import ConfigError
from nasforge.evaluation.budget import Budget
from nasforge.oneshot.search import settings_from
from nasforge.oneshot.supernet import MIN_DARTS_CELLS
from nasforge.spaces.base import SearchSpace
from nasforge.strategies.base import Candidate, Observation, Problem, Strategy, register_strategy

PUBLISHED_CELLS = {"nb201": 5, "darts": 8}
"""Supernet cells as published: N=5 per stage (NAS-Bench-201's DARTS/GDAS runs), 8 in all
(DARTS, Sec. 3.1.1)."""

def _default_cells(space: SearchSpace) -> int:
    """Supernet cells where the settings name none: the nb201 space's N; for darts the
    published search's 8, or the space's cell count where smaller."""
    cells = getattr(space, "cells", None)
    if space.name == "nb201" and isinstance(cells, int):
        return cells
    published = PUBLISHED_CELLS.get(space.name, 1)
    return min(published, cells) if isinstance(cells, int) else published


_BUDGET_KEYS = ("epochs", "batch_size", "width", "data_fraction", "max_steps")


class OneShotStrategy(Strategy):
    """Base of the one-shot strategies; subclasses set ``method`` and ``order``."""

    requires: ClassVar[frozenset[str]] = frozenset({"supernet"})
    method: ClassVar[str] = "softmax"
    order: ClassVar[int] = 1

    def __init__(self, space: SearchSpace, budget: Budget, problem: Problem, seed: int,
                 cells: int | None = None, epochs: int | None = None,
                 batch_size: int | None = None, width: int | None = None,
                 data_fraction: float | None = None, max_steps: int | None = None,
                 max_skips: int | None = None, exclude_none: bool = False,
                 train_found: bool = True, supernet: Mapping[str, Any] | None = None) -> None:
        super().__init__(space, budget, problem, seed)
        overrides = {k: v for k, v in zip(_BUDGET_KEYS, (epochs, batch_size, width,
                                                          data_fraction, max_steps))
                     if v is not None}
        self.supernet_budget = budget.replace(**overrides)  # Budget checks the values
        extra = dict(supernet or {})
        for key in ("method", "order", "cells", "max_skips", "exclude_none"):
            if key in extra:
                raise ConfigError(f"strategy {self.name!r}: set {key!r} as a strategy setting, "
                                  "not inside 'supernet'")
        supernet_cells = cells if cells is not None else _default_cells(space)
        if space.name == "darts" and supernet_cells < MIN_DARTS_CELLS:
            raise ConfigError(f"strategy {self.name!r}: a DARTS supernet needs at least "
                              f"{MIN_DARTS_CELLS} cells (reductions at 1/3 and 2/3), got "
                              f"{supernet_cells}; set strategy.settings.cells")
        settings = settings_from({
            **extra, "method": self.method, "order": self.order,
            "cells": supernet_cells,
            "max_skips": max_skips, "exclude_none": bool(exclude_none),
        })
        self.settings = settings.to_dict()
        self.train_found = bool(train_found)
        self.seed = seed
        self.searches = 0  # supernet searches asked so far
        self.found: list[Any] = []  # cells found, not yet asked as train trials

    def ask(self) -> Candidate:
        """The next found cell as a ``train`` candidate, else a new ``supernet`` search."""
        if self.found:
            return Candidate(self.found.pop(0), self.budget)
        self.searches += 1
        stand_in = self.space.sample(random.Random(f"{self.seed}:{self.searches}"))
        work = {**self.settings, "repeat": self.searches}
        return Candidate(stand_in, self.supernet_budget, kind="supernet", work=work)

    def tell(self, observation: Observation) -> None:
        """A finished supernet trial's cell is queued for training (``train_found``)."""
        if (observation.metrics.get("kind") == "supernet" and observation.status == "ok"
                and self.train_found):
            self.found.append(observation.genome)

    def state_dict(self) -> dict[str, Any]:
        """The seed, the search count and the cells waiting to be asked."""
        return {**super().state_dict(), "seed": self.seed, "searches": self.searches,
                "found": [self.space.genome_to_dict(g) for g in self.found]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s state."""
        super().load_state_dict(state)
        self.seed = int(state.get("seed", self.seed))
        self.searches = int(state.get("searches", 0))
        self.found = [self.space.genome_from_dict(g) for g in state.get("found", [])]


@register_strategy("darts")
class DartsStrategy(OneShotStrategy):
    """DARTS, first order (Liu et al. 2019; xi = 0 in eq. 6)."""

    method = "softmax"
    order = 1


@register_strategy("darts2")
class Darts2Strategy(OneShotStrategy):
    """DARTS, second order: the unrolled step with the finite-difference Hessian-vector
    product (Liu et al. 2019, Sec. 2.3, eq. 7-8)."""

    method = "softmax"
    order = 2


@register_strategy("gdas")
class GdasStrategy(OneShotStrategy):
    """GDAS: one operation per edge sampled by a hard Gumbel-softmax (Dong & Yang 2019)."""

    method = "gumbel"
    order = 1
