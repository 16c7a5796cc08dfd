"""Constraints a network's build decides (params, flops) are kept by the strategy: no trial is
spent on a network that could never be picked (session 12; quick's FLOPs window left about
three random samples in four outside it, each trained for nothing)."""

from __future__ import annotations

import random

import pytest
import torch

from conftest import tiny_config_dict
from nasforge.api import Search
from nasforge.config import config_from_dict, load_config
from nasforge.errors import GenomeError
from nasforge.objectives import parse_constraints
from nasforge.spaces import get_space
from nasforge.storage import StudyStorage
from nasforge.strategies import Problem, get_strategy
from nasforge.strategies.base import genome_reasons, static_constraints, static_values

QUICK = load_config("quick")
WINDOW = parse_constraints(["flops >= 1.5e6", "flops <= 3.5e6"])


def _quick_space():
    return get_space(QUICK.space.name, **QUICK.space.settings)


def test_only_params_and_flops_are_decided_by_the_build() -> None:
    cons = parse_constraints(["params <= 9", "val_acc >= 0.5", "flops > 1", "latency_ms < 3"])
    assert [c.name for c in static_constraints(cons)] == ["params", "flops"]


def test_reasons_name_the_broken_constraint_and_agree_with_the_measured_flops() -> None:
    space = _quick_space()
    problem = Problem((1, 28, 28), 10, WINDOW)
    rng = random.Random(3)
    inside = outside = 0
    for _ in range(40):
        genome = space.sample(rng)
        if space.validate_for(genome, (1, 28, 28), 10, 16):
            continue
        flops = static_values(space, genome, problem, 16)["flops"]
        reasons = genome_reasons(space, genome, problem, 16)
        if 1.5e6 <= flops <= 3.5e6:
            inside += 1
            assert reasons == []
        else:
            outside += 1
            assert len(reasons) == 1 and "breaks flops" in reasons[0]
    assert inside and outside  # both kinds were seen


def test_a_strategy_proposes_only_networks_inside_the_window_and_leaves_torch_rng_alone() -> None:
    space = _quick_space()
    problem = Problem((1, 28, 28), 10, WINDOW)
    before = torch.random.get_rng_state()
    for name, settings in (("evolution", {"population": 6, "sample": 2}), ("random", {})):
        strategy = get_strategy(name, space, QUICK.budget, problem, 0, **settings)
        for _ in range(8):
            candidate = strategy.ask()
            flops = static_values(space, candidate.genome, problem, 16)["flops"]
            assert 1.5e6 <= flops <= 3.5e6, (name, flops)
    assert torch.equal(before, torch.random.get_rng_state())


def test_an_impossible_window_is_one_clear_error() -> None:
    space = _quick_space()
    problem = Problem((1, 28, 28), 10, parse_constraints(["flops <= 10"]))
    strategy = get_strategy("random", space, QUICK.budget, problem, 0)
    with pytest.raises(GenomeError, match=r"no valid genome in 50 samples; loosen .*flops <= 10"):
        strategy.sample_valid(tries=50)


@pytest.mark.timeout(240)
def test_a_search_trains_no_trial_that_breaks_a_params_constraint(tmp_path) -> None:
    raw = tiny_config_dict(run={"max_evals": 8, "workers": 1})
    space = get_space("global", **raw["space"]["settings"])
    rng = random.Random(0)
    problem = Problem((1, 12, 12), 4)
    sizes = sorted(static_values(space, g, problem, 4)["params"]
                   for g in (space.sample(rng) for _ in range(60))
                   if not space.validate_for(g, (1, 12, 12), 4, 4))
    bound = sizes[len(sizes) // 2]  # about half the random networks break it
    raw["constraints"] = [f"params <= {bound}"]
    search = Search(config_from_dict(raw, "c"), tmp_path / "c.db")
    assert search.problem.constraints == tuple(parse_constraints([f"params <= {bound}"]))
    search.run()
    search.close()
    with StudyStorage.open(tmp_path / "c.db") as store:
        trials = store.trials()
    assert len(trials) == 8 and all(t.status == "ok" for t in trials)
    assert all(t.params <= bound for t in trials), [t.params for t in trials]


@pytest.mark.timeout(240)
def test_constraints_no_network_meets_are_one_line_and_leave_no_study(tmp_path, capsys) -> None:
    import yaml

    from nasforge.cli import main

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config_dict(run={"max_evals": 2, "workers": 1},
                                                   constraints=["params <= 1"])))
    assert main(["search", str(cfg), "--storage", str(tmp_path / "c.db")]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if "error" in ln]
    assert len(err) == 1 and "loosen" in err[0] and "params <= 1" in err[0]
    assert "was removed" in err[0] and not (tmp_path / "c.db").exists()
    from nasforge.storage import artifacts_dir

    assert not artifacts_dir(tmp_path / "c.db").exists()  # nor its folder with an empty log


@pytest.mark.timeout(240)
def test_constraints_first_false_trains_the_candidates_and_marks_them(tmp_path) -> None:
    raw = tiny_config_dict(run={"max_evals": 8, "workers": 1, "constraints_first": False},
                           constraints=["params <= 1"])
    search = Search(config_from_dict(raw, "a"), tmp_path / "a.db")
    assert search.problem.constraints == ()
    search.run()
    search.close()
    with StudyStorage.open(tmp_path / "a.db") as store:
        trials = store.trials()
    assert len(trials) == 8 and all(t.status == "ok" and t.params > 1 for t in trials)
    from nasforge.objectives import feasible

    assert not any(feasible(t, parse_constraints(["params <= 1"])) for t in trials)


def _half_bound(raw: dict) -> int:
    """A params bound that about half of the tiny space's random networks break."""
    space = get_space("global", **raw["space"]["settings"])
    rng = random.Random(0)
    sizes = sorted(static_values(space, g, Problem((1, 12, 12), 4), 4)["params"]
                   for g in (space.sample(rng) for _ in range(60))
                   if not space.validate_for(g, (1, 12, 12), 4, 4))
    return sizes[len(sizes) // 2]


@pytest.mark.timeout(240)
def test_constraints_first_keeps_a_one_worker_evolution_deterministic(tmp_path) -> None:
    raw = tiny_config_dict(run={"max_evals": 6, "workers": 1},
                           strategy={"name": "evolution",
                                     "settings": {"population": 3, "sample": 2}})
    bound = _half_bound(raw)
    raw["constraints"] = [f"params <= {bound}"]
    runs = []
    for name in ("a", "b"):
        search = Search(config_from_dict(raw, name), tmp_path / f"{name}.db")
        assert search.problem.constraints  # kept by the strategy
        search.run()
        search.close()
        with StudyStorage.open(tmp_path / f"{name}.db") as store:
            runs.append([(t.genome, t.status, t.params, t.flops, t.val_acc)
                         for t in store.trials()])
    assert len(runs[0]) == 6 and all(params <= bound for _, _, params, _, _ in runs[0])
    assert runs[0] == runs[1]  # same config and seed: the same trials, in the same order


def test_init_from_groups_the_genomes_that_break_a_constraint_in_its_line() -> None:
    """Before: each skipped genome was its own reason (its params differ, and a global node
    id is hex, not the digits the grouping removed), so the line listed three of them."""
    from nasforge.spaces.warm_start import sort_warm_start

    convs = ["conv3N", "conv5N"]
    space = get_space("global", operations=convs + ["maxpool2"], max_nodes=6, input_ops=convs)
    shape = Problem((1, 12, 12), 4)
    free = get_space("global", operations=convs + ["maxpool2"], max_nodes=6)
    rng = random.Random(0)
    items, sizes = [], []
    while len(items) < 12:
        genome = free.sample(rng)
        if free.validate_for(genome, (1, 12, 12), 4, 4):
            continue
        items.append(free.genome_to_dict(genome))
        sizes.append(None if space.validate(genome)
                     else static_values(space, genome, shape, 4)["params"])
    bound = sorted(s for s in sizes if s is not None)[0]  # all but the smallest break it
    problem = Problem((1, 12, 12), 4, tuple(parse_constraints([f"params <= {bound}"])))
    used, line = sort_warm_start(space, problem, QUICK.budget.replace(width=4), items, "g")
    pooling = sum(s is None for s in sizes)
    breaking = sum(s is not None and s > bound for s in sizes)
    assert pooling and breaking > 1 and len(used) == 12 - pooling - breaking
    assert f"{breaking} break params <= {bound}" in line, line
    assert f"{pooling} 'maxpool2' reads the input image" in line, line


@pytest.mark.parametrize("name,space_name", [("aco", "global"), ("reinforce", "nb201")])
def test_a_walking_strategy_that_meets_no_constraint_names_it(name, space_name) -> None:
    """Before: ``loosen max_params or the constraints``, without saying which."""
    space = get_space(space_name, **({"cells": 1} if space_name == "nb201" else {}))
    problem = Problem((1, 12, 12), 4, tuple(parse_constraints(["params <= 1"])))
    strategy = get_strategy(name, space, QUICK.budget.replace(width=4), problem, 0)
    with pytest.raises(GenomeError, match=r"in a row .* loosen max_params/max_nodes or the "
                                          r"constraints params <= 1$"):
        strategy.ask()
