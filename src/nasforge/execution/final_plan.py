"""A final step with a known cost: estimate final training before it starts, cap it, fit it.

Before final training the driver sends one *probe* per genome to the same executor the runs
will use (same worker, same thread count, same device). The probe builds the network at the
final width, chooses the speed options (``auto``: by measurement, at most 5% of the run's
estimated time; a choice already stored in the study is reused) and times training steps in
the chosen setting. From that the cost of a run is

    seconds = epochs * steps_per_epoch * step_seconds + validations * eval_seconds

plus the probe's own set-up time (loading data, building). ``step_seconds`` is timed on fresh
batches taken as the run takes them (gathered, standardised, augmented) and ``eval_seconds``
on part of the validation split (``tasks._time_pipeline``); ``validations`` counts the epochs
the budget validates after (``Budget.validate_every``). The final step's cost is the time the
runs still to train take on ``workers`` at once, each run to the worker free first
(:func:`makespan`).

Caps (``final.max_seconds`` and ``final.total_seconds`` in a config): when the estimate exceeds
the cap, the cap cuts **epochs** (every epoch count keeps its own full learning-rate schedule,
unless the budget sets ``schedule_epochs``, which stays), down to at least one epoch. With ``final.max_epochs`` set and an estimate under the cap, the
plan instead **grows** the epochs (up to ``max_epochs``) while the estimate stays within
``GROW_MARGIN`` of the cap, so a cheap network uses the time the command was given. With
``final.min_width`` set, it first cuts **width** instead: the
same genome, narrower (a multiple of ``WIDTH_STEP``, not below ``min_width``), guessed from
cost ~ width^2 and probed, at most ``MAX_WIDTH_PROBES`` widths; epochs are cut only if the
narrowest still does not fit. With ``final.min_epochs`` as well, the cap first cuts epochs
down to ``min_epochs`` and narrows only when fewer fit at full width; the epochs then grow back
at the narrower width to fill the cap (up to the budget's epochs; ``final.max_epochs`` never
grows a narrowed network). The decided epochs and width are stored in the study (``meta``
key ``final_plan:<budget key>``), so a ``--resume`` trains, and finds stored, exactly the same
runs.

Sizes set explicitly (``keep``: ``nasforge train --epochs`` / ``--width``) are never changed by
the plan: a cap then changes only the other size, and an estimate still over it is trained as
set, the note saying so. Such a plan is stored under its own key (``...:keep=epochs``), so it
never replaces, nor reuses, the plan of the same budget without them.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from nasforge.evaluation.budget import Budget
from nasforge.evaluation.speed import SpeedChoice, speed_key
from nasforge.execution.isolation import IsolatedEvaluate
from nasforge.execution.results import EvalResult
from nasforge.execution.speed_store import store_speed
from nasforge.execution.tasks import EvalTask
from nasforge.storage.sqlite import StudyStorage, budget_key

EVAL_FRACTION = 0.4
"""Seconds of evaluating one batch, as a fraction of a training step's (forward only, no
optimizer; measured 0.3-0.45 on the quick preset's networks here)."""

_EVAL_BATCH = 1024
WIDTH_STEP = 8
"""A width cut keeps widths a multiple of this (an AVX2 register holds 8 floats; on AVX-512
fp32 widths 36 and 40 stepped barely faster than 48, 32 was 37% faster)."""
MAX_WIDTH_PROBES = 3
"""At most this many narrower widths are probed before the cap cuts epochs instead."""
GROW_MARGIN = 0.92
"""Grown epochs keep the estimate within this fraction of the cap: quick's final estimates
were 7% short (session 9, other work on the machine) to 18% long (session 9, fp32), one 24%
short in session 7 before the estimate timed fresh batches (README, "Measured here"); a final
cut by a time limit is left for ``--resume`` instead of finishing the command. The single-view
pass of a ``tta: flip`` run is in the estimate as half a flip-averaged evaluation pass."""


@dataclass
class FinalPlan:
    """What the final step will train and what it should cost.

    ``budget`` is the budget to train (``epochs`` possibly cut by a cap); ``seconds`` the
    estimated wall time of the runs still to train (0 when all are stored); ``per_run`` the
    estimate of one run by genome key; ``speed`` the chosen speed options by genome key;
    ``probe_seconds`` what the probes cost; ``note`` why the epochs were cut, if they were.
    """

    budget: Budget
    seconds: float
    per_run: dict[str, float]
    speed: dict[str, SpeedChoice]
    probe_seconds: float
    note: str | None = None

    def fits(self, seconds_left: float | None) -> bool:
        """Whether the estimate fits in ``seconds_left`` (None: no limit)."""
        return seconds_left is None or self.seconds <= seconds_left


def run_seconds(probe: dict[str, Any], epochs: int, batch_size: int,
                validations: float | None = None) -> float:
    """Estimated wall seconds of one final run of ``epochs`` from a probe's measurements:
    ``epochs`` x steps x the measured step, plus ``validations`` (default: one per epoch)
    passes over the validation split (measured ``eval_seconds``; a probe without it: the
    ``EVAL_FRACTION`` rule), plus the probe's set-up time."""
    step = float(probe["step_seconds"])
    if probe.get("eval_seconds") is not None:
        eval_seconds = float(probe["eval_seconds"])
    else:
        eval_seconds = probe["eval_images"] * step / max(1, batch_size) * EVAL_FRACTION
    setup = max(0.0, float(probe.get("setup_seconds", 0.0)))
    passes = epochs if validations is None else validations
    return epochs * probe["steps_per_epoch"] * step + passes * eval_seconds + setup


def makespan(runs: list[float], workers: int) -> float:
    """Seconds until the last of ``runs`` (seconds each, in submission order) ends when
    ``workers`` train at once, each run going to the worker free first (the executor's order):
    3 equal runs on 2 workers take 2 runs' time, not 1.5."""
    free = [0.0] * max(1, min(workers, len(runs)))
    for seconds in runs:
        free[free.index(min(free))] += seconds
    return max(free) if runs else 0.0


def _plan_key(budget: Budget, keep: frozenset[str] | set[str] = frozenset()) -> str:
    base = f"final_plan:{budget_key(budget.to_dict())}"
    return f"{base}:keep={','.join(sorted(keep))}" if keep else base


def plan_final(
    storage: StudyStorage,
    space: Any,
    todo: list[tuple[str, Any]],
    budget: Budget,
    data: dict[str, Any],
    executor: Executor,
    workers: int,
    *,
    max_seconds: float | None = None,
    reporter: Any = None,
    min_width: int | None = None,
    min_epochs: int | None = None,
    max_epochs: int | None = None,
    seconds_left: float | None = None,
    keep: frozenset[str] | set[str] = frozenset(),
) -> FinalPlan:
    """Probe every genome still to train and plan the final step (see the module docstring).

    ``todo`` lists (genome key, genome) per run still to train (a genome twice for two seeds).
    ``max_seconds`` caps the step's estimate: with ``min_width`` below the budget's width the
    cap first narrows the networks (multiples of ``WIDTH_STEP``, not below ``min_width``; each
    width probed), then cuts epochs; with ``min_epochs`` as well it first cuts epochs down to
    ``min_epochs`` and narrows only when those do not fit at full width (then, at the width
    found, the epochs grow back as far as the cap allows, up to the budget's). With ``max_epochs``
    above the budget's epochs, an estimate under the cap grows the epochs up to ``max_epochs``
    while it stays within ``GROW_MARGIN`` of the cap and of ``seconds_left`` (what a time
    limit leaves, less the probes' time). A plan stored earlier for the same budget is reused
    (so a resume trains the same runs); a damaged stored plan is planned again and replaced,
    the note saying so. ``keep`` names budget sizes (``"epochs"``, ``"width"``) set explicitly:
    the plan never changes them (no cut, no growth, no narrowing), an estimate still over the
    cap is noted and trained as set, and the plan is stored under a key of its own. Raises
    nothing for a failed probe: that genome is estimated at 0 seconds and its run reports the
    failure itself.
    """
    keep = frozenset(keep)
    unknown = keep - {"epochs", "width"}
    if unknown:
        raise ValueError(f"keep names unknown budget sizes: {sorted(unknown)}")
    plan_key = _plan_key(budget, keep)
    stored_plan = storage.meta_value(plan_key)
    planned, stored_note = budget, None
    if stored_plan is not None:
        sizes = _stored_sizes(stored_plan, budget)
        if sizes is None:  # damaged (edited, another version): plan again and store that
            stored_note = (f"the plan stored earlier ({plan_key}) is damaged "
                           f"({stored_plan!r}): planned again")
            stored_plan = None
        else:  # as the plan made it: grown epochs raised schedule_epochs with them
            planned = _with_epochs(budget, sizes[0]).replace(width=sizes[1])
    if stored_plan and (planned.epochs, planned.width) != (budget.epochs, budget.width):
        stored_note = (f"training the plan stored earlier: {planned.epochs} epochs at width "
                       f"{planned.width} (the config says {budget.epochs} at {budget.width}; "
                       f"caps, final.min_width, min_epochs and max_epochs are not applied again)")
    if not todo:
        return FinalPlan(planned, 0.0, {}, {}, 0.0, stored_note)
    started = time.time()
    probes = _probe(storage, space, todo, planned, data, executor, reporter)

    def total(cut: Budget, measured: dict[str, dict[str, Any]]) -> tuple[float, dict[str, float]]:
        passes: float = sum(cut.validates_after(e) for e in range(1, cut.epochs + 1))
        if cut.tta is not None:  # the single-view pass after training: half a flip-averaged one
            passes += 0.5
        per_run = {k: run_seconds(p, cut.epochs, cut.batch_size, passes)
                   for k, p in measured.items()}
        return makespan([per_run.get(gkey, 0.0) for gkey, _ in todo], workers), per_run

    seconds, per_run = total(planned, probes)
    notes = []
    capped = stored_plan is None and max_seconds is not None and seconds > max_seconds
    narrow = (capped and "width" not in keep and min_width is not None
              and min_width < planned.width)
    regrow = False  # after a width cut forced by min_epochs, epochs grow back to fill the cap
    if (narrow and "epochs" not in keep and min_epochs is not None
            and min_epochs < planned.epochs):
        fit = _most_epochs(planned, 1, planned.epochs, max_seconds, total, probes)
        if total(planned.replace(epochs=fit), probes)[0] > max_seconds:
            fit = 0  # not even one epoch fits at full width (min_epochs 1 must narrow too)
        if fit >= min_epochs:
            notes.append(_cut_note(seconds, planned.epochs, max_seconds,
                                   planned.replace(epochs=fit)))
        else:
            notes.append(f"estimated {seconds:.0f}s for {planned.epochs} epochs exceeds the cap "
                         f"of {max_seconds:.0f}s and {fit} epoch(s) fit at width {budget.width}, "
                         f"fewer than final.min_epochs ({min_epochs}): a narrower network")
        planned = planned.replace(epochs=max(fit, min_epochs))
        seconds, per_run = total(planned, probes)
        narrow = regrow = fit < min_epochs
    if narrow:
        first = seconds
        width, tries = planned.width, 0
        while seconds > max_seconds and width > min_width and tries < MAX_WIDTH_PROBES:
            # convolutions dominate: cost ~ width^2; guess, then probe the guess
            guess = int(width * math.sqrt(max_seconds / seconds)) // WIDTH_STEP * WIDTH_STEP
            width = max(min_width, min(guess, width - WIDTH_STEP))
            narrower = planned.replace(width=width)
            measured = _probe(storage, space, todo, narrower, data, executor, reporter)
            if not measured or not set(probes) <= set(measured):
                break  # a genome not measured at this width would count 0 s: stay wider
            planned, probes, tries = narrower, measured, tries + 1
            seconds, per_run = total(planned, probes)
        if planned.width != budget.width:
            notes.append(f"estimated {first:.0f}s for {planned.epochs} epochs at width "
                         f"{budget.width} exceeds the cap of {max_seconds:.0f}s: width "
                         f"{planned.width} instead ({seconds:.0f}s)")
        elif regrow:  # the narrower probe failed: say so after "a narrower network"
            notes.append(f"no narrower width could be estimated: epochs are cut at width "
                         f"{budget.width}")
        limit = max_seconds if seconds_left is None else min(
            max_seconds, seconds_left - (time.time() - started))  # a time limit's rest too
        if regrow and planned.width != budget.width and seconds <= limit:
            epochs = _most_epochs(planned, planned.epochs, budget.epochs, limit, total, probes)
            if epochs > planned.epochs:
                planned = planned.replace(epochs=epochs)
                seconds, per_run = total(planned, probes)
                notes.append(f"at width {planned.width} {epochs} epochs fit: training {epochs} "
                             f"({seconds:.0f}s; the learning-rate schedule spans "
                             f"{planned.schedule_span})")
    if capped and seconds > max_seconds and "epochs" in keep:
        notes.append(f"estimated {seconds:.0f}s for {planned.epochs} epochs at width "
                     f"{planned.width} exceeds the cap of {max_seconds:.0f}s: training them "
                     f"as set ({' and '.join(sorted(keep))} given explicitly)")
    elif capped and seconds > max_seconds and planned.epochs > 1:
        epochs = _most_epochs(planned, 1, planned.epochs, max_seconds, total, probes)
        planned_epochs, planned = planned.epochs, planned.replace(epochs=epochs)
        notes.append(_cut_note(seconds, planned_epochs, max_seconds, planned))
        seconds, per_run = total(planned, probes)
    limits = [c for c in (max_seconds, None if seconds_left is None
                          else seconds_left - (time.time() - started)) if c is not None]
    room = GROW_MARGIN * min(limits) if max_seconds is not None else None
    if (stored_plan is None and room is not None and max_epochs is not None
            and "epochs" not in keep and max_epochs > planned.epochs
            and planned.width == budget.width and seconds <= room):
        epochs = _most_epochs(planned, planned.epochs, max_epochs, room, total, probes)
        if epochs > planned.epochs:
            notes.append(f"estimated {seconds:.0f}s for {planned.epochs} epochs leaves room "
                         f"under the cap of {max_seconds:.0f}s: training {epochs} epochs "
                         f"instead (final.max_epochs {max_epochs})")
            planned = _with_epochs(planned, epochs)
            seconds, per_run = total(planned, probes)
    note = "; ".join(([stored_note] if stored_note else []) + notes) or None
    probe_seconds = time.time() - started
    # a plan that does not fit in the time left trains nothing now: a resume plans afresh
    if stored_plan is None and (max_seconds is not None or note is not None) and (
            seconds_left is None or seconds <= seconds_left):
        storage.set_meta_value(plan_key, {"epochs": planned.epochs, "width": planned.width,
                                          "seconds": seconds})
    speed = {k: SpeedChoice.from_dict(p["speed"]) for k, p in probes.items()}
    return FinalPlan(planned, seconds, per_run, speed, probe_seconds, note)


def _stored_sizes(stored: Any, budget: Budget) -> tuple[int, int] | None:
    """(epochs, width) of a stored plan (width defaults to ``budget``'s); None when the stored
    value is not a mapping of positive integers."""
    if not isinstance(stored, dict):
        return None
    sizes = (stored.get("epochs"), stored.get("width", budget.width))
    if all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in sizes):
        return sizes[0], sizes[1]
    return None


def _most_epochs(planned: Budget, low: int, high: int, limit: float, total: Any,
                 probes: dict[str, dict[str, Any]]) -> int:
    """The most epochs in ``low``..``high`` whose estimate (``total``, which grows with the
    epochs) at ``planned``'s width is within ``limit`` seconds; ``low`` when none is."""
    epochs = low
    while epochs < high and total(_with_epochs(planned, epochs + 1), probes)[0] <= limit:
        epochs += 1
    return epochs


def _cut_note(seconds: float, epochs: int, cap: float, cut: Budget) -> str:
    """The plan's note for an epoch cut from ``epochs`` (estimated ``seconds``) to ``cut``."""
    return (f"estimated {seconds:.0f}s for {epochs} epochs exceeds the cap of {cap:.0f}s: "
            f"training {cut.epochs} epoch(s) instead (the learning-rate schedule spans "
            f"{cut.schedule_span})")


def _with_epochs(budget: Budget, epochs: int) -> Budget:
    """``budget`` with ``epochs``, its ``schedule_epochs`` (when set) raised to stay >= them."""
    span = budget.schedule_epochs
    return budget.replace(epochs=epochs,
                          schedule_epochs=None if span is None else max(span, epochs))


def _probe(storage: StudyStorage, space: Any, todo: list[tuple[str, Any]], planned: Budget,
           data: dict[str, Any], executor: Executor, reporter: Any) -> dict[str, dict[str, Any]]:
    """One probe per distinct genome of ``todo`` under ``planned``, on ``executor``: the
    probe figures by genome key (a failed probe is left out and reported)."""
    probes: dict[str, dict[str, Any]] = {}
    futures = {}
    for gkey, genome in todo:
        if gkey in futures.values():
            continue
        task = EvalTask(
            trial_number=-1, space_name=space.name, space_settings=space.settings(),
            genome=space.genome_to_dict(genome), budget=planned.to_dict(), data=data,
            model_seed=0, final=True, kind="probe", extra=speed_extra(storage, gkey, planned),
        )
        futures[executor.submit(IsolatedEvaluate(), task)] = gkey
    for future, gkey in futures.items():
        try:
            result = future.result()
        except Exception as exc:  # noqa: BLE001 - a lost probe costs the estimate only
            result = EvalResult.failure(f"{type(exc).__name__}: {exc}")
        if result.ok and result.metrics.get("step_seconds") and result.speed:
            speed = result.speed
            probe = {**result.metrics, "speed": speed, "speed_device": result.speed_device}
            probe["setup_seconds"] = (probe["probe_seconds"] - SpeedChoice.from_dict(
                speed).overhead_seconds - float(probe.get("pipeline_seconds", 0.0)))
            probes[gkey] = probe
            store_speed(storage, gkey, planned, result)
        elif reporter is not None:
            reporter.message(f"final: could not estimate the cost ({result.error})")
    return probes


def speed_extra(storage: StudyStorage, gkey: str, budget: Budget) -> dict[str, Any]:
    """The task ``extra`` carrying the study's stored speed choices for this network."""
    if not budget.speed_auto:
        return {}
    return {"speed": storage.speed_choices(speed_key(gkey, budget.width, budget.batch_size))}


def describe_plan(plan: FinalPlan) -> list[str]:
    """Readable lines: the estimate, the speed options chosen and what measuring cost."""
    lines = []
    for gkey, choice in plan.speed.items():
        how = (f"measured in {choice.overhead_seconds:.1f}s" if choice.measured
               else choice.source)
        lines.append(f"final: speed options {choice.setting.label()} ({how}); "
                     f"{plan.per_run.get(gkey, 0):.0f}s a run")
    lines.append(f"final: estimated {_clock(plan.seconds)} for {plan.budget.epochs} epoch(s) "
                 f"(probes took {plan.probe_seconds:.0f}s)")
    if plan.note:
        lines.append(f"final: {plan.note}")
    return lines


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(math.ceil(seconds)), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


__all__ = ["FinalPlan", "describe_plan", "makespan", "plan_final", "run_seconds", "speed_extra"]
