"""Budget ladders and Hyperband bracket sizes, shared by ``hyperband``, ``asha`` and ``bohb``.

A multi-fidelity strategy trains networks under a *ladder* of budgets that grow by a factor
``eta`` along one axis:

- ``epochs``: level k trains ``round(E * eta**(k - K))`` epochs (at least 1, strictly
  increasing), E the configured ``budget.epochs``; a promotion continues the parent trial from
  its stored state (the runner's exact continuation), every level's learning-rate schedule
  spans E epochs (``schedule_epochs``) so a continued trial follows a full one's schedule.
- ``data_fraction``: level k trains on ``F * eta**(k - K)`` of the training split, F the
  configured ``budget.data_fraction``; a promotion retrains from scratch on a larger subset,
  and the subsets are nested (``nasforge.data.datasets.stratified_order``).
- ``both``: epochs and fraction grow together, geometrically from (``min_epochs``,
  ``min_fraction``) to (E, F), so the cost (epochs x fraction) grows by at least ``eta`` per
  level; a promotion retrains from scratch.

K = ``floor(log_eta(R))`` with R = max / min budget on the axis (for ``both`` the product of
the two ratios), so there are K + 1 levels; the smallest level may be larger than the
minimum, as in hpbandster, whose budgets are ``max_budget * eta**-i``.

Bracket sizes (starting configurations of bracket s = K..0; rung i of a bracket holds
``floor(n * eta**-i)`` of them, trained at level K - s + i):

- ``paper`` (Li et al., JMLR 2018, "Hyperband", Algorithm 1):
  ``n = ceil((K + 1) / (s + 1) * eta**s)``; R = 81, eta = 3: 81/34/15/8/5.
- ``bohb`` (Falkner et al., ICML 2018, the authors' hpbandster code,
  ``HyperBand.get_next_iteration``): ``n = floor((K + 1) / (s + 1)) * eta**s``;
  R = 81, eta = 3: 81/27/9/6/5.

The default is ``paper``: the published algorithm the name refers to.
"""

from __future__ import annotations

import math
from typing import Any

from nasforge.errors import ConfigError
from nasforge.evaluation.budget import Budget

AXES: tuple[str, ...] = ("epochs", "data_fraction", "both")
FORMULAS: tuple[str, ...] = ("paper", "bohb")
DEFAULT_FORMULA = "paper"
DEFAULT_ETA = 3
"""eta = 3: the value Li et al. (2018, Section 2.6) and Falkner et al. (2018) recommend."""


def max_level(ratio: float, eta: float) -> int:
    """K = floor(log_eta(ratio)) for a max/min budget ``ratio`` >= 1 (a tolerance of 1e-9
    keeps exact powers exact: ``max_level(81, 3) == 4``)."""
    if ratio < 1 or eta <= 1:
        raise ConfigError(f"need max/min budget >= 1 and eta > 1, got {ratio!r} and {eta!r}")
    return int(math.floor(math.log(ratio) / math.log(eta) + 1e-9))


def bracket_sizes(levels: int, eta: int = DEFAULT_ETA, formula: str = DEFAULT_FORMULA
                  ) -> list[list[int]]:
    """Rung sizes of every bracket of one Hyperband iteration over ``levels`` = K + 1 budget
    levels: ``[[n_0, n_1, ..., n_s] for s = K..0]`` (see the module doc for both formulas).

    Raises:
        ConfigError: unknown formula, levels < 1 or eta < 2.
    """
    if formula not in FORMULAS:
        raise ConfigError(f"unknown bracket formula {formula!r}; known: {', '.join(FORMULAS)}")
    if levels < 1 or eta < 2:
        raise ConfigError(f"need at least one budget level and eta >= 2, got {levels}, {eta}")
    out = []
    for s in range(levels - 1, -1, -1):
        if formula == "paper":
            n = math.ceil(levels * eta ** s / (s + 1) - 1e-9)
        else:
            n = (levels // (s + 1)) * eta ** s
        out.append([max(1, n // eta ** i) for i in range(s + 1)])
    return out


def budget_ladder(budget: Budget, axis: str, eta: int, min_epochs: int = 1,
                  min_fraction: float | None = None) -> list[Budget]:
    """The budgets of levels 0..K, smallest first, the last one the configured ``budget``
    (with ``schedule_epochs`` set on the epochs axes when there is more than one level).

    ``min_fraction`` defaults to ``budget.data_fraction / eta**2`` on the fraction axes.

    Raises:
        ConfigError: unknown axis; a minimum above the configured budget or not positive.
    """
    if axis not in AXES:
        raise ConfigError(f"unknown budget axis {axis!r}; known: {', '.join(AXES)}")
    if not isinstance(eta, int) or eta < 2:
        raise ConfigError(f"eta must be an integer >= 2, got {eta!r}")
    epochs, fraction = budget.epochs, float(budget.data_fraction)
    if min_fraction is None:
        min_fraction = fraction / eta ** 2
    if not isinstance(min_epochs, int) or not 1 <= min_epochs <= epochs:
        raise ConfigError(f"min_epochs must be an integer in 1..{epochs} (budget.epochs), "
                          f"got {min_epochs!r}")
    if not 0 < float(min_fraction) <= fraction:
        raise ConfigError(f"min_fraction must be in (0, {fraction}] (budget.data_fraction), "
                          f"got {min_fraction!r}")
    e_ratio = epochs / min_epochs if axis in ("epochs", "both") else 1.0
    f_ratio = fraction / float(min_fraction) if axis in ("data_fraction", "both") else 1.0
    top = max_level(e_ratio * f_ratio, eta)
    if top == 0:
        return [budget]
    ladder: list[Budget] = []
    for k in range(top + 1):
        if axis == "epochs":
            e, f = round(epochs * float(eta) ** (k - top)), fraction
        elif axis == "data_fraction":
            e, f = epochs, fraction * float(eta) ** (k - top)
        else:  # both: each ratio shrinks geometrically over the same levels
            share = (top - k) / top
            e, f = round(epochs * (1 / e_ratio) ** share), fraction * (1 / f_ratio) ** share
        e = max(1, int(e), (ladder[-1].epochs + 1) if ladder and axis == "epochs" else 1)
        changes: dict[str, Any] = {"epochs": min(e, epochs), "data_fraction": round(f, 6)}
        if axis == "epochs":
            changes["schedule_epochs"] = budget.schedule_span
        ladder.append(budget.replace(**changes))
    last = dict(budget.to_dict(), **({"schedule_epochs": budget.schedule_span}
                                     if axis == "epochs" else {}))
    ladder[-1] = Budget.from_dict(last)
    if len({(b.epochs, b.data_fraction) for b in ladder}) < len(ladder):
        raise ConfigError(f"budget ladder on {axis}: levels collapse after rounding "
                          f"({[(b.epochs, b.data_fraction) for b in ladder]}); raise the "
                          "budget or the minimum")
    return ladder


def level_label(budget: Budget, axis: str) -> str:
    """``"3 ep"``, ``"11.1%"`` or ``"3 ep x 11.1%"``: a level's size on its axis."""
    if axis == "epochs":
        return f"{budget.epochs} ep"
    if axis == "data_fraction":
        return f"{100 * budget.data_fraction:.3g}%"
    return f"{budget.epochs} ep x {100 * budget.data_fraction:.3g}%"


def describe_brackets(sizes: list[list[int]], ladder: list[Budget], axis: str) -> list[str]:
    """One printed line per bracket: ``bracket s=4: 81 x 2 ep -> 27 x 7 ep -> ...``."""
    top = len(ladder) - 1
    lines = []
    for rungs in sizes:
        s = len(rungs) - 1
        steps = [f"{n} x {level_label(ladder[top - s + i], axis)}" for i, n in enumerate(rungs)]
        lines.append(f"bracket s={s}: " + " -> ".join(steps))
    return lines


__all__ = ["AXES", "DEFAULT_ETA", "DEFAULT_FORMULA", "FORMULAS", "bracket_sizes",
           "budget_ladder", "describe_brackets", "level_label", "max_level"]
