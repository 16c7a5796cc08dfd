"""The scaled hypervolume of a two-objective study, printed at the end of a search and drawn
with the front as it grew in the report."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from nasforge.hypervolume import space_param_range, study_hypervolume
from nasforge.objectives import Objective, parse_constraints
from nasforge.report.front import front_growth_html
from nasforge.report.html import StudySnapshot
from nasforge.spaces import get_space
from nasforge.storage.sqlite import TrialRecord
from nasforge.strategies.decisions import from_decisions

ACC_PARAMS = (Objective("val_acc", "max"), Objective("params", "min"))


def trial(number: int, acc: float | None, params: int, status: str = "ok") -> TrialRecord:
    return TrialRecord(number, f"k{number}", "b", {}, {}, status, acc, params, None)


def test_hand_worked_value_and_reference() -> None:
    # params range 10..1000: log10 normalised 100 -> 0.5, 10 -> 0.0; 1000 -> 1.0
    trials = [trial(0, 0.9, 100), trial(1, 0.8, 10), trial(2, 0.5, 1000), trial(3, None, 5,
                                                                               "failed")]
    hv = study_hypervolume(trials, ACC_PARAMS, (), (10.0, 1000.0))
    assert hv is not None and hv.reference == (1.0, 1.1)
    # sweep by 1 - acc: (0.1, 0.5): 0.9 x 0.6 = 0.54; (0.2, 0.0): 0.8 x 0.5 = 0.40;
    # (0.5, 1.0) is dominated by (0.1, 0.5)
    assert hv.value == pytest.approx(0.94)
    assert "(the space's)" in hv.line(ACC_PARAMS) and "(1.0, 1.1)" in hv.line(ACC_PARAMS)
    assert [c for c, _ in hv.growth(3)] == [1, 2, 3]
    assert hv.growth(3)[0][1] == pytest.approx(0.54)
    flipped = study_hypervolume(trials, ACC_PARAMS[::-1], (), (10.0, 1000.0))
    assert flipped is not None and flipped.reference == (1.1, 1.0)
    assert flipped.value == pytest.approx(0.94)
    # a constraint leaves trial 0 out; without a space range the observed one is used
    only = study_hypervolume(trials, ACC_PARAMS, parse_constraints(["params <= 50"]))
    assert only is not None and len(only.points) == 1 and "observed" in only.ranges_text
    assert study_hypervolume(trials, ACC_PARAMS + (Objective("flops", "min"),)) is None
    assert study_hypervolume(trials, (Objective("val_acc", "max"),)) is None


def test_space_param_ranges() -> None:
    nb201 = get_space("nb201", cells=1)
    low, high = space_param_range(nb201, (1, 28, 28), 10, 8)
    assert low == nb201.count_params(from_decisions(nb201, ["none"] * 6), (1, 28, 28), 10, 8)
    assert high == nb201.count_params(from_decisions(nb201, ["nor_conv_3x3"] * 6),
                                      (1, 28, 28), 10, 8)
    glob = get_space("global", max_nodes=6, max_params=100_000)
    low, high = space_param_range(glob, (1, 28, 28), 10, 8)
    assert low == glob.count_params(glob.initial(), (1, 28, 28), 10, 8) and high == 100_000
    assert space_param_range(get_space("darts"), (1, 28, 28), 10, 8) == (None, None)


def test_report_draws_the_front_as_it_grew() -> None:
    trials = [trial(i, 0.5 + 0.04 * (i % 10), 1000 + 5000 * (i % 7)) for i in range(30)]
    config = {"objectives": [{"name": "val_acc", "direction": "max"},
                             {"name": "params", "direction": "min"}],
              "data": {"dataset": "fashion-mnist"}, "budget": {"width": 8}}
    snap = StudySnapshot(Path("x.db"), {"config": config}, trials, [])
    html = front_growth_html(snap, get_space("global", max_nodes=6, max_params=100_000))
    assert "Front as it grew" in html and "<img" in html and "reference point (1.0, 1.1)" in html
    single = StudySnapshot(Path("x.db"), {"config": {}}, trials, [])
    assert front_growth_html(single, None) == ""
    three = dict(config, objectives=config["objectives"] + [{"name": "flops",
                                                             "direction": "min"}])
    assert "2-D only" in front_growth_html(StudySnapshot(Path("x.db"), {"config": three},
                                                         trials, []), None)


HAVE_TABLE = __import__("importlib.util").util.find_spec("analognasbench") is not None


@pytest.mark.skipif(not HAVE_TABLE, reason="optional table: pip install --no-deps "
                    "analog-nasbench==0.1.3")
def test_a_search_prints_its_hypervolume(tmp_path, capsys) -> None:
    from nasforge.cli import main

    args = ["search", "quick", "--space", "nb201", "--evaluator", "tabular:nb201",
            "--storage", str(tmp_path / "s.db"), "--strategy", "nsga2",
            "--set", "objectives=[val_acc:max, params:min]",
            "--set", "strategy.settings={population: 8}", "--max-evals", "20"]
    assert main(args) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("hypervolume "))
    value = float(line.split()[1])
    assert 0 < value < 1.1 and math.isfinite(value) and "reference point (1.0, 1.1)" in line


def test_range_is_widened_to_observed_values() -> None:
    trials = [trial(0, 0.9, 50), trial(1, 0.8, 10_000)]
    hv = study_hypervolume(trials, ACC_PARAMS, (), (100.0, 1000.0))
    assert hv is not None and "below the space's 100" in hv.ranges_text
    assert "above the space's 1,000" in hv.ranges_text
    assert all(0.0 <= p[1] <= 1.0 for p in hv.points) and hv.value <= 1.0 * 1.1
