"""The steady-state runner: keeps N evaluations in flight and records every trial.

The loop lives here; its decisions are policy objects beside it
(``nasforge.execution.policies``: reuse, retry, weight retention), what a trial's task is
and how it is evaluated is its kind of work (``nasforge.execution.kinds``), and progress
output is ``nasforge.execution.reporting``.
"""

from __future__ import annotations

import signal
import time
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from nasforge.config import SearchConfig
from nasforge.evaluation.budget import Budget
from nasforge.execution.executors import shutdown_now
from nasforge.execution.faults import fault_point
from nasforge.execution.kinds import TaskRequest, get_kind, seed_part
from nasforge.execution.live import LiveChannel
from nasforge.execution.policies import LEAVE, RETRY, RetryPolicy, ReusePolicy, WeightRetention
from nasforge.execution.reporting import (
    Reporter,
    RunSummary,
    TimeBounds,
    busy_fraction,
    speed_note,
    study_logger,
    worker_slots,
)
from nasforge.execution.results import EvalResult
from nasforge.execution.stops import hard_stop
from nasforge.execution.speed_store import speed_choices_for, store_speed
from nasforge.execution.tasks import EvalTask, evaluate_task, model_seed
from nasforge.spaces.base import SearchSpace, genome_key
from nasforge.storage.records import trial_genome
from nasforge.storage.sqlite import StudyStorage, TrialRecord, artifacts_dir, budget_key
from nasforge.strategies.base import Observation, Strategy

SEARCH_SECONDS_KEY = "search_seconds_spent"
"""Study ``meta`` key: seconds the study's runs have searched (``run.search_seconds``)."""
SPENT_WRITE_SECONDS = 2.0
"""How often (seconds) the search loop writes ``SEARCH_SECONDS_KEY`` while it runs."""

__all__ = ["EvaluateFn", "Reporter", "RunSummary", "Runner", "busy_fraction", "genome_key",
           "model_seed", "seed_part", "speed_note", "study_logger", "worker_slots"]

EvaluateFn = Callable[[EvalTask], EvalResult]


@dataclass
class _Flight:
    """A running evaluation: its trial, the proposals parked behind it, its live cursor."""

    number: int
    genome: Any
    genome_key: str
    budget: Budget
    attempt: int
    submitted: float
    waiters: list[Any] = field(default_factory=list)
    parent: int | None = None
    live_seen: int = 0  # epoch records read from the live file so far
    stop_sent: bool = False
    kind: str = "train"  # the stored trial's kind (train, continue, supernet)
    work: dict[str, Any] | None = None


class Runner:
    """Asks the strategy, submits to the executor, tells results, writes the store.

    Whenever one evaluation ends, the strategy is told and asked again, so every worker stays
    busy. The runner alone writes the study database.
    """

    def __init__(
        self,
        *,
        config: SearchConfig,
        storage: StudyStorage,
        space: SearchSpace,
        strategy: Strategy,
        executor: Executor,
        evaluate: EvaluateFn = evaluate_task,
        reporter: Reporter | None = None,
        max_retries: int = 1,
        kind: str | None = None,
        kind_settings: dict[str, Any] | None = None,
    ) -> None:
        """Args:
            config: the study's configuration (``run`` settings: workers, max_evals, limits,
                keep_best, pruner, devices_per_trial, evaluator).
            storage: the open study; the runner alone writes it.
            space, strategy: the study's search space and the strategy asked for proposals.
            executor: where evaluations run (``executors.make_executor``).
            evaluate: the worker's evaluate function, ``EvalTask -> EvalResult`` (default:
                the task's kind's, :func:`~nasforge.execution.tasks.evaluate_task`; usually
                wrapped in ``isolation.IsolatedEvaluate``).
            reporter: progress output (default: none).
            max_retries: extra attempts of a lost or killed evaluation (:class:`RetryPolicy`).
            kind: the kind of work of every ordinary trial (``nasforge.execution.kinds``;
                default ``tabular`` for ``run.evaluator: tabular:nb201``, else ``train`` and
                ``continue``); ``kind_settings`` its study-wide settings.

        Raises:
            ConfigError: unknown ``kind`` (the message lists the known kinds) or pruner.
        """
        self.config = config
        self.storage = storage
        self.space = space
        self.strategy = strategy
        self.executor = executor
        self.evaluate = evaluate
        self.reporter = reporter or Reporter(enabled=False)
        self.retry = RetryPolicy(max_retries)
        self.reuse = ReusePolicy()
        if kind is None and config.run.evaluator.startswith("tabular:"):
            kind = "tabular"
        if kind is not None:
            get_kind(kind)  # an unknown kind: one line before anything runs
        self.kind = kind
        self.kind_settings = dict(kind_settings or {})
        self.logger = study_logger(storage.path)
        self.inflight: dict[Future[EvalResult], _Flight] = {}
        self._stop_requested: float | None = None
        self._hard_stop = False
        self.reused = 0
        self.requeued = 0
        # absolute, so the stored paths mean the same from any working directory
        self.weights = WeightRetention(config.run.keep_best,
                                       artifacts_dir(Path(storage.path).resolve()) / "weights")
        self.slots = worker_slots(executor, config.run.workers)
        from nasforge.execution.pruners import make_pruner

        pruner = make_pruner(config.run.pruner)
        from nasforge.objectives import needs_latency

        self.latency = needs_latency(config.objectives, config.constraints)
        self.live_dir = artifacts_dir(Path(storage.path).resolve()) / "live"
        self.live = LiveChannel(self.live_dir, pruner, self.reporter.message, self.logger)
        if pruner is not None:
            for t in storage.trials():
                if t.status in ("ok", "pruned"):
                    self.live.remember(t.curve)

    @property
    def pruner(self) -> Any:
        """The run's pruner (``run.pruner``; None: none), read from the live channel; may be
        replaced before :meth:`run`."""
        return self.live.pruner

    @pruner.setter
    def pruner(self, pruner: Any) -> None:
        self.live.pruner = pruner

    # ------------------------------------------------------------- signals
    def _on_sigint(self, signum: int, frame: Any) -> None:
        if self._stop_requested is None:
            self._stop_requested = time.time()
            self.reporter.message(
                f"interrupt: no new evaluations; waiting up to {self.config.run.grace_period:.0f}s "
                "for running ones (Ctrl-C again to stop now; they will be re-queued on --resume)"
            )
        else:  # stop now: every process of this command ends (no waiting on the executor)
            self._hard_stop = True
            hard_stop(self.reporter.message)

    # ------------------------------------------------------------ helpers
    def _kind_name(self, trial_kind: str, parent: int | None) -> str:
        """The kind of work that evaluates a trial of stored kind ``trial_kind``."""
        if trial_kind == "supernet":
            name = "supernet"
        elif self.kind is not None:
            name = self.kind
        else:
            name = "continue" if parent is not None else "train"
        return name

    def _submit(self, number: int, genome: Any, gkey: str, budget: Budget, attempt: int,
                parent: int | None = None, kind: str = "train",
                work: dict[str, Any] | None = None) -> None:
        """Make the trial's task with its kind of work and submit it (an ``inline`` kind is
        evaluated here, in the driver)."""
        task_kind = get_kind(self._kind_name(kind, parent))
        continues = getattr(self.strategy, "continues_trials", False)  # keep what a child resumes
        request = TaskRequest(
            number=number, space=self.space, genome=genome, genome_key=gkey, budget=budget,
            data=self.config.data.task_dict(), study_seed=self.config.seed, attempt=attempt,
            parent=parent, work=work, checkpoint_path=self.weights.checkpoint_path(number),
            state_path=str(self.weights.state_path(number)) if continues else None,
            parent_state_path=(str(self.weights.state_path(parent)) if parent is not None
                               else None),
            live_dir=self.live_dir, watch=self.pruner is not None, latency=self.latency,
            speed=speed_choices_for(self.storage, gkey, budget),
            nproc=self.config.run.devices_per_trial, settings=self.kind_settings)
        task = task_kind.make_task(request)
        if self.config.run.devices_per_trial > 1 and task_kind.parallel:
            from nasforge.execution.data_parallel import as_data_parallel

            task = as_data_parallel(task, self.config.run.devices_per_trial)  # N ranks
        if task_kind.inline:
            from nasforge.execution.tabular import InlineExecutor

            future = InlineExecutor().submit(self.evaluate, task)
        else:
            future = self.executor.submit(self.evaluate, task)
        self.inflight[future] = _Flight(number, genome, gkey, budget, attempt, time.time(),
                                        parent=parent, kind=kind, work=work)

    def _observation(self, record: TrialRecord, genome: Any) -> Observation:
        """What a strategy is told: the fitness is the first objective's value (signed so that
        larger is better; the validation accuracy in a single-objective study), None for a
        trial that failed, was pruned or breaks a constraint; ``metrics["objectives"]`` holds
        every objective's value."""
        from nasforge.objectives import feasible, of_config, trial_values

        objectives = of_config(self.config)
        values = trial_values(record, objectives) if record.status == "ok" else None
        fitness = None
        if values is not None and feasible(record, self.config.constraints):
            fitness = values[0] if objectives[0].direction == "max" else -values[0]
        metrics = dict(record.metrics)
        if values is not None:
            metrics["objectives"] = dict(zip((o.name for o in objectives), values))
        return Observation(
            number=record.number,
            genome=genome,
            budget=Budget.from_dict(record.budget),
            status=record.status,
            fitness=fitness,
            metrics=metrics,
        )

    def _ask_one(self) -> bool:
        """Ask once and submit (or answer from the study); False when the strategy waits."""
        candidate = self.strategy.ask()
        if candidate is None:
            return False
        # the proposal as the strategy made it, inactive genes included: it is what the
        # strategy is told and stores (its lineage: a disabled edge may be re-enabled by a
        # later mutation); the canonical form only names the network, for the key and reuse
        genome = candidate.genome
        bdict = candidate.budget.to_dict()
        if candidate.kind == "supernet":  # never answered from the study: its own search
            return self._ask_supernet(candidate, bdict)
        gkey = genome_key(self.space, genome)
        if candidate.parent is not None:
            problem = self.weights.continuation_problem(self.storage, candidate, gkey)
            if problem is not None:  # a strategy's mistake costs one failed trial
                number = self.storage.add_trial(genome_key=gkey, genome=self.space.genome_to_dict(
                    genome), budget=bdict, strategy_state=self.strategy.state_dict(),
                    kind="continue", parent=candidate.parent)
                self._record(_Flight(number, genome, gkey, candidate.budget, 1, time.time(),
                                     parent=candidate.parent, kind="continue"),
                             EvalResult.failure(f"cannot continue trial {candidate.parent}: "
                                                f"{problem}"))
                return True
        existing = self.reuse.stored(self.storage, gkey, bdict)
        if existing is not None:
            self.reused += 1
            self.strategy.tell(self._observation(existing, genome))
            self.storage.save_strategy_state(self.strategy.state_dict())
            return True
        twin = self.reuse.running(self.inflight.values(), gkey, candidate.budget)
        if twin is not None:
            twin.waiters.append(genome)
            # stored, so an ask parked here is still answered after a kill and --resume
            self.storage.set_meta_value(f"waiters:{twin.number}",
                                        [self.space.genome_to_dict(g) for g in twin.waiters])
            self.storage.save_strategy_state(self.strategy.state_dict())
            self.reused += 1
            return True
        kind = "train" if candidate.parent is None else "continue"
        number = self.storage.add_trial(
            genome_key=gkey, genome=self.space.genome_to_dict(genome), budget=bdict,
            strategy_state=self.strategy.state_dict(), kind=kind, parent=candidate.parent)
        self.logger.info("trial %d submitted: %s", number, self.space.describe(genome))
        fault_point("trial-added", number)
        self._submit(number, genome, gkey, candidate.budget, attempt=1, parent=candidate.parent,
                     kind=kind)
        return True

    def _ask_supernet(self, candidate: Any, bdict: dict[str, Any]) -> bool:
        import hashlib
        import json

        work = dict(candidate.work or {})
        digest = hashlib.sha256(json.dumps(work, sort_keys=True).encode()).hexdigest()[:12]
        gkey = f"supernet:{digest}"
        number = self.storage.add_trial(
            genome_key=gkey, genome=self.space.genome_to_dict(candidate.genome), budget=bdict,
            strategy_state=self.strategy.state_dict(), kind="supernet")
        self.storage.set_meta_value(f"work:{number}", work)  # for a re-queue on --resume
        self.logger.info("trial %d submitted: supernet search %s", number, work)
        self._submit(number, candidate.genome, gkey, candidate.budget, attempt=1,
                     kind="supernet", work=work)
        return True

    def _finish(self, future: Future[EvalResult]) -> TrialRecord | None:
        flight = self.inflight.pop(future)
        lost: BaseException | None = None
        try:
            result = future.result()
        except Exception as exc:  # the executor lost the evaluation (a dead worker)
            lost, result = exc, None
        decision = self.retry.decide(flight.attempt, lost=lost is not None,
                                     killed=bool(result is not None and result.retry),
                                     stopping=self._stopping())
        what = (f"lost ({type(lost).__name__}: {lost})" if lost is not None
                else f"killed ({result.error if result is not None else ''})")
        if decision == LEAVE:  # most likely the stop itself: left for --resume
            self._leave_for_resume(flight, what)
            return None
        if decision == RETRY:
            self.logger.warning("trial %d %s; retrying", flight.number, what)
            self._submit(flight.number, flight.genome, flight.genome_key, flight.budget,
                         flight.attempt + 1, flight.parent, flight.kind, flight.work)
            self.inflight[next(reversed(self.inflight))].waiters = flight.waiters
            return None
        if result is None:
            result = EvalResult.failure(f"evaluation lost {flight.attempt} times: "
                                        f"{type(lost).__name__}: {lost}")
        return self._record(flight, result)

    def _record(self, flight: _Flight, result: EvalResult) -> TrialRecord:
        """Store a finished evaluation's result as its trial and tell the strategy."""
        status = result.status
        val_acc = result.val_acc if status in ("ok", "pruned") else None
        found = None  # the genome a supernet trial found
        self.live.finished(flight, status, result.curve or [])
        if flight.kind == "supernet" and status == "ok" and result.genome is not None:
            flight.genome = self.space.genome_from_dict(result.genome)
            found = self.space.genome_to_dict(flight.genome)
            flight.genome_key = genome_key(self.space, flight.genome)
        store_speed(self.storage, flight.genome_key, flight.budget, result)
        metrics = dict(result.metrics or {})
        if flight.parent is not None:  # a continued trial names the trial it went on from
            metrics.update(parent=flight.parent, kind="continue")
        record = TrialRecord(
            number=flight.number, genome_key=flight.genome_key,
            budget_key=budget_key(flight.budget.to_dict()),
            genome=self.space.genome_to_dict(flight.genome), budget=flight.budget.to_dict(),
            status=status, val_acc=val_acc, params=result.params, flops=result.flops,
            metrics=metrics, curve=result.curve or [], error=result.error,
            stderr=result.stderr, worker=result.worker, attempts=flight.attempt,
            checkpoint=result.checkpoint if status == "ok" else None,
            submitted_at=flight.submitted, started_at=result.started_at,
            finished_at=result.finished_at or time.time(),
        )
        self.strategy.tell(self._observation(record, flight.genome))
        for waiter in flight.waiters:
            self.strategy.tell(self._observation(record, waiter))
        if flight.waiters:
            self.storage.delete_meta_value(f"waiters:{flight.number}")
        self.storage.finish_trial(
            record.number, status=record.status, val_acc=record.val_acc, params=record.params,
            flops=record.flops, metrics=record.metrics, curve=record.curve, error=record.error,
            stderr=record.stderr, worker=record.worker, attempts=record.attempts,
            started_at=record.started_at, finished_at=record.finished_at,
            checkpoint=record.checkpoint, strategy_state=self.strategy.state_dict(),
            genome=found, genome_key=flight.genome_key if found is not None else None,
        )
        if status == "ok":
            self.logger.info("trial %d ok val_acc=%.4f params=%s", record.number, val_acc or 0.0,
                             record.params)
        else:
            self.logger.warning("trial %d failed: %s", record.number, record.error)
        self.weights.prune(self.storage)
        return record

    def _leave_for_resume(self, flight: _Flight, what: str) -> None:
        """An evaluation cut short while stopping stays ``running`` in the study, so
        ``--resume`` evaluates it again instead of recording a failure it did not cause."""
        self.logger.warning("trial %d %s while stopping; left for --resume", flight.number, what)

    def _stopping(self) -> bool:
        return self._stop_requested is not None

    # ---------------------------------------------------------------- run
    def run(self) -> RunSummary:
        """Run until the requested count, time limit or target is reached, or interrupted."""
        run_cfg = self.config.run
        start = time.time()
        stop_reason = ""
        previous_handler = None
        try:
            previous_handler = signal.signal(signal.SIGINT, self._on_sigint)
        except ValueError:  # not in the main thread
            previous_handler = None
        try:
            for record in self.storage.trials("running"):
                genome = trial_genome(self.space, record, self.storage.path)
                self.requeued += 1
                self.logger.info("trial %d re-queued after an interrupted run", record.number)
                attempt = self.storage.requeue_trial(record.number)
                self._submit(record.number, genome, record.genome_key,
                             Budget.from_dict(record.budget), attempt=attempt,
                             parent=record.parent, kind=record.kind,
                             work=self.storage.meta_value(f"work:{record.number}"))
                parked = self.storage.meta_value(f"waiters:{record.number}") or []
                self.inflight[next(reversed(self.inflight))].waiters = [
                    self.space.genome_from_dict(g) for g in parked]
            consecutive_reuse = 0
            stop_reason = ""
            spent_before = float(self.storage.meta_value(SEARCH_SECONDS_KEY) or 0.0)
            self.reporter.bounds = TimeBounds(run_cfg.search_seconds, spent_before,
                                              run_cfg.time_limit, start)  # the lines' prefix
            spent_written = -SPENT_WRITE_SECONDS
            while True:
                spent = spent_before + time.time() - start
                if (run_cfg.search_seconds is not None
                        and spent - spent_written >= SPENT_WRITE_SECONDS):
                    self.storage.set_meta_value(SEARCH_SECONDS_KEY, spent)  # a kill loses < 2 s
                    spent_written = spent
                finished = self.storage.count_finished()
                best = self.storage.best(1)
                best_acc = best[0].val_acc if best else None
                if not stop_reason:
                    if self._stopping():
                        stop_reason = "interrupted"
                    elif (run_cfg.time_limit is not None
                          and time.time() - start >= run_cfg.time_limit):
                        # as a first Ctrl-C: running evaluations get the grace period, then
                        # are cut and stay ``running`` for --resume
                        stop_reason = "time limit reached"
                        self._stop_requested = time.time()
                    elif (run_cfg.target_accuracy is not None and best_acc is not None
                          and best_acc >= run_cfg.target_accuracy):
                        stop_reason = "target accuracy reached"
                    elif run_cfg.search_seconds is not None and spent >= run_cfg.search_seconds:
                        # no new trial; the running ones finish (not cut, unlike time_limit)
                        stop_reason = f"search time budget of {run_cfg.search_seconds:.0f}s spent"
                self.slots = worker_slots(self.executor, run_cfg.workers)
                while (not stop_reason and len(self.inflight) < self.slots
                       and finished + len(self.inflight) < run_cfg.max_evals):
                    before = self.reused
                    if not self._ask_one():  # the strategy waits for a result
                        if not self.inflight:
                            stop_reason = "the strategy waits with nothing running"
                        break
                    if self.reused > before:
                        consecutive_reuse += 1
                        if consecutive_reuse > 200:
                            stop_reason = "the strategy proposes only evaluated genomes"
                        finished = self.storage.count_finished()
                    else:
                        consecutive_reuse = 0
                self.reporter.status(finished, run_cfg.max_evals, len(self.inflight),
                                     self.storage.count("failed"), best_acc, time.time() - start)
                if not self.inflight:
                    break
                if self._hard_stop or (
                    self._stop_requested is not None
                    and time.time() - self._stop_requested > run_cfg.grace_period
                ):
                    stop_reason = stop_reason or "interrupted"
                    break
                self.live.poll(self.inflight.values())
                done, _ = wait(list(self.inflight), timeout=0.5 if self.pruner is None else 0.2,
                               return_when=FIRST_COMPLETED)
                for future in done:
                    record = self._finish(future)
                    if record is not None:
                        self.reporter.trial(
                            record, self.space.describe(self.space.genome_from_dict(record.genome),
                                                        record.budget.get("width"))
                            + speed_note(record.metrics.get("speed")),
                            self.storage.count_finished(), run_cfg.max_evals,
                        )
            stop_reason = stop_reason or "max_evals reached"
            if run_cfg.search_seconds is not None:
                self.storage.set_meta_value(SEARCH_SECONDS_KEY, spent_before + time.time() - start)
        finally:
            if previous_handler is not None:
                signal.signal(signal.SIGINT, previous_handler)
            if self.inflight:
                shutdown_now(self.executor)
            self.reporter.close()
        wall = time.time() - start
        ok = self.storage.count("ok")
        failed = self.storage.count("failed")
        best = self.storage.best(1)
        summary = RunSummary(
            finished=ok + failed, ok=ok, failed=failed, reused=self.reused,
            running_left=self.storage.count("running"), best=best[0] if best else None,
            wall_seconds=wall, stop_reason=stop_reason, requeued=self.requeued,
            busy_fraction=busy_fraction(self.storage.trials(), start, start + wall, self.slots),
        )
        self.logger.info("run ended: %s; %d ok, %d failed, %.1fs", stop_reason, ok, failed, wall)
        return summary
