"""Multi-objective studies: objectives and constraints in the config, the front by the shared
non-dominated sort, `nasforge best --pareto`, final picks, latency only when asked."""

from __future__ import annotations

import re

import pytest
import yaml

from conftest import tiny_config_dict
from nasforge.cli import main
from nasforge.config import config_from_dict
from nasforge.errors import ConfigError
from nasforge.objectives import parse_constraints, parse_objectives
from nasforge.storage import StudyStorage


def test_parsing_objectives_and_constraints() -> None:
    objs = parse_objectives([{"name": "val_acc", "direction": "max"}, "params:min",
                             ["latency_ms", "min"]])
    assert [(o.name, o.direction) for o in objs] == [
        ("val_acc", "max"), ("params", "min"), ("latency_ms", "min")]
    (c,) = parse_constraints(["params <= 500_000"])
    assert c.met(10) and not c.met(600_000) and not c.met(None) and str(c) == "params <= 500000"
    for bad in (["speed:max"], ["val_acc:up"], ["val_acc:max", "val_acc:min"], "val_acc"):
        with pytest.raises(ConfigError):
            parse_objectives(bad)
    with pytest.raises(ConfigError, match="NAME OP NUMBER"):
        parse_constraints(["params == 3"])
    with pytest.raises(ConfigError, match="final.pick"):
        config_from_dict(tiny_config_dict(final={"pick": "knee"}), "t")


def _dominates(a, b) -> bool:  # (val_acc max, params min), written out independently
    return a[0] >= b[0] and a[1] <= b[1] and (a[0] > b[0] or a[1] < b[1])


@pytest.mark.timeout(240)
def test_a_two_objective_study_prints_its_front(tmp_path, capsys) -> None:
    raw = tiny_config_dict(
        run={"max_evals": 10, "workers": 2},
        objectives=[{"name": "val_acc", "direction": "max"}, {"name": "params", "direction": "min"}],
        constraints=["params <= 100000"],
        strategy={"name": "random", "settings": {}},
    )
    cfg = tmp_path / "mo.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    db = tmp_path / "mo.db"
    assert main(["search", str(cfg), "--storage", str(db), "--no-final"]) == 0
    capsys.readouterr()
    assert main(["best", str(db), "--pareto"]) == 0
    out = capsys.readouterr().out
    assert "Pareto front:" in out and "val_acc (max), params (min)" in out
    printed = {int(n) for n in re.findall(r"^trial (\d+):", out, flags=re.M)}
    with StudyStorage.open(db) as store:
        ok = [t for t in store.trials() if t.status == "ok"]
    points = {t.number: (t.val_acc, t.params) for t in ok}
    assert printed and printed <= set(points)
    for n in printed:  # nothing printed is dominated
        assert not any(_dominates(points[m], points[n]) for m in points if m != n)
    for n in set(points) - printed:  # everything left out is dominated by a printed trial
        assert any(_dominates(points[m], points[n]) for m in printed)
    assert main(["report", str(db), "-o", str(tmp_path / "r.html")]) == 0
    assert "Pareto front" in (tmp_path / "r.html").read_text()


@pytest.mark.timeout(120)
def test_latency_is_measured_only_when_asked_and_the_first_objective_drives_fitness(tmp_path) -> None:
    from nasforge.api import Search

    raw = tiny_config_dict(run={"max_evals": 2, "workers": 1},
                           objectives=["params:min", "latency_ms:min"])
    search = Search(config_from_dict(raw, "l"), tmp_path / "l.db")
    told = []
    original = search.strategy.tell
    search.strategy.tell = lambda o: (told.append(o), original(o))[1]  # type: ignore[method-assign]
    search.run()
    search.close()
    with StudyStorage.open(tmp_path / "l.db") as store:
        trials = store.trials()
    assert all(t.metrics["latency_ms"] > 0 for t in trials)
    assert all(o.fitness == -o.metrics["objectives"]["params"] for o in told)
    plain = Search(config_from_dict(tiny_config_dict(run={"max_evals": 1, "workers": 1}), "p"),
                   tmp_path / "p.db")
    plain.run()
    plain.close()
    with StudyStorage.open(tmp_path / "p.db") as store:
        assert "latency_ms" not in store.trials()[0].metrics


def test_nsga2_is_refused_in_a_single_objective_study_and_takes_a_studys_objectives(tmp_path) -> None:
    from nasforge.api import Search

    single = config_from_dict(tiny_config_dict(strategy={"name": "nsga2", "settings": {}}), "s")
    with pytest.raises(ConfigError, match="needs a multi-objective study"):
        Search(single, tmp_path / "s.db")
    assert not (tmp_path / "s.db").exists()
    multi = config_from_dict(tiny_config_dict(strategy={"name": "nsga2", "settings": {}},
                                              objectives=["val_acc:max", "flops:min"]), "m")
    search = Search(multi, tmp_path / "m.db")
    try:
        assert search.strategy.objectives == [("val_acc", "max"), ("flops", "min")]
    finally:
        search.close()
