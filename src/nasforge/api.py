"""The Python API: run a search from a config, train finalists, read results back."""

from __future__ import annotations

import json
import os
import platform
import socket
import statistics
import subprocess
from concurrent.futures import FIRST_COMPLETED, Executor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nasforge
from nasforge.config import SearchConfig
from nasforge.data.fingerprint import data_facts, store_data_facts
from nasforge.errors import ConfigError, StorageError
from nasforge.evaluation.budget import Budget
from nasforge.execution.executors import make_executor, shutdown_now
from nasforge.execution.final_plan import describe_plan, plan_final, speed_extra
from nasforge.execution.guard import check_not_bootstrapping
from nasforge.execution.isolation import IsolatedEvaluate
from nasforge.execution.runner import Reporter, Runner, RunSummary, genome_key
from nasforge.execution.stops import GracefulStop
from nasforge.execution.tasks import EvalTask, load_splits, model_seed
from nasforge.spaces import get_space
from nasforge.spaces.base import SearchSpace
from nasforge.spaces.warm_start import load_genome_items, sort_warm_start
from nasforge.storage.sqlite import (
    StudyStorage,
    TrialRecord,
    artifacts_dir,
    budget_key,
    resolve_checkpoint,
)
from nasforge.strategies import Problem, Strategy, get_strategy


def provenance() -> dict[str, Any]:
    """Versions, host, device and git commit (when run from a checkout)."""
    import torch

    info: dict[str, Any] = {
        "nasforge": nasforge.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
    }
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True,
            timeout=5,
        )
        if commit.returncode == 0:
            info["git_commit"] = commit.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def data_dict(config: SearchConfig) -> dict[str, Any]:
    """The data section as the plain dict workers receive."""
    return config.data.task_dict()


def problem_for(config: SearchConfig) -> Problem:
    """Input shape and class count of the configured data set (loads it in this process)."""
    splits = load_splits(data_dict(config))
    return Problem(tuple(splits.input_shape), int(splits.num_classes))  # type: ignore[arg-type]


def check_training_images(config: SearchConfig) -> None:
    """Refuse, before a study is written, budgets whose data fraction trains on fewer than
    2 images (train-mode batch norm cannot normalise a single value per channel): the search
    budget over the training split, the final budget over the whole training set.

    Raises ConfigError naming the fraction and the image counts."""
    from nasforge.data.datasets import subset_size

    splits = load_splits(data_dict(config))
    n_train = int(len(splits.train_y))
    checks = [("budget", config.budget.data_fraction, n_train)]
    if config.final is not None:
        checks.append(("final.budget", config.final.budget.data_fraction,
                       n_train + int(len(splits.val_y))))
    for section, fraction, n in checks:
        kept = subset_size(n, fraction)
        if kept < 2:
            raise ConfigError(
                f"{section}.data_fraction {fraction} of {n} training images keeps {kept}; "
                "training needs at least 2 (batch norm): raise the fraction")


def _diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for key in sorted(set(a) | set(b)):
            out += _diff(a.get(key), b.get(key), f"{prefix}{key}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]


def open_study(path: str | Path, config: SearchConfig, *, resume: bool, force: bool,
               data: dict[str, Any] | None = None) -> StudyStorage:
    """Create a new study, or open one to resume (refusing another config unless forced).

    ``data`` holds ``fingerprint`` and ``labels`` (``nasforge.data.fingerprint``): stored in a
    new study; a resume on data whose fingerprint differs from the stored one is refused
    (StorageError naming both) unless ``force``, which stores the new one."""
    path = Path(path)
    identity = json.loads(json.dumps(config.identity(), default=list))
    if not resume:
        if path.exists():
            raise StorageError(f"{path} already exists; add --resume to continue it, or pick "
                               "another --storage")
        storage = StudyStorage.create(
            path, name=config.name, config=config.to_dict(), identity=identity,
            identity_hash=config.identity_hash(), provenance=provenance(),
        )
        store_data_facts(storage, data)
        return storage
    if not path.exists():
        raise StorageError(f"cannot resume: {path} not found")
    # read first (a refused resume writes nothing), as the one driver of the study
    storage = StudyStorage.open(path, lock=True)
    stored = storage.study()
    if stored["identity_hash"] != config.identity_hash():
        changed = _diff(stored["identity"], identity)
        if not force:
            storage.close()
            raise StorageError(
                f"{path} belongs to another study (changed: {', '.join(changed) or 'identity'}); "
                "it was left untouched; use --force to resume it anyway"
            )
        storage.upgrade()
        storage.replace_identity(identity, config.identity_hash())
    stored_fp = storage.meta_value("data_fingerprint")
    if (data is not None and stored_fp is not None
            and stored_fp.get("sha256") != data["fingerprint"]["sha256"] and not force):
        from nasforge.data.fingerprint import describe_fingerprint

        storage.close()
        raise StorageError(
            f"{path} was trained on other data (stored {describe_fingerprint(stored_fp)}; now "
            f"{describe_fingerprint(data['fingerprint'])}); it was left untouched; use --force "
            "to resume it anyway")
    storage.upgrade()  # a schema-1 study: migrated now, after a copy to FILE.v1.bak
    storage.update_config(config.to_dict(), provenance())
    store_data_facts(storage, data)
    return storage


def _takes_objectives(strategy: str) -> bool:
    """Whether a registered strategy's constructor takes ``objectives`` (NSGA-II does)."""
    import inspect

    from nasforge.strategies.base import STRATEGIES

    try:
        return "objectives" in inspect.signature(STRATEGIES.get(strategy)).parameters
    except Exception:  # noqa: BLE001 - an unknown name is reported by get_strategy
        return False


def pareto_trials(path: str | Path) -> list[TrialRecord]:
    """The Pareto front of a study under its configured objectives and constraints (each
    network at the highest budget it reached), best first by the first objective; a
    single-objective study's front is its best trial(s). (``load_study(path).pareto_front()``.)"""
    from nasforge.study import load_study

    return load_study(path).pareto_front()


def load_genomes(space: SearchSpace, source: str | Path) -> list[Any]:
    """Genomes from a study database (ok trials, best first) or a genome file (one, a list
    or JSON lines, see nasforge.spaces.genome_file)."""
    path = Path(source)
    if not path.is_file():
        raise ConfigError(f"--init-from: {path} not found")
    if path.suffix == ".json":  # one genome, a list, or JSON lines (`space sample --json`)
        from nasforge.spaces.genome_file import read_genome_items

        return [space.genome_from_dict(item) for item in read_genome_items(path)]
    with StudyStorage.open(path) as storage:
        return [space.genome_from_dict(t.genome) for t in storage.best(10**9)]


@dataclass
class FinalResult:
    """Final training of one genome over several seeds."""

    trial_number: int | None
    genome: dict[str, Any]
    description: str
    params: int | None
    test_accs: list[float]
    failures: list[str]
    interrupted: list[int] = field(default_factory=list)  # seeds cut by Ctrl-C

    @property
    def mean(self) -> float | None:
        """Mean test accuracy over seeds."""
        return statistics.fmean(self.test_accs) if self.test_accs else None

    @property
    def std(self) -> float | None:
        """Sample standard deviation of the test accuracy (0 for one seed)."""
        if len(self.test_accs) < 2:
            return 0.0 if self.test_accs else None
        return statistics.stdev(self.test_accs)


class Search:
    """A configured search bound to a study file."""

    def __init__(
        self,
        config: SearchConfig,
        storage_path: str | Path,
        *,
        resume: bool = False,
        force: bool = False,
        init_from: str | Path | None = None,
        reporter: Reporter | None = None,
    ) -> None:
        check_not_bootstrapping()  # a script without its __main__ guard, re-run by a worker
        if config.kind != "search":
            raise ConfigError(f"{config.name} is a {config.kind} preset, not a search: use "
                              f"`nasforge train GENOME.json|STUDY.db --preset {config.name}`")
        self.config = config
        self.space = get_space(config.space.name, **config.space.settings)
        self.tabular = config.run.evaluator.startswith("tabular:")
        if self.tabular:  # answered from the table: its data set's shape, no data loaded
            from nasforge.execution.tabular import TABLE_PROBLEM, TabularEvaluate

            self._tabular = TabularEvaluate()  # a missing or corrupt table: one line, no study
            self.problem = Problem(*TABLE_PROBLEM)
        else:
            self.problem = problem_for(config)
            check_training_images(config)
        settings = dict(config.strategy.settings)
        if "objectives" not in settings and _takes_objectives(config.strategy.name):
            if len(config.objectives) < 2:  # a multi-objective strategy needs such a study
                raise ConfigError(
                    f"strategy {config.strategy.name!r} needs a multi-objective study: add e.g. "
                    "objectives: [{name: val_acc, direction: max}, {name: params, direction: "
                    "min}] to the config")
            settings["objectives"] = [[o.name, o.direction] for o in config.objectives]
        self.strategy: Strategy = get_strategy(
            config.strategy.name, self.space, config.budget, self.problem, config.seed,
            **settings,
        )
        if config.prefilter:
            from nasforge.strategies.prefilter import wrap_strategy

            self.strategy = wrap_strategy(self.strategy, config.prefilter, data_dict(config),
                                          config.seed)
        self.reporter = reporter or Reporter(enabled=False)
        # read the warm-start genomes first: a bad --init-from must not leave an empty study
        warm = None
        if init_from is not None:
            warm, line = sort_warm_start(self.space, self.problem, config.budget,
                                         load_genome_items(init_from), str(init_from))
            self.reporter.message(line)
            self.init_from_note = line
        self.storage = open_study(storage_path, config, resume=resume, force=force,
                                  data=None if self.tabular else data_facts(config))
        self._created = not resume
        self.run_number = self.storage.start_run(
            provenance(), {"run": config.to_dict()["run"], "resume": resume, "force": force})
        state = self.storage.strategy_state()
        if state is not None:
            self.strategy.load_state_dict(state)
        elif warm:
            self.strategy.warm_start(warm)
        self._announce_schedule()

    def _announce_schedule(self) -> None:
        """A multi-fidelity strategy's budget levels and bracket sizes: printed before the
        run and stored in the study's meta under ``multi_fidelity`` (read by the report)."""
        schedule = getattr(self.strategy, "schedule", None)
        if schedule is None or not callable(getattr(self.strategy, "describe_schedule", None)):
            return
        self.storage.set_meta_value("multi_fidelity", schedule())
        for line in self.strategy.describe_schedule():  # type: ignore[attr-defined]
            self.reporter.message(line)

    def run(self, executor: Executor | None = None) -> RunSummary:
        """Run the search to its stopping criterion."""
        own = executor is None
        if self.tabular:
            from nasforge.execution.tabular import InlineExecutor

            executor = executor or InlineExecutor(self.config.run.workers)
            evaluate: Any = self._tabular
        else:
            executor = executor or make_executor(self.config.run)
            evaluate = IsolatedEvaluate(self.config.run.eval_timeout,
                                        self.config.run.memory_limit_mb,
                                        **trial_evaluate(self.config.run.devices_per_trial))
        try:
            runner = Runner(
                config=self.config, storage=self.storage, space=self.space,
                strategy=self.strategy, executor=executor, reporter=self.reporter,
                evaluate=evaluate,
            )
            summary = runner.run()
            self.storage.end_run(self.run_number, summary.stop_reason)
            return summary
        finally:
            if own:
                executor.shutdown(wait=True, cancel_futures=True)

    def close(self) -> None:
        """Close the study file."""
        self.storage.close()

    def discard_if_empty(self) -> bool:
        """Close and delete the study file when this search created it and no trial was ever
        submitted (e.g. its executor failed to start), so a rerun needs no ``--resume``;
        returns whether it was deleted. A study with trials is never touched."""
        if not self._created or self.storage.trials():
            return False
        path = Path(self.storage.path)
        self.storage.close()
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(str(path) + suffix).unlink(missing_ok=True)
        folder = artifacts_dir(path)
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
        return True


def trial_evaluate(devices_per_trial: int) -> dict[str, Any]:
    """``IsolatedEvaluate``'s ``evaluate`` for trials of ``devices_per_trial`` devices: the
    data-parallel launcher for more than one (``nasforge.execution.data_parallel``)."""
    if devices_per_trial <= 1:
        return {}
    from nasforge.execution.data_parallel import DataParallelEvaluate

    return {"evaluate": DataParallelEvaluate(devices_per_trial)}


def train_final(
    storage: StudyStorage,
    space: SearchSpace,
    entries: list[tuple[int | None, Any]],
    budget: Budget,
    seeds: int,
    data: dict[str, Any],
    executor: Executor,
    study_seed: int = 0,
    reporter: Reporter | None = None,
    retrain: bool = False,
    *,
    workers: int = 1,
    max_seconds: float | None = None,
    seconds_left: float | None = None,
    nproc: int = 1,
    grace_period: float = 30.0,
) -> list[FinalResult] | None:
    """Train each (trial number, genome) on the whole training set for ``seeds`` seeds,
    measure test accuracy and store every run in the study.

    A run the study already holds (same genome, budget and seed, ``ok``, its weights still
    on disk) is not trained again, unless ``retrain``: the same seed gives the same network,
    so a resumed search or a second ``train`` with more seeds only trains what is missing.

    Before training, the cost is estimated and printed (``final_plan.plan_final``: one probe
    per genome on ``executor``, whose ``workers`` runs train at once); ``max_seconds`` caps the
    estimate by cutting epochs; when the estimate does not fit in ``seconds_left`` (what is
    left of a time limit) nothing is trained and None is returned (left for ``--resume``).

    ``nproc`` > 1 trains each run data-parallel over that many processes (GPUs); rank 0 then
    saves the run's state after every epoch beside its weights (``*.state.pt``), and a run
    that was cut (Ctrl-C, a killed rank) resumes from it when the same command runs again.
    The cost estimate still comes from a one-process probe.

    A first Ctrl-C lets running runs go on for ``grace_period`` seconds, a second ends them at
    once; runs cut either way are stored as ``interrupted`` (``FinalResult.interrupted`` names
    their seeds) and trained by the next resume."""
    reporter = reporter or Reporter(enabled=False)
    weights = artifacts_dir(Path(storage.path).resolve()) / "final"  # absolute: any cwd
    keys = {id(genome): genome_key(space, genome) for _, genome in entries}
    plan = plan_final(storage, space, [], budget, data, executor, workers)
    stored = {} if retrain else _stored_final_runs(storage, plan.budget)
    todo = [(keys[id(g)], g) for _, g in entries for s in range(seeds)
            if (keys[id(g)], s) not in stored]
    if todo and seconds_left is not None and seconds_left <= 0:
        reporter.message("final: left for --resume: the time limit is reached")
        return None
    if todo:
        plan = plan_final(storage, space, todo, budget, data, executor, workers,
                          max_seconds=max_seconds, reporter=reporter)
        for line in describe_plan(plan):
            reporter.message(line)
        if not plan.fits(seconds_left):
            reporter.message(f"final: left for --resume: the estimate does not fit in the "
                             f"{max(0.0, seconds_left or 0.0):.0f}s left of the time limit")
            return None
    budget = plan.budget
    results: dict[str, FinalResult] = {}
    futures = {}
    watchers: dict[Path, tuple[int | None, int, int]] = {}
    for trial_number, genome in entries:
        gkey = keys[id(genome)]
        for seed_index in range(seeds):
            if (gkey, seed_index) in stored:
                run = stored[(gkey, seed_index)]
                item = results.setdefault(gkey, FinalResult(
                    trial_number, space.genome_to_dict(genome),
                    space.describe(genome, budget.width), run.params, [], []))
                item.test_accs.append(float(run.test_acc))  # type: ignore[arg-type]
                reporter.message(f"final: {_final_label(trial_number)} seed {seed_index}: test acc "
                                 f"{run.test_acc:.4f} (stored, not retrained)")
                continue
            # named by budget too: two final budgets (other epochs) never overwrite each other
            ckpt = weights / f"{gkey}_{budget_key(budget.to_dict())[:8]}_w{budget.width}_s{seed_index}.pt"
            progress = ckpt.with_suffix(".progress.jsonl")
            progress.parent.mkdir(parents=True, exist_ok=True)
            progress.write_text("")
            task = EvalTask(
                trial_number=trial_number if trial_number is not None else -1,
                space_name=space.name, space_settings=space.settings(),
                genome=space.genome_to_dict(genome), budget=budget.to_dict(), data=data,
                model_seed=model_seed(study_seed, gkey, budget_key(budget.to_dict()), seed_index),
                checkpoint_path=str(ckpt), final=True, progress_path=str(progress),
                extra={**speed_extra(storage, gkey, budget),
                       **({"epoch_state": str(ckpt.with_suffix(".state.pt"))} if nproc > 1 else {})},
            )
            futures[executor.submit(IsolatedEvaluate(**trial_evaluate(nproc)), task)] = (
                trial_number, genome, gkey, seed_index)
            watchers[progress] = (trial_number, seed_index, 0)
    pending = set(futures)
    try:
        with GracefulStop(grace_period, reporter.message, "running final runs") as stop:
            while pending and not stop.expired():
                done, pending = wait(pending, timeout=0.5 if stop.requested else 2.0,
                                     return_when=FIRST_COMPLETED)
                _report_progress(watchers, budget.epochs, reporter)
                for future in done:
                    if stop.requested and _cut_by_stop(future):  # killed by the stop itself
                        pending.add(future)
                        continue
                    _record_final(future, futures[future], storage, space, budget, results,
                                  reporter, plan.per_run)
                if stop.hard:
                    break
            if pending:  # cut by Ctrl-C: stored as interrupted; --resume trains them again
                shutdown_now(executor)
                for future in pending:
                    _record_interrupted(futures[future], storage, space, budget, results,
                                        reporter)
    finally:  # stored runs keep their curves; the live files are spent, also after a Ctrl-C
        for progress in watchers:
            progress.unlink(missing_ok=True)
    return list(results.values())


def _cut_by_stop(future: Any) -> bool:
    """Whether a finished final run's future ended because the stop killed its process."""
    try:
        result = future.result()
    except Exception:  # noqa: BLE001 - its worker was killed
        return True
    return bool(result.get("retry"))


def _record_interrupted(entry: tuple[int | None, Any, str, int], storage: StudyStorage,
                        space: SearchSpace, budget: Budget, results: dict[str, FinalResult],
                        reporter: Reporter) -> None:
    """Store a final run cut short by Ctrl-C as ``interrupted`` (not a failure: a resume
    trains it, as it trains a seed the study lacks)."""
    trial_number, genome, gkey, seed_index = entry
    item = results.setdefault(gkey, FinalResult(
        trial_number, space.genome_to_dict(genome), space.describe(genome, budget.width),
        None, [], []))
    item.interrupted.append(seed_index)
    storage.add_final_run(
        trial_number=trial_number, genome_key=gkey, genome=space.genome_to_dict(genome),
        budget=budget.to_dict(), seed=seed_index, status="interrupted", val_acc=None,
        test_acc=None, params=None, metrics={"error": "interrupted (Ctrl-C)"}, checkpoint=None)
    reporter.message(f"final: {_final_label(trial_number)} seed {seed_index}: interrupted; "
                     "--resume trains it")


def _stored_final_runs(storage: StudyStorage, budget: Budget) -> dict[tuple[str, int], Any]:
    """The study's finished final runs under ``budget`` whose weights are still on disk, by
    (genome key, seed index)."""
    wanted = budget_key(budget.to_dict())
    stored = {}
    for run in storage.final_runs():
        if (run.status == "ok" and run.test_acc is not None and budget_key(run.budget) == wanted
                and (run.checkpoint is None
                     or resolve_checkpoint(run.checkpoint, Path(storage.path)) is not None)):
            stored[(run.genome_key, run.seed)] = run
    return stored


def _final_label(trial_number: int | None) -> str:
    """How final-training lines name what they train: a study's trial or a genome file."""
    return f"trial {trial_number}" if trial_number is not None else "genome"


def _report_progress(watchers: dict[Path, tuple[int | None, int, int]], epochs: int,
                     reporter: Reporter) -> None:
    """Print the epochs that final runs appended to their progress files since the last call
    (files on this machine; runs on other nodes report only when they end)."""
    for path, (trial_number, seed_index, seen) in list(watchers.items()):
        try:
            lines = path.read_text().splitlines()
        except OSError:
            continue
        for line in lines[seen:]:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                break  # a line still being written: read it next time
            reporter.message(
                f"final: {_final_label(trial_number)} seed {seed_index}: epoch "
                f"{record['epoch']}/{epochs}, train loss {record['train_loss']:.4f}, "
                f"test acc {record['val_acc']:.4f} ({record['seconds']:.0f}s)")
            seen += 1
        watchers[path] = (trial_number, seed_index, seen)


def _record_final(future: Any, entry: tuple[int | None, Any, str, int], storage: StudyStorage,
                  space: SearchSpace, budget: Budget, results: dict[str, FinalResult],
                  reporter: Reporter, estimates: dict[str, float] | None = None) -> None:
    """Store one finished final run and add it to ``results``."""
    trial_number, genome, gkey, seed_index = entry
    try:
        res = future.result()
    except Exception as exc:  # noqa: BLE001 - a lost run (dead worker) fails alone
        res = {"status": "failed", "error": f"final run lost: {type(exc).__name__}: {exc}"}
    item = results.setdefault(gkey, FinalResult(
        trial_number, space.genome_to_dict(genome), space.describe(genome, budget.width),
        res.get("params"), [], [],
    ))
    storage.add_final_run(
        trial_number=trial_number, genome_key=gkey, genome=space.genome_to_dict(genome),
        budget=budget.to_dict(), seed=seed_index, status=res.get("status", "failed"),
        val_acc=None, test_acc=res.get("test_acc"), params=res.get("params"),
        metrics={**(res.get("metrics") or {}), "curve": res.get("curve"),
                 "error": res.get("error"),
                 "wall_seconds": (res.get("finished_at") or 0) - (res.get("started_at") or 0),
                 "estimated_seconds": (estimates or {}).get(gkey)},
        checkpoint=res.get("checkpoint"),
    )
    which = _final_label(trial_number)
    if res.get("status") == "ok" and res.get("test_acc") is not None:
        item.test_accs.append(float(res["test_acc"]))
        took = (res.get("finished_at") or 0) - (res.get("started_at") or 0)
        estimate = (estimates or {}).get(gkey)
        reporter.message(f"final: {which} seed {seed_index}: test acc {res['test_acc']:.4f} "
                         f"(took {took:.0f}s" + (f", estimated {estimate:.0f}s)" if estimate else ")"))
    else:
        item.failures.append(str(res.get("error")))
        reporter.message(f"final: {which} seed {seed_index} FAILED: {res.get('error')}")
    item.params = item.params or res.get("params")


def read_trials(path: str | Path) -> list[TrialRecord]:
    """All trials of a study."""
    with StudyStorage.open(path) as storage:
        return storage.trials()


def best_trials(path: str | Path, k: int = 5) -> list[TrialRecord]:
    """The k best ok trials of a study by validation accuracy."""
    with StudyStorage.open(path) as storage:
        return storage.best(k)
