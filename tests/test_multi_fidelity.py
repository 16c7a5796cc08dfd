"""Multi-fidelity strategies: bracket sizes, successive halving, ASHA's promotion rule, BOHB's
model, nested data subsets, exact continuation through the runner, kill and resume."""

from __future__ import annotations

import json
import math
import random
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import torch

from additive_space import AdditiveSpace, additive_weights, fitness
from conftest import tiny_config_dict
from nasforge.execution.results import EvalResult
from nasforge.config import config_from_dict
from nasforge.data.datasets import stratified_order, stratified_subset
from nasforge.errors import ConfigError
from nasforge.evaluation.budget import Budget
from nasforge.execution.runner import Runner
from nasforge.execution.tabular import InlineExecutor
from nasforge.spaces import get_space
from nasforge.spaces.base import genome_key
from nasforge.storage import StudyStorage
from nasforge.strategies import Observation, Problem, get_strategy
from nasforge.strategies.asha import ASHA
from nasforge.strategies.brackets import bracket_sizes, budget_ladder
from nasforge.strategies.hyperband import Hyperband

PROBLEM = Problem((3, 32, 32), 10)


# ------------------------------------------------------------------ bracket sizes
@pytest.mark.parametrize(("levels", "formula", "starting"), [
    (5, "paper", [81, 34, 15, 8, 5]),   # R = 81, eta = 3 (Li et al. 2018)
    (4, "paper", [27, 12, 6, 4]),       # R = 27
    (5, "bohb", [81, 27, 9, 6, 5]),     # hpbandster (Falkner et al. 2018)
    (4, "bohb", [27, 9, 6, 4]),
])
def test_bracket_sizes_equal_the_published_tables(levels, formula, starting) -> None:
    sizes = bracket_sizes(levels, 3, formula)
    assert [s[0] for s in sizes] == starting
    for rungs in sizes:  # each rung keeps floor(1/eta) of the one below
        assert all(b == a // 3 for a, b in zip(rungs, rungs[1:]))
    budget = Budget(epochs=3 ** (levels - 1))  # R = 81 or 27 epochs, min 1
    strategy = get_strategy("hyperband", get_space("nb201"), budget, PROBLEM, 0, formula=formula)
    assert strategy.schedule()["starting"] == starting
    assert [b.epochs for b in strategy.ladder] == [3 ** k for k in range(levels)]


def test_paper_is_the_default_and_bohb_uses_its_own_formula() -> None:
    budget = Budget(epochs=81)
    assert get_strategy("hyperband", get_space("nb201"), budget, PROBLEM, 0).formula == "paper"
    assert get_strategy("bohb", get_space("nb201"), budget, PROBLEM, 0).formula == "bohb"
    with pytest.raises(ConfigError, match="known: paper, bohb"):
        bracket_sizes(5, 3, "mine")


def test_ladders_on_each_axis() -> None:
    b = Budget(epochs=27, data_fraction=0.9, schedule="cosine")
    epochs = budget_ladder(b, "epochs", 3)
    assert [x.epochs for x in epochs] == [1, 3, 9, 27]
    assert all(x.schedule_span == 27 and x.data_fraction == 0.9 for x in epochs)
    fractions = budget_ladder(b, "data_fraction", 3, min_fraction=0.1)
    assert [x.data_fraction for x in fractions] == [0.1, 0.3, 0.9]
    assert all(x.epochs == 27 for x in fractions)
    both = budget_ladder(b, "both", 3, min_epochs=3, min_fraction=0.1)
    assert both[0].epochs == 3 and both[0].data_fraction == pytest.approx(0.1)
    assert both[-1] == b and all(x.epochs * x.data_fraction < y.epochs * y.data_fraction
                                 for x, y in zip(both, both[1:]))
    with pytest.raises(ConfigError, match="min_epochs"):
        budget_ladder(b, "epochs", 3, min_epochs=40)


# ------------------------------------------------------------------ a fake driver
def value(space: Any, genome: Any, budget: Budget) -> float:
    """A deterministic made-up accuracy rising with epochs and data fraction."""
    import hashlib

    key = json.dumps(space.genome_to_dict(genome), sort_keys=True)
    base = (int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % 997) / 997
    return base * (1 - 0.5 / (budget.epochs * budget.data_fraction + 0.5))


def drive(strategy: Any, limit: int = 10_000) -> list[tuple[Any, Observation]]:
    """Ask and tell in order, one worker, until the strategy waits; (candidate, observation)."""
    out = []
    for number in range(1, limit + 1):
        candidate = strategy.ask()
        if candidate is None:
            break
        obs = Observation(number, candidate.genome, candidate.budget, "ok",
                          value(strategy.space, candidate.genome, candidate.budget))
        strategy.tell(obs)
        out.append((candidate, obs))
    return out


def test_hyperband_runs_successive_halving_and_promotes_the_best_by_continuation() -> None:
    space = get_space("nb201")
    strategy = Hyperband(space, Budget(epochs=27), PROBLEM, 0, iterations=1)
    history = drive(strategy)
    assert len(history) == sum(sum(s) for s in strategy.sizes) == 27 + 9 + 3 + 1 + 12 + 4 + 1 \
        + 6 + 2 + 4
    by_number = {obs.number: (c, obs) for c, obs in history}
    for bracket in strategy.brackets:
        assert strategy.bracket_done(bracket)
        for rung in range(1, len(bracket["sizes"])):
            below, here = bracket["results"][rung - 1], bracket["results"][rung]
            assert len(here) == bracket["sizes"][rung]
            best = sorted(m["fitness"] for m in below)[-len(here):]
            parents = [by_number[m["number"]][0].parent for m in here]
            assert sorted(by_number[p][1].fitness for p in parents) == best
            for m, parent in zip(here, parents):  # the same network, continued
                assert by_number[parent][1].budget.epochs < by_number[m["number"]][1].budget.epochs
                assert genome_key(space, by_number[parent][1].genome) == m["key"]
    incumbent = strategy.incumbent()
    assert incumbent["level"] == 3  # from the highest rung reached
    assert incumbent["fitness"] == max(m["fitness"] for m in strategy.rungs()[3])


def test_hyperband_over_data_fraction_retrains_on_larger_subsets() -> None:
    strategy = Hyperband(get_space("nb201"), Budget(epochs=2, data_fraction=0.9), PROBLEM, 0,
                         axis="data_fraction", min_fraction=0.1, iterations=1)
    history = drive(strategy)
    assert not strategy.continues_trials
    assert {c.budget.data_fraction for c, _ in history} == {0.1, 0.3, 0.9}
    assert all(c.parent is None and c.budget.epochs == 2 for c, _ in history)


def test_nested_stratified_subsets() -> None:
    gen = torch.Generator().manual_seed(0)
    for y in (torch.arange(600) % 10,  # balanced, as Fashion-MNIST
              torch.multinomial(torch.tensor([0.5, 0.3, 0.15, 0.05]), 500, True, generator=gen)):
        order = stratified_order(y, seed=4)
        assert sorted(order.tolist()) == list(range(len(y)))
        counts = torch.bincount(y).double()
        share = counts / len(y)
        worst = 0.0
        for k in range(1, len(y) + 1):
            have = torch.bincount(y[order[:k]], minlength=len(counts)).double()
            worst = max(worst, float((have - k * share).abs().max()))
        bound = float((0.5 + len(counts) * share / 2).max())
        assert worst <= bound + 1e-9
        small, mid, full = (set(stratified_subset(y, f, 4).tolist()) for f in (1 / 9, 1 / 3, 1.0))
        assert small < mid < full and len(mid) == round(len(y) / 3)
    balanced = torch.arange(600) % 10
    sub = stratified_subset(balanced, 0.1, 4)
    assert torch.bincount(balanced[sub]).tolist() == [6] * 10
    assert not torch.equal(sub, stratified_subset(balanced, 0.1, 5))


# ------------------------------------------------------------------ ASHA
def test_asha_promotes_nothing_from_a_rung_with_fewer_than_eta_results() -> None:
    space = get_space("nb201")
    strategy = ASHA(space, Budget(epochs=9), PROBLEM, 0)
    told = []
    for number, fit in enumerate([0.5, 0.9], start=1):
        c = strategy.ask()
        assert c.budget.epochs == 1 and c.parent is None
        strategy.tell(Observation(number, c.genome, c.budget, "ok", fit))
        told.append(c)
    c = strategy.ask()  # two results at rung 0: a new network, no promotion
    assert c.budget.epochs == 1 and c.parent is None
    strategy.tell(Observation(3, c.genome, c.budget, "ok", 0.1))
    c = strategy.ask()  # three: the best (trial 2) goes on, continuing its trial
    assert c.budget.epochs == 3 and c.parent == 2
    assert genome_key(space, c.genome) == genome_key(space, told[1].genome)
    # asynchronous: while that promotion runs, the next ask starts a new network
    nxt = strategy.ask()
    assert nxt.budget.epochs == 1 and nxt.parent is None


def test_asha_never_waits_and_its_incumbent_is_from_the_highest_rung() -> None:
    strategy = ASHA(get_space("nb201"), Budget(epochs=9), PROBLEM, 1)
    history = drive(strategy, limit=120)
    assert len(history) == 120  # never returned None
    rungs = strategy.rungs()
    # a member may leave the top third after its promotion, so a rung can hold a little more
    # than a third of the one below (Li et al. 2020, Section 3.2)
    assert len(rungs[2]) >= 1 and all(len(rungs[k + 1]) < len(rungs[k]) for k in range(2))
    assert strategy.incumbent()["level"] == 2


# ------------------------------------------------------------------ BOHB
def test_bohb_model_proposals_beat_uniform_samples_on_a_known_objective() -> None:
    space = AdditiveSpace()
    weights = additive_weights(0)

    def run(name: str) -> list[float]:
        strategy = get_strategy(name, space, Budget(epochs=1), PROBLEM, 0)
        got = []
        for number in range(1, 81):
            c = strategy.ask()
            f = fitness(weights, c.genome)
            strategy.tell(Observation(number, c.genome, c.budget, "ok", f))
            got.append(f)
        return got

    bohb, rand = run("bohb"), run("random")
    late_bohb, late_rand = sum(bohb[40:]) / 40, sum(rand[40:]) / 40
    assert late_bohb > late_rand + 0.05, (late_bohb, late_rand)
    strategy = get_strategy("bohb", space, Budget(epochs=1), PROBLEM, 0)
    assert strategy.mode == "kde" and strategy.dimensions() == 6


def test_bohb_fits_on_the_largest_budget_with_enough_points() -> None:
    strategy = get_strategy("bohb", get_space("nb201"), Budget(epochs=9), PROBLEM, 0)
    drive(strategy, limit=40)
    level = strategy.model_level()
    need = 2 * (strategy.dimensions() + 1)
    rungs = strategy.rungs()
    assert level is not None and len(rungs[level]) >= need
    assert all(len(rungs[k]) < need for k in range(level + 1, len(rungs)))
    fitted = strategy.model()
    assert fitted is not None and fitted[0] == level
    levels = [len(strategy.vocab[j]) for j in strategy.steps]
    assert all(1e-3 <= bw <= (c - 1) / c for bw, c in zip(fitted[1].bw, levels))


def test_bohb_on_the_global_space_proposes_by_mutation() -> None:
    space = get_space("global", max_nodes=4)
    strategy = get_strategy("bohb", space, Budget(epochs=1), Problem((1, 12, 12), 3), 0)
    assert strategy.mode == "mutation"
    drive(strategy, limit=12)  # reaches the mutation phase without error


# ------------------------------------------------------------------ through the runner
def fake_evaluate(task: Any) -> dict[str, Any]:
    """A result without training: the made-up value, a curve, the state file kept."""
    space = get_space(task.space_name, **task.space_settings)
    budget = Budget.from_dict(task.budget)
    genome = space.genome_from_dict(task.genome)
    if task.extra.get("save_state"):
        Path(task.extra["save_state"]).parent.mkdir(parents=True, exist_ok=True)
        Path(task.extra["save_state"]).write_text("state")
    acc = value(space, genome, budget)
    curve = [{"epoch": e, "val_acc": acc * e / budget.epochs, "train_loss": 1.0 / e}
             for e in range(1, budget.epochs + 1)]
    return EvalResult(trial_number=task.trial_number, status="ok", val_acc=acc, params=10,
                      curve=curve, started_at=0.0, finished_at=1.0)


class Killed(BaseException):
    """The driver dying (kill -9) right after a trial was added to the study."""


class KillingExecutor(InlineExecutor):
    """Runs tasks at once; the ``kill_at``-th submission kills the driver instead."""

    def __init__(self, kill_at: int | None) -> None:
        super().__init__(1)
        self.kill_at, self.count = kill_at, 0

    def submit(self, fn, /, *args, **kwargs) -> Future:
        self.count += 1
        if self.count == self.kill_at:
            raise Killed()
        return super().submit(fn, *args, **kwargs)


def _hb_config(tmp_path: Path, name: str):
    raw = tiny_config_dict(
        space={"name": "nb201", "settings": {}},
        strategy={"name": "hyperband", "settings": {"iterations": 1}},
        budget={"epochs": 9, "width": 4, "batch_size": 8},
        run={"max_evals": 1000, "workers": 1, "keep_best": 0})
    return config_from_dict(raw, name)


def _run(tmp_path: Path, name: str, kill_at: int | None, resume: bool = False) -> StudyStorage:
    config = _hb_config(tmp_path, name)
    space = get_space("nb201")
    strategy = get_strategy("hyperband", space, config.budget, PROBLEM, config.seed,
                            **config.strategy.settings)
    path = tmp_path / f"{name}.db"
    if resume:
        storage = StudyStorage.open(path, write=True)
        strategy.load_state_dict(storage.strategy_state())
    else:
        storage = StudyStorage.create(path, name=name, config=config.to_dict(), identity={},
                                      identity_hash="x", provenance={})
    runner = Runner(config=config, storage=storage, space=space, strategy=strategy,
                    executor=KillingExecutor(kill_at), evaluate=fake_evaluate)
    try:
        runner.run()
    except Killed:
        pass
    return storage


def _rows(storage: StudyStorage) -> list[tuple]:
    return [(t.number, t.genome_key, json.dumps(t.budget, sort_keys=True), t.parent, t.status,
             t.val_acc) for t in storage.trials()]


@pytest.mark.parametrize("kill_at", [5, 10, 11, 13])  # rung 0; the first, a later promotion
def test_kill_in_a_bracket_and_resume(tmp_path, kill_at) -> None:
    reference = _run(tmp_path, "ref", None)
    expected = _rows(reference)
    reference.close()
    assert len(expected) == 9 + 3 + 1 + 5 + 1 + 3  # paper brackets for R = 9: 9/5/3

    killed = _run(tmp_path, "k", kill_at)
    before = _rows(killed)
    state = killed.strategy_state()
    killed.close()
    assert before[-1][4] == "running" and len(before) == kill_at
    assert all(row[4] == "ok" for row in before[:-1])
    resumed = _run(tmp_path, "k", None, resume=True)
    after = _rows(resumed)
    attempts = resumed.trial(kill_at).attempts
    resumed.close()
    # the running trial was re-queued (same number, not asked again), nothing finished lost
    assert attempts == 2 and after[:kill_at - 1] == before[:-1]
    assert after == expected  # the brackets completed exactly as an uninterrupted run
    keys = [(r[1], r[2]) for r in after]
    assert len(set(keys)) == len(keys)  # no promotion repeated
    assert state["pending"]  # the decided ask was in the stored state


@pytest.mark.timeout(120)
def test_search_stores_brackets_and_a_promoted_curve_continues_its_parent(tmp_path) -> None:
    from nasforge.api import Search

    raw = tiny_config_dict(
        strategy={"name": "hyperband", "settings": {"iterations": 1}},
        budget={"epochs": 3, "width": 4, "batch_size": 32, "max_steps": 3},
        run={"max_evals": 100, "workers": 1, "keep_best": 0})
    config = config_from_dict(raw, "hb")
    lines: list[str] = []

    class Lines:
        def message(self, text: str) -> None:
            lines.append(text)

        def __getattr__(self, name: str) -> Any:
            return lambda *a, **k: None

    search = Search(config, tmp_path / "hb.db", reporter=Lines())  # type: ignore[arg-type]
    executor = ThreadPoolExecutor(1)
    try:
        search.run(executor)
        meta = search.storage.meta_value("multi_fidelity")
        trials = search.storage.trials()
    finally:
        executor.shutdown()
        search.close()
    assert any("starting networks 3/2" in line for line in lines)  # printed before the run
    assert meta["brackets"] == [[3, 1], [2]] and meta["formula"] == "paper"
    assert len(trials) == 6 and all(t.status == "ok" for t in trials)
    (child,) = [t for t in trials if t.parent is not None]
    parent = next(t for t in trials if t.number == child.parent)
    first_rung = [t for t in trials[:3]]
    assert parent.val_acc == max(t.val_acc for t in first_rung)
    assert child.kind == "continue" and child.genome_key == parent.genome_key
    assert [r["epoch"] for r in child.curve] == [1, 2, 3] and len(parent.curve) == 1
    assert child.curve[0] == parent.curve[0]  # the child's curve continues its parent's
    assert not math.isclose(child.curve[2]["train_loss"], parent.curve[0]["train_loss"])


def test_state_is_json_and_restores_the_next_asks() -> None:
    space = get_space("nb201")
    for name in ("hyperband", "asha", "bohb"):
        a = get_strategy(name, space, Budget(epochs=9), PROBLEM, 2)
        drive(a, limit=25)
        b = get_strategy(name, space, Budget(epochs=9), PROBLEM, 7)
        b.load_state_dict(json.loads(json.dumps(a.state_dict())))
        rng = random.Random(0)
        for number in range(100, 110):
            ca, cb = a.ask(), b.ask()
            assert (genome_key(space, ca.genome), ca.budget, ca.parent) == \
                (genome_key(space, cb.genome), cb.budget, cb.parent)
            f = rng.random()
            a.tell(Observation(number, ca.genome, ca.budget, "ok", f))
            b.tell(Observation(number, cb.genome, cb.budget, "ok", f))


def test_report_shows_rungs_brackets_and_promotions(tmp_path) -> None:
    from nasforge.report.html import _rungs_section, load_snapshot
    from nasforge.report.rungs import rungs_section

    storage = _run(tmp_path, "rep", None)
    strategy = get_strategy("hyperband", get_space("nb201"), Budget(epochs=9), PROBLEM, 0,
                            iterations=1)
    storage.set_meta_value("multi_fidelity", strategy.schedule())  # as Search stores it
    storage.close()
    html = rungs_section(tmp_path / "rep.db")
    assert "Rungs and brackets" in html and "9/3/1" in html and "5/1" in html
    # trial 13 continued the best of trials 10-12 at 9 epochs
    with StudyStorage.open(tmp_path / "rep.db") as s:
        child = s.trial(13)
    assert f"trial {child.parent} (" in html and "trial 13 (" in html
    assert "3 ep -&gt; 9 ep" in html or "3 ep -> 9 ep" in html
    # the report renders it (the whole page draws plots for seconds: the section alone here)
    assert _rungs_section(load_snapshot(tmp_path / "rep.db")) == html
    plain = StudyStorage.create(tmp_path / "plain.db", name="plain", config={}, identity={},
                                identity_hash="x", provenance={})
    plain.close()
    assert rungs_section(tmp_path / "plain.db") == ""  # not a multi-fidelity study


def test_bench_refuses_a_multi_fidelity_strategy_in_one_line() -> None:
    from nasforge.benchmarks.bench import run_strategy

    with pytest.raises(ConfigError, match="benchmarks/multi_fidelity.py"):
        run_strategy("hyperband", get_space("nb201"), table=None, evals=3, seeds=[0])


def test_the_prefilter_refuses_a_multi_fidelity_strategy() -> None:
    from nasforge.strategies.prefilter import PrefilterStrategy

    inner = get_strategy("hyperband", get_space("nb201"), Budget(epochs=9), PROBLEM, 0)
    with pytest.raises(ConfigError, match="cannot wrap 'hyperband' on several budgets"):
        PrefilterStrategy(inner, "params:3:1", (None, None))


def test_asha_kept_order_gives_the_rule_it_documents() -> None:
    from nasforge.strategies.asha import promotable

    rng = random.Random(3)
    strategy = ASHA(get_space("nb201"), Budget(epochs=9), PROBLEM, 4)
    for number in range(1, 60):
        c = strategy.ask()
        fit = None if number % 7 == 0 else rng.random()
        strategy.tell(Observation(number, c.genome, c.budget, "ok" if fit else "failed", fit))
        for level, members in enumerate(strategy.levels):  # incremental == sorted afresh
            assert promotable(members, 3, strategy._order[level]) == promotable(members, 3)
