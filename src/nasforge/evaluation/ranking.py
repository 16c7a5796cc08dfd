"""Rank statistics: how well one ranking of architectures keeps another (Kendall tau-b,
Spearman rho with bootstrap intervals, top-k overlap, tau-b over the best half).

Used by the fidelity study (``nasforge.studies.fidelity``); the correlations are
``scipy.stats``'s.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["RankMetrics", "best_half_tau", "bootstrap_ci", "rank_metrics", "top_overlap"]


@dataclass
class RankMetrics:
    """Agreement of one ranking with the reference over ``n`` architectures."""

    n: int
    tau_b: float
    tau_lo: float
    tau_hi: float
    rho: float
    rho_lo: float
    rho_hi: float
    top_overlap: float
    tau_b_best_half: float = float("nan")


def _tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall tau-b (``scipy.stats.kendalltau``, variant 'b'); nan when a side is constant."""
    import warnings

    from scipy.stats import kendalltau

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(kendalltau(x, y, variant="b").statistic)


def _rho(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rho (``scipy.stats.spearmanr``); nan when a side is constant."""
    import warnings

    from scipy.stats import spearmanr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(spearmanr(x, y).statistic)


def top_overlap(reference: Sequence[float], other: Sequence[float], fraction: float) -> float:
    """Share of the reference's top ``ceil(fraction * n)`` that is also in ``other``'s top
    (higher is better; ties broken by position)."""
    n = len(reference)
    k = max(1, math.ceil(fraction * n))
    top_r = set(sorted(range(n), key=lambda i: -reference[i])[:k])
    top_o = set(sorted(range(n), key=lambda i: -other[i])[:k])
    return len(top_r & top_o) / k


def best_half_tau(reference: Sequence[float], other: Sequence[float],
                  half_by: Sequence[float] | None = None) -> float:
    """Kendall tau-b over the architectures in the reference's best half (the ``ceil(n/2)``
    highest references, ties broken by position): how well ``other`` orders the networks a
    search has to choose between; nan below 3 architectures. ``half_by``: pick the half by
    these scores instead (the noise ceiling: seed 0 against seed 1 on the half chosen by
    the mean of the seeds, the same architectures as every other row)."""
    n = len(reference)
    order = reference if half_by is None else half_by
    best = sorted(range(n), key=lambda i: -order[i])[:math.ceil(n / 2)]
    if len(best) < 3:
        return float("nan")
    return _tau([reference[i] for i in best], [other[i] for i in best])


def bootstrap_ci(x: Sequence[float], y: Sequence[float], statistic: str, *,
                 resamples: int = 1000, confidence: float = 0.95,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval (``scipy.stats.bootstrap``, paired resampling of
    architectures) of Kendall tau-b (``"tau_b"``) or Spearman rho (``"rho"``); resamples
    where the statistic is undefined (all-tied) are dropped by using nan-aware percentiles."""
    import warnings

    import numpy as np
    from scipy.stats import bootstrap

    def fn(a: Any, b: Any) -> float:
        return _tau(a, b) if statistic == "tau_b" else _rho(a, b)

    if len(x) < 3:
        return float("nan"), float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = bootstrap((np.asarray(x, float), np.asarray(y, float)), fn, paired=True,
                        vectorized=False, n_resamples=resamples,
                        confidence_level=confidence, method="percentile",
                        rng=np.random.default_rng(seed))
    dist = res.bootstrap_distribution
    dist = dist[np.isfinite(dist)]
    if dist.size == 0:
        return float("nan"), float("nan")
    alpha = (1 - confidence) / 2
    return float(np.quantile(dist, alpha)), float(np.quantile(dist, 1 - alpha))


def rank_metrics(reference: Sequence[float], other: Sequence[float], *, resamples: int = 1000,
                 confidence: float = 0.95, top_fraction: float = 0.1,
                 seed: int = 0, half_by: Sequence[float] | None = None) -> RankMetrics:
    """Kendall tau-b and Spearman rho of ``other`` against ``reference`` (scipy.stats), their
    bootstrap intervals, the top-``top_fraction`` overlap and tau-b over the best half."""
    tau_lo, tau_hi = bootstrap_ci(reference, other, "tau_b", resamples=resamples,
                                  confidence=confidence, seed=seed)
    rho_lo, rho_hi = bootstrap_ci(reference, other, "rho", resamples=resamples,
                                  confidence=confidence, seed=seed)
    return RankMetrics(len(reference), _tau(reference, other), tau_lo, tau_hi,
                       _rho(reference, other), rho_lo, rho_hi,
                       top_overlap(reference, other, top_fraction),
                       best_half_tau(reference, other, half_by))

