"""Zero-cost proxies and the proxy pre-filter."""

from __future__ import annotations

import math
import random
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import torch
from torch import nn

from nasforge.execution.results import EvalResult
from nasforge.config import config_from_dict
from nasforge.errors import ConfigError
from nasforge.evaluation import baseline_cnn
from nasforge.evaluation.budget import Budget
from nasforge.evaluation.proxies import (
    available_proxies,
    compute_proxies,
    compute_proxy,
    rank_vote,
)
from nasforge.execution.runner import Runner
from nasforge.execution.tasks import EvalTask
from nasforge.spaces import get_space
from nasforge.storage.sqlite import StudyStorage
from nasforge.strategies import Problem, get_strategy
from nasforge.strategies.prefilter import PrefilterStrategy, parse_prefilter

from conftest import tiny_config_dict

SHAPE = (1, 12, 12)  # the synthetic data set's images
CLASSES = 4


def _batch(n: int = 24, shape: tuple[int, int, int] = SHAPE, classes: int = CLASSES,
           seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn((n, *shape), generator=g), torch.randint(0, classes, (n,), generator=g)


def test_every_proxy_scores_the_baseline_cnn() -> None:
    torch.manual_seed(0)
    model = baseline_cnn((1, 28, 28), 10, 16)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = _batch(16, (1, 28, 28), 10)
    scores = compute_proxies(model, x, y)
    assert set(scores) == set(available_proxies())
    for name, s in scores.items():
        assert s.ok and math.isfinite(s.value), (name, s.reason)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "proxies changed the model"


def test_proxies_score_at_least_45_of_50_random_genomes() -> None:
    space = get_space("global")
    rng = random.Random(0)
    x, y = _batch()
    genomes = []
    while len(genomes) < 50:
        g = space.sample(rng)
        if not space.validate_for(g, SHAPE, CLASSES, 8):
            genomes.append(g)
    finite = {name: 0 for name in available_proxies()}
    for i, g in enumerate(genomes):
        torch.manual_seed(i)
        model = space.build(g, SHAPE, CLASSES, 8)
        for name, s in compute_proxies(model, x, y).items():
            if s.ok:
                assert math.isfinite(s.value)
                finite[name] += 1
            else:
                assert s.value is None and s.reason, (name, s)
    assert all(count >= 45 for count in finite.values()), finite


def test_batch_order_invariance() -> None:
    torch.manual_seed(1)
    model = baseline_cnn(SHAPE, CLASSES, 8)
    x, y = _batch()
    perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(3))
    a = compute_proxies(model, x, y, ["synflow", "params", "flops", "naswot"])
    b = compute_proxies(model, x[perm], y[perm], ["synflow", "params", "flops", "naswot"])
    for name in ("synflow", "params", "flops"):
        assert a[name].value == b[name].value, name
    assert a["naswot"].value == pytest.approx(b["naswot"].value, rel=1e-9)


class _Broken(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom")


class _NoRelu(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.tanh(self.conv(x)).mean((2, 3)))


def test_a_proxy_never_raises() -> None:
    x, y = _batch()
    for name in available_proxies():
        if name == "params":  # counts parameters without running the network
            continue
        s = compute_proxy(name, _Broken(), x, y)
        assert s.value is None and "boom" in (s.reason or ""), (name, s)
    s = compute_proxy("naswot", _NoRelu(), x, y)
    assert s.value is None and "ReLU" in (s.reason or "")
    s = compute_proxy("nonsense", _NoRelu(), x, y)
    assert s.value is None and "unknown proxy" in (s.reason or "")


def test_rank_vote_by_hand() -> None:
    scores = {"a": [1.0, 2.0, 3.0], "b": [30.0, 10.0, None], "c": [5.0, 5.0, 9.0]}
    # a ranks: 0, .5, 1; b ranks (of two scored): 1, 0; c: .25, .25, 1 (tie at rank 1.5 of 3)
    vote = rank_vote(scores, ["a", "b", "c"])
    assert vote == pytest.approx([(0 + 1 + 0.25) / 3, (0.5 + 0 + 0.25) / 3, (1 + 1) / 2])


# ------------------------------------------------------------------------ pre-filter
def test_parse_prefilter() -> None:
    assert parse_prefilter("synflow:4") == parse_prefilter("synflow:4:1")
    assert parse_prefilter("naswot:8:2").keep == 2
    for bad in ("synflow", "synflow:x", "nope:4", "synflow:2:3", "synflow:0"):
        with pytest.raises(ConfigError):
            parse_prefilter(bad)


def _fake_evaluate(task: EvalTask) -> EvalResult:
    return EvalResult(status="ok", val_acc=0.5, params=1, flops=1, started_at=0.0,
                      finished_at=0.0)


def test_prefilter_trains_only_the_top_k_of_m(tmp_path) -> None:
    config = config_from_dict(tiny_config_dict(
        strategy={"name": "random", "settings": {}}, run={"max_evals": 6, "workers": 1}))
    space = get_space(config.space.name, **config.space.settings)
    problem = Problem(SHAPE, CLASSES)
    inner = get_strategy("random", space, config.budget, problem, 0)
    strategy = PrefilterStrategy(inner, "params:5:2", _batch(16), seed=0)
    storage = StudyStorage.create(tmp_path / "s.db", name="t", config=config.to_dict(),
                                  identity={}, identity_hash="x", provenance={})
    with ThreadPoolExecutor(1) as ex:
        Runner(config=config, storage=storage, space=space, strategy=strategy, executor=ex,
               evaluate=_fake_evaluate).run()
    trained = storage.trials()
    storage.close()
    assert len(trained) == 6
    assert len(strategy.scored) == 15  # three rounds of 5 proposals, 2 kept each
    from nasforge.execution.runner import genome_key

    trained_keys = [t.genome_key for t in trained]
    for r in range(3):
        round_ = strategy.scored[5 * r: 5 * r + 5]
        kept = [item for item in round_ if item[3]]
        assert len(kept) == 2
        best = sorted((s for _, _, s, _ in round_), reverse=True)[:2]
        assert sorted(s for _, _, s, _ in kept) == sorted(best)
        for g, *_ in kept:
            assert genome_key(space, space.canonical(g)) in trained_keys
    assert Budget.from_dict(trained[0].budget) == config.budget
    # the pre-filter's state resumes
    state = strategy.state_dict()
    clone = PrefilterStrategy(get_strategy("random", space, config.budget, problem, 0),
                              "params:5:2", _batch(16))
    clone.load_state_dict(state)
    assert clone.inner.rng.getstate() == inner.rng.getstate()
