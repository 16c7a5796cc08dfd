"""REINFORCE (Williams 1992) with a per-step categorical policy, as NAS-Bench-201's baseline.

The policy holds one vector of logits per step of the space's decision sequence, over every
choice that step can take (:func:`~nasforge.strategies.decisions.step_vocabulary`); choices
not allowed after the earlier steps are masked out. Each told result updates it at once
(no batch): the reward R is the fitness (accuracy as a fraction), the baseline
``b = decay b + (1 - decay) R`` (decay 0.9, NAS-Bench-201's code; the first reward sets b),
and Adam takes one step on ``-(R - b) log p(sequence) - entropy * H``, H the summed entropy of
the sequence's step distributions (ENAS: entropy weight 1e-4). A failed result gets reward 0.
The update uses the current policy for the told sequence (results may arrive out of order in
an asynchronous search). Logits and Adam's moments are part of ``state_dict`` (JSON lists),
so a killed search resumes with the same policy. Sampling draws from the strategy's own
``random.Random``, not torch's generator.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from nasforge.errors import ConfigError
from nasforge.evaluation.budget import Budget
from nasforge.spaces.base import SearchSpace
from nasforge.strategies.base import Candidate, Observation, Problem, Strategy, register_strategy
from nasforge.strategies.decisions import (
    decision_choices, from_decisions, step_vocabulary, to_decisions,
)
from nasforge.strategies.population import check_float

_MASKED = -1e9


@register_strategy("reinforce")
class Reinforce(Strategy):
    """A per-step categorical policy trained by REINFORCE (see the module doc).

    ``lr``: Adam's learning rate (NAS-Bench-201: 1e-3); ``baseline_decay`` (0.9);
    ``entropy`` weight of the entropy bonus (1e-4); ``betas`` Adam's (0.9, 0.999).
    """

    requires = frozenset({"decisions"})

    def __init__(self, space: SearchSpace, budget: Budget, problem: Problem, seed: int,
                 lr: float = 1e-3, baseline_decay: float = 0.9, entropy: float = 1e-4,
                 betas: tuple[float, float] = (0.9, 0.999)) -> None:
        super().__init__(space, budget, problem, seed)
        self.lr = check_float(self.name, "lr", lr, 0.0)
        if self.lr <= 0:
            raise ConfigError(f"{self.name}: lr must be > 0, got {lr!r}")
        self.baseline_decay = check_float(self.name, "baseline_decay", baseline_decay, 0, 1)
        self.entropy_weight = check_float(self.name, "entropy", entropy, 0.0)
        if len(betas) != 2:
            raise ConfigError(f"{self.name}: betas must be two numbers, got {betas!r}")
        b1, b2 = (check_float(self.name, "betas", b, 0.0, 1.0) for b in betas)
        self.vocab = step_vocabulary(space)
        self.index = [{c: i for i, c in enumerate(v)} for v in self.vocab]
        width = max(len(v) for v in self.vocab)
        self.logits = torch.zeros(len(self.vocab), width, dtype=torch.float64,
                                  requires_grad=True)
        self.optimizer = torch.optim.Adam([self.logits], lr=self.lr, betas=(b1, b2))
        self.baseline: float | None = None
        self.updates = 0

    # ------------------------------------------------------------------ policy
    def _mask(self, seq: list[Any]) -> torch.Tensor:
        """[steps, width] bool: the choices allowed at each step after ``seq``'s prefix."""
        mask = torch.zeros(self.logits.shape, dtype=torch.bool)
        for step in range(len(self.vocab)):
            for choice in decision_choices(self.space, seq[:step]):
                mask[step, self.index[step][choice]] = True
        return mask

    def ask(self) -> Candidate:
        for _ in range(50):  # a sequence the space rejects (limits) is drawn again
            seq: list[Any] = []
            logits = self.logits.detach()
            for step in range(len(self.vocab)):
                allowed = decision_choices(self.space, seq)
                cols = [self.index[step][c] for c in allowed]
                probs = torch.softmax(logits[step, cols], dim=0).tolist()
                seq.append(self.rng.choices(allowed, weights=probs)[0])
            genome = from_decisions(self.space, seq)
            if self.is_valid(genome):
                break
        return Candidate(genome, self.budget)

    def distributions(self, seq: list[Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probabilities [steps, width] of the masked step distributions along ``seq``
        and the per-step entropies [steps] (nats)."""
        masked = self.logits.masked_fill(~self._mask(seq), _MASKED)
        logp = torch.log_softmax(masked, dim=1)
        ent = -(logp.exp() * logp).sum(dim=1)
        return logp, ent

    def tell(self, observation: Observation) -> None:
        fitness = observation.fitness
        ok = observation.status == "ok" and fitness is not None and math.isfinite(fitness)
        reward = float(fitness) if ok else 0.0  # type: ignore[arg-type]
        self.baseline = reward if self.baseline is None else (
            self.baseline_decay * self.baseline + (1 - self.baseline_decay) * reward)
        seq = list(to_decisions(self.space, observation.genome))
        logp, ent = self.distributions(seq)
        picked = torch.tensor([self.index[s][c] for s, c in enumerate(seq)])
        log_prob = logp.gather(1, picked[:, None]).sum()
        loss = -(reward - self.baseline) * log_prob - self.entropy_weight * ent.sum()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.updates += 1

    def entropy(self) -> float:
        """Mean per-step entropy (nats) of the policy along its most likely sequence."""
        seq: list[Any] = []
        for step in range(len(self.vocab)):
            allowed = decision_choices(self.space, seq)
            row = self.logits.detach()[step]
            seq.append(max(allowed, key=lambda c: float(row[self.index[step][c]])))
        with torch.no_grad():
            return float(self.distributions(seq)[1].mean())

    def warm_start(self, genomes: list[Any]) -> None:
        raise ConfigError("strategy 'reinforce' does not support warm starts (--init-from): "
                          "its policy starts uniform; warm-start evolution or genetic instead")

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        adam = self.optimizer.state_dict()
        moments = {k: (v.tolist() if torch.is_tensor(v) else v)
                   for k, v in adam["state"].get(0, {}).items()}
        state.update(logits=self.logits.detach().tolist(), adam=moments,
                     baseline=self.baseline, updates=self.updates)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        with torch.no_grad():
            self.logits.copy_(torch.tensor(state["logits"], dtype=torch.float64))
        adam = self.optimizer.state_dict()
        moments = state["adam"]
        adam["state"] = {0: {k: torch.tensor(v, dtype=torch.float64 if k != "step"
                                             else torch.float32)
                             for k, v in moments.items()}} if moments else {}
        self.optimizer.load_state_dict(adam)
        self.baseline = None if state["baseline"] is None else float(state["baseline"])
        self.updates = int(state["updates"])
