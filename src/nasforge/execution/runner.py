"""The steady-state runner: keeps N evaluations in flight and records every trial."""

from __future__ import annotations

import logging
import signal
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from nasforge.config import SearchConfig
from nasforge.evaluation.budget import Budget
from nasforge.evaluation.speed import speed_key
from nasforge.execution.executors import shutdown_now
from nasforge.execution.faults import fault_point
from nasforge.execution.stops import hard_stop
from nasforge.execution.tasks import EvalTask, evaluate_task, model_seed
from nasforge.spaces.base import SearchSpace, genome_key
from nasforge.storage.sqlite import (
    StudyStorage,
    TrialRecord,
    artifacts_dir,
    budget_key,
    resolve_checkpoint,
)
from nasforge.strategies.base import Observation, Strategy

EvaluateFn = Callable[[EvalTask], dict[str, Any]]


@dataclass
class RunSummary:
    """What a run did: counts, best trial, wall time, why it stopped."""

    finished: int
    ok: int
    failed: int
    reused: int
    running_left: int
    best: TrialRecord | None
    wall_seconds: float
    stop_reason: str
    busy_fraction: float | None = None
    requeued: int = 0


class Reporter:
    """Progress output: one updating line on a terminal, plain lines otherwise."""

    def __init__(self, stream: Any = None, enabled: bool = True) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.live = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self._last = ""

    def status(self, done: int, total: int, running: int, failed: int, best: float | None,
               elapsed: float) -> None:
        """The running tally."""
        if not self.enabled:
            return
        eta = f"{elapsed / done * (total - done):.0f}s" if done else "?"
        best_text = f"{best:.4f}" if best is not None else "-"
        line = (
            f"[{done}/{total}] running {running}  failed {failed}  best val acc {best_text}  "
            f"elapsed {elapsed:.0f}s  eta {eta}"
        )
        if self.live and line != self._last:
            self.stream.write("\r\033[K" + line)
            self.stream.flush()
        self._last = line

    def trial(self, record: TrialRecord, text: str, done: int, total: int) -> None:
        """One finished trial."""
        if not self.enabled:
            return
        if record.status == "ok":
            msg = f"trial {record.number} ok  val acc {record.val_acc:.4f}  params {record.params}  {text}"
        elif record.status == "pruned":
            msg = (f"trial {record.number} pruned after epoch {len(record.curve)}  val acc "
                   f"{record.val_acc:.4f}  {text}")
        else:
            msg = f"trial {record.number} FAILED: {record.error}"
        prefix = "\r\033[K" if self.live else ""
        self.stream.write(f"{prefix}[{done}/{total}] {msg}\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        """A free-form line."""
        if self.enabled:
            prefix = "\r\033[K" if self.live else ""
            self.stream.write(prefix + text + "\n")
            self.stream.flush()

    def close(self) -> None:
        """End the live line."""
        if self.enabled and self.live and self._last:
            self.stream.write("\n")
            self.stream.flush()


@dataclass
class _Flight:
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
    kind: str = "train"
    work: dict[str, Any] | None = None


def study_logger(storage_path: Path) -> logging.Logger:
    """A logger writing to the study's log file beside the database."""
    folder = artifacts_dir(storage_path)
    folder.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger(f"nasforge.study.{storage_path.resolve()}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    if not logger.handlers:
        handler = logging.FileHandler(folder / "search.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
    return logger


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
        prepare_task: Callable[[EvalTask, Budget], EvalTask] | None = None,
    ) -> None:
        self.config = config
        self.storage = storage
        self.space = space
        self.strategy = strategy
        self.executor = executor
        self.evaluate = evaluate
        self.reporter = reporter or Reporter(enabled=False)
        self.max_retries = max_retries
        #: a kind of work's task maker on top of the runner's (e.g. the fidelity study adds its
        #: fixed data subset, shared initialisation and proxies to every task)
        self.prepare_task = prepare_task
        self.logger = study_logger(storage.path)
        self.inflight: dict[Future[dict[str, Any]], _Flight] = {}
        self._stop_requested: float | None = None
        self._hard_stop = False
        self.reused = 0
        self.requeued = 0
        # absolute, so the stored paths mean the same from any working directory
        self.weights_dir = artifacts_dir(Path(storage.path).resolve()) / "weights"
        self.slots = worker_slots(executor, config.run.workers)
        from nasforge.execution.pruners import make_pruner

        self.pruner = make_pruner(config.run.pruner)
        from nasforge.objectives import needs_latency

        self.latency = needs_latency(config.objectives, config.constraints)
        self.live_dir = artifacts_dir(Path(storage.path).resolve()) / "live"
        self.history: dict[int, list[float]] = {}  # epoch -> values of finished trials
        if self.pruner is not None:
            for t in storage.trials():
                if t.status in ("ok", "pruned"):
                    self._remember_curve(t.curve)

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
    def _data_dict(self) -> dict[str, Any]:
        return self.config.data.task_dict()

    def _state_path(self, number: int) -> Path:
        return self.weights_dir / f"trial_{number}.state.pt"

    def _submit(self, number: int, genome: Any, gkey: str, budget: Budget, attempt: int,
                parent: int | None = None, kind: str = "train",
                work: dict[str, Any] | None = None) -> None:
        bdict = budget.to_dict()
        ckpt = None
        if kind == "supernet":  # a one-shot search: its own kind of work, no weights kept
            self._submit_supernet(number, genome, gkey, budget, attempt, work or {})
            return
        if self.config.run.keep_best > 0:
            ckpt = str(self.weights_dir / f"trial_{number}.pt")
        extra = self._speed_extra(gkey, budget)
        if getattr(self.strategy, "continues_trials", False):  # keep what a child resumes
            extra["save_state"] = str(self._state_path(number))
        if parent is not None:
            extra["resume_from"] = str(self._state_path(parent))
        if self.latency:
            extra["latency"] = True
        progress = None
        if self.pruner is not None:  # the live channel: epochs out, a stop request in
            self.live_dir.mkdir(parents=True, exist_ok=True)
            progress = str(self.live_dir / f"trial_{number}.jsonl")
            Path(progress).write_text("")
            extra["stop"] = str(self.live_dir / f"trial_{number}.stop")
            Path(extra["stop"]).unlink(missing_ok=True)
        task = EvalTask(
            trial_number=number,
            space_name=self.space.name,
            space_settings=self.space.settings(),
            genome=self.space.genome_to_dict(genome),
            budget=bdict,
            data=self._data_dict(),
            model_seed=model_seed(self.config.seed, gkey, budget_key(seed_part(bdict))),
            checkpoint_path=ckpt,
            attempt=attempt,
            extra=extra,
            progress_path=progress,
        )
        if self.prepare_task is not None:
            task = self.prepare_task(task, budget)
        future = self.executor.submit(self.evaluate, task)
        self.inflight[future] = _Flight(number, genome, gkey, budget, attempt, time.time(),
                                        parent=parent)

    def _submit_supernet(self, number: int, genome: Any, gkey: str, budget: Budget,
                         attempt: int, work: dict[str, Any]) -> None:
        """Submit a ``supernet`` trial: the worker runs ``nasforge.oneshot`` and writes one
        line per epoch to the live file, which the loop shows (epoch, current cell)."""
        self.live_dir.mkdir(parents=True, exist_ok=True)
        progress = self.live_dir / f"trial_{number}.jsonl"
        progress.write_text("")
        bdict = budget.to_dict()
        task = EvalTask(
            trial_number=number, space_name=self.space.name,
            space_settings=self.space.settings(), genome=self.space.genome_to_dict(genome),
            budget=bdict, data=self._data_dict(),
            model_seed=model_seed(self.config.seed, gkey, budget_key(seed_part(bdict))),
            attempt=attempt, extra={"kind": "supernet", "supernet": dict(work)},
            progress_path=str(progress),
        )
        future = self.executor.submit(self.evaluate, task)
        self.inflight[future] = _Flight(number, genome, gkey, budget, attempt, time.time(),
                                        kind="supernet", work=dict(work))

    def _poll_supernets(self) -> None:
        """Show the new epochs of running supernet trials (epoch, cell, skips, accuracy)."""
        for flight in self.inflight.values():
            if flight.kind == "supernet":
                self._show_supernet(flight)

    def _new_live_points(self, flight: _Flight) -> Iterator[dict[str, Any]]:
        """The epochs a running trial wrote to its live channel since the last look, in order;
        each one counted as seen when it is handed out (a caller that stops early leaves the
        rest for the next look). A line still being written ends the look."""
        import json

        try:
            lines = (self.live_dir / f"trial_{flight.number}.jsonl").read_text().splitlines()
        except OSError:
            return
        for line in lines[flight.live_seen:]:
            try:
                point = json.loads(line)
            except json.JSONDecodeError:
                return  # still being written
            flight.live_seen += 1
            yield point

    def _show_supernet(self, flight: _Flight) -> None:
        """One progress line per epoch the supernet trial wrote since the last look."""
        for point in self._new_live_points(flight):
            self.reporter.message(
                f"trial {flight.number} supernet epoch {point['epoch']}/"
                f"{flight.budget.epochs}: supernet acc {point['val_acc']:.4f}  skips "
                f"{point['skips']}  {point['seconds']:.0f}s  cell {point['cell']}")

    def _speed_extra(self, gkey: str, budget: Budget) -> dict[str, Any]:
        """The study's stored speed choices for this network (``auto`` budgets only), so a
        rerun or ``--resume`` trains under the same options without measuring again."""
        if not budget.speed_auto:
            return {}
        return {"speed": self.storage.speed_choices(
            speed_key(gkey, budget.width, budget.batch_size))}

    def _store_speed(self, gkey: str, budget: Budget, result: dict[str, Any]) -> None:
        """Keep a choice the evaluation measured (the runner alone writes the study)."""
        speed = result.get("speed")
        if budget.speed_auto and speed and speed.get("measured") and result.get("speed_device"):
            self.storage.put_speed_choice(speed_key(gkey, budget.width, budget.batch_size),
                                          result["speed_device"], speed)

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
            problem = self._parent_problem(candidate, gkey)
            if problem is not None:  # a strategy's mistake costs one failed trial
                number = self.storage.add_trial(genome_key=gkey, genome=self.space.genome_to_dict(
                    genome), budget=bdict, strategy_state=self.strategy.state_dict(),
                    kind="continue", parent=candidate.parent)
                self._record(_Flight(number, genome, gkey, candidate.budget, 1, time.time(),
                                     parent=candidate.parent),
                             {"status": "failed", "error": f"cannot continue trial "
                              f"{candidate.parent}: {problem}", "finished_at": time.time()})
                return True
        existing = self.storage.find_finished(gkey, bdict)
        if existing is not None:
            self.reused += 1
            self.strategy.tell(self._observation(existing, genome))
            self.storage.save_strategy_state(self.strategy.state_dict())
            return True
        for flight in self.inflight.values():
            if flight.genome_key == gkey and flight.budget == candidate.budget:
                flight.waiters.append(genome)
                # stored, so an ask parked here is still answered after a kill and --resume
                self.storage.set_meta_value(
                    f"waiters:{flight.number}",
                    [self.space.genome_to_dict(g) for g in flight.waiters])
                self.storage.save_strategy_state(self.strategy.state_dict())
                self.reused += 1
                return True
        number = self.storage.add_trial(
            genome_key=gkey,
            genome=self.space.genome_to_dict(genome),
            budget=bdict,
            strategy_state=self.strategy.state_dict(),
            kind="train" if candidate.parent is None else "continue",
            parent=candidate.parent,
        )
        self.logger.info("trial %d submitted: %s", number, self.space.describe(genome))
        fault_point("trial-added", number)
        self._submit(number, genome, gkey, candidate.budget, attempt=1, parent=candidate.parent)
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

    def _parent_problem(self, candidate: Any, gkey: str) -> str | None:
        """Why ``candidate`` cannot continue its parent trial, or None when it can: the parent
        must be a finished ok trial of the same network whose budget differs only in (fewer)
        epochs, with its state kept on disk."""
        try:
            parent = self.storage.trial(candidate.parent)
        except Exception:  # noqa: BLE001 - no such trial
            return "no such trial"
        if parent.status != "ok" or parent.genome_key != gkey:
            return "it is not a finished ok trial of the same network"
        mine = candidate.budget.to_dict()
        theirs = dict(parent.budget)
        if int(theirs.get("epochs", 0)) >= int(mine["epochs"]):
            return f"it already trained {theirs.get('epochs')} epoch(s)"
        theirs["epochs"] = mine["epochs"]
        if theirs != mine:
            return "its budget differs in more than epochs"
        if not self._state_path(parent.number).is_file():
            return "its training state was not kept (the strategy must set continues_trials)"
        return None

    def _finish(self, future: Future[dict[str, Any]]) -> TrialRecord | None:
        flight = self.inflight.pop(future)
        try:
            result = future.result()
        except Exception as exc:  # the executor lost the evaluation (a dead worker)
            if self._stopping():  # most likely the stop itself: leave it for --resume
                self._leave_for_resume(flight, f"lost ({type(exc).__name__}: {exc})")
                return None
            if flight.attempt <= self.max_retries:
                self.logger.warning("trial %d lost (%s); retrying", flight.number, exc)
                self._submit(flight.number, flight.genome, flight.genome_key, flight.budget,
                             flight.attempt + 1, flight.parent, flight.kind, flight.work)
                self.inflight[next(reversed(self.inflight))].waiters = flight.waiters
                return None
            result = {
                "status": "failed",
                "error": f"evaluation lost {flight.attempt} times: {type(exc).__name__}: {exc}",
                "started_at": None,
                "finished_at": time.time(),
            }
        if result.get("retry") and self._stopping():
            self._leave_for_resume(flight, f"killed ({result.get('error')})")
            return None
        if result.get("retry") and flight.attempt <= self.max_retries:
            self.logger.warning("trial %d killed (%s); retrying", flight.number, result.get("error"))
            self._submit(flight.number, flight.genome, flight.genome_key, flight.budget,
                         flight.attempt + 1, flight.parent, flight.kind, flight.work)
            self.inflight[next(reversed(self.inflight))].waiters = flight.waiters
            return None
        return self._record(flight, result)

    def _remember_curve(self, curve: list[dict[str, Any]]) -> None:
        for point in curve:
            self.history.setdefault(int(point["epoch"]), []).append(float(point["val_acc"]))

    def _poll_live(self) -> None:
        """Read new epochs of running trials and send a stop request where the pruner says so."""
        for flight in self.inflight.values():
            if flight.stop_sent or flight.kind != "train":
                continue
            for point in self._new_live_points(flight):
                epoch, value = int(point["epoch"]), float(point["val_acc"])
                if self.pruner.should_prune(epoch, value, self.history):  # type: ignore[union-attr]
                    (self.live_dir / f"trial_{flight.number}.stop").write_text(str(epoch))
                    flight.stop_sent = True
                    self.logger.info("trial %d: pruned at epoch %d (val acc %.4f)",
                                     flight.number, epoch, value)
                    break

    def _record(self, flight: _Flight, result: dict[str, Any]) -> TrialRecord:
        """Store a finished evaluation's result as its trial and tell the strategy."""
        status = result.get("status", "failed")
        val_acc = result.get("val_acc") if status in ("ok", "pruned") else None
        found = None  # the genome a supernet trial found
        if flight.kind == "supernet":
            self._show_supernet(flight)  # the epochs not shown yet
            (self.live_dir / f"trial_{flight.number}.jsonl").unlink(missing_ok=True)
            if status == "ok" and result.get("genome") is not None:
                flight.genome = self.space.genome_from_dict(result["genome"])
                found = self.space.genome_to_dict(flight.genome)
                flight.genome_key = genome_key(self.space, flight.genome)
        if self.pruner is not None:
            for suffix in (".jsonl", ".stop"):
                (self.live_dir / f"trial_{flight.number}{suffix}").unlink(missing_ok=True)
            if status in ("ok", "pruned"):
                self._remember_curve(result.get("curve") or [])
        self._store_speed(flight.genome_key, flight.budget, result)
        metrics = dict(result.get("metrics") or {})
        if flight.parent is not None:  # a continued trial names the trial it went on from
            metrics.update(parent=flight.parent, kind="continue")
        record = TrialRecord(
            number=flight.number, genome_key=flight.genome_key,
            budget_key=budget_key(flight.budget.to_dict()),
            genome=self.space.genome_to_dict(flight.genome), budget=flight.budget.to_dict(),
            status=status, val_acc=val_acc, params=result.get("params"),
            flops=result.get("flops"), metrics=metrics,
            curve=result.get("curve") or [], error=result.get("error"),
            stderr=result.get("stderr"), worker=result.get("worker"), attempts=flight.attempt,
            checkpoint=result.get("checkpoint") if status == "ok" else None,
            submitted_at=flight.submitted, started_at=result.get("started_at"),
            finished_at=result.get("finished_at") or time.time(),
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
        self._prune_weights()
        return record

    def _leave_for_resume(self, flight: _Flight, what: str) -> None:
        """An evaluation cut short while stopping stays ``running`` in the study, so
        ``--resume`` evaluates it again instead of recording a failure it did not cause."""
        self.logger.warning("trial %d %s while stopping; left for --resume", flight.number, what)

    def _prune_weights(self) -> None:
        keep = {t.number for t in self.storage.best(self.config.run.keep_best)}
        for number, checkpoint in self.storage.checkpoints():
            if number not in keep:
                own = resolve_checkpoint(checkpoint, self.storage.path)  # never another study's
                if own is not None:
                    own.unlink(missing_ok=True)
                self.storage.set_checkpoint(number, None)

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
                genome = self.space.genome_from_dict(record.genome)
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
            while True:
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
                if self.pruner is not None:
                    self._poll_live()
                self._poll_supernets()
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


def seed_part(budget: dict[str, Any]) -> dict[str, Any]:
    """The part of a budget that seeds a trial's model (initial weights, batch order, data
    subset): everything but the epoch count and the schedule's span, so a trial trained to 3
    epochs and one continued from 1 to 3 start from the same weights and data."""
    return {k: v for k, v in budget.items() if k not in ("epochs", "schedule_epochs")}


def speed_note(speed: dict[str, Any] | None) -> str:
    """`` [bf16, channels-last; measured in 0.4s]`` for a trial whose speed options were
    measured, else empty."""
    if not speed or not speed.get("measured"):
        return ""
    from nasforge.evaluation.speed import SpeedChoice

    choice = SpeedChoice.from_dict(speed)
    return f"  [{choice.setting.label()}; measured in {choice.overhead_seconds:.1f}s]"


def worker_slots(executor: Executor, configured: int) -> int:
    """How many evaluations to keep in flight: the executor's own worker count where it knows
    it (the worker ranks under ``mpiexec``, the workers of an existing Dask cluster), else the
    configured ``run.workers``."""
    known = getattr(executor, "nasforge_workers", None)
    return int(known) if isinstance(known, int) and known > 0 else max(1, configured)


def busy_fraction(trials: list[TrialRecord], start: float, end: float, workers: int) -> float | None:
    """Share of worker-time spent evaluating between ``start`` and ``end``."""
    span = (end - start) * workers
    if span <= 0:
        return None
    busy = 0.0
    for t in trials:
        if t.started_at is None or t.finished_at is None:
            continue
        busy += max(0.0, min(t.finished_at, end) - max(t.started_at, start))
    return min(1.0, busy / span)
