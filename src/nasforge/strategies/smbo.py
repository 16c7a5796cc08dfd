"""Sequential model-based optimisation with a performance predictor (BANANAS-style).

White et al., "BANANAS: Bayesian Optimization with Neural Architectures for Neural
Architecture Search", AAAI 2021: 10 random starts, then batches of 10 chosen among candidates
made by mutating the best networks found, scored by an acquisition function over an ensemble
predictor's mean and uncertainty (independent Thompson sampling by default).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from nasforge.errors import ConfigError, GenomeError
from nasforge.evaluation.budget import Budget
from nasforge.spaces.base import SearchSpace, genome_key
from nasforge.strategies.base import Candidate, Observation, Problem, Strategy, register_strategy

ACQUISITIONS: tuple[str, ...] = ("thompson", "ei", "ucb")


def acquisition_scores(kind: str, mean: np.ndarray, std: np.ndarray, best: float,
                       rng: np.random.Generator, beta: float = 2.0) -> np.ndarray:
    """Scores [m] to maximise for predicted ``mean`` and ``std`` [m] (larger fitness is better).

    - ``thompson``: independent Thompson sampling: one draw from N(mean, std^2) per point
      (BANANAS' ITS, Sec. 5);
    - ``ei``: expected improvement over ``best``, (mean - best) Phi(z) + std phi(z),
      z = (mean - best) / std (max(mean - best, 0) where std is 0);
    - ``ucb``: upper confidence bound mean + ``beta`` std (beta 2 by default: our choice).

    Raises ``ConfigError`` for another ``kind``.
    """
    if kind == "thompson":
        return mean + std * rng.standard_normal(len(mean))
    if kind == "ucb":
        return mean + beta * std
    if kind == "ei":
        from scipy.stats import norm

        gap = mean - best
        safe = np.where(std > 1e-12, std, 1.0)
        z = gap / safe
        ei = gap * norm.cdf(z) + safe * norm.pdf(z)
        return np.where(std > 1e-12, ei, np.maximum(gap, 0.0))
    raise ConfigError(f"smbo: acquisition must be one of {', '.join(ACQUISITIONS)}, got {kind!r}")


@register_strategy("smbo")
class SMBO(Strategy):
    """Random starts, then batches chosen by a predictor and an acquisition function.

    The first ``initial`` asks are random samples (warm-start genomes first). Then, whenever
    its queue is empty, the strategy fits ``predictor`` (``mlp_ensemble``, ``random_forest``
    or ``gp``, :mod:`nasforge.predictors`, with ``predictor_settings``) on every successful
    result told so far (encoded by :func:`nasforge.predictors.encoder_for`), makes up to
    ``candidates`` new networks by mutating the ``parents`` best ones (each network proposed
    once; random samples fill up when mutation runs dry), scores them with ``acquisition``
    (``thompson``, ``ei``, ``ucb``; :func:`acquisition_scores`) and queues the ``batch`` best.
    Published (BANANAS): initial 10, batch 10, candidates 100, parents 10, ITS, 5 MLPs.

    With several workers the batch is proposed from the results back so far. Failed trials
    never enter the model. **Resume**: the state holds every told result and the seed and
    size of the last fit, and :meth:`load_state_dict` refits the predictor from them, so a
    resumed search holds the same model as before the kill and asks the same next candidates
    (the study's stored trials are those results).
    """

    requires = frozenset({"mutate"})

    def __init__(
        self,
        space: SearchSpace,
        budget: Budget,
        problem: Problem,
        seed: int,
        predictor: str = "mlp_ensemble",
        acquisition: str = "thompson",
        initial: int = 10,
        batch: int = 10,
        candidates: int = 100,
        parents: int = 10,
        ucb_beta: float = 2.0,
        predictor_settings: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(space, budget, problem, seed)
        from nasforge.predictors import available_predictors, encoder_for

        if predictor not in available_predictors():
            raise ConfigError(f"smbo: predictor must be one of {', '.join(available_predictors())}"
                              f", got {predictor!r}")
        if acquisition not in ACQUISITIONS:
            raise ConfigError(f"smbo: acquisition must be one of {', '.join(ACQUISITIONS)}, "
                              f"got {acquisition!r}")
        from nasforge.strategies.population import check_float, check_int

        for key, value, low in (("initial", initial, 2), ("batch", batch, 1),
                                ("candidates", candidates, 1), ("parents", parents, 1)):
            check_int("smbo", key, value, low)  # 'abc' or 2.5: one line naming the key
        check_float("smbo", "ucb_beta", ucb_beta, 0.0)
        if initial < 2 or min(batch, candidates, parents) < 1 or batch > candidates:
            raise ConfigError("smbo: need initial >= 2, batch, candidates, parents >= 1 and "
                              "batch <= candidates")
        from nasforge.predictors.models import PREDICTORS

        self.predictor_name = predictor
        self.predictor_settings = dict(predictor_settings or {})
        # a misspelt setting is refused now, not at the first fit in the middle of a search
        PREDICTORS.check_settings(predictor, seed=0, **self.predictor_settings)
        self.acquisition = acquisition
        self.initial, self.batch, self.n_candidates, self.parents = (initial, batch, candidates,
                                                                     parents)
        self.ucb_beta = float(ucb_beta)
        self.encoder = encoder_for(space, problem.input_shape, problem.num_classes, budget.width)
        self.observed: list[tuple[Any, float]] = []  # (genome, fitness) of successful results
        self.proposed: set[str] = set()
        self.queue: list[Any] = []
        self.initial_asked = 0
        self._seeds: list[Any] = []
        self.model: Any = None  # the predictor of the last batch
        self.model_fit: tuple[int, int] | None = None  # (results used, fit seed) of the model

    # ------------------------------------------------------------------ ask / tell
    def ask(self) -> Candidate:
        if self._seeds:
            self.initial_asked += 1
            return self._propose(self._seeds.pop(0))
        if self.initial_asked < self.initial or len(self.observed) < 2:
            self.initial_asked += 1
            return self._propose(self._novel_sample())
        if not self.queue:
            self.queue = self._next_batch()
        return self._propose(self.queue.pop(0))

    def tell(self, observation: Observation) -> None:
        if (observation.status == "ok" and observation.fitness is not None
                and math.isfinite(observation.fitness)):
            self.observed.append((observation.genome, float(observation.fitness)))

    def warm_start(self, genomes: list[Any]) -> None:
        self._seeds.extend(g for g in genomes if self.is_valid(g))

    # ------------------------------------------------------------------ the model
    def _propose(self, genome: Any) -> Candidate:
        self.proposed.add(genome_key(self.space, genome))
        return Candidate(genome, self.budget)

    def _novel_sample(self, tries: int = 20) -> Any:
        genome = self.sample_valid()
        for _ in range(tries):
            if genome_key(self.space, genome) not in self.proposed:
                break
            genome = self.sample_valid()
        return genome

    def _fit(self, count: int, fit_seed: int) -> Any:
        """The predictor fitted on the first ``count`` successful results with ``fit_seed``."""
        from nasforge.predictors import make_predictor

        rows, y = [], []
        for genome, fitness in self.observed[:count]:
            try:
                rows.append(np.asarray(self.encoder(genome), dtype=np.float32))
            except GenomeError:  # e.g. a warm-start genome beyond this space's limits
                continue
            y.append(fitness)
        model = make_predictor(self.predictor_name, seed=fit_seed, **self.predictor_settings)
        return model.fit(np.stack(rows), np.array(y))

    def _candidates(self) -> list[Any]:
        """Up to ``candidates`` networks not proposed before: mutations of the best results,
        then random samples."""
        ranked = sorted(self.observed, key=lambda gf: gf[1], reverse=True)
        parents: list[Any] = []
        seen_parents: set[str] = set()
        for g, _ in ranked:
            k = genome_key(self.space, g)
            if k not in seen_parents:
                seen_parents.add(k)
                parents.append(g)
            if len(parents) >= self.parents:
                break
        out: list[Any] = []
        keys: set[str] = set()
        for i in range(self.n_candidates * 4):
            if len(out) >= self.n_candidates:
                break
            child = (self.mutate_valid(parents[i % len(parents)]) if i < self.n_candidates * 3
                     else self.sample_valid())
            k = genome_key(self.space, child)
            if k not in self.proposed and k not in keys:
                keys.add(k)
                out.append(child)
        return out

    def _next_batch(self) -> list[Any]:
        fit_seed = self.rng.randrange(2**31)
        self.model = self._fit(len(self.observed), fit_seed)
        self.model_fit = (len(self.observed), fit_seed)
        pool: list[Any] = []
        rows = []
        for g in self._candidates():
            try:
                rows.append(np.asarray(self.encoder(g), dtype=np.float32))
            except GenomeError:
                continue
            pool.append(g)
        if not pool:
            return [self._novel_sample()]
        mean, std = self.model.predict(np.stack(rows))
        draw = np.random.default_rng(self.rng.randrange(2**31))
        best = max(f for _, f in self.observed)
        scores = acquisition_scores(self.acquisition, mean, std, best, draw, self.ucb_beta)
        order = np.argsort(-scores, kind="stable")[: self.batch]
        return [pool[i] for i in order]

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        to_dict = self.space.genome_to_dict
        state.update(
            observed=[[to_dict(g), f] for g, f in self.observed],
            proposed=sorted(self.proposed),
            queue=[to_dict(g) for g in self.queue],
            initial_asked=self.initial_asked,
            seeds=[to_dict(g) for g in self._seeds],
            model_fit=list(self.model_fit) if self.model_fit is not None else None,
        )
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state; the predictor is rebuilt from the stored results (the same data
        and fit seed as the last fit before the state was saved)."""
        super().load_state_dict(state)
        from_dict = self.space.genome_from_dict
        self.observed = [(from_dict(g), float(f)) for g, f in state["observed"]]
        self.proposed = set(state.get("proposed", []))
        self.queue = [from_dict(g) for g in state.get("queue", [])]
        self.initial_asked = int(state["initial_asked"])
        self._seeds = [from_dict(g) for g in state.get("seeds", [])]
        fit = state.get("model_fit")
        self.model_fit = (int(fit[0]), int(fit[1])) if fit else None
        self.model = None
        if self.model_fit is not None and self.model_fit[0] <= len(self.observed):
            self.model = self._fit(*self.model_fit)
