"""Zero-cost pre-filtering for any strategy: of M proposals, train only the best k by a proxy.

``PROXY:M`` or ``PROXY:M:K`` (e.g. ``synflow:4`` or ``naswot:8:2``): whenever the wrapped
strategy's candidates run out, it is asked ``M`` times, each proposal is scored by ``PROXY``
(``nasforge.evaluation.proxies``) on its untrained network, and the best ``K`` (default 1) are
handed to the runner in order of score. The other ``M - K`` proposals are **dropped**: they are
not told to the strategy. Telling them as failed would be wrong (a model-based strategy would
learn that they are bad networks, an evolution strategy counts failures as nothing anyway), and
no strategy here waits for the results of its asks. Note that every proposal still counts as an
ask of the wrapped strategy (e.g. regularized evolution's random initial population of P asks
yields P*K/M trained members before mutation starts).

A proposal that the proxy cannot score (missing, with its reason) ranks below every scored one;
ties keep the order of proposal. Scoring runs in the runner's process, on one fixed, seeded batch
of training images, with each network initialised from a seed derived from its genome, under
``torch.random.fork_rng`` so the caller's random streams are untouched.
"""

from __future__ import annotations

import math
from typing import Any

from nasforge.errors import ConfigError
from nasforge.evaluation.budget import Budget
from nasforge.spaces.base import genome_key
from nasforge.evaluation.prefilter_spec import PrefilterSpec, parse_prefilter
from nasforge.strategies.base import Candidate, Observation, Strategy

__all__ = ["PrefilterSpec", "PrefilterStrategy", "parse_prefilter", "wrap_strategy"]


def _genome_seed(space: Any, genome: Any) -> int:
    return int(genome_key(space, genome)[:8], 16)


class PrefilterStrategy(Strategy):
    """Wraps a strategy: asks it ``M`` times, keeps the best ``K`` by a zero-cost proxy.

    ``batch`` is the (normalised float images, labels) pair the proxy scores on. ``tell`` is
    passed through for the kept candidates; dropped ones are never told (see the module doc).
    ``scored`` records ``(genome, budget, score_or_None, kept)`` of every proposal (for tests
    and reports; not part of the resumable state).
    """

    name = "prefilter"

    def __init__(self, inner: Strategy, spec: str | PrefilterSpec, batch: tuple[Any, Any],
                 seed: int = 0) -> None:
        super().__init__(inner.space, inner.budget, inner.problem, seed)
        if len(getattr(inner, "ladder", ())) > 1:  # hyperband, asha, bohb on several budgets
            raise ConfigError(f"the pre-filter cannot wrap {inner.name!r} on several budgets: "
                              "it drops asks, and a rung waits for all of its results")
        self.inner = inner
        self.spec = parse_prefilter(spec)
        self.batch = batch
        self._queue: list[Candidate] = []
        self.scored: list[tuple[Any, Budget, float | None, bool]] = []

    def score(self, candidate: Candidate) -> float | None:
        """The proxy's score of the candidate's untrained network (None if missing)."""
        import torch

        from nasforge.evaluation.proxies import compute_proxy

        x, y = self.batch
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_genome_seed(self.space, candidate.genome))
            try:
                model = self.space.build(candidate.genome, self.problem.input_shape,
                                         self.problem.num_classes, candidate.budget.width)
            except Exception:
                return None
            result = compute_proxy(self.spec.proxy, model, x, y)
        return result.value

    def _refill(self) -> None:
        proposals = [self.inner.ask() for _ in range(self.spec.proposals)]
        scores = [self.score(c) for c in proposals]
        order = sorted(range(len(proposals)),
                       key=lambda i: (scores[i] is None or not math.isfinite(scores[i]),
                                      -(scores[i] or 0.0) if scores[i] is not None else 0.0, i))
        keep = set(order[: self.spec.keep])
        for i, c in enumerate(proposals):
            self.scored.append((c.genome, c.budget, scores[i], i in keep))
        self._queue.extend(proposals[i] for i in order[: self.spec.keep])

    def ask(self) -> Candidate:
        """The next kept candidate (asking the wrapped strategy M more times when none is left)."""
        if not self._queue:
            self._refill()
        return self._queue.pop(0)

    def tell(self, observation: Observation) -> None:
        """Pass a finished evaluation to the wrapped strategy."""
        self.inner.tell(observation)

    def warm_start(self, genomes: list[Any]) -> None:
        """Warm-start genomes go to the wrapped strategy (and are then pre-filtered too)."""
        self.inner.warm_start(genomes)

    def state_dict(self) -> dict[str, Any]:
        """The wrapped strategy's state and the kept candidates not yet handed out."""
        return {
            "prefilter": str(self.spec),
            "inner": self.inner.state_dict(),
            "queue": [[self.space.genome_to_dict(c.genome), c.budget.to_dict()]
                      for c in self._queue],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore; a state saved without a pre-filter is the wrapped strategy's own."""
        if "inner" not in state:
            self.inner.load_state_dict(state)
            return
        self.inner.load_state_dict(state["inner"])
        self._queue = [Candidate(self.space.genome_from_dict(g), Budget.from_dict(b))
                       for g, b in state.get("queue", [])]


def proxy_batch(splits: Any, size: int = 64, seed: int = 0) -> tuple[Any, Any]:
    """A fixed, seeded batch of ``size`` normalised training images and their labels."""
    import torch

    from nasforge.evaluation.metrics import Normalizer

    gen = torch.Generator().manual_seed(int(seed))
    n = min(int(size), int(splits.train_y.shape[0]))
    idx = torch.randperm(int(splits.train_y.shape[0]), generator=gen)[:n]
    x = Normalizer(splits.mean, splits.std, "cpu")(splits.train_x[idx])
    return x, splits.train_y[idx]


def wrap_strategy(strategy: Strategy, spec: str | PrefilterSpec | None, data: Any,
                  seed: int = 0, batch_size: int = 64) -> Strategy:
    """``strategy`` wrapped in a pre-filter (unchanged when ``spec`` is None or empty).

    ``data`` is the data config dict workers receive (``nasforge.api.data_dict``) or a
    ``DataSplits``; the proxy batch is drawn from its training split with ``seed``.
    """
    if not spec:
        return strategy
    if "supernet" in strategy.requires:  # its asks are searches, not networks to score
        raise ConfigError(f"strategy {strategy.name!r} searches a supernet; a pre-filter "
                          "(--prefilter) has no networks of it to score: drop it")
    parsed = parse_prefilter(spec)
    splits = data
    if isinstance(data, dict):
        from nasforge.data.task_splits import load_splits

        splits = load_splits(data)
    return PrefilterStrategy(strategy, parsed, proxy_batch(splits, batch_size, seed), seed)
