"""Pareto tools shared by strategies and reports: non-dominated sort, crowding distance,
2-D hypervolume (Deb et al., "A fast and elitist multiobjective genetic algorithm: NSGA-II",
IEEE TEC 2002, Sec. III-A and III-B).

Points are sequences of floats, one value per objective; ``directions`` says per objective
whether it is maximised (``"max"``) or minimised (``"min"``).
"""

from __future__ import annotations

import math
from typing import Sequence

from nasforge.errors import ConfigError

DIRECTIONS: tuple[str, ...] = ("max", "min")


def _signs(directions: Sequence[str], width: int) -> list[float]:
    if len(directions) != width:
        raise ConfigError(f"pareto: {len(directions)} directions for {width} objectives")
    bad = [d for d in directions if d not in DIRECTIONS]
    if bad:
        raise ConfigError(f"pareto: direction {bad[0]!r}; known: max, min")
    return [1.0 if d == "min" else -1.0 for d in directions]


def dominates(a: Sequence[float], b: Sequence[float], directions: Sequence[str]) -> bool:
    """Whether ``a`` is at least as good as ``b`` in every objective and better in one."""
    signs = _signs(directions, len(a))
    better = False
    for x, y, s in zip(a, b, signs):
        if s * x > s * y:
            return False
        if s * x < s * y:
            better = True
    return better


def non_dominated_sort(points: Sequence[Sequence[float]],
                       directions: Sequence[str]) -> list[list[int]]:
    """Fast non-dominated sort (NSGA-II, Sec. III-A): indices of ``points`` by front, front 1
    (no point dominates them) first; each front in increasing index order. O(M N^2)."""
    n = len(points)
    if n == 0:
        return []
    signs = _signs(directions, len(points[0]))
    mins = [[s * v for s, v in zip(signs, p)] for p in points]  # all minimised
    dominated_by_me: list[list[int]] = [[] for _ in range(n)]
    count = [0] * n
    for i in range(n):
        for j in range(i + 1, n):
            a, b = mins[i], mins[j]
            a_le = all(x <= y for x, y in zip(a, b))
            b_le = all(y <= x for x, y in zip(a, b))
            if a_le and not b_le:
                dominated_by_me[i].append(j)
                count[j] += 1
            elif b_le and not a_le:
                dominated_by_me[j].append(i)
                count[i] += 1
    fronts: list[list[int]] = []
    current = [i for i in range(n) if count[i] == 0]
    while current:
        fronts.append(sorted(current))
        following = []
        for i in current:
            for j in dominated_by_me[i]:
                count[j] -= 1
                if count[j] == 0:
                    following.append(j)
        current = following
    return fronts


def crowding_distance(front: Sequence[Sequence[float]]) -> list[float]:
    """Crowding distance of each point of one front (NSGA-II, Sec. III-B): per objective,
    the points sorted by it, the two boundary points get ``inf``, an inner point adds the
    gap between its two neighbours divided by the objective's range (0 when the range is 0).
    Fronts of one or two points are all ``inf``."""
    n = len(front)
    dist = [0.0] * n
    if n <= 2:
        return [math.inf] * n
    for m in range(len(front[0])):
        order = sorted(range(n), key=lambda i: (front[i][m], i))
        lo, hi = front[order[0]][m], front[order[-1]][m]
        dist[order[0]] = dist[order[-1]] = math.inf
        if hi == lo:
            continue
        for k in range(1, n - 1):
            i = order[k]
            if dist[i] != math.inf:
                dist[i] += (front[order[k + 1]][m] - front[order[k - 1]][m]) / (hi - lo)
    return dist


def hypervolume_2d(points: Sequence[Sequence[float]], reference: Sequence[float]) -> float:
    """Area dominated by ``points`` (both objectives minimised) and bounded by
    ``reference``; points not better than the reference in both objectives add nothing."""
    inside = sorted((float(x), float(y)) for x, y in points
                    if x < reference[0] and y < reference[1])
    area = 0.0
    best_y = float(reference[1])
    for x, y in inside:  # sweep by the first objective; keep the running minimum of the second
        if y < best_y:
            area += (reference[0] - x) * (best_y - y)
            best_y = y
    return area


def rank_and_crowding(points: Sequence[Sequence[float]],
                      directions: Sequence[str]) -> tuple[list[int], list[float]]:
    """Per point its front number (0 = non-dominated) and its crowding distance in that
    front, as used by the crowded-comparison operator."""
    rank = [0] * len(points)
    crowd = [0.0] * len(points)
    for r, front in enumerate(non_dominated_sort(points, directions)):
        dist = crowding_distance([points[i] for i in front])
        for i, d in zip(front, dist):
            rank[i], crowd[i] = r, d
    return rank, crowd


__all__ = ["DIRECTIONS", "crowding_distance", "dominates", "hypervolume_2d",
           "non_dominated_sort", "rank_and_crowding"]
