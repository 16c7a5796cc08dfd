"""The Python API: run a search from a config, train finalists, read results back.

Final training lives in ``nasforge.final_training`` and the read-only study handle in
``nasforge.study``; their public names are importable from here as well, as are the
search-then-final and ``train`` workflows of ``nasforge.workflow``."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import socket
import subprocess
from concurrent.futures import Executor
from pathlib import Path
from typing import Any, Callable

import nasforge
from nasforge.config import SearchConfig
from nasforge.data.fingerprint import data_facts, store_data_facts
from nasforge.errors import ConfigError, StorageError
from nasforge.execution.executors import make_executor
from nasforge.execution.guard import check_not_bootstrapping
from nasforge.execution.isolation import IsolatedEvaluate
from nasforge.execution.runner import Reporter, Runner, RunSummary
from nasforge.execution.tasks import load_splits
from nasforge.final_training import FinalResult, final_picks, train_final, trial_evaluate
from nasforge.spaces import get_space
from nasforge.spaces.base import SearchSpace
from nasforge.spaces.warm_start import load_genome_items, sort_warm_start
from nasforge.storage import StudyStorage, TrialRecord, artifacts_dir
from nasforge.study import StoredStudy, load_study
from nasforge.strategies import Problem, Strategy, get_strategy
from nasforge.strategies.base import static_constraints


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
               data: dict[str, Any] | None = None,
               before_write: Callable[[StudyStorage], None] | None = None) -> StudyStorage:
    """Create a new study, or open one to resume (refusing another config unless forced).
    An existing file without ``resume`` is refused (StorageError) untouched: as not a nasforge
    study, as damaged, or as a study to ``--resume``.

    ``data`` holds ``fingerprint`` and ``labels`` (``nasforge.data.fingerprint``): stored in a
    new study; a resume on data whose fingerprint differs from the stored one is refused
    (StorageError naming both) unless ``force``, which stores the new one. ``before_write``
    (a resume only) is called with the opened study after these checks and before anything is
    written to it; what it raises closes the study and propagates (a refusal writes nothing)."""
    path = Path(path)
    identity = json.loads(json.dumps(config.identity(), default=list))
    if not resume:
        if path.exists():
            from nasforge.storage.schema import check_is_study

            check_is_study(path)  # a foreign or damaged file: say so, not "--resume"
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
    replace_identity = stored["identity_hash"] != config.identity_hash()
    if replace_identity:
        changed = _diff(stored["identity"], identity)
        if not force:
            storage.close()
            raise StorageError(
                f"{path} belongs to another study (changed: {', '.join(changed) or 'identity'}); "
                "it was left untouched; use --force to resume it anyway"
            )
    stored_fp = storage.meta_value("data_fingerprint")
    if (data is not None and stored_fp is not None
            and stored_fp.get("sha256") != data["fingerprint"]["sha256"] and not force):
        from nasforge.data.fingerprint import describe_fingerprint

        storage.close()
        raise StorageError(
            f"{path} was trained on other data (stored {describe_fingerprint(stored_fp)}; now "
            f"{describe_fingerprint(data['fingerprint'])}); it was left untouched; use --force "
            "to resume it anyway")
    if before_write is not None:
        try:
            before_write(storage)
        except BaseException:
            storage.close()
            raise
    storage.upgrade()  # a schema-1 study: migrated now, after a copy to FILE.v1.bak
    if replace_identity:
        storage.replace_identity(identity, config.identity_hash())
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


def restore_strategy(strategy: Any, state: dict[str, Any], path: str | Path, name: str) -> None:
    """Load a study's stored strategy state into ``strategy`` (``load_state_dict``).

    Raises:
        StorageError: one line naming the study file and the strategy when the state cannot be
            restored: written by another strategy (a ``--resume --force`` after
            ``strategy.name`` changed), or edited or damaged by hand (a missing key, a value of
            the wrong type).
    """
    from nasforge.errors import NasforgeError

    try:
        strategy.load_state_dict(state)
    except (NasforgeError, KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        what = f"missing key {exc}" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {exc}"
        raise StorageError(
            f"{path}: its stored strategy state cannot be restored by strategy {name!r} "
            f"({what}): written by another strategy, or damaged; it was left untouched (resume "
            "with the strategy the study was searched with)") from None


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
        else:  # the constraints a build decides are kept by the strategy (no trial breaks one)
            self.problem = problem_for(config)
            if config.run.constraints_first:
                self.problem = dataclasses.replace(
                    self.problem, constraints=static_constraints(config.constraints))
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
        restored: list[bool] = []

        def restore(storage: StudyStorage) -> None:  # before the resume writes anything
            state = storage.strategy_state()
            if state is not None:
                restore_strategy(self.strategy, state, storage_path, config.strategy.name)
                restored.append(True)

        self.storage = open_study(storage_path, config, resume=resume, force=force,
                                  data=None if self.tabular else data_facts(config),
                                  before_write=restore)
        self._created = not resume
        self.run_number = self.storage.start_run(
            provenance(), {"run": config.to_dict()["run"], "resume": resume, "force": force})
        if not restored and warm:
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
        submitted (e.g. its executor failed to start), so a rerun needs no ``--resume``, and
        its folder when it holds nothing but an empty ``search.log``; returns whether it was
        deleted. A study with trials is never touched."""
        if not self._created or self.storage.trials():
            return False
        path = Path(self.storage.path)
        self.storage.close()
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(str(path) + suffix).unlink(missing_ok=True)
        folder = artifacts_dir(path)
        log = folder / "search.log"  # opened by a run that stopped before its first trial
        if log.is_file() and log.stat().st_size == 0:
            from nasforge.execution.reporting import close_study_logger

            close_study_logger(path)
            log.unlink()
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
        return True


def read_trials(path: str | Path) -> list[TrialRecord]:
    """All trials of a study (``load_study(path).trials()``)."""
    return load_study(path).trials()


def best_trials(path: str | Path, k: int = 5) -> list[TrialRecord]:
    """The k best ok trials of a study, each network at the highest budget it reached
    (``load_study(path).best(k)``)."""
    return load_study(path).best(k)


__all__ = [
    "FinalResult", "Search", "StoredStudy", "best_trials", "check_training_images", "data_dict",
    "final_picks", "load_genomes", "load_study", "open_study", "pareto_trials", "problem_for",
    "provenance", "read_trials", "train_final", "trial_evaluate",
]
