"""Multi-objective studies: objectives, constraints, the values of a trial and its Pareto front.

A config may name several objectives and constraints (as Optuna's multi-objective studies and
``constraints_func``)::

    objectives:                 # the first one is what single-objective strategies optimise
      - {name: val_acc, direction: max}
      - {name: params, direction: min}
    constraints: ["params <= 500000"]

Known objective names: ``val_acc`` (validation accuracy, a fraction), ``params`` (trainable
parameters), ``flops`` (FLOPs of one forward pass of one image) and ``latency_ms`` (median
milliseconds of one forward pass at batch 1 on the worker's device, measured only when an
objective or constraint names it; see ``measure_latency``). Without ``objectives:`` a study has
the one objective ``val_acc`` (max).

The front is computed by the one non-dominated sort the strategies use
(``nasforge.strategies.pareto.non_dominated_sort``, NSGA-II's fast sort) over the ok trials that
meet every constraint, each network at the highest budget it reached (``StudyStorage.best``'s
rule); ``nasforge best --pareto``, ``api.pareto_trials`` and the report print it.

Which trials of a front get final training (``final.pick``): ``best`` (default) takes the
``final.top`` best by the first objective among all feasible trials; ``front`` takes the
``final.top`` front members best by the first objective (so a front of accuracy against size
yields its most accurate small networks first).
"""

from __future__ import annotations

import math
import operator
import re
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from nasforge.errors import ConfigError

KNOWN_OBJECTIVES: tuple[str, ...] = ("val_acc", "params", "flops", "latency_ms")
_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt,
}


@dataclass(frozen=True)
class Objective:
    """One objective: a known name and ``max`` or ``min``."""

    name: str
    direction: str

    def to_dict(self) -> dict[str, str]:
        """``{"name": ..., "direction": ...}``."""
        return {"name": self.name, "direction": self.direction}


@dataclass(frozen=True)
class Constraint:
    """``name op bound``, e.g. ``params <= 500000``; a trial meets it or is infeasible."""

    name: str
    op: str
    bound: float

    def met(self, value: float | None) -> bool:
        """Whether ``value`` meets the constraint (a missing value does not)."""
        return value is not None and _OPS[self.op](float(value), self.bound)

    def __str__(self) -> str:
        return f"{self.name} {self.op} {self.bound:g}"


DEFAULT_OBJECTIVES: tuple[Objective, ...] = (Objective("val_acc", "max"),)


def of_config(config: Any) -> tuple[Objective, ...]:
    """A config's objectives (``DEFAULT_OBJECTIVES`` when it names none)."""
    return tuple(getattr(config, "objectives", ())) or DEFAULT_OBJECTIVES


def parse_objectives(raw: Any, source: str = "<config>") -> tuple[Objective, ...]:
    """Objectives from a config value: a list of ``{name, direction}`` mappings, ``[name,
    direction]`` pairs or ``"name:direction"`` strings; None gives ``()``. ``ConfigError``
    naming the entry for an unknown name, a bad direction or a name given twice."""
    if raw is None:
        return ()
    if not isinstance(raw, (list, tuple)) or not raw:
        raise ConfigError(f"{source}: 'objectives' must be a non-empty list, got {raw!r}")
    out = []
    for entry in raw:
        if isinstance(entry, dict):
            name, direction = entry.get("name"), entry.get("direction", "max")
        elif isinstance(entry, (list, tuple)) and len(entry) == 2:
            name, direction = entry
        elif isinstance(entry, str) and ":" in entry:
            name, direction = entry.split(":", 1)
        else:
            raise ConfigError(f"{source}: objective {entry!r} must be {{name, direction}}, "
                              "[name, direction] or 'name:direction'")
        name, direction = str(name).strip(), str(direction).strip()
        if name not in KNOWN_OBJECTIVES:
            raise ConfigError(f"{source}: unknown objective {name!r}; known: "
                              f"{', '.join(KNOWN_OBJECTIVES)}")
        if direction not in ("max", "min"):
            raise ConfigError(f"{source}: objective {name!r}: direction must be max or min, "
                              f"got {direction!r}")
        out.append(Objective(name, direction))
    names = [o.name for o in out]
    if len(set(names)) != len(names):
        raise ConfigError(f"{source}: an objective appears twice in {names}")
    return tuple(out)


def parse_constraints(raw: Any, source: str = "<config>") -> tuple[Constraint, ...]:
    """Constraints from a list of texts ``"name op bound"`` (op one of <=, >=, <, >);
    ``ConfigError`` naming the text otherwise."""
    if raw is None:
        return ()
    if not isinstance(raw, (list, tuple)):
        raise ConfigError(f"{source}: 'constraints' must be a list of texts such as "
                          f"'params <= 500000', got {raw!r}")
    out = []
    for text in raw:
        match = re.fullmatch(r"\s*([a-z_]+)\s*(<=|>=|<|>)\s*([-+0-9.eE_]+)\s*", str(text))
        if not match or match.group(1) not in KNOWN_OBJECTIVES:
            raise ConfigError(f"{source}: constraint {text!r} must read 'NAME OP NUMBER' with "
                              f"NAME one of {', '.join(KNOWN_OBJECTIVES)} and OP <=, >=, <, >")
        try:
            bound = float(match.group(3).replace("_", ""))
        except ValueError:
            raise ConfigError(f"{source}: constraint {text!r}: not a number") from None
        out.append(Constraint(match.group(1), match.group(2), bound))
    return tuple(out)


def needs_latency(objectives: Sequence[Objective], constraints: Sequence[Constraint]) -> bool:
    """Whether latency must be measured for this study."""
    return any(o.name == "latency_ms" for o in objectives) or any(
        c.name == "latency_ms" for c in constraints)


def trial_value(trial: Any, name: str) -> float | None:
    """One objective's value of a stored trial (``val_acc``, ``params`` and ``flops`` from its
    columns, ``latency_ms`` from its metrics); None when missing or not finite."""
    value = getattr(trial, name, None) if name != "latency_ms" else trial.metrics.get(name)
    if value is None or not math.isfinite(float(value)):
        return None
    return float(value)


def trial_values(trial: Any, objectives: Sequence[Objective]) -> list[float] | None:
    """All objective values of a trial, or None if one is missing."""
    values = [trial_value(trial, o.name) for o in objectives]
    return None if any(v is None for v in values) else values  # type: ignore[return-value]


def feasible(trial: Any, constraints: Sequence[Constraint]) -> bool:
    """Whether a trial meets every constraint."""
    return all(c.met(trial_value(trial, c.name)) for c in constraints)


def pareto_trials(trials: Sequence[Any], objectives: Sequence[Objective],
                  constraints: Sequence[Constraint] = ()) -> list[Any]:
    """The first front of ``trials`` (feasible ones with every value) under ``objectives``,
    ordered best first by the first objective (NSGA-II's sort, shared with the strategies)."""
    from nasforge.strategies.pareto import non_dominated_sort

    pool = [(t, trial_values(t, objectives)) for t in trials if feasible(t, constraints)]
    pool = [(t, v) for t, v in pool if v is not None]
    if not pool:
        return []
    directions = [o.direction for o in objectives]
    front = [pool[i] for i in non_dominated_sort([v for _, v in pool], directions)[0]]
    sign = -1.0 if objectives[0].direction == "max" else 1.0
    return [t for t, v in sorted(front, key=lambda tv: (sign * tv[1][0], tv[0].number))]


def measure_latency(model: Any, input_shape: Sequence[int], device: Any,
                    warmup: int = 10, runs: int = 30) -> float:
    """Median milliseconds of one forward pass of ``model`` (eval mode, no grad) on a batch of
    one ``input_shape`` image, after ``warmup`` passes, with the calling process's thread count.

    On a CPU shared with other workers the figure is noisy: the median of ``runs`` resists
    the occasional slow pass, but latencies measured by a search with several workers compare
    only roughly; measure the front again alone (one worker) before relying on a difference.
    """
    import torch

    dev = torch.device(device)
    x = torch.randn(1, *input_shape, device=dev)
    was_training = model.training
    model.eval()
    times = []
    try:
        with torch.no_grad():
            for i in range(warmup + runs):
                if dev.type == "cuda":
                    torch.cuda.synchronize(dev)
                start = time.perf_counter()
                model(x)
                if dev.type == "cuda":
                    torch.cuda.synchronize(dev)
                if i >= warmup:
                    times.append(time.perf_counter() - start)
    finally:
        model.train(was_training)
    return 1000.0 * statistics.median(times)
