"""One adapter between step-wise strategies and a space's ``decisions`` capability.

A space with ``"decisions"`` describes a genome as a fixed-length sequence of categorical
choices (``SearchSpace.to_decisions``/``from_decisions``/``decision_choices``/
``decision_length``, a property or a method). Every strategy goes through the functions here,
so a rename is a change in :data:`_NAMES` only.
"""

from __future__ import annotations

import random
from typing import Any, Sequence

from nasforge.errors import ConfigError
from nasforge.spaces.base import SearchSpace

_NAMES: dict[str, tuple[str, ...]] = {
    "to": ("to_decisions",),
    "from": ("from_decisions",),
    "choices": ("decision_choices",),
    "length": ("decision_length",),
}
"""Method names per role (``SearchSpace``'s), the current name first; an older name can be
added after it while spaces are renamed."""


def _method(space: SearchSpace, role: str) -> Any:
    for name in _NAMES[role]:
        found = getattr(space, name, None)
        if found is not None:
            return found
    raise ConfigError(f"space {space.name!r} has no decisions method {_NAMES[role][0]!r}")


def decision_length(space: SearchSpace) -> int:
    """Number of steps of the space's decision sequence (nb201: 6, darts: 32)."""
    value = _method(space, "length")
    return int(value() if callable(value) else value)


def decision_choices(space: SearchSpace, prefix: Sequence[Any]) -> tuple[Any, ...]:
    """The choices allowed at step ``len(prefix)`` after ``prefix``; ``GenomeError`` for a
    complete or invalid prefix."""
    return tuple(_method(space, "choices")(list(prefix)))


def to_decisions(space: SearchSpace, genome: Any) -> tuple[Any, ...]:
    """The decision sequence of ``genome``."""
    return tuple(_method(space, "to")(genome))


def from_decisions(space: SearchSpace, seq: Sequence[Any]) -> Any:
    """The genome of a full decision sequence; ``GenomeError`` when it is not one."""
    return _method(space, "from")(list(seq))


def step_vocabulary(space: SearchSpace, samples: int = 64) -> list[tuple[Any, ...]]:
    """Every choice seen at each step, in first-seen order: the union of
    :func:`decision_choices` over the prefixes of ``samples`` random genomes drawn with a
    fixed seed (deterministic). Step choices that depend on the prefix (the darts space's
    second input excludes the first) are covered once two different prefixes occurred."""
    rng = random.Random(0)
    vocab: list[dict[Any, None]] = [dict() for _ in range(decision_length(space))]
    for _ in range(samples):
        seq = to_decisions(space, space.sample(rng))
        for step in range(len(seq)):
            for choice in decision_choices(space, seq[:step]):
                vocab[step].setdefault(choice, None)
    return [tuple(v) for v in vocab]


def uniform_crossover(space: SearchSpace, a: Any, b: Any, rng: random.Random) -> Any:
    """Each step's choice from parent ``a`` or ``b`` with probability 1/2; the other parent's
    when the first is not allowed after the earlier steps, a random allowed choice when
    neither is."""
    sa, sb = to_decisions(space, a), to_decisions(space, b)
    seq: list[Any] = []
    for x, y in zip(sa, sb):
        first, second = (x, y) if rng.random() < 0.5 else (y, x)
        allowed = decision_choices(space, seq)
        if first in allowed:
            seq.append(first)
        elif second in allowed:
            seq.append(second)
        else:
            seq.append(rng.choice(allowed))
    return from_decisions(space, seq)


__all__ = ["decision_choices", "decision_length",
           "from_decisions", "step_vocabulary", "to_decisions", "uniform_crossover"]
