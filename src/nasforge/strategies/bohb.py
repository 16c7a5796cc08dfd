"""BOHB (Falkner, Klein & Hutter, ICML 2018): Hyperband brackets whose new networks come from
a density-ratio model instead of uniform sampling.

The model is fitted on the results of the largest budget level holding enough of them: N
results with N >= 2 (d + 1), d the number of encoded dimensions (hpbandster's
``min_points_in_model = d + 1`` for both densities). The best ``max(d + 1, floor(0.15 N))``
results (failed ones are worst) make the "good" density l(x), the rest the "bad" one g(x),
each a ``statsmodels`` ``KDEMultivariate`` with the unordered (Aitchison-Aitken) kernel on
every dimension. A new network is, with probability 1/3, a uniform sample; otherwise the best
of 64 draws from l (bandwidths widened by 3) by l(x) / g(x). Published settings (Falkner et
al. 2018, Section 3.1 and hpbandster's defaults): top 15%, 64 samples, a third random,
bandwidth factor 3, minimum bandwidth 1e-3.

Encoding: a space with the ``decisions`` capability (the cell spaces) is encoded as its
decision sequence, each step a categorical variable over the step's choices
(:func:`nasforge.strategies.decisions.step_vocabulary`); a step with one choice is left out.
Bandwidths: the normal-reference rule on each step's one-hot variance, clipped to
[1e-3, (c - 1) / c] for c choices (:func:`categorical_bandwidths`; hpbandster applies the
rule to the integer codes, which flattens every categorical kernel), handed to statsmodels.

A space without decisions (the global space) gets **mutation-based proposals** instead of a
density model: with probability 2/3 a mutation of a network drawn from the top 15% of the same
level, else a uniform sample; a space with neither capability gets uniform samples (then bohb
is Hyperband with hpbandster's bracket sizes).

Brackets use the ``bohb`` formula by default (hpbandster's sizes, see
:mod:`nasforge.strategies.brackets`). The model is rebuilt from the rung results in the
strategy state whenever needed, so ``--resume`` rebuilds it from the stored trials' results.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from nasforge.errors import ConfigError
from nasforge.evaluation.budget import Budget
from nasforge.spaces.base import SearchSpace
from nasforge.strategies.base import Problem, register_strategy
from nasforge.strategies.brackets import DEFAULT_ETA
from nasforge.strategies.decisions import (
    decision_choices, from_decisions, step_vocabulary, to_decisions,
)
from nasforge.strategies.hyperband import Hyperband
from nasforge.strategies.multi_fidelity import rank_key

TOP_FRACTION = 0.15
SAMPLES = 64
RANDOM_FRACTION = 1 / 3
BANDWIDTH_FACTOR = 3.0
MIN_BANDWIDTH = 1e-3
"""Falkner et al. (2018), Section 3.1, and the defaults of the authors' hpbandster code."""


def categorical_bandwidths(data: np.ndarray, levels: np.ndarray, min_bandwidth: float
                           ) -> np.ndarray:
    """Aitchison-Aitken bandwidths for ``data`` [n, d] of choice indices (``levels[j]``
    choices in column j): the normal-reference rule ``1.06 * sigma * n**(-1 / (d + 4))`` with
    sigma**2 the variance of the column's one-hot code (its Gini impurity, 1 - sum p_k**2),
    clipped to [min_bandwidth, (c - 1) / c]. Uniform data gets nearly the uniform kernel,
    concentrated data a peaked one. (The rule on the raw integer codes, which hpbandster
    uses, measures the spread of arbitrary numbers: it is near or above (c - 1) / c for any
    data here, so every kernel would be flat.)"""
    n, d = data.shape
    sigma = np.empty(d)
    for j in range(d):
        _, counts = np.unique(data[:, j], return_counts=True)
        sigma[j] = math.sqrt(max(0.0, 1.0 - float(np.sum((counts / n) ** 2))))
    bw = 1.06 * sigma * n ** (-1.0 / (d + 4))
    return np.clip(bw, min_bandwidth, (levels - 1) / levels)


def _kde(data: np.ndarray, bandwidths: np.ndarray) -> Any:
    """statsmodels' KDEMultivariate with unordered kernels on ``data`` [n, d] (n > d)."""
    try:
        from statsmodels.nonparametric.kernel_density import KDEMultivariate
    except ImportError:  # an optional extra
        raise ConfigError("strategy 'bohb' needs statsmodels: pip install 'nasforge[bohb]'"
                          ) from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return KDEMultivariate(data=data, var_type="u" * data.shape[1], bw=bandwidths)


@register_strategy("bohb")
class BOHB(Hyperband):
    """Hyperband with a density-ratio proposal (module doc). Settings: those of
    :class:`Hyperband` (``formula`` defaults to ``bohb``) and ``top_fraction``, ``samples``,
    ``random_fraction``, ``bandwidth_factor``, ``min_bandwidth`` (the published values)."""

    def __init__(self, space: SearchSpace, budget: Budget, problem: Problem, seed: int,
                 axis: str = "epochs", eta: int = DEFAULT_ETA, min_epochs: int = 1,
                 min_fraction: float | None = None, formula: str = "bohb",
                 iterations: int | None = None, novelty_tries: int = 20,
                 top_fraction: float = TOP_FRACTION, samples: int = SAMPLES,
                 random_fraction: float = RANDOM_FRACTION,
                 bandwidth_factor: float = BANDWIDTH_FACTOR,
                 min_bandwidth: float = MIN_BANDWIDTH) -> None:
        super().__init__(space, budget, problem, seed, axis=axis, eta=eta,
                         min_epochs=min_epochs, min_fraction=min_fraction, formula=formula,
                         iterations=iterations, novelty_tries=novelty_tries)
        from nasforge.strategies.population import check_float, check_int

        check_int("bohb", "samples", samples, 1)  # 'abc' or 2.5: one line naming the key
        for key, value in (("top_fraction", top_fraction), ("random_fraction", random_fraction),
                           ("bandwidth_factor", bandwidth_factor),
                           ("min_bandwidth", min_bandwidth)):
            check_float("bohb", key, value, 0.0)
        if not (0 < top_fraction < 1 and samples >= 1 and 0 <= random_fraction <= 1
                and bandwidth_factor > 0 and min_bandwidth > 0):
            raise ConfigError("bohb: need 0 < top_fraction < 1, samples >= 1, "
                              "0 <= random_fraction <= 1, bandwidth_factor > 0, min_bandwidth > 0")
        self.top_fraction, self.samples = top_fraction, samples
        self.random_fraction, self.bandwidth_factor = random_fraction, bandwidth_factor
        self.min_bandwidth = min_bandwidth
        if "decisions" in space.capabilities:
            self.mode = "kde"
            vocab = step_vocabulary(space)
            self.steps = [j for j, v in enumerate(vocab) if len(v) > 1]
            self.vocab = vocab
        elif "mutate" in space.capabilities:
            self.mode = "mutation"
        else:
            self.mode = "random"
        self._cache: dict[tuple[int, int], Any] = {}  # (level, results) -> model; not state

    # ------------------------------------------------------------ model
    def encode(self, genome_dict: dict[str, Any]) -> list[float] | None:
        """Choice indices of the varying decision steps, or None when a choice is unknown."""
        seq = to_decisions(self.space, self.space.genome_from_dict(genome_dict))
        out = []
        for j in self.steps:
            if seq[j] not in self.vocab[j]:
                return None
            out.append(float(self.vocab[j].index(seq[j])))
        return out

    def dimensions(self) -> int:
        """d: encoded dimensions of the model (varying decision steps; 1 in mutation mode)."""
        return len(self.steps) if self.mode == "kde" else 1

    def model_level(self) -> int | None:
        """The largest level holding at least 2 (d + 1) results, or None."""
        need = 2 * (self.dimensions() + 1)
        rungs = self.rungs()
        for level in range(len(self.ladder) - 1, -1, -1):
            if len(rungs[level]) >= need:
                return level
        return None

    def _split(self, level: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        members = list(self.rungs()[level])
        order = sorted(range(len(members)), key=lambda i: (-rank_key(members[i]["fitness"]), i))
        n_good = max(self.dimensions() + 1, int(math.floor(self.top_fraction * len(members))))
        return [members[i] for i in order[:n_good]], [members[i] for i in order[n_good:]]

    def model(self) -> tuple[int, Any, Any] | None:
        """(level, good KDE, bad KDE) on the model level, or None (kde mode only)."""
        level = self.model_level()
        if level is None or self.mode != "kde":
            return None
        key = (level, len(self.rungs()[level]))
        if key not in self._cache:
            good, bad = self._split(level)
            fitted = []
            for part in (good, bad):
                rows = [r for r in (self.encode(m["genome"]) for m in part) if r is not None]
                if len(rows) <= self.dimensions():
                    self._cache[key] = None
                    return None
                data = np.asarray(rows, dtype=float)
                levels = np.array([len(self.vocab[j]) for j in self.steps], dtype=float)
                fitted.append(_kde(data, categorical_bandwidths(data, levels,
                                                                self.min_bandwidth)))
            self._cache[key] = (level, fitted[0], fitted[1])
        return self._cache[key]

    # ------------------------------------------------------------ proposals
    def new_genome(self, level: int) -> Any:
        if self._seeds or self.mode == "random" or self.rng.random() < self.random_fraction:
            return super().new_genome(level)
        if self.mode == "mutation":
            top = self.model_level()
            if top is None:
                return super().new_genome(level)
            good, _ = self._split(top)
            ok = [m for m in good if m["fitness"] is not None]
            if not ok:
                return super().new_genome(level)
            parent = self.space.genome_from_dict(self.rng.choice(ok)["genome"])
            return self.mutate_valid(parent)
        fitted = self.model()
        if fitted is None:
            return super().new_genome(level)
        _, good_kde, bad_kde = fitted
        rows, genomes = [], []
        data = np.asarray(good_kde.data)
        for _ in range(self.samples):
            genome = self._draw(data[self.rng.randrange(len(data))], good_kde.bw)
            if genome is not None:
                genomes.append(genome)
                rows.append(self.encode(self.space.genome_to_dict(genome)))
        if not genomes:
            return super().new_genome(level)
        x = np.asarray(rows, dtype=float)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ratio = (np.maximum(np.atleast_1d(good_kde.pdf(x)), 1e-32)
                     / np.maximum(np.atleast_1d(bad_kde.pdf(x)), 1e-32))
        return genomes[int(np.argmax(ratio))]

    def _draw(self, datum: np.ndarray, bandwidths: np.ndarray) -> Any:
        """One draw from the good density's kernel at ``datum`` (bandwidths widened by
        ``bandwidth_factor``), made valid step by step; None when the space refuses it."""
        choice = {}
        for k, j in enumerate(self.steps):
            c = len(self.vocab[j])
            lam = min(float(bandwidths[k]) * self.bandwidth_factor, (c - 1) / c)
            index = int(datum[k])
            if self.rng.random() < lam:  # Aitchison-Aitken: another choice, uniformly
                index = self.rng.choice([i for i in range(c) if i != index])
            choice[j] = self.vocab[j][index]
        seq: list[Any] = []
        for j in range(len(self.vocab)):
            allowed = decision_choices(self.space, seq)
            value = choice.get(j, self.vocab[j][0])
            seq.append(value if value in allowed else self.rng.choice(allowed))
        try:
            genome = from_decisions(self.space, seq)
        except Exception:  # noqa: BLE001 - a refused sequence is one draw lost
            return None
        return genome if self.is_valid(genome) else None

    def schedule(self) -> dict[str, Any]:
        info = super().schedule()
        info.update(proposal=self.mode, top_fraction=self.top_fraction, samples=self.samples,
                    random_fraction=self.random_fraction)
        return info
