"""The search-space interface and the registry of spaces."""

from __future__ import annotations

import abc
import hashlib
import json
import random
from typing import Any, Callable, ClassVar, Mapping, Sequence

import numpy as np
from torch import nn

from nasforge.registry import Registry


class SearchSpace(abc.ABC):
    """Pure functions over genomes (plain, hashable data), with a seeded RNG passed in.

    Every space implements the abstract methods (sample, validate, canonical, build,
    count_params, the JSON pair, describe). ``capabilities`` names the optional groups of
    methods it also implements; a strategy states what it needs in ``Strategy.requires`` and is
    refused early otherwise. The contract tests (``tests/test_contract_spaces.py``) run every
    registered space through every method its capabilities promise.

    - ``"mutate"``: :meth:`mutate`.
    - ``"crossover"``: :meth:`crossover`.
    - ``"encode"``: :meth:`encode`, a fixed-length finite float vector (predictors).
    - ``"decisions"``: the genome as a fixed-length sequence of categorical choices, for
      step-wise strategies (ant colony, REINFORCE): :attr:`decision_length` (number of
      steps), :meth:`decision_names` (one name per step), :meth:`decision_choices` (the values
      allowed at the next step given the earlier ones), :meth:`to_decisions` and
      :meth:`from_decisions` (inverse of each other on valid genomes).
    - ``"cell"``: the genome is a cell repeated in a fixed skeleton (e.g. ``darts``).
    - ``"supernet"``: a one-shot supernet for gradient methods (DARTS).

    Optional: ``validate_for(genome, input_shape, num_classes, width) -> list[str]`` adds the
    reasons that depend on a build (e.g. ``max_params``); strategies use it when present.
    """

    name: ClassVar[str] = "base"
    capabilities: ClassVar[frozenset[str]] = frozenset()

    @abc.abstractmethod
    def sample(self, rng: random.Random) -> Any:
        """A random valid genome."""

    def mutate(self, genome: Any, rng: random.Random) -> Any:
        """A valid genome one mutation away from ``genome``."""
        raise NotImplementedError(f"space {self.name!r} does not support mutation")

    def crossover(self, a: Any, b: Any, rng: random.Random) -> Any:
        """A valid child genome mixing the genes of ``a`` and ``b``."""
        raise NotImplementedError(f"space {self.name!r} does not support crossover")

    def encode(self, genome: Any) -> np.ndarray:
        """A fixed-length float vector for predictors."""
        raise NotImplementedError(f"space {self.name!r} does not support encoding")

    @abc.abstractmethod
    def validate(self, genome: Any) -> list[str]:
        """Reasons the genome is invalid for this space; empty when it is valid."""

    @abc.abstractmethod
    def canonical(self, genome: Any) -> Any:
        """The canonical form: equal for any two genomes that build the same network."""

    @abc.abstractmethod
    def build(
        self,
        genome: Any,
        input_shape: tuple[int, int, int],
        num_classes: int,
        width: int,
    ) -> nn.Module:
        """The PyTorch module for ``genome``; raises ``GenomeError`` when it cannot be built."""

    @abc.abstractmethod
    def count_params(
        self,
        genome: Any,
        input_shape: tuple[int, int, int],
        num_classes: int,
        width: int,
    ) -> int:
        """Trainable parameters of the built network, computed without allocating weights."""

    @abc.abstractmethod
    def genome_to_dict(self, genome: Any) -> dict[str, Any]:
        """The stable, schema-versioned JSON-ready form."""

    @abc.abstractmethod
    def genome_from_dict(self, data: Mapping[str, Any]) -> Any:
        """Parse the JSON-ready form; raises ``GenomeError`` on unknown fields or versions."""

    @abc.abstractmethod
    def describe(self, genome: Any, width: int | None = None) -> str:
        """A one-line readable text form."""

    # ----------------------------------------------------------- "decisions" capability
    @property
    def decision_length(self) -> int:
        """Number of steps of a full decision sequence (capability ``"decisions"``)."""
        raise NotImplementedError(f"space {self.name!r} has no decisions")

    def decision_names(self) -> list[str]:
        """One readable name per decision step, ``decision_length`` of them."""
        raise NotImplementedError(f"space {self.name!r} has no decisions")

    def decision_choices(self, prefix: Sequence[Any]) -> tuple[Any, ...]:
        """The values allowed at step ``len(prefix)`` after the choices ``prefix``;
        raises ``GenomeError`` when ``prefix`` is complete or holds a value not allowed."""
        raise NotImplementedError(f"space {self.name!r} has no decisions")

    def to_decisions(self, genome: Any) -> tuple[Any, ...]:
        """The decision sequence of a valid genome (``decision_length`` values)."""
        raise NotImplementedError(f"space {self.name!r} has no decisions")

    def from_decisions(self, decisions: Sequence[Any]) -> Any:
        """The genome of a full decision sequence; ``GenomeError`` when it is not one.
        ``from_decisions(to_decisions(g)) == g`` for every valid genome ``g``."""
        raise NotImplementedError(f"space {self.name!r} has no decisions")

    def to_dot(self, genome: Any, width: int | None = None) -> str:
        """A Graphviz DOT description."""
        raise NotImplementedError(f"space {self.name!r} cannot draw genomes")

    def settings(self) -> dict[str, Any]:
        """The settings that define this space (stored with a study)."""
        return {}


SpaceFactory = Callable[..., SearchSpace]
SPACES: Registry[SpaceFactory] = Registry("space")
"""The registered spaces by name (filled by :func:`register_space`)."""


def register_space(name: str) -> Callable[[SpaceFactory], SpaceFactory]:
    """Class decorator that registers a space factory under ``name``."""
    return SPACES.register(name)


def available_spaces() -> list[str]:
    """Names of the registered spaces, sorted."""
    return SPACES.names()


def get_space(name: str, **settings: Any) -> SearchSpace:
    """Instantiate a registered space with its ``settings``.

    Raises:
        ConfigError: an unknown name (listing the known ones), or a setting the space's
            constructor does not take (named), checked against its signature before the call;
            the constructor's own ``ConfigError`` for a bad value.
        Exception: anything else the constructor raises propagates unchanged (a bug).
    """
    return SPACES.make(name, **settings)


def genome_key(space: SearchSpace, genome: Any) -> str:
    """A stable identity for the network of a genome: sha256 of its canonical JSON form
    (two genomes that build the same network share it)."""
    data = space.genome_to_dict(space.canonical(genome))
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:20]


SEARCH_ONLY_SETTINGS: frozenset[str] = frozenset({"max_params", "input_ops"})
"""Space settings that limit the candidates of a search, not a network once it is chosen."""


def chosen_network_space(name: str, settings: dict[str, Any]) -> SearchSpace:
    """The space for building a network already chosen (final training, export, loading an
    export): the search's limits on candidates are dropped, e.g. a final training at a larger
    width may exceed the search's ``max_params``."""
    kept = {k: v for k, v in settings.items() if k not in SEARCH_ONLY_SETTINGS}
    return get_space(name, **kept)
