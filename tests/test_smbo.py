"""The ``smbo`` strategy: acquisition functions, the model phase, resume, and the table."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
from test_predictors import route_quality

from nasforge.errors import ConfigError
from nasforge.evaluation.budget import Budget
from nasforge.spaces import get_space
from nasforge.strategies import Observation, Problem, get_strategy
from nasforge.strategies.smbo import acquisition_scores

HAVE_TABLE = importlib.util.find_spec("analognasbench") is not None
needs_table = pytest.mark.skipif(not HAVE_TABLE, reason="optional table: pip install --no-deps "
                                                       "analog-nasbench==0.1.3")
BUDGET = Budget(epochs=1, width=4)
PROBLEM = Problem((3, 32, 32), 10)


def make(seed: int = 0, **settings):
    return get_strategy("smbo", get_space("nb201"), BUDGET, PROBLEM, seed, **settings)


def drive(strategy, count: int, start: int = 0) -> list:
    """``count`` ask/tell rounds on the synthetic route-quality objective."""
    asked = []
    for i in range(start, start + count):
        genome = strategy.ask().genome
        asked.append(genome)
        strategy.tell(Observation(i, genome, BUDGET, "ok", route_quality(genome), {}))
    return asked


def test_acquisition_functions() -> None:
    mean, std = np.array([0.5, 0.4, 0.4]), np.array([0.0, 0.1, 0.3])
    rng = np.random.default_rng(0)
    assert np.allclose(acquisition_scores("ucb", mean, std, 0.5, rng, beta=2.0),
                       [0.5, 0.6, 1.0])
    ei = acquisition_scores("ei", mean, std, 0.5, rng)
    assert ei[0] == 0.0 and 0 < ei[1] < ei[2]  # more uncertainty, more expected improvement
    draws = np.stack([acquisition_scores("thompson", mean, std, 0.5, rng) for _ in range(4000)])
    assert np.allclose(draws.mean(axis=0), mean, atol=0.02)
    assert np.allclose(draws.std(axis=0), std, atol=0.02)
    with pytest.raises(ConfigError, match="acquisition must be one of"):
        acquisition_scores("pi", mean, std, 0.5, rng)
    with pytest.raises(ConfigError, match="predictor must be one of"):
        make(predictor="xgboost")
    with pytest.raises(ConfigError, match="unknown setting 'epoch'"):  # at once, not mid-search
        make(predictor_settings={"epoch": 5})


@pytest.mark.parametrize("acquisition", ["thompson", "ei", "ucb"])
def test_the_model_phase_finds_better_cells_than_its_random_starts(acquisition) -> None:
    strategy = make(predictor="gp", acquisition=acquisition, initial=10, batch=5)
    asked = drive(strategy, 40)
    first, later = asked[:10], asked[10:]
    assert len({g.ops for g in asked}) == 40  # each cell proposed once
    assert max(route_quality(g) for g in later) > max(route_quality(g) for g in first)
    assert strategy.model is not None and strategy.model_fit == (35, strategy.model_fit[1])


def test_resume_rebuilds_the_predictor_from_the_stored_results() -> None:
    settings = dict(initial=6, batch=4, predictor_settings={"epochs": 20})
    original = make(seed=1, **settings)
    drive(original, 12)  # 6 random starts, one batch of 4 fitted on 6, 2 of the next batch
    original.ask()  # mid-batch
    state = json.loads(json.dumps(original.state_dict()))  # as the study stores it
    restored = make(seed=7, **settings)  # another seed: the state rules
    restored.load_state_dict(state)
    assert restored.model_fit == original.model_fit == (10, original.model_fit[1])
    probe = np.stack([restored.encoder(g) for g, _ in original.observed])
    for a, b in zip(original.model.predict(probe), restored.model.predict(probe)):
        assert np.array_equal(a, b)  # the same data and fit seed: the same model
    assert [c.genome for c in (original.ask(), original.ask())] == \
        [c.genome for c in (restored.ask(), restored.ask())]
    assert drive(original, 8, 20) == drive(restored, 8, 20)  # next batches too


@needs_table
def test_smbo_beats_random_search_on_the_table() -> None:
    from nasforge.benchmarks.bench import run_strategy
    from nasforge.benchmarks.nb201_table import load_table

    table, space, seeds = load_table(), get_space("nb201"), [0, 1, 2, 3, 4]
    rand = run_strategy("random", space, table, 50, seeds)
    smbo = run_strategy("smbo", space, table, 50, seeds, {"predictor": "gp"})
    assert smbo.best[:, -1].mean() > rand.best[:, -1].mean()


@needs_table
def test_a_killed_and_resumed_search_asks_what_an_uninterrupted_one_asks(tmp_path,
                                                                         capsys) -> None:
    from nasforge.cli import main
    from nasforge.storage import StudyStorage

    def args(db: str) -> list[str]:
        return ["search", "quick", "--space", "nb201", "--evaluator", "tabular:nb201",
                "--storage", str(tmp_path / db), "--strategy", "smbo", "--workers", "1",
                "--set", "strategy.settings={predictor: gp, initial: 4, batch: 4}"]

    assert main(args("a.db") + ["--max-evals", "14"]) == 0  # stops inside the third batch
    assert main(args("a.db") + ["--max-evals", "22", "--resume"]) == 0
    assert main(args("b.db") + ["--max-evals", "22"]) == 0
    capsys.readouterr()
    genomes = []
    for db in ("a.db", "b.db"):
        with StudyStorage.open(tmp_path / db) as store:
            trials = store.trials()
            assert len(trials) == 22 and all(t.status == "ok" for t in trials)
            genomes.append([json.dumps(t.genome, sort_keys=True) for t in trials])
    assert genomes[0] == genomes[1]
