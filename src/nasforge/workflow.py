"""The workflows behind ``nasforge search`` and ``nasforge train``, as library calls.

:class:`SearchJob` runs a search and then the final training of its best trials, owning the
executors, the command-wide time limit and the final step's caps; the CLI only prints what it
returns. :func:`train_genomes` is ``nasforge train``: the final training of a study's best
trials (or one trial) or of a genome file, into a study.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nasforge.api import Search, data_dict, provenance
from nasforge.config import SearchConfig
from nasforge.errors import ConfigError, NasforgeError
from nasforge.execution.runner import Reporter, RunSummary, worker_slots
from nasforge.final_training import FinalResult, final_picks, train_final
from nasforge.spaces.base import SearchSpace

__all__ = ["SearchJob", "TrainOutcome", "close_executor", "read_genome", "train_genomes"]


def close_executor(executor: Any, stopped: bool) -> None:
    """Shut an executor down: waiting for it after a normal end, killing what it started
    after a stop or an error (a wait would wait for trainings that go on)."""
    from nasforge.execution.executors import shutdown_now

    if stopped:
        shutdown_now(executor)
    else:
        executor.shutdown(wait=True, cancel_futures=True)


def _make_executor(search: Search, config: SearchConfig) -> Any:
    if search.tabular:
        from nasforge.execution.tabular import InlineExecutor

        return InlineExecutor(config.run.workers)
    from nasforge.execution.executors import make_executor

    return make_executor(config.run)


class SearchJob:
    """A search bound to its study and executor, then the final training of its best trials.

    Use as a context manager: ``with SearchJob(config, path) as job: summary = job.search();
    results = job.final()``; leaving the block shuts the executor down (killing what it
    started when the job was stopped or failed) and closes the study. ``run.time_limit``
    covers the whole job, counted from construction.

    Raises what :class:`~nasforge.api.Search` raises, and an executor that fails to start
    (``ExecutorStartError``) after deleting the study it created, when still empty."""

    def __init__(self, config: SearchConfig, storage_path: str | Path, *, resume: bool = False,
                 force: bool = False, init_from: str | Path | None = None,
                 reporter: Reporter | None = None) -> None:
        self.started = time.time()
        self.config = config
        self.storage_path = Path(storage_path)
        self.reporter = reporter or Reporter(enabled=False)
        self.search_ = Search(config, storage_path, resume=resume, force=force,
                              init_from=init_from, reporter=self.reporter)
        self.summary: RunSummary | None = None
        self._stopped = True  # until the search and its final step end normally
        self._executor: Any = None
        try:
            done_before = self.search_.storage.count_finished()
            try:
                self._executor = _make_executor(self.search_, config)
            except NasforgeError as exc:
                if self.search_.discard_if_empty():
                    raise type(exc)(f"{exc} (the new, empty study {storage_path} was "
                                    "removed)") from None
                raise
            self.reporter.message(
                f"study {storage_path} ({'resumed with ' + str(done_before) + ' finished trials' if resume else 'new'}): "
                f"{config.space.name} space, {config.strategy.name}, {config.run.max_evals} trials, "
                f"{worker_slots(self._executor, config.run.workers)} worker(s) on "
                f"{getattr(self._executor, 'nasforge_kind', config.run.executor)}")
            if config.run.time_limit is not None:  # the limit covers the whole command
                self.search_.config = dataclasses.replace(config, run=dataclasses.replace(
                    config.run, time_limit=max(1.0, config.run.time_limit - self.elapsed())))
        except BaseException:
            self.search_.close()
            raise

    # ----------------------------------------------------------------- parts
    @property
    def space(self) -> SearchSpace:
        """The study's search space."""
        return self.search_.space

    @property
    def tabular(self) -> bool:
        """Whether trials are answered from a benchmark table (no final training)."""
        return self.search_.tabular

    def elapsed(self) -> float:
        """Seconds since the job was made."""
        return time.time() - self.started

    def search(self) -> RunSummary:
        """Run the search to its stopping criterion; its summary. A strategy that can propose
        no valid network (``GenomeError``: e.g. constraints no network of the space meets)
        deletes the study this job created, when still empty, and says so."""
        from nasforge.errors import GenomeError

        try:
            self.summary = self.search_.run(self._executor)
        except GenomeError as exc:
            if self.search_.discard_if_empty():
                raise GenomeError(f"{exc} (the new, empty study {self.storage_path} was "
                                  "removed)") from None
            raise
        self._stopped = False
        return self.summary

    def hypervolume_line(self) -> str | None:
        """A study of two or more objectives: its scaled hypervolume line
        (``nasforge.hypervolume``); None for a single-objective study."""
        config = self.config
        if len(config.objectives) < 2:
            return None
        if len(config.objectives) > 2:
            return f"hypervolume: 2-D only; this study has {len(config.objectives)} objectives"
        from nasforge.hypervolume import space_param_range, study_hypervolume

        search = self.search_
        hv = study_hypervolume(search.storage.trials(), config.objectives, config.constraints,
                               space_param_range(search.space, search.problem.input_shape,
                                                 search.problem.num_classes, config.budget.width))
        return (hv.line(config.objectives) if hv is not None else
                "hypervolume: none (needs val_acc and one size objective with counted trials)")

    def wants_final(self, no_final: bool = False) -> bool:
        """Whether the final step runs after the search: a config with a ``final`` section,
        not skipped (``no_final``), not a table benchmark, and a search not interrupted."""
        return (not self.tabular and self.config.final is not None and not no_final
                and self.summary is not None and self.summary.stop_reason != "interrupted")

    def final(self) -> list[FinalResult] | None:
        """Final training of the picked trials (``final_picks``) on a fresh pool sized to the
        runs, under ``final.max_seconds`` / ``final.total_seconds`` and what is left of the
        time limit; None when it does not fit there (left for ``--resume``), an empty list when
        no successful trial meets the constraints. Results with interrupted seeds mark the job
        stopped."""
        config, search = self.config, self.search_
        final = config.final
        if final is None:
            raise ConfigError(f"{config.name} has no final section")
        from nasforge.storage.records import trial_genome

        entries = [(t.number, trial_genome(search.space, t, search.storage.path))
                   for t in final_picks(search.storage, config)]
        if not entries:
            self.reporter.message("final: no successful trial meets the constraints: nothing "
                                  "to train (more trials, or wider constraints)")
            return []
        self.reporter.message(
            f"final training of the best {len(entries)} on the whole training set: "
            f"{final.budget.epochs} epoch(s) at width {final.budget.width}, "
            f"{final.seeds} seed(s){_FinalCaps.of(final, {}, False).line()}")
        # a fresh pool sized to the final runs, so a single run gets every core
        self._executor.shutdown(wait=True, cancel_futures=True)
        final_workers = max(1, min(final.workers or config.run.workers,
                                   len(entries) * final.seeds))
        from nasforge.execution.executors import make_executor

        self._executor = make_executor(dataclasses.replace(config.run, workers=final_workers))
        results = train_final(
            search.storage, search.space, entries, final.budget, final.seeds, data_dict(config),
            self._executor, config.seed, self.reporter, workers=final_workers,
            max_seconds=_FinalCaps.of(final, {}, False).max_seconds(self.elapsed()),
            min_width=final.min_width,
            min_epochs=final.min_epochs, max_epochs=final.max_epochs,
            nproc=config.run.devices_per_trial,
            seconds_left=(None if config.run.time_limit is None
                          else config.run.time_limit - self.elapsed()),
            grace_period=config.run.grace_period)
        if results is not None and any(r.interrupted for r in results):
            self._stopped = True
        return results

    def finish(self) -> float:
        """Shut the executor down (killing its work if the job was stopped or interrupted);
        the job's seconds so far."""
        if self.summary is not None and self.summary.stop_reason == "interrupted":
            self._stopped = True
        self._shutdown()
        return self.elapsed()

    def _shutdown(self) -> None:
        if self._executor is not None:
            executor, self._executor = self._executor, None
            close_executor(executor, self._stopped)

    def __enter__(self) -> "SearchJob":
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._shutdown()
        finally:
            self.search_.close()


# ------------------------------------------------------------------ train
def read_genome(space: SearchSpace, path: str | Path) -> Any:
    """The one genome of a genome file (see ``nasforge.spaces.genome_file``), checked with
    ``space.validate`` so that a genome no network can be built from (an unknown operation, a
    cycle, no path from input to output) is refused here, before a study is created or data
    loaded, rather than failing in a training child. Errors name the file.

    Raises:
        GenomeError: the file's genome cannot be parsed or is invalid in ``space``.
        ConfigError: the file cannot be read or holds no single genome.
    """
    from nasforge.errors import GenomeError
    from nasforge.spaces.genome_file import read_one_genome_item

    try:
        genome = space.genome_from_dict(read_one_genome_item(path))
        reasons = space.validate(genome)
    except NasforgeError as exc:
        raise type(exc)(f"{path}: {exc}") from None
    if reasons:
        raise GenomeError(f"{path}: invalid {space.name} genome: {'; '.join(reasons)}")
    return genome


@dataclass
class TrainOutcome:
    """What :func:`train_genomes` trained: the budget (after a time cap) and one result per
    genome (``FinalResult``)."""

    budget: Any
    results: list[FinalResult]


def _genome_file_entries(source: Path, preset: SearchConfig | None, storage_arg: str | None,
                         space_name: str | None, head: str | None,
                         data_dir: str | None) -> tuple[Any, SearchConfig, SearchSpace, list]:
    """A genome file: its study (existing or new) and config, space and one entry."""
    from nasforge.spaces import chosen_network_space, get_space
    from nasforge.storage import StudyStorage

    storage_path = Path(storage_arg or f"studies/train-{source.stem}.db")
    storage = StudyStorage.open(storage_path, write=True) if storage_path.exists() else None
    try:
        if preset is not None:
            config = preset
        elif storage is not None:  # an existing study keeps its data set, space and budget
            from nasforge.config import config_from_dict

            config = config_from_dict(storage.study()["config"], str(storage_path))
        else:
            config = SearchConfig(name=f"train-{source.stem}")
        if data_dir:
            config = dataclasses.replace(config, data=dataclasses.replace(config.data,
                                                                          data_dir=data_dir))
        configured = preset is not None or storage is not None
        settings: dict[str, Any] = dict(config.space.settings) if configured else {}
        if head:
            settings["head"] = head
        name = space_name or (config.space.name if configured else "global")
        space = get_space(name, **settings)
        # a chosen network: the search's limits on candidates (input_ops) do not refuse it
        entries = [(None, read_genome(chosen_network_space(name, settings), source))]
        if storage is None:
            storage = StudyStorage.create(
                storage_path, name=config.name, config=config.to_dict(),
                identity=json.loads(json.dumps(config.identity(), default=list)),
                identity_hash=config.identity_hash(), provenance=provenance())
    except BaseException:
        if storage is not None:
            storage.close()
        raise
    return storage, config, space, entries


def _study_entries(source: Path, trial: int | None, top: int | None,
                   data_dir: str | None) -> tuple[Any, SearchConfig, SearchSpace, list]:
    """A study: opened to add final runs, its config and space, its best (or one) trial."""
    from nasforge.storage import StudyStorage
    from nasforge.study import load_study

    storage = StudyStorage.open(source, write=True)  # a v1 study is migrated first
    try:
        study = load_study(source)
        config = study.config
        if data_dir:
            config = dataclasses.replace(config, data=dataclasses.replace(config.data,
                                                                          data_dir=data_dir))
        trials = [study.trial(trial)] if trial is not None else study.best(top or 1)
        if not trials:
            raise NasforgeError(f"{source} has no successful trial to train")
        from nasforge.storage.records import trial_genome

        entries = [(t.number, trial_genome(study.space, t, source)) for t in trials]
    except BaseException:
        storage.close()
        raise
    return storage, config, study.space, entries


@dataclass(frozen=True)
class _FinalCaps:
    """A final section's caps as the search's final step and ``nasforge train`` apply them
    (see ``SearchJob.final`` and ``train_genomes``)."""

    max_seconds_cap: float | None = None
    total_seconds: float | None = None
    min_width: int | None = None
    min_epochs: int | None = None
    max_epochs: int | None = None
    keep: frozenset[str] = frozenset()
    off: bool = False  # caps the final section has, turned off (--no-cap)

    @classmethod
    def of(cls, final: Any, changes: dict[str, Any], no_cap: bool) -> "_FinalCaps":
        """The caps of ``final`` (a ``FinalConfig`` or None), keeping the sizes ``changes``
        sets; with ``no_cap`` none, and both sizes kept."""
        keep = frozenset({"epochs", "width"} if no_cap else
                         {k for k in ("epochs", "width") if changes.get(k) is not None})
        if final is None or no_cap:
            return cls(keep=keep, off=final is not None and (
                final.max_seconds is not None or final.total_seconds is not None))
        return cls(final.max_seconds, final.total_seconds, final.min_width, final.min_epochs,
                   final.max_epochs, keep)

    @property
    def capped(self) -> bool:
        """Whether a time cap applies."""
        return self.max_seconds_cap is not None or self.total_seconds is not None

    def max_seconds(self, elapsed: float) -> float | None:
        """The final step's cap after ``elapsed`` seconds of the command (at least 1 s, as the
        search's final step); None without caps."""
        caps = [c for c in (self.max_seconds_cap, None if self.total_seconds is None
                            else self.total_seconds - elapsed) if c is not None]
        return max(1.0, min(caps)) if caps else None

    def line(self) -> str:
        """What the first line adds: that a plan fits the budget to the time, what it keeps."""
        if self.off:
            return " as given (--no-cap: the final section's caps are off)"
        if not self.capped:
            return ""
        kept = " and ".join(f"--{k}" for k in sorted(self.keep))
        return (" as configured (the plan below fits them to the time" +
                (f"; {kept} given: kept as set)" if kept else ")"))


def train_genomes(source: str | Path, *, preset: str | None = None, trial: int | None = None,
                  top: int | None = None, seeds: int | None = None, workers: int | None = None,
                  nproc: int | None = None, space: str | None = None, head: str | None = None,
                  storage: str | None = None, data_dir: str | None = None,
                  retrain: bool = False, budget_changes: dict[str, Any] | None = None,
                  reporter: Reporter | None = None, no_cap: bool = False) -> TrainOutcome:
    """Final training, as ``nasforge train``: of a study's best ``top`` trials (default 1)
    or its trial ``trial``, or of the one genome of a genome file (``.json``; stored in
    ``storage``, default ``studies/train-STEM.db``, with ``space``/``head`` choosing its space).

    The budget is the preset's final budget, else the study's, else 5 epochs at the study's
    width, with ``budget_changes`` applied; ``seeds`` defaults to the final section's (else 1),
    ``nproc`` (processes per run, data-parallel) to ``run.devices_per_trial``. Runs already
    stored are not trained again unless ``retrain`` (see ``train_final``).

    A ``preset``'s final section also gives its caps, planned as ``nasforge search`` plans
    its final step (``final_plan.plan_final``):
    ``final.max_seconds`` and ``final.total_seconds`` (the whole of it: there is no search, as
    in a ``--resume`` whose search is done; counted from this call), with ``final.min_width``,
    ``min_epochs`` and ``max_epochs``. Epochs or width set in ``budget_changes`` are kept as
    set: the plan changes only the other size, and says so when the estimate stays over the
    cap. Without ``preset`` no cap applies (a plan the study's search stored for the same
    budget is still trained, as a resume would). ``no_cap`` trains the budget exactly as given:
    no caps, no plan stored earlier.

    Raises ``ConfigError`` for ``nproc`` < 1 or a bad config, ``NasforgeError`` for a study
    without a successful trial, ``StorageError`` for a study that cannot be opened."""
    from nasforge.config import load_config
    from nasforge.evaluation.budget import Budget
    from nasforge.execution.executors import make_executor

    started = time.time()  # final.total_seconds counts from here (no search before it)
    source = Path(source)
    preset_cfg = load_config(preset) if preset else None
    # bad flags (--epochs 0, --optimizer foo, --nproc 0) are refused before a genome file's
    # new study is created (it was left behind, empty)
    Budget().replace(**(budget_changes or {}))
    if nproc is not None and nproc < 1:
        raise ConfigError(f"--nproc must be at least 1, got {nproc}")
    if source.suffix == ".json":
        store, config, built, entries = _genome_file_entries(source, preset_cfg, storage, space,
                                                             head, data_dir)
    else:
        store, config, built, entries = _study_entries(source, trial, top, data_dir)
    results: list[FinalResult] | None = None
    executor = None
    try:
        final_cfg = preset_cfg.final if preset_cfg is not None else config.final
        base = (preset_cfg.final.budget if preset_cfg is not None and preset_cfg.final is not None
                else config.final.budget if config.final is not None
                else Budget(epochs=5, width=config.budget.width))
        budget = base.replace(**(budget_changes or {}))
        n_seeds = seeds or (final_cfg.seeds if final_cfg is not None else 1)
        n_proc = nproc or config.run.devices_per_trial
        if n_proc < 1:
            raise ConfigError(f"--nproc must be at least 1, got {n_proc}")
        run_cfg = dataclasses.replace(
            config.run, workers=workers or min(n_seeds * len(entries), config.run.workers),
            devices_per_trial=n_proc)
        executor = make_executor(run_cfg)
        reporter = reporter or Reporter()
        # caps from --preset only: a study's own final section gives its budget as stored
        caps = _FinalCaps.of(preset_cfg.final if preset_cfg is not None else None,
                             budget_changes or {}, no_cap)
        reporter.message(f"training {len(entries)} genome(s) x {n_seeds} seed(s): "
                         f"{budget.epochs} epoch(s), {budget.optimizer}, width {budget.width}, "
                         f"on the whole training set{caps.line()}")
        results = train_final(store, built, entries, budget, n_seeds, data_dict(config),
                              executor, config.seed, reporter, retrain=retrain,
                              workers=run_cfg.workers, nproc=n_proc,
                              grace_period=config.run.grace_period,
                              max_seconds=caps.max_seconds(time.time() - started),
                              min_width=caps.min_width, min_epochs=caps.min_epochs,
                              max_epochs=caps.max_epochs, keep=caps.keep) or []
    finally:
        if executor is not None:
            close_executor(executor, results is None or any(r.interrupted for r in results))
        store.close()
    return TrainOutcome(budget, results)
