"""Final training: each chosen genome trained on the whole training set over several seeds,
its test accuracy measured and every run stored in the study (``train_final``), and which
trials of a finished search get it (``final_picks``). ``nasforge.api`` re-exports these."""

from __future__ import annotations

import json
import statistics
from concurrent.futures import FIRST_COMPLETED, Executor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nasforge.evaluation.budget import Budget
from nasforge.execution.executors import shutdown_now
from nasforge.execution.final_plan import describe_plan, plan_final, speed_extra
from nasforge.execution.isolation import IsolatedEvaluate
from nasforge.execution.results import EvalResult
from nasforge.execution.runner import Reporter, genome_key
from nasforge.execution.stops import GracefulStop
from nasforge.execution.tasks import EvalTask, model_seed
from nasforge.spaces.base import SearchSpace
from nasforge.storage import StudyStorage, artifacts_dir, budget_key, resolve_checkpoint
from nasforge.storage.records import single_view_acc

__all__ = ["FinalResult", "final_picks", "train_final", "trial_evaluate"]


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
    width: int | None = None  # the width trained (a cap with final.min_width may narrow it)
    #: with test-time augmentation (``budget.tta``), each seed's test accuracy without it
    single_view_accs: list[float] = field(default_factory=list)

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

    def tta_note(self) -> str:
        """`` (flip-averaged; single view 0.9306)`` after a test accuracy measured with
        test-time augmentation (the mean single-view accuracy over seeds); empty without."""
        if not self.single_view_accs or len(self.single_view_accs) != len(self.test_accs):
            return ""
        return _view_note(statistics.fmean(self.single_view_accs))


def _view_note(single: float | None) -> str:
    return "" if single is None else f" (flip-averaged; single view {single:.4f})"


def _single_view(metrics: dict[str, Any] | None) -> float | None:
    return single_view_acc(metrics)  # a damaged stored figure: None


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
    min_width: int | None = None,
    min_epochs: int | None = None,
    max_epochs: int | None = None,
    seconds_left: float | None = None,
    nproc: int = 1,
    grace_period: float = 30.0,
    keep: frozenset[str] = frozenset(),
) -> list[FinalResult] | None:
    """Train each (trial number, genome) on the whole training set for ``seeds`` seeds,
    measure test accuracy and store every run in the study.

    A run the study already holds (same genome, budget and seed, ``ok``, its weights still
    on disk) is not trained again, unless ``retrain``: the same seed gives the same network,
    so a resumed search or a second ``train`` with more seeds only trains what is missing.

    Before training, the cost is estimated and printed (``final_plan.plan_final``: one probe
    per genome on ``executor``, whose ``workers`` runs train at once); ``max_seconds`` caps the
    estimate by cutting epochs (with ``min_width``, width first; with ``min_epochs`` as well,
    epochs down to it first), and an estimate under it
    grows the epochs up to ``max_epochs``; when the estimate does not fit in ``seconds_left`` (what is
    left of a time limit) nothing is trained and None is returned (left for ``--resume``).

    ``nproc`` > 1 trains each run data-parallel over that many processes (GPUs); rank 0 then
    saves the run's state after every epoch beside its weights (``*.state.pt``), and a run
    that was cut (Ctrl-C, a killed rank) resumes from it when the same command runs again.
    The cost estimate still comes from a one-process probe.

    A first Ctrl-C lets running runs go on for ``grace_period`` seconds, a second ends them at
    once; runs cut either way are stored as ``interrupted`` (``FinalResult.interrupted`` names
    their seeds) and trained by the next resume.

    ``keep`` names budget sizes (``"epochs"``, ``"width"``) set explicitly, which the plan
    never changes (``plan_final``)."""
    reporter = reporter or Reporter(enabled=False)
    weights = artifacts_dir(Path(storage.path).resolve()) / "final"  # absolute: any cwd
    keys = {id(genome): genome_key(space, genome) for _, genome in entries}
    plan = plan_final(storage, space, [], budget, data, executor, workers, keep=keep)
    stored = {} if retrain else _stored_final_runs(storage, plan.budget)
    todo = [(keys[id(g)], g) for _, g in entries for s in range(seeds)
            if (keys[id(g)], s) not in stored]
    if todo and seconds_left is not None and seconds_left <= 0:
        reporter.message("final: left for --resume: the time limit is reached")
        return None
    if todo:
        plan = plan_final(storage, space, todo, budget, data, executor, workers,
                          max_seconds=max_seconds, reporter=reporter, min_width=min_width,
                          min_epochs=min_epochs, max_epochs=max_epochs,
                          seconds_left=seconds_left, keep=keep)
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
                    space.describe(genome, budget.width), run.params, [], [],
                    width=budget.width))
                item.test_accs.append(float(run.test_acc))  # type: ignore[arg-type]
                single = _single_view(run.metrics)
                if single is not None:
                    item.single_view_accs.append(single)
                reporter.message(f"final: {_final_label(trial_number)} seed {seed_index}: test acc "
                                 f"{run.test_acc:.4f}{_view_note(single)} (stored, not retrained)")
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
            # stored running: a kill leaves it so, and --resume trains it again in that row
            storage.start_final_run(trial_number=trial_number, genome_key=gkey,
                                    genome=space.genome_to_dict(genome),
                                    budget=budget.to_dict(), seed=seed_index)
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
    return bool(result.retry)


def _record_interrupted(entry: tuple[int | None, Any, str, int], storage: StudyStorage,
                        space: SearchSpace, budget: Budget, results: dict[str, FinalResult],
                        reporter: Reporter) -> None:
    """Store a final run cut short by Ctrl-C as ``interrupted`` (not a failure: a resume
    trains it, as it trains a seed the study lacks)."""
    trial_number, genome, gkey, seed_index = entry
    item = results.setdefault(gkey, FinalResult(
        trial_number, space.genome_to_dict(genome), space.describe(genome, budget.width),
        None, [], [], width=budget.width))
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
            measured = ("" if record.get("val_acc") is None
                        else f", test acc {record['val_acc']:.4f}")
            reporter.message(
                f"final: {_final_label(trial_number)} seed {seed_index}: epoch "
                f"{record['epoch']}/{epochs}, train loss {record['train_loss']:.4f}"
                f"{measured} ({record['seconds']:.0f}s)")
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
        res = EvalResult.failure(f"final run lost: {type(exc).__name__}: {exc}")
    item = results.setdefault(gkey, FinalResult(
        trial_number, space.genome_to_dict(genome), space.describe(genome, budget.width),
        res.params, [], [], width=budget.width,
    ))
    storage.add_final_run(
        trial_number=trial_number, genome_key=gkey, genome=space.genome_to_dict(genome),
        budget=budget.to_dict(), seed=seed_index, status=res.status or "failed",
        val_acc=None, test_acc=res.test_acc, params=res.params,
        metrics={**(res.metrics or {}), "curve": res.curve, "error": res.error,
                 "wall_seconds": (res.finished_at or 0) - (res.started_at or 0),
                 "estimated_seconds": (estimates or {}).get(gkey)},
        checkpoint=res.checkpoint,
    )
    which = _final_label(trial_number)
    if res.status == "ok" and res.test_acc is not None:
        item.test_accs.append(float(res.test_acc))
        single = _single_view(res.metrics)
        if single is not None:
            item.single_view_accs.append(single)
        took = (res.finished_at or 0) - (res.started_at or 0)
        estimate = (estimates or {}).get(gkey)
        reporter.message(f"final: {which} seed {seed_index}: test acc {res.test_acc:.4f}"
                         f"{_view_note(single)} "
                         f"(took {took:.0f}s" + (f", estimated {estimate:.0f}s)" if estimate else ")"))
    else:
        item.failures.append(str(res.error))
        reporter.message(f"final: {which} seed {seed_index} FAILED: {res.error}")
    item.params = item.params or res.params


def final_picks(storage: Any, config: Any) -> list[Any]:
    """The trials final training takes (``final.pick``, see ``nasforge.objectives``): the
    ``final.top`` best by the first objective among feasible trials, or the front's best;
    without a final step (``final: null``), the one best feasible trial."""
    from nasforge.objectives import feasible, of_config, pareto_trials, trial_value

    objectives = of_config(config)
    pool = [t for t in storage.best(10**9) if feasible(t, config.constraints)]
    pick, top = (config.final.pick, config.final.top) if config.final else ("best", 1)
    if pick == "front":
        pool = pareto_trials(pool, objectives, config.constraints)
    elif objectives[0].name != "val_acc" or objectives[0].direction != "max":
        sign = -1.0 if objectives[0].direction == "max" else 1.0
        pool = sorted((t for t in pool if trial_value(t, objectives[0].name) is not None),
                      key=lambda t: (sign * trial_value(t, objectives[0].name), t.number))
    return pool[:top]
