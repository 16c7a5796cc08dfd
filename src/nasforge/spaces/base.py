"""The search-space interface and the registry of spaces."""

from __future__ import annotations

import abc
import hashlib
import json
import random
from typing import Any, Callable, ClassVar, Mapping

import numpy as np
from torch import nn

from nasforge.errors import ConfigError


class SearchSpace(abc.ABC):
    """Pure functions over genomes (plain, hashable data), with a seeded RNG passed in.

    ``capabilities`` says which optional operations a space supports ("mutate", "crossover",
    "encode", "supernet"); strategies state what they need and are refused early otherwise.
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

    def to_dot(self, genome: Any, width: int | None = None) -> str:
        """A Graphviz DOT description."""
        raise NotImplementedError(f"space {self.name!r} cannot draw genomes")

    def settings(self) -> dict[str, Any]:
        """The settings that define this space (stored with a study)."""
        return {}


SpaceFactory = Callable[..., SearchSpace]
_SPACES: dict[str, SpaceFactory] = {}


def register_space(name: str) -> Callable[[SpaceFactory], SpaceFactory]:
    """Class decorator that registers a space factory under ``name``."""

    def decorator(factory: SpaceFactory) -> SpaceFactory:
        _SPACES[name] = factory
        return factory

    return decorator


def available_spaces() -> list[str]:
    """Names of the registered spaces."""
    return sorted(_SPACES)


def get_space(name: str, **settings: Any) -> SearchSpace:
    """Instantiate a registered space; an unknown name lists the known ones."""
    if name not in _SPACES:
        raise ConfigError(f"unknown space {name!r}; known: {', '.join(available_spaces())}")
    try:
        return _SPACES[name](**settings)
    except TypeError as exc:
        raise ConfigError(f"bad settings for space {name!r}: {exc}") from None


def genome_key(space: SearchSpace, genome: Any) -> str:
    """A stable identity for the network of a genome: sha256 of its canonical JSON form
    (two genomes that build the same network share it)."""
    data = space.genome_to_dict(space.canonical(genome))
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:20]


SEARCH_ONLY_SETTINGS: frozenset[str] = frozenset({"max_params"})
"""Space settings that limit the candidates of a search, not a network once it is chosen."""


def chosen_network_space(name: str, settings: dict[str, Any]) -> SearchSpace:
    """The space for building a network already chosen (final training, export, loading an
    export): the search's limits on candidates are dropped, e.g. a final training at a larger
    width may exceed the search's ``max_params``."""
    kept = {k: v for k, v in settings.items() if k not in SEARCH_ONLY_SETTINGS}
    return get_space(name, **kept)
