"""Hypervolume of a multi-objective study, on scaled objectives, and how it grew.

Scaling (issue 19): ``val_acc`` becomes ``1 - accuracy`` (a fraction); ``params``,
``flops`` and ``latency_ms`` become ``log10`` of the value normalised to a range, so both
objectives are minimised and lie in [0, 1]. The range of ``params`` is the space's
(:func:`space_param_range`): on the global space from the initial genome (the head alone)
to ``max_params``; on a cell space whose steps all offer the same choices (nb201) from the
smallest to the largest all-one-operation cell (exact for nb201, whose parameters add up
over edges). A side the space does not give, and the ranges of ``flops`` and
``latency_ms``, are the study's observed minimum and maximum, and a range is widened to
every observed value (the remnet head alone is larger than many networks that shrink the
map before it); :attr:`StudyHypervolume.ranges_text` says which. Reference point: 1.0 for
``1 - accuracy`` and 1.1 for a scaled size (10% beyond the largest, so the largest front
member counts), as in ``benchmarks/strategies.py``. Exact for two objectives
(:func:`~nasforge.strategies.pareto.hypervolume_2d`, a sort and a sum); a study with three
or more objectives gets no hypervolume (``None``) and the caller says it is 2-D only.

The points are the study's ok trials that meet every constraint and have every objective
value (a network trained at several budgets counts at each; dominated points add nothing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

from nasforge.objectives import Constraint, Objective, feasible, trial_values
from nasforge.strategies.pareto import hypervolume_2d, non_dominated_sort

REFERENCE_ACCURACY = 1.0
"""Reference value of ``1 - accuracy`` (the worst possible)."""
REFERENCE_SIZE = 1.1
"""Reference value of a normalised log10 size (10% beyond the largest)."""


def space_param_range(space: Any, input_shape: tuple[int, int, int], num_classes: int,
                      width: int) -> tuple[float | None, float | None]:
    """The smallest and largest parameter count of the space's networks at ``width`` where
    the space tells them (see the module doc); None for a side it does not."""
    from nasforge.spaces.global_dag import GlobalSpace

    if isinstance(space, GlobalSpace):
        low = float(space.count_params(space.initial(), input_shape, num_classes, width))
        return low, None if space.max_params is None else float(space.max_params)
    if "decisions" not in getattr(space, "capabilities", ()):
        return None, None
    from nasforge.strategies.decisions import (
        decision_choices, decision_length, from_decisions,
    )

    try:
        length = decision_length(space)
        first = decision_choices(space, [])
        counts = []
        for choice in first:
            seq = [choice] * length
            if any(decision_choices(space, seq[:k]) != first for k in range(1, length)):
                return None, None  # steps offer different choices (darts): no such cells
            counts.append(space.count_params(from_decisions(space, seq), input_shape,
                                             num_classes, width))
    except Exception:  # noqa: BLE001 - a space without extremes falls back to the study
        return None, None
    return float(min(counts)), float(max(counts))


@dataclass
class StudyHypervolume:
    """The hypervolume of a 2-objective study and how it was computed."""

    value: float
    reference: tuple[float, float]
    ranges_text: str
    points: list[tuple[float, float]]
    """Every counted trial's scaled objectives, in trial-number order."""
    numbers: list[int]
    """The trial number of each point."""

    def line(self, objectives: Sequence[Objective]) -> str:
        """One printable line: the value, the scaling and the reference point."""
        names = ", ".join(scaled_name(o) for o in objectives)
        return (f"hypervolume {self.value:.4f} of the scaled objectives ({names}; "
                f"{self.ranges_text}), reference point {self.reference}, "
                f"{len(self.points)} trials")

    def growth(self, marks: int = 50) -> list[tuple[int, float]]:
        """(trials counted, hypervolume of the first that many) at up to ``marks`` evenly
        spaced counts, the last being all."""
        n = len(self.points)
        if n == 0:
            return []
        counts = sorted({max(1, round(n * k / marks)) for k in range(1, marks + 1)})
        return [(c, hypervolume_2d(self.points[:c], self.reference)) for c in counts]

    def fronts_at(self, fractions: Sequence[float]) -> list[tuple[int, list[int]]]:
        """(trials counted, indices of the first front among the first that many points)
        at each fraction of the trials."""
        out = []
        for f in fractions:
            c = max(1, round(len(self.points) * f))
            out.append((c, non_dominated_sort(self.points[:c], ["min", "min"])[0]))
        return out


def scaled_name(objective: Objective) -> str:
    if objective.name == "val_acc":
        return "1 - val_acc"
    return f"log10 {objective.name} normalised"


def study_hypervolume(trials: Sequence[Any], objectives: Sequence[Objective],
                      constraints: Sequence[Constraint] = (),
                      param_range: tuple[float | None, float | None] = (None, None),
                      ) -> StudyHypervolume | None:
    """The scaled hypervolume of ``trials`` (see the module doc); None unless there are
    exactly two objectives, one of them ``val_acc`` (max) and the other a size or time
    (min), and at least one counted trial. ``param_range``: the space's parameter range
    (:func:`space_param_range`)."""
    if len(objectives) != 2:
        return None
    kinds = [o.name for o in objectives]
    if "val_acc" not in kinds or any(
            (o.name == "val_acc") != (o.direction == "max") for o in objectives):
        return None
    pool = sorted((t for t in trials if t.status == "ok" and feasible(t, constraints)),
                  key=lambda t: t.number)
    rows = [(t.number, v) for t in pool if (v := trial_values(t, objectives)) is not None]
    if not rows:
        return None
    other = 1 - kinds.index("val_acc")
    sizes = [v[other] for _, v in rows]
    if any(s <= 0 for s in sizes):
        return None  # log10 needs positive sizes
    low, high = (param_range if kinds[other] == "params" else (None, None))
    texts = []
    if low is None or min(sizes) < low:
        texts.append("lower end observed" if low is None else
                     f"lower end observed, below the space's {low:,.0f}")
        low = min(sizes) if low is None else min(low, min(sizes))
    if high is None or max(sizes) > high:
        texts.append("upper end observed" if high is None else
                     f"upper end observed, above the space's {high:,.0f}")
        high = max(sizes) if high is None else max(high, max(sizes))
    lo, hi = math.log10(low), math.log10(max(high, low * 1.000001))
    ranges_text = (f"{kinds[other]} range {low:,.0f} to {high:,.0f}"
                   + (f" ({', '.join(texts)})" if texts else " (the space's)"))
    points = []
    for _, v in rows:
        size = (math.log10(v[other]) - lo) / (hi - lo)
        point = [0.0, 0.0]
        point[1 - other] = 1.0 - v[1 - other]
        point[other] = size
        points.append((point[0], point[1]))
    reference = [0.0, 0.0]
    reference[1 - other], reference[other] = REFERENCE_ACCURACY, REFERENCE_SIZE
    ref = (reference[0], reference[1])
    return StudyHypervolume(hypervolume_2d(points, ref), ref, ranges_text, points,
                            [n for n, _ in rows])


__all__ = ["REFERENCE_ACCURACY", "REFERENCE_SIZE", "StudyHypervolume", "scaled_name",
           "space_param_range", "study_hypervolume"]
