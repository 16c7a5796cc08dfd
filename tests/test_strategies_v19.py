"""The genetic, nsga2, aco and reinforce strategies (issue 19): settings, resumable state,
finding the optimum of a synthetic additive objective, NEAT crossover on global genomes."""

from __future__ import annotations

import json
import random

import pytest

from additive_space import AdditiveSpace, additive_weights, fitness, optimum
from nasforge.errors import ConfigError
from nasforge.evaluation.budget import Budget
from nasforge.spaces import get_space
from nasforge.spaces.global_dag import EdgeGene, GlobalGenome, NodeGene
from nasforge.strategies import Observation, Problem, get_strategy
from nasforge.strategies.genetic import compatibility

NEW = ("genetic", "nsga2", "aco", "reinforce")
BUDGET = Budget(epochs=1, width=8)
PROBLEM = Problem((1, 8, 8), 10)
SETTINGS: dict[str, dict] = {}  # every strategy at its defaults (reinforce: lr 0.03)


def make(name: str, space=None, seed: int = 0, **settings):
    space = space or AdditiveSpace()
    return get_strategy(name, space, BUDGET, PROBLEM, seed, **{**SETTINGS.get(name, {}),
                                                                **settings})


def observe(number: int, genome, weights, status: str = "ok") -> Observation:
    value = fitness(weights, genome) if status == "ok" else None
    return Observation(number, genome, BUDGET, status, value, {})


def evals_to_optimum(name: str, seed: int, limit: int = 300) -> int | None:
    weights = additive_weights(seed)
    best = optimum(weights)
    strategy = make(name, seed=seed)
    for i in range(limit):
        genome = strategy.ask().genome
        if genome == best:
            return i + 1
        strategy.tell(observe(i, genome, weights))
    return None


@pytest.mark.parametrize("name", NEW)
def test_finds_the_additive_optimum(name: str) -> None:
    """6 choices of 5 options: found within 300 evaluations in at least 16 of 20 seeds
    (random search: 1 - (1 - 1/15625)^300 = 1.9%)."""
    found = [evals_to_optimum(name, seed) for seed in range(20)]
    hits = sum(f is not None for f in found)
    print(f"{name}: optimum found in {hits}/20 seeds, evaluations {found}")
    assert hits >= 16


def test_random_search_rarely_finds_it() -> None:
    assert sum(evals_to_optimum("random", seed) is not None for seed in range(20)) <= 3


@pytest.mark.parametrize("name", NEW)
def test_state_round_trip_gives_identical_asks(name: str) -> None:
    weights = additive_weights(3)
    a = make(name, seed=5)
    for i in range(40):
        g = a.ask().genome
        a.tell(observe(i, g, weights, "failed" if i % 7 == 3 else "ok"))
    state = json.loads(json.dumps(a.state_dict()))  # JSON-ready
    b = make(name, seed=99)
    b.load_state_dict(state)
    for i in range(40, 70):
        ga, gb = a.ask().genome, b.ask().genome
        assert ga == gb
        a.tell(observe(i, ga, weights))
        b.tell(observe(i, gb, weights))


@pytest.mark.parametrize("name,settings,key", [
    ("genetic", {"population": 1}, "population"),
    ("genetic", {"population": 4, "sample": 5}, "sample"),
    ("genetic", {"mode": "batch"}, "mode"),
    ("nsga2", {"population": 1}, "population"),
    ("nsga2", {"objectives": [["val_acc", "max"]]}, "objectives"),
    ("nsga2", {"objectives": [["val_acc", "max"], ["params", "least"]]}, "objectives"),
    ("aco", {"greediness": 1.5}, "greediness"),
    ("aco", {"ants": 0}, "ants"),
    ("reinforce", {"lr": -0.1}, "lr"),
    ("reinforce", {"baseline_decay": 2.0}, "baseline_decay"),
])
def test_bad_settings_name_the_key(name: str, settings: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key) as info:
        make(name, **settings)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["aco", "reinforce"])
def test_decision_strategies_refuse_the_global_space_and_warm_starts(name: str) -> None:
    if name == "reinforce":  # aco walks DeepSwarm's layer paths there (test_strategies_r6)
        with pytest.raises(ConfigError, match="decisions"):
            make(name, space=get_space("global", max_nodes=6))
    with pytest.raises(ConfigError, match="init-from"):
        make(name).warm_start([(0, 0, 0, 0, 0, 0)])


@pytest.mark.parametrize("name", ["genetic", "nsga2"])
def test_warm_start_genomes_come_first(name: str) -> None:
    strategy = make(name)
    seeds = [(1, 2, 3, 4, 0, 1), (4, 4, 4, 4, 4, 4)]
    strategy.warm_start(seeds)
    assert [strategy.ask().genome for _ in seeds] == seeds


@pytest.mark.parametrize("space_name", ["nb201", "darts"])
@pytest.mark.parametrize("name", NEW)
def test_cell_spaces_give_valid_genomes(name: str, space_name: str) -> None:
    space = get_space(space_name)
    strategy = make(name, space=space, seed=1, population=4) if name in (
        "genetic", "nsga2") else make(name, space=space, seed=1)
    rng = random.Random(0)
    for i in range(24):
        genome = strategy.ask().genome
        assert space.validate(genome) == []
        strategy.tell(Observation(i, genome, BUDGET, "ok", rng.random(), {"params": i}))


def test_nsga2_keeps_the_front() -> None:
    strategy = make("nsga2", population=4, objectives=[["val_acc", "max"], ["params", "min"]])
    told = [((0, 0, 0, 0, 0, 0), 0.5), ((1, 0, 0, 0, 0, 0), 0.6), ((4, 4, 4, 4, 4, 4), 0.9),
            ((2, 0, 0, 0, 0, 0), 0.4), ((3, 3, 0, 0, 0, 0), 0.3), ((4, 0, 0, 0, 0, 0), 0.45)]
    for i, (g, f) in enumerate(told):
        strategy.tell(Observation(i, g, BUDGET, "ok", f, {}))
    # params = 1000 + 100 * sum: (0,..) 1000/0.5, (1,..) 1100/0.6, (4,..) 3400/0.9 non-dominated
    front = {g for g, _ in strategy.front()}
    assert front == {(0, 0, 0, 0, 0, 0), (1, 0, 0, 0, 0, 0), (4, 4, 4, 4, 4, 4)}
    assert len(strategy.members) == 4


# ------------------------------------------------------------------ global space, NEAT
def _parents(space, rng):
    base = space.sample(rng)
    a, b = base, base
    for _ in range(rng.randrange(1, 6)):
        a = space.mutate(a, rng)
    for _ in range(rng.randrange(1, 6)):
        b = space.mutate(b, rng)
    return a, b


def test_neat_crossover_aligns_by_id_and_child_is_valid() -> None:
    space = get_space("global", max_nodes=40)
    rng = random.Random(4)
    kept_disabled = both_seen = 0
    for _ in range(200):
        a, b = _parents(space, rng)
        child = space.crossover(a, b, rng, fitter_first=True, disabled_stays=0.75)
        assert space.validate(child) == []
        assert {n.id for n in child.nodes} == {n.id for n in a.nodes}  # disjoint from a
        ops_a, ops_b = a.ops, b.ops
        for n in child.nodes:  # a matching gene's op from one of the two parents
            assert n.op in (ops_a[n.id], ops_b.get(n.id, ops_a[n.id]))
        flags_b = {(e.src, e.dst): e.enabled for e in b.edges}
        for e in a.edges:
            if (e.src, e.dst) in flags_b and not (e.enabled and flags_b[(e.src, e.dst)]):
                both_seen += 1
                kept_disabled += not child.edge(e.src, e.dst).enabled
    assert both_seen > 100
    assert 0.6 < kept_disabled / both_seen <= 0.9  # 0.75, minus repairs that re-enable


def test_genetic_on_global_space_with_speciation() -> None:
    space = get_space("global", max_nodes=8)
    strategy = make("genetic", space=space, seed=2, population=6, sample=2, speciation=True,
                    threshold=2.0)
    rng = random.Random(0)
    for i in range(40):
        genome = strategy.ask().genome
        assert space.validate(genome) == []
        strategy.tell(Observation(i, genome, BUDGET, "ok", rng.random(), {}))
    assert len(strategy.species) >= 2
    assert {m[2] for m in strategy.members} <= {s["id"] for s in strategy.species}
    state = json.loads(json.dumps(strategy.state_dict()))
    again = make("genetic", space=space, seed=7, population=6, sample=2, speciation=True,
                 threshold=2.0)
    again.load_state_dict(state)
    assert [again.ask().genome.to_dict() for _ in range(5)] == [
        strategy.ask().genome.to_dict() for _ in range(5)]


def test_compatibility_counts_unmatched_genes_and_op_differences() -> None:
    space = get_space("global")
    a = GlobalGenome((NodeGene("x", "conv3N"), NodeGene("y", "conv5N")),
                     (EdgeGene("in", "x"), EdgeGene("x", "y"), EdgeGene("y", "out")))
    b = GlobalGenome((NodeGene("x", "conv2N"),), (EdgeGene("in", "x"), EdgeGene("x", "out")))
    # unmatched: node y, edges x->y, y->out, x->out = 4 genes (N = 1 below 20 genes);
    # matching nodes: x, op differs: W = 1
    assert compatibility(space, a, b) == pytest.approx(4 + 0.4 * 1)
    assert compatibility(space, a, a) == 0


# ------------------------------------------------------------------ through the runner
HAVE_TABLE = __import__("importlib.util").util.find_spec("analognasbench") is not None


@pytest.mark.skipif(not HAVE_TABLE, reason="optional table: pip install --no-deps "
                    "analog-nasbench==0.1.3")
@pytest.mark.parametrize("name", NEW)
def test_search_and_resume_on_the_table(name: str, tmp_path, capsys) -> None:
    """Each strategy runs a study through the ordinary runner (tabular evaluator) and
    ``--resume`` continues it from its stored state."""
    from nasforge.cli import main
    from nasforge.storage import StudyStorage

    db = tmp_path / "s.db"
    args = ["search", "quick", "--space", "nb201", "--evaluator", "tabular:nb201",
            "--storage", str(db), "--strategy", name]
    if name in ("genetic", "nsga2"):
        args += ["--set", "strategy.settings={population: 8}"]
    if name == "nsga2":  # a multi-objective strategy needs a multi-objective study
        args += ["--set", "objectives=[val_acc:max, params:min]"]
    assert main(args + ["--max-evals", "20"]) == 0
    with StudyStorage.open(db) as store:
        state = store.strategy_state()
    assert state is not None and json.loads(json.dumps(state)) == state
    assert main(args + ["--max-evals", "30", "--resume"]) == 0
    capsys.readouterr()
    with StudyStorage.open(db) as store:
        trials = store.trials()
        assert len(trials) == 30 and all(t.status == "ok" for t in trials)
        assert len({t.number for t in trials}) == 30


@pytest.mark.parametrize("name", ["genetic", "nsga2"])
def test_generational_mode_replaces_the_population_at_once(name: str) -> None:
    strategy = make(name, population=4, mode="generational")
    weights = additive_weights(1)
    sizes = []
    for i in range(20):
        genome = strategy.ask().genome
        strategy.tell(observe(i, genome, weights))
        sizes.append((len(strategy.members), len(strategy.children)))
    assert max(m for m, _ in sizes) == 4  # never above the population
    assert any(c > 0 for _, c in sizes) and sizes[-1][1] < 4  # children wait, then move in


def test_nsga2_on_the_global_space_counts_parameters() -> None:
    space = get_space("global", max_nodes=8)
    strategy = make("nsga2", space=space, seed=3, population=4)
    rng = random.Random(1)
    for i in range(16):
        genome = strategy.ask().genome
        assert space.validate(genome) == []
        strategy.tell(Observation(i, genome, BUDGET, "ok", rng.random(), {}))
    for genome, (acc, params) in strategy.front():
        assert params == space.count_params(genome, PROBLEM.input_shape, PROBLEM.num_classes,
                                            BUDGET.width)
