"""REINFORCE's batch mode and LSTM controller; the ant colony's layer paths with progressive
depth on the global space (DeepSwarm)."""

from __future__ import annotations

import json

import pytest
import torch

from additive_space import AdditiveSpace, additive_weights, fitness
from nasforge.errors import ConfigError
from nasforge.evaluation.budget import Budget
from nasforge.spaces import get_space
from nasforge.spaces.global_dag import GlobalSpace, split_edge
from nasforge.strategies import Observation, Problem, get_strategy
from nasforge.strategies.aco import chain_genome, chain_ops, layer_type

BUDGET = Budget(epochs=1, width=8)
PROBLEM = Problem((1, 28, 28), 10)


def make(name: str, space=None, seed: int = 0, **settings):
    return get_strategy(name, space or AdditiveSpace(), BUDGET, PROBLEM, seed, **settings)


def observe(number: int, genome, value: float | None) -> Observation:
    return Observation(number, genome, BUDGET, "ok" if value is not None else "failed",
                       value, {})


# ------------------------------------------------------------------ REINFORCE
def _weights(strategy) -> list[torch.Tensor]:
    return [p.detach().clone() for p in strategy.controller.parameters()]


@pytest.mark.parametrize("controller", ["logits", "lstm"])
def test_batch_mode_waits_for_the_batch_then_updates_once(controller: str) -> None:
    weights = additive_weights(0)
    strategy = make("reinforce", controller=controller, batch=3)
    asked = [strategy.ask() for _ in range(3)]
    assert strategy.ask() is None  # the batch is out: wait
    before = _weights(strategy)
    for i, c in enumerate(asked[:2]):
        strategy.tell(observe(i, c.genome, fitness(weights, c.genome)))
        assert strategy.ask() is None and strategy.updates == 0
    assert all(torch.equal(a, b) for a, b in zip(before, _weights(strategy)))
    strategy.tell(observe(2, asked[2].genome, None))  # a failed result counts, reward 0
    assert strategy.updates == 1
    assert any(not torch.equal(a, b) for a, b in zip(before, _weights(strategy)))
    assert strategy.ask() is not None


def test_without_batch_it_never_waits_and_updates_per_result() -> None:
    strategy = make("reinforce")
    asked = [strategy.ask() for _ in range(5)]  # five in flight: no waiting
    assert all(c is not None for c in asked)
    for i, c in enumerate(asked):
        strategy.tell(observe(i, c.genome, 0.5))
    assert strategy.updates == 5


@pytest.mark.parametrize("settings", [{"controller": "lstm"}, {"batch": 4},
                                      {"controller": "lstm", "batch": 2}])
def test_state_mid_batch_round_trips(settings: dict) -> None:
    weights = additive_weights(2)
    a = make("reinforce", seed=1, **settings)
    for i in range(11):  # ends mid-batch (batch 2 and 4) with results pending
        c = a.ask()
        a.tell(observe(i, c.genome, fitness(weights, c.genome)))
    extra = a.ask()
    state = json.loads(json.dumps(a.state_dict()))
    b = make("reinforce", seed=7, **settings)
    b.load_state_dict(state)
    for s, c in ((a, extra), (b, extra)):
        s.tell(observe(11, c.genome, fitness(weights, c.genome)))
    for i in range(12, 20):
        ga, gb = a.ask().genome, b.ask().genome
        assert ga == gb
        a.tell(observe(i, ga, fitness(weights, ga)))
        b.tell(observe(i, gb, fitness(weights, gb)))


def test_controller_of_another_kind_is_refused_at_load() -> None:
    state = make("reinforce", controller="lstm").state_dict()
    with pytest.raises(ConfigError, match="controller"):
        make("reinforce").load_state_dict(state)
    with pytest.raises(ConfigError, match="controller"):
        make("reinforce", controller="gru")
    with pytest.raises(ConfigError, match="batch"):
        make("reinforce", batch=0)


def test_a_state_from_before_controllers_loads() -> None:
    old = {"rng": make("reinforce").state_dict()["rng"], "logits": [[0.5] * 5] * 6,
           "adam": {}, "baseline": 0.3, "updates": 4}
    strategy = make("reinforce")
    strategy.load_state_dict(old)
    assert strategy.updates == 4 and float(strategy.controller.logits.detach()[0, 0]) == 0.5


def test_lstm_controller_learns_a_rewarded_choice() -> None:
    """Zoph & Le's LSTM controller at its default lr: rewarded only for option 0 at step 0,
    the probability of that choice rises from about 1/5 to over 1/2 in 100 results."""
    strategy = make("reinforce", seed=0, controller="lstm")

    def p_first() -> float:
        with torch.no_grad():
            logits, _ = strategy.controller.step(strategy.controller.begin(), 0, None)
            return float(torch.softmax(logits[:5], dim=0)[strategy.index[0][0]])

    before = p_first()
    for i in range(100):
        genome = strategy.ask().genome
        strategy.tell(observe(i, genome, 1.0 if genome[0] == 0 else 0.0))
    assert 0.15 < before < 0.25 and p_first() > 0.5


# ------------------------------------------------------------------ ACO on the global space
SPACE = GlobalSpace(max_nodes=8)


def test_chain_genomes_carry_the_split_mutations_ids() -> None:
    genome = chain_genome(["conv3N", "maxpool2"])
    step = split_edge(SPACE.initial(), "in", "out", "conv3N")
    step = split_edge(step, step.nodes[-1].id, "out", "maxpool2")
    assert genome.to_dict() == step.to_dict()
    assert chain_ops(genome) == ["conv3N", "maxpool2"]
    assert layer_type("maxpool2") == "pool" and layer_type("conv5H") == "conv"


def _run_layers(strategy, iterations: int, score) -> list[list[list[str]]]:
    out, number = [], 0
    for _ in range(iterations):
        ops_seen = []
        for _ in range(strategy.ants):
            genome = strategy.ask().genome
            assert SPACE.validate(genome) == []
            ops = chain_ops(genome)
            ops_seen.append(ops)
            strategy.tell(observe(number, genome, score(ops)))
            number += 1
        out.append(ops_seen)
    return out


def test_progressive_depth_grows_one_layer_an_iteration() -> None:
    strategy = make("aco", space=SPACE, seed=3)
    seen = _run_layers(strategy, 5, lambda ops: len(ops) / 8)
    for it, chains in enumerate(seen):
        assert all(1 <= len(c) <= it + 1 for c in chains)  # depth limit 1, 2, 3, ...
        assert all(layer_type(c[0]) == "conv" for c in chains)  # Input -> Conv2D only
        assert all(not (layer_type(x) == layer_type(y) == "pool")  # no Pool2D -> Pool2D
                   for c in chains for x, y in zip(c, c[1:]))
    assert max(len(c) for c in seen[-1]) == 5  # deeper is rewarded: the limit is used
    fixed = make("aco", space=SPACE, seed=3, progressive=False, max_depth=6)
    first = _run_layers(fixed, 1, lambda ops: 0.5)[0]
    assert max(len(c) for c in first) > 1 and max(len(c) for c in first) <= 6


def test_layer_pheromone_finds_a_target_chain() -> None:
    """The reward counts the positions matching a 3-layer target (less for longer chains);
    the colony walks the target within 20 iterations of 16 ants in most seeds."""
    target = ["conv3N", "maxpool2", "conv5H"]

    def score(ops):
        return sum(a == b for a, b in zip(ops, target)) / 3 - 0.05 * abs(len(ops) - 3)

    hits = 0
    for seed in range(5):
        strategy = make("aco", space=SPACE, seed=seed, max_depth=4)
        seen = _run_layers(strategy, 20, score)
        hits += any(c == target for it in seen for c in it)
    assert hits >= 4


def test_layer_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="progressive"):
        make("aco", space=get_space("nb201"), progressive=True)
    with pytest.raises(ConfigError, match="max_depth"):
        make("aco", space=SPACE, max_depth=9)
    with pytest.raises(ConfigError, match="conv"):
        make("aco", space=GlobalSpace(operations=["maxpool2", "avgpool3"]))


# ------------------------------------------------------------------ presets
@pytest.mark.parametrize("preset,strategy,space", [
    ("genetic-quick", "genetic", "global"), ("aco-quick", "aco", "global"),
    ("reinforce-cell", "reinforce", "nb201"), ("remnet-nsga2", "nsga2", "global")])
def test_strategy_presets_fit_fifteen_minutes(preset: str, strategy: str, space: str) -> None:
    from nasforge.config import load_config

    config = load_config(preset)
    assert (config.strategy.name, config.space.name, config.data.dataset) == (
        strategy, space, "fashion-mnist")
    assert config.run.time_limit is None and config.final.total_seconds <= 15 * 60
    made = make(strategy, space=get_space(space, **config.space.settings),
                **config.strategy.settings) if strategy != "nsga2" else None
    assert made is None or made.name == strategy
    if preset == "remnet-nsga2":
        assert [(o.name, o.direction) for o in config.objectives] == [
            ("val_acc", "max"), ("params", "min")]
        assert config.final.pick == "front" and config.space.settings["merge_policy"] == "remnet"


HAVE_TABLE = __import__("importlib.util").util.find_spec("analognasbench") is not None


@pytest.mark.skipif(not HAVE_TABLE, reason="optional table: pip install --no-deps "
                    "analog-nasbench==0.1.3")
def test_batched_reinforce_searches_and_resumes_mid_batch(tmp_path, capsys) -> None:
    from nasforge.cli import main
    from nasforge.storage import StudyStorage

    db = tmp_path / "s.db"
    args = ["search", "quick", "--space", "nb201", "--evaluator", "tabular:nb201",
            "--storage", str(db), "--strategy", "reinforce",
            "--set", "strategy.settings={batch: 4, controller: lstm}"]
    assert main(args + ["--max-evals", "10"]) == 0
    with StudyStorage.open(db) as store:
        state = store.strategy_state()
    assert (state["updates"], state["asked"], len(state["pending"])) == (2, 2, 2)  # mid-batch
    assert main(args + ["--max-evals", "14", "--resume"]) == 0
    capsys.readouterr()
    with StudyStorage.open(db) as store:
        trials, state = store.trials(), store.strategy_state()
    assert len(trials) == 14 and len({t.number for t in trials}) == 14
    assert all(t.status == "ok" for t in trials) and state["updates"] == 3


def test_a_space_that_rejects_every_walk_is_one_line() -> None:
    from nasforge.errors import GenomeError

    tight = GlobalSpace(max_nodes=4, max_params=10)  # no network has 10 parameters or fewer
    with pytest.raises(GenomeError, match="max_params") as info:
        make("aco", space=tight).ask()
    assert "\n" not in str(info.value)
