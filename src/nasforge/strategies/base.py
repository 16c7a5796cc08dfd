"""The ask/tell strategy interface and the registry of strategies."""

from __future__ import annotations

import abc
import random
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Sequence

from nasforge.errors import ConfigError, GenomeError
from nasforge.evaluation.budget import Budget
from nasforge.objectives import Constraint
from nasforge.registry import Registry
from nasforge.spaces.base import SearchSpace


@dataclass(frozen=True)
class Problem:
    """What a network must fit: input shape (C, H, W) and number of classes, and the study's
    constraints that a network's structure decides before any training (``params``,
    ``flops``; see :func:`static_constraints`): a strategy never proposes a network that breaks
    one (:func:`genome_reasons`), so no evaluation is spent on a trial that could never be
    picked. Two kinds of proposal are not its own and are not checked: the genomes a
    ``fixed-list`` strategy is given and the cells a one-shot strategy (``darts``, ``darts2``,
    ``gdas``) finds; they train and are marked infeasible as before."""

    input_shape: tuple[int, int, int]
    num_classes: int
    constraints: tuple[Constraint, ...] = ()


STATIC_CONSTRAINT_NAMES: frozenset[str] = frozenset({"params", "flops"})


def static_constraints(constraints: Sequence[Constraint]) -> tuple[Constraint, ...]:
    """The constraints a network's build decides (``params``, ``flops``), leaving out those
    only an evaluation measures (``val_acc``, ``latency_ms``)."""
    return tuple(c for c in constraints if c.name in STATIC_CONSTRAINT_NAMES)


def static_values(space: SearchSpace, genome: Any, problem: Problem, width: int,
                  names: Sequence[str] = ("params", "flops")) -> dict[str, int]:
    """``params`` (trainable parameters) and ``flops`` (of one forward pass of one image of
    ``problem.input_shape`` (C, H, W), ``count_flops``: a multiply-add is 2 FLOPs) of
    ``genome`` built at ``width`` for ``problem``: the same figures a trial of it stores.
    Builds the network on the CPU (3-6 ms for ``quick``'s networks), without touching
    torch's random state; ``flops`` only when named.

    Raises:
        GenomeError: the space cannot build ``genome`` at ``width`` (its ``validate_for``
            objects); :func:`genome_reasons` checks that first.
    """
    import torch

    from nasforge.evaluation.metrics import count_flops, count_params

    with torch.random.fork_rng(devices=[]):
        model = space.build(genome, problem.input_shape, problem.num_classes, width)
        values = {"params": count_params(model)}
        if "flops" in names:
            values["flops"] = count_flops(model, problem.input_shape)
    return values


def genome_reasons(space: SearchSpace, genome: Any, problem: Problem, width: int) -> list[str]:
    """Why ``genome`` cannot be a trial of this problem at ``width`` (empty when it can): the
    space's own checks (``validate_for`` where the space has it, else ``validate``), then each
    of ``problem.constraints`` it breaks, e.g. ``flops 3.9e+06 breaks flops <= 3.5e+06``."""
    validate_for = getattr(space, "validate_for", None)
    if validate_for is not None:
        reasons = list(validate_for(genome, problem.input_shape, problem.num_classes, width))
    else:
        reasons = list(space.validate(genome))
    if reasons or not problem.constraints:
        return reasons
    values = static_values(space, genome, problem, width, [c.name for c in problem.constraints])
    return [f"{c.name} {values[c.name]:.3g} breaks {c}" for c in problem.constraints
            if not c.met(values[c.name])]


@dataclass(frozen=True)
class Candidate:
    """What a strategy asks to evaluate: a genome under a budget.

    ``parent`` names a finished trial to *continue* instead of training from scratch (its
    stored checkpoint is resumed and trained on to ``budget.epochs``: successive halving's
    promotion); the parent must be of the same network, trained under the same budget apart
    from ``epochs``, which must be larger.
    """

    genome: Any
    budget: Budget
    parent: int | None = None
    #: the kind of work: ``"train"`` (from scratch, or continue ``parent``) or ``"supernet"``
    #: (a one-shot search whose result names the genome it found; ``genome`` is then only
    #: the stand-in stored while it runs, and ``work`` its settings, see nasforge.oneshot)
    kind: str = "train"
    work: dict[str, Any] | None = None


@dataclass
class Observation:
    """A finished evaluation told to a strategy. ``fitness`` is None for failed ones."""

    number: int
    genome: Any
    budget: Budget
    status: str
    fitness: float | None
    metrics: dict[str, Any] = field(default_factory=dict)


def rng_state(rng: random.Random) -> list[Any]:
    """A JSON-ready form of a ``random.Random`` state."""
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def set_rng_state(rng: random.Random, state: list[Any]) -> None:
    """Restore a state made by ``rng_state``."""
    rng.setstate((state[0], tuple(state[1]), state[2]))


class Strategy(abc.ABC):
    """Proposes candidates (``ask``) and learns from results (``tell``); resumable by state.

    ``requires`` names the space capabilities the strategy needs; it is refused otherwise.
    """

    name: ClassVar[str] = "base"
    requires: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def missing_capabilities(cls, space: SearchSpace) -> frozenset[str]:
        """The capabilities of ``requires`` that ``space`` lacks (empty: the strategy runs on
        it). A strategy that also works on one space without them by other means (the ant
        colony's layer paths on the global space) overrides this."""
        return frozenset(cls.requires - space.capabilities)

    def __init__(self, space: SearchSpace, budget: Budget, problem: Problem, seed: int) -> None:
        missing = self.missing_capabilities(space)
        if missing:
            raise ConfigError(
                f"strategy {self.name!r} needs space capabilities {sorted(missing)} "
                f"that space {space.name!r} lacks"
            )
        self.space = space
        self.budget = budget
        self.problem = problem
        self.rng = random.Random(seed)

    @abc.abstractmethod
    def ask(self) -> Candidate | None:
        """The next candidate to evaluate, or None to wait: the runner asks again after the
        next result arrives (a strategy that waits while nothing is running ends the run)."""

    @abc.abstractmethod
    def tell(self, observation: Observation) -> None:
        """Learn from a finished evaluation of an earlier ``ask``."""

    def warm_start(self, genomes: list[Any]) -> None:
        """Seed the strategy with known genomes (evaluated first)."""
        raise ConfigError(f"strategy {self.name!r} does not support warm starts")

    def state_dict(self) -> dict[str, Any]:
        """JSON-ready state to resume from."""
        return {"rng": rng_state(self.rng)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state made by ``state_dict``."""
        set_rng_state(self.rng, state["rng"])

    # ----------------------------------------------------------- helpers
    def is_valid(self, genome: Any) -> bool:
        """Whether the genome is valid for the space and this budget's width and limits, and
        meets the problem's constraints (:func:`genome_reasons`)."""
        return not genome_reasons(self.space, genome, self.problem, self.budget.width)

    def sample_valid(self, tries: int = 1000) -> Any:
        """A random genome valid for this budget; ``GenomeError`` when ``tries`` samples gave
        none."""
        for _ in range(tries):
            genome = self.space.sample(self.rng)
            if self.is_valid(genome):
                return genome
        raise GenomeError(f"space {self.space.name!r} gave no valid genome in {tries} samples; "
                          f"loosen {self.limits()}")

    def limits(self) -> str:
        """What a ``GenomeError`` for no valid proposal asks to loosen: ``max_params/max_nodes``
        and, when the problem has them, its constraints by name (``flops <= 10``)."""
        return "max_params/max_nodes" + (
            " or the constraints " + ", ".join(map(str, self.problem.constraints))
            if self.problem.constraints else "")

    def mutate_valid(self, genome: Any, tries: int = 50) -> Any:
        """A valid mutation of ``genome``; falls back to a fresh sample."""
        for _ in range(tries):
            child = self.space.mutate(genome, self.rng)
            if self.is_valid(child):
                return child
        return self.sample_valid()


StrategyFactory = Callable[..., Strategy]
STRATEGIES: Registry[type[Strategy]] = Registry("strategy")
"""The registered strategy classes by name (filled by :func:`register_strategy`)."""


def register_strategy(name: str) -> Callable[[type[Strategy]], type[Strategy]]:
    """Class decorator registering a strategy under ``name`` (and setting its ``name``)."""

    def decorator(cls: type[Strategy]) -> type[Strategy]:
        cls.name = name
        STRATEGIES.register(name, cls)
        return cls

    return decorator


def available_strategies() -> list[str]:
    """Names of the registered strategies, sorted."""
    return STRATEGIES.names()


def get_strategy(
    name: str,
    space: SearchSpace,
    budget: Budget,
    problem: Problem,
    seed: int,
    **settings: Any,
) -> Strategy:
    """Instantiate a registered strategy on ``space`` with its ``settings``.

    Raises:
        ConfigError: an unknown name (listing the known ones); a setting the strategy's
            constructor does not take (named), checked against its signature before the call;
            the constructor's own ``ConfigError`` (a bad value, a capability the space lacks).
        Exception: anything else the constructor raises propagates unchanged (a bug).
    """
    return STRATEGIES.make(name, space, budget, problem, seed, **settings)
