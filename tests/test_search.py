from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import tiny_config_dict
from nasforge.execution.results import EvalResult
from nasforge.api import Search
from nasforge.config import config_from_dict
from nasforge.errors import ConfigError, StorageError
from nasforge.execution.isolation import IsolatedEvaluate
from nasforge.execution.runner import Runner
from nasforge.storage import StudyStorage


def _keys_and_accs(path: Path) -> list[tuple[str, float | None]]:
    with StudyStorage.open(path) as store:
        return [(t.genome_key, t.val_acc) for t in store.trials()]


@pytest.mark.timeout(180)
def test_search_runs_records_and_keeps_best_weights(tmp_path, tiny_config) -> None:
    db = tmp_path / "s.db"
    search = Search(tiny_config, db)
    summary = search.run()
    search.close()
    assert summary.finished == 8 and summary.running_left == 0
    assert summary.best is not None and 0.0 <= summary.best.val_acc <= 1.0
    with StudyStorage.open(db) as store:
        trials = store.trials()
        assert len(trials) == 8
        assert all(t.status in ("ok", "failed") for t in trials)
        ok = [t for t in trials if t.status == "ok"]
        assert ok and all(t.curve and t.params and t.flops for t in ok)
        # canonical genomes are never trained twice under the same budget
        assert len({t.genome_key for t in trials}) == len(trials)
        kept = [t for t in trials if t.checkpoint]
        assert 1 <= len(kept) <= 2
        # absolute paths: they mean the same from any working directory
        assert all(Path(t.checkpoint).is_absolute() and Path(t.checkpoint).is_file() for t in kept)
        study = store.study()
        assert study["provenance"]["torch"] and study["identity"]["seed"] == 0
        assert store.strategy_state() is not None
    weights = list((tmp_path / "s_files" / "weights").glob("*.pt"))
    assert len(weights) == len(kept)
    assert (tmp_path / "s_files" / "search.log").read_text().count("submitted") == 8


@pytest.mark.timeout(240)
def test_same_seed_one_worker_same_trajectory(tmp_path) -> None:
    cfg = config_from_dict(tiny_config_dict(run={"workers": 1, "max_evals": 6}), "t")
    runs = []
    for name in ("a.db", "b.db"):
        search = Search(cfg, tmp_path / name)
        search.run()
        search.close()
        runs.append(_keys_and_accs(tmp_path / name))
    assert runs[0] == runs[1]
    other = config_from_dict(tiny_config_dict(seed=1, run={"workers": 1, "max_evals": 6}), "t")
    search = Search(other, tmp_path / "c.db")
    search.run()
    search.close()
    assert _keys_and_accs(tmp_path / "c.db") != runs[0]


def test_resume_refuses_another_study_unless_forced(tmp_path, tiny_config) -> None:
    db = tmp_path / "s.db"
    Search(tiny_config, db).close()
    changed = config_from_dict(tiny_config_dict(budget={"epochs": 2}), "t")
    before = db.read_bytes()
    with pytest.raises(StorageError, match=r"another study.*budget\.epochs"):
        Search(changed, db, resume=True)
    assert db.read_bytes() == before
    with pytest.raises(StorageError, match="already exists"):
        Search(tiny_config, db)
    # how it runs may change freely
    more = config_from_dict(tiny_config_dict(run={"max_evals": 20, "workers": 1}), "t")
    Search(more, db, resume=True).close()
    Search(changed, db, resume=True, force=True).close()


def test_each_run_of_a_study_keeps_its_own_provenance_row(tmp_path) -> None:
    """A --resume adds a run row (start, end, provenance, run settings, stop reason) and never
    overwrites the earlier ones."""
    db = tmp_path / "r.db"
    first = config_from_dict(tiny_config_dict(run={"workers": 1, "max_evals": 2}), "t")
    search = Search(first, db)
    search.run()
    search.close()
    more = config_from_dict(tiny_config_dict(run={"workers": 1, "max_evals": 3}), "t")
    search = Search(more, db, resume=True)
    search.run()
    search.close()
    with StudyStorage.open(db) as store:
        runs = store.runs()
    assert [r["number"] for r in runs] == [1, 2]
    assert [r["settings"]["run"]["max_evals"] for r in runs] == [2, 3]
    assert [r["settings"]["resume"] for r in runs] == [False, True]
    assert all(r["stop_reason"] == "max_evals reached" and r["ended_at"] >= r["started_at"]
               and "torch" in r["provenance"] for r in runs)


def test_unknown_names_list_known_ones(tmp_path) -> None:
    with pytest.raises(ConfigError, match="known: .*evolution.*random"):
        Search(config_from_dict(tiny_config_dict(strategy={"name": "nope"}), "t"), tmp_path / "x.db")
    with pytest.raises(ConfigError, match="known: .*global"):
        Search(config_from_dict(tiny_config_dict(space={"name": "nope"}), "t"), tmp_path / "y.db")
    assert not (tmp_path / "x.db").exists()


@pytest.mark.timeout(120)
def test_duplicates_are_reused_not_retrained(tmp_path) -> None:
    cfg = config_from_dict(tiny_config_dict(
        strategy={"name": "random", "settings": {}},
        space={"name": "global", "settings": {"max_nodes": 6, "head": "gap",
                                             "initial_mutations": 1,
                                             "operations": ["maxpool2", "avgpool2"]}},
        run={"max_evals": 4, "workers": 1},
    ), "t")
    search = Search(cfg, tmp_path / "d.db")
    summary = search.run()
    search.close()
    # this space holds two networks (in -> maxpool2 -> out, in -> avgpool2 -> out): each is
    # trained once, every later proposal reuses a stored result, and the search stops cleanly
    assert summary.reused > 0
    keys = [k for k, _ in _keys_and_accs(tmp_path / "d.db")]
    assert len(keys) == len(set(keys)) == 2
    assert summary.stop_reason == "the strategy proposes only evaluated genomes"


def _raise_for_odd(task):
    if task.trial_number % 2:
        raise RuntimeError(f"boom in trial {task.trial_number}")
    from nasforge.execution.tasks import evaluate_task

    return evaluate_task(task)


@pytest.mark.timeout(120)
def test_an_evaluation_that_raises_is_stored_failed_and_search_goes_on(tmp_path, tiny_config) -> None:
    db = tmp_path / "f.db"
    search = Search(tiny_config, db)
    runner = Runner(config=tiny_config, storage=search.storage, space=search.space,
                    strategy=search.strategy, executor=ThreadPoolExecutor(2),
                    evaluate=IsolatedEvaluate(evaluate=_raise_for_odd))
    summary = runner.run()
    search.close()
    assert summary.finished == 8
    with StudyStorage.open(db) as store:
        failed = store.trials("failed")
        assert failed and all("boom in trial" in t.error for t in failed)
        assert all(t.number % 2 for t in failed)
        assert all("RuntimeError" in (t.stderr or "") for t in failed)


def _score_without_training(task) -> dict[str, Any]:
    """A made-up fitness per network (no training), so a long search takes a second."""
    import hashlib

    from nasforge.execution.runner import genome_key
    from nasforge.spaces import get_space

    space = get_space(task.space_name, **task.space_settings)
    key = genome_key(space, space.genome_from_dict(task.genome))
    now = time.time()
    return EvalResult(status="ok",
                      val_acc=int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 2**32,
                      params=1, flops=1, started_at=now, finished_at=now)


def _merges(genome: Any, space: Any) -> bool:
    """Whether the network of ``genome`` has a node (or the output) with several inputs."""
    inputs: dict[str, int] = {}
    for edge in space.canonical(genome).edges:
        inputs[edge.dst] = inputs.get(edge.dst, 0) + 1
    return any(n > 1 for n in inputs.values())


@pytest.mark.timeout(120)
def test_evolution_reaches_branching_networks(tmp_path) -> None:
    """Sampling makes chains; branches come only from re-enabling an edge a split disabled, so
    the strategy must be told the genome it proposed (inactive genes included), not the
    pruned canonical form (with which no search ever left the chains)."""
    cfg = config_from_dict(tiny_config_dict(
        strategy={"name": "evolution", "settings": {"population": 8, "sample": 3}},
        space={"name": "global", "settings": {"max_nodes": 8, "head": "gap"}},
        run={"max_evals": 120, "workers": 1, "keep_best": 0},
    ), "b")
    search = Search(cfg, tmp_path / "b.db")
    runner = Runner(config=cfg, storage=search.storage, space=search.space,
                    strategy=search.strategy, executor=ThreadPoolExecutor(1),
                    evaluate=_score_without_training)
    summary = runner.run()
    space = search.space
    trials = search.storage.trials()
    population = list(search.strategy.population)
    search.close()
    assert summary.ok == 120
    assert summary.reused <= 3  # networks proposed before are drawn again (novelty_tries)
    genomes = [space.genome_from_dict(t.genome) for t in trials]
    assert not any(_merges(g, space) for g in genomes[:8])  # the random initial population
    assert sum(_merges(g, space) for g in genomes) >= 5
    # the stored trials and the population keep the disabled genes of their lineage
    assert any(not e.enabled for g, _ in population for e in g.edges)
    assert any(not e.enabled for g in genomes for e in g.edges)


def test_evolution_ignores_a_non_finite_fitness(tiny_config) -> None:
    from nasforge.evaluation.budget import Budget
    from nasforge.spaces import get_space
    from nasforge.strategies import Observation, Problem, get_strategy

    space = get_space("global", max_nodes=6, head="gap")
    strategy = get_strategy("evolution", space, Budget(width=4), Problem((1, 8, 8), 3), 0,
                            population=4, sample=2)
    genome = strategy.ask().genome
    for number, fitness in enumerate([float("nan"), float("inf"), 0.5]):
        strategy.tell(Observation(number=number, genome=genome, budget=Budget(width=4),
                                  status="ok", fitness=fitness, metrics={}))
    assert [f for _, f in strategy.population] == [0.5]


def test_evolution_proposes_every_warm_start_genome_first() -> None:
    from nasforge.evaluation.budget import Budget
    from nasforge.spaces import genome_key, get_space
    from nasforge.strategies import Problem, get_strategy

    space = get_space("global", max_nodes=6, head="gap")
    strategy = get_strategy("evolution", space, Budget(width=4), Problem((1, 8, 8), 3), 0,
                            population=2, sample=1)
    seeds = [space.sample(random.Random(i)) for i in range(3)]  # more than the population
    strategy.warm_start(seeds)
    asked = [strategy.ask().genome for _ in range(3)]
    assert [genome_key(space, g) for g in asked] == [genome_key(space, g) for g in seeds]
    assert strategy.initial_asked == 2  # the population is full of warm-start genomes


def _stop_then_die(task) -> dict[str, Any]:
    """Ctrl-C arrives, then the worker dies: the evaluation is lost because of the stop."""
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.3)
    raise RuntimeError("worker died")


@pytest.mark.timeout(120)
def test_an_evaluation_lost_while_stopping_is_left_for_resume(tmp_path) -> None:
    cfg = config_from_dict(tiny_config_dict(run={"max_evals": 3, "workers": 1}), "s")
    db = tmp_path / "s.db"
    search = Search(cfg, db)
    runner = Runner(config=cfg, storage=search.storage, space=search.space,
                    strategy=search.strategy, executor=ThreadPoolExecutor(1),
                    evaluate=_stop_then_die)
    summary = runner.run()
    search.close()
    assert summary.stop_reason == "interrupted" and summary.failed == 0
    with StudyStorage.open(db) as store:
        assert [t.status for t in store.trials()] == ["running"]  # not a failure
    search = Search(cfg, db, resume=True)
    summary = search.run()
    search.close()
    with StudyStorage.open(db) as store:
        trials = store.trials()
    assert summary.ok == 3 and [t.status for t in trials] == ["ok"] * 3
    assert trials[0].attempts == 2  # the cut-short evaluation ran again


def _wait_for(db: Path, proc: subprocess.Popen, finished_more_than: int, timeout: float = 90) -> bool:
    """Wait until the study has more than ``finished_more_than`` finished trials and one running."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
        if not db.exists():
            continue
        try:
            with StudyStorage.open(db) as store:
                if store.count_finished() > finished_more_than and store.count("running") > 0:
                    return True
        except Exception:
            continue
    return False


@pytest.mark.timeout(300)
def test_sigkill_runner_then_resume_loses_nothing(tmp_path) -> None:
    cfg_path = tmp_path / "kill.yaml"
    raw = tiny_config_dict(run={"max_evals": 12, "workers": 2},
                           budget={"max_steps": 10, "epochs": 4, "width": 8})
    cfg_path.write_text(yaml.safe_dump(raw))
    db = tmp_path / "k.db"
    cmd = [sys.executable, "-m", "nasforge", "search", str(cfg_path), "--storage", str(db),
           "--quiet"]
    rng = random.Random(0)
    snapshots: dict[int, tuple] = {}
    interrupted_mid_search = 0
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for kill_round in range(3):
        args = cmd + (["--resume"] if db.exists() else [])
        proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True)
        # kill at a random moment once this round has finished a trial and has another running
        extra = rng.uniform(0.0, 0.3)
        if _wait_for(db, proc, len(snapshots), timeout=120):
            time.sleep(extra)
        os.killpg(proc.pid, signal.SIGKILL)  # the runner and its workers die at once
        proc.wait()
        if not db.exists():
            continue
        with StudyStorage.open(db) as store:
            if store.count("running") and store.count_finished() < 12:
                interrupted_mid_search += 1
            for t in store.trials():
                if t.finished:
                    if t.number in snapshots:
                        assert snapshots[t.number] == (t.status, t.val_acc, t.finished_at)
                    snapshots[t.number] = (t.status, t.val_acc, t.finished_at)
    done = subprocess.run(cmd + ["--resume"], env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    with StudyStorage.open(db) as store:
        trials = store.trials()
        assert store.count_finished() == 12
        assert store.count("running") == 0
        for t in trials:
            if t.number in snapshots:  # finished before a kill: never trained again, never lost
                assert snapshots[t.number] == (t.status, t.val_acc, t.finished_at)
        assert len({t.genome_key for t in trials}) == len(trials)
        assert any(t.attempts > 1 for t in trials)  # some evaluation was re-queued
    assert interrupted_mid_search >= 1 and snapshots


@pytest.mark.timeout(120)
def test_ctrl_c_stops_cleanly_and_twice_stops_at_once(tmp_path) -> None:
    cfg_path = tmp_path / "int.yaml"
    # evaluations of a second or more, so that some are running when Ctrl-C comes
    # (tiny evaluations held for 1.5 s each by a fault point: cheap, and always running)
    raw = tiny_config_dict(run={"max_evals": 8, "workers": 2, "grace_period": 120},
                           budget={"max_steps": 3, "epochs": 1, "width": 4}, final=None)
    cfg_path.write_text(yaml.safe_dump(raw))
    db = tmp_path / "i.db"
    cmd = [sys.executable, "-m", "nasforge", "search", str(cfg_path), "--storage", str(db)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "NASFORGE_FAULTS": "eval-start=sleep:1.5"}

    # one Ctrl-C (to the whole process group, as a terminal sends it): no new evaluations, the
    # running ones finish within the grace period and are stored, the command exits normally
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    assert _wait_for(db, proc, 0)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "stopped: interrupted" in out and "Traceback" not in err
    with StudyStorage.open(db) as store:
        first = {t.number: (t.status, t.val_acc) for t in store.trials()}
        assert store.count("running") == 0  # the grace period let them finish
        assert 0 < store.count_finished() < 8
    assert all(status == "ok" for status, _ in first.values())

    # Ctrl-C twice: stop now; what was running stays 'running' and is re-queued on --resume
    proc = subprocess.Popen(cmd + ["--resume"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    assert _wait_for(db, proc, len(first))
    os.killpg(proc.pid, signal.SIGINT)
    time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGINT)
    stopped_at = time.time()
    out, err = proc.communicate(timeout=60)
    assert time.time() - stopped_at < 10, "a second Ctrl-C must not wait for running evaluations"
    assert "Traceback" not in err, err
    with StudyStorage.open(db) as store:
        left_running = store.count("running")
        for t in store.trials():
            if t.number in first:
                assert (t.status, t.val_acc) == first[t.number]  # nothing stored was lost
    assert left_running >= 1, (out, err, [(t.number, t.status, t.attempts, t.error) for t in StudyStorage.open(db).trials()][-6:])

    done = subprocess.run(cmd + ["--resume", "--quiet"], env={**env, "NASFORGE_FAULTS": ""},
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    with StudyStorage.open(db) as store:
        assert store.count_finished() == 8 and store.count("running") == 0
        assert any(t.attempts > 1 for t in store.trials())  # the abandoned ones were re-run


@pytest.mark.timeout(120)
def test_remnet_preset_at_tiny_scale_runs_tournament_mutation_and_aging(tmp_path, monkeypatch) -> None:
    from nasforge.config import apply_overrides, load_config
    from nasforge.strategies.evolution import RegularizedEvolution

    config = apply_overrides(load_config("remnet"), [
        "data.dataset=synthetic", "strategy.settings={population: 4, sample: 2}",
        "run.max_evals=8", "run.workers=1", "budget.epochs=1", "budget.max_steps=6",
        "budget.width=4", "final=null",
    ])
    assert config.space.settings["head"] == "remnet" and config.space.settings["merge_policy"] == "remnet"
    tournaments: list[tuple[list[float], list[float], float]] = []
    mutate_valid = RegularizedEvolution.mutate_valid
    draws: list[Any] = []

    class RecordingRandom(random.Random):
        def choice(self, seq):  # record the tournament's draws (members are (genome, fitness))
            picked = super().choice(seq)
            if isinstance(picked, tuple) and len(picked) == 2 and isinstance(picked[1], float):
                draws.append(picked)
            return picked

    def spy(self, parent):  # the parent must be the fittest of the tournament just drawn
        fitness = {id(g): f for g, f in self.population}
        contenders = [f for _, f in draws[-2:]]
        tournaments.append(([f for _, f in self.population], contenders, fitness[id(parent)]))
        return mutate_valid(self, parent)

    monkeypatch.setattr(RegularizedEvolution, "mutate_valid", spy)
    search = Search(config, tmp_path / "remnet.db")
    recording = RecordingRandom()
    recording.setstate(search.strategy.rng.getstate())
    search.strategy.rng = recording
    summary = search.run()
    state = search.storage.strategy_state()
    trials = search.storage.trials()
    search.close()
    assert summary.finished == 8
    assert len(tournaments) == 8 - 4  # every ask after the 4 initial samples is a child
    assert len(draws) == 2 * len(tournaments)  # sample 2: two draws per tournament
    for population_fitness, contenders, parent_fitness in tournaments:
        assert len(population_fitness) == 4
        assert set(contenders) <= set(population_fitness)
        assert parent_fitness == max(contenders)
    ok = [t for t in trials if t.status == "ok"]
    # aging: the population is the 4 most recent successful trials, oldest first
    assert [f for _, f in state["population"]] == [t.val_acc for t in ok[-4:]]
    assert [g for g, _ in state["population"]] == [t.genome for t in ok[-4:]]
