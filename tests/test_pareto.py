"""Non-dominated sort, crowding distance and 2-D hypervolume (strategies/pareto.py):
values worked out by hand, and properties over random point sets (hypothesis)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nasforge.errors import ConfigError
from nasforge.strategies.pareto import (
    crowding_distance, dominates, hypervolume_2d, non_dominated_sort, rank_and_crowding,
)


def test_sort_by_hand() -> None:
    # (accuracy max, params min)
    pts = [(0.9, 300), (0.8, 100), (0.85, 200), (0.7, 150), (0.8, 250), (0.6, 400), (0.9, 300)]
    # front 1: 0 (0.9, 300), 1 (0.8, 100), 2 (0.85, 200), 6 (a copy of 0: neither dominates)
    # front 2: 3 (0.7, 150) dominated by 1; 4 (0.8, 250) dominated by 2
    # front 3: 5 (0.6, 400) dominated by 3 and 4 (and all others)
    assert non_dominated_sort(pts, ["max", "min"]) == [[0, 1, 2, 6], [3, 4], [5]]
    assert non_dominated_sort([], ["max", "min"]) == []


def test_crowding_by_hand() -> None:
    front = [(1.0, 5.0), (2.0, 3.0), (4.0, 2.0), (5.0, 0.0)]
    # objective 0 range 4: point 1 gets (4 - 1) / 4 = 0.75, point 2 (5 - 2) / 4 = 0.75
    # objective 1 range 5: point 1 gets (5 - 2) / 5 = 0.6,  point 2 (3 - 0) / 5 = 0.6
    assert crowding_distance(front) == [math.inf, pytest.approx(1.35), pytest.approx(1.35),
                                        math.inf]
    assert crowding_distance([(1.0, 2.0), (2.0, 1.0)]) == [math.inf, math.inf]
    rank, crowd = rank_and_crowding([(0.9, 3), (0.5, 1), (0.4, 4)], ["max", "min"])
    assert rank == [0, 0, 1] and crowd == [math.inf, math.inf, math.inf]


def test_hypervolume_by_hand() -> None:
    # minimised, reference (1, 1): rectangles 0.8 x 0.4 + (1 - 0.5) x (0.6 - 0.2) = 0.52
    assert hypervolume_2d([(0.2, 0.6), (0.5, 0.2)], (1.0, 1.0)) == pytest.approx(0.52)
    assert hypervolume_2d([(0.2, 0.6), (0.5, 0.2), (0.6, 0.7), (1.2, 0.1)],
                          (1.0, 1.0)) == pytest.approx(0.52)  # dominated / outside add nothing
    assert hypervolume_2d([], (1.0, 1.0)) == 0.0


def test_bad_directions_are_one_line() -> None:
    with pytest.raises(ConfigError, match="direction"):
        non_dominated_sort([(1, 2)], ["max", "up"])
    with pytest.raises(ConfigError, match="2 directions for 3"):
        dominates((1, 2, 3), (1, 2, 3), ["max", "min"])


points = st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6), st.integers(0, 6)),
                  min_size=1, max_size=25)
directions = st.lists(st.sampled_from(["max", "min"]), min_size=3, max_size=3)


@settings(max_examples=150, deadline=None)
@given(points, directions)
def test_fronts_properties(pts, dirs) -> None:
    fronts = non_dominated_sort(pts, dirs)
    assert sorted(i for f in fronts for i in f) == list(range(len(pts)))
    first = fronts[0]
    for i in first:  # front 1 is non-dominated
        assert not any(dominates(pts[j], pts[i], dirs) for j in range(len(pts)))
    for k in range(1, len(fronts)):  # every point of front k+1 is dominated by one of front k
        for i in fronts[k]:
            assert any(dominates(pts[j], pts[i], dirs) for j in fronts[k - 1])
        for i in fronts[k - 1]:  # and nothing in a later front dominates an earlier one
            assert not any(dominates(pts[j], pts[i], dirs) for j in fronts[k])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 10), st.floats(0, 10)), min_size=1, max_size=20,
                unique=True))
def test_crowding_boundaries_infinite(front) -> None:
    dist = crowding_distance(front)
    assert all(d >= 0 for d in dist)
    for m in range(2):  # a point with the smallest and one with the largest value (ties: any)
        values = [p[m] for p in front]
        for extreme in (min(values), max(values)):
            assert any(d == math.inf for v, d in zip(values, dist) if v == extreme)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), max_size=15),
       st.tuples(st.floats(0, 1), st.floats(0, 1)))
def test_hypervolume_monotone(pts, extra) -> None:
    ref = (1.0, 1.0)
    base = hypervolume_2d(pts, ref)
    assert 0.0 <= base <= 1.0
    assert hypervolume_2d(pts + [extra], ref) >= base - 1e-12
    front = [pts[i] for i in non_dominated_sort(pts, ["min", "min"])[0]] if pts else []
    assert hypervolume_2d(front, ref) == pytest.approx(base)
