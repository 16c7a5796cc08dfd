"""The registered fixed-list strategy: rebuilt from a study's stored settings, and its default
(sampled) list when no genomes are given."""

from __future__ import annotations

import json

import pytest
from test_fidelity import _tiny_raw

from nasforge.errors import ConfigError
from nasforge.evaluation.budget import Budget
from nasforge.spaces import genome_key, get_space
from nasforge.strategies import Problem, available_strategies, get_strategy
from nasforge.studies.fidelity import fidelity_config_from_dict, make_plan
from nasforge.studies.fidelity.config import _search_config

PROBLEM = Problem((1, 12, 12), 4)


def _asks(strategy, n: int) -> list[tuple[str, Budget]]:
    return [(genome_key(strategy.space, c.genome), c.budget)
            for c in (strategy.ask() for _ in range(n))]


def test_rebuilt_from_stored_settings_asks_the_plan_in_order() -> None:
    cfg = fidelity_config_from_dict(_tiny_raw(), "t")
    plan = make_plan(cfg, problem=PROBLEM)
    gdicts = [plan.space.genome_to_dict(g) for g in plan.genomes]
    # the settings as a study file stores them (JSON), read back as on a resume
    settings = json.loads(json.dumps(dict(_search_config(cfg, gdicts).strategy.settings)))
    assert "fixed-list" in available_strategies()
    strategy = get_strategy("fixed-list", plan.space, cfg.reference, PROBLEM, cfg.seed,
                            **settings)
    expected = [(genome_key(plan.space, c.genome), c.budget) for c in plan.candidates]
    assert len(expected) == 4 * 3  # 2 reference seeds, the sgd cell, the width-2 extra
    assert _asks(strategy, len(expected)) == expected
    assert _asks(strategy, 2) == expected[:2]  # wraps around
    # a resumed study continues where the stored position stopped
    resumed = get_strategy("fixed-list", plan.space, cfg.reference, PROBLEM, 99, **settings)
    resumed.load_state_dict({"position": 5})
    assert _asks(resumed, 3) == expected[5:8]


def test_without_genomes_it_samples_a_list_kept_in_its_state() -> None:
    space = get_space("global", max_nodes=6)
    budget = Budget(epochs=1, width=4)
    strategy = get_strategy("fixed-list", space, budget, PROBLEM, 3, count=4)
    first = _asks(strategy, 4)
    assert len({k for k, _ in first}) == 4 and all(b == budget for _, b in first)
    assert all(strategy.is_valid(g) for g in strategy.genomes)
    assert _asks(strategy, 4) == first  # a fixed list: asked again in the same order
    state = json.loads(json.dumps(strategy.state_dict()))
    other = get_strategy("fixed-list", space, budget, PROBLEM, 99, count=4)  # another seed
    other.load_state_dict(state)
    assert _asks(other, 6) == _asks(strategy, 6)


def test_bad_settings_are_one_line_errors() -> None:
    space = get_space("global", max_nodes=6)
    budget = Budget(epochs=1, width=4)
    with pytest.raises(ConfigError, match="'genomes' is empty"):
        get_strategy("fixed-list", space, budget, PROBLEM, 0, genomes=[])
    with pytest.raises(ConfigError, match="'count' must be a positive integer"):
        get_strategy("fixed-list", space, budget, PROBLEM, 0, count=0)
    with pytest.raises(ConfigError, match="fixed-list"):
        get_strategy("fixed-list", space, budget, PROBLEM, 0, genome=[])
    with pytest.raises(ConfigError, match="warm start"):
        get_strategy("fixed-list", space, budget, PROBLEM, 0).warm_start([])


def test_public_names_load_lazily_from_the_package() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import nasforge.strategies.fixed_list, nasforge.studies.fidelity.plan\n"
        "assert 'nasforge.execution.runner' not in sys.modules, 'execution layer imported'\n"
        "import nasforge.studies.fidelity as f\n"
        "from nasforge.studies.fidelity import *\n"
        "assert all(getattr(f, n) is globals()[n] for n in f.__all__)\n"
        "assert f.rank_metrics.__module__ == 'nasforge.evaluation.ranking'\n"
        "assert 'run_fidelity' in dir(f)\n"
        "try:\n    f.no_such_name\nexcept AttributeError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert "has no attribute 'no_such_name'" in out.stdout
