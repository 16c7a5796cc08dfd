"""A SYNTHETIC fidelity layer over the NAS-Bench-201 table, for multi-fidelity strategies.

The table holds one number per cell (test accuracy after B = 200 epochs). Learning curves are
not in it, so this layer **invents** them; every figure it produces is synthetic and must be
labelled so. The accuracy (percent) of cell g after b of B epochs, t = b / B in (0, 1]:

    acc(g, b) = 10 + (A_g - 10) * c(t; r_g) + noise * (1 - t) * e(g, b)
    c(t; r)   = (1 - exp(-r t)) / (1 - exp(-r))        (c(0) = 0, c(1) = 1)
    r_g       = rate * exp(spread * z_g)

clipped to [0, 100], where A_g is the table's final accuracy, 10 the chance level of
CIFAR-10, z_g and e(g, b) standard normal draws fixed by (seed, g) and (seed, g, b): a
genome-dependent learning speed and a per-budget noise that vanishes at b = B (acc(g, B) = A_g
exactly). Draws come from ``numpy.random.SeedSequence([seed, index of g, ...])``, so the same
seed always gives the same curves.

**Calibration of the defaults** (rate 5, spread 0.005, noise 0.31; measured with
``benchmarks/strategies.py --fidelity``): Kendall tau-b (``scipy.stats.kendalltau``) between
acc at 10%, 20% and 50% of B and the final accuracy averages about 0.88 over all 15,625 cells
and about 0.68 over the best half, the values the project's Fashion-MNIST study measured for
Adam on 50% of the data against its 10-epoch reference. The noise is measured in percentage
points of accuracy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from nasforge.benchmarks.nb201_table import NB201Table, naslib_key
from nasforge.errors import ConfigError
from nasforge.spaces.nb201 import NB201Genome

SYNTHETIC_LABEL = "synthetic fidelity (invented learning curves over the NB201 table)"
CHANCE = 10.0


def cell_index(key: tuple[int, ...]) -> int:
    """0..15624: the NASLib key read as a base-5 number (first edge most significant)."""
    index = 0
    for k in key:
        index = index * 5 + int(k)
    return index


@dataclass
class SyntheticFidelity:
    """The seeded synthetic learning curves of every cell of ``table`` (see module doc).

    ``total_epochs`` is B (200, the table's training); ``rate``, ``spread`` and ``noise`` are the
    model's constants. Draws are cached per instance (one vector per budget asked).
    """

    table: NB201Table
    seed: int = 0
    total_epochs: int = 200
    rate: float = 5.0
    spread: float = 0.005
    noise: float = 0.31
    _final: np.ndarray = field(init=False, repr=False)
    _rates: np.ndarray = field(init=False, repr=False)
    _eps: dict[int, np.ndarray] = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        if self.total_epochs < 1 or self.rate <= 0 or self.spread < 0 or self.noise < 0:
            raise ConfigError("synthetic fidelity: need total_epochs >= 1, rate > 0, "
                              "spread >= 0, noise >= 0")
        final = np.zeros(5 ** 6)
        for key, acc in self.table.accuracy.items():
            final[cell_index(key)] = acc
        self._final = final
        z = np.random.default_rng(np.random.SeedSequence([self.seed, 0])).standard_normal(final.size)
        self._rates = self.rate * np.exp(self.spread * z)

    def _noise(self, epochs: int) -> np.ndarray:
        if epochs not in self._eps:
            seq = np.random.SeedSequence([self.seed, 1, epochs])
            self._eps[epochs] = np.random.default_rng(seq).standard_normal(self._final.size)
        return self._eps[epochs]

    def all_accuracies(self, epochs: int) -> np.ndarray:
        """Synthetic accuracy (percent) of every cell after ``epochs`` of B, indexed by
        :func:`cell_index`; shape [15625]."""
        if not 1 <= epochs <= self.total_epochs:
            raise ConfigError(f"synthetic fidelity: epochs must be in 1..{self.total_epochs}, "
                              f"got {epochs}")
        t = epochs / self.total_epochs
        r = self._rates
        curve = (1.0 - np.exp(-r * t)) / (1.0 - np.exp(-r))
        acc = CHANCE + (self._final - CHANCE) * curve + self.noise * (1.0 - t) * self._noise(epochs)
        return np.clip(acc, 0.0, 100.0)

    def accuracy(self, genome: NB201Genome, epochs: int) -> float:
        """Synthetic accuracy (percent) of ``genome`` after ``epochs`` of B epochs."""
        return float(self.all_accuracies(epochs)[cell_index(naslib_key(genome))])

    def cost(self, genome: NB201Genome, epochs: int) -> float:
        """Simulated seconds of ``epochs`` epochs: the table's cost model times epochs / B."""
        return self.table.cost(genome) * epochs / self.total_epochs

    def rank_agreement(self, fractions: tuple[float, ...] = (0.1, 0.2, 0.5)
                       ) -> dict[float, tuple[float, float]]:
        """Kendall tau-b of the synthetic accuracy at each fraction of B against the final
        accuracy: ``{fraction: (over all cells, over the best half by final accuracy)}``."""
        from scipy.stats import kendalltau

        best = self._final >= np.median(self._final)
        out: dict[float, tuple[float, float]] = {}
        for f in fractions:
            acc = self.all_accuracies(max(1, int(math.floor(f * self.total_epochs + 0.5))))
            out[f] = (float(kendalltau(acc, self._final).statistic),
                      float(kendalltau(acc[best], self._final[best]).statistic))
        return out
