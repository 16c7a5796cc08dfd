"""REINFORCE (Williams 1992) over a space's decision sequence, per-result or in batches.

A controller (:mod:`~nasforge.strategies.controllers`) emits the sequence one choice at a
time: ``"logits"``, one vector of logits per step (NAS-Bench-201's baseline), or ``"lstm"``,
Zoph & Le's two-layer LSTM fed the previous choice. Each step's choices are that step's
vocabulary (:func:`~nasforge.strategies.decisions.step_vocabulary`); choices not allowed
after the earlier steps are masked out. The reward R is the fitness (accuracy as a
fraction; 0 for a failed result); the baseline ``b = decay b + (1 - decay) R`` (decay 0.9,
NAS-Bench-201's code; the first reward sets b) is updated as each result is told, and the
result's advantage is ``R - b`` at that moment. Adam takes one step on the mean over a batch
of ``-(R - b) log p(sequence) - entropy * H``, H the summed entropy of the sequence's step
distributions (ENAS: entropy weight 1e-4).

``batch = None`` (the default) updates as each result arrives and never waits (asynchronous:
every worker stays busy). ``batch = k`` asks k sequences from the same policy, then ``ask``
returns None (the runner waits) until all k are told, then updates once on their mean and
starts the next batch (Zoph & Le's synchronous batches; with more workers than k the extra
workers idle; ``batch = 1`` is strictly one at a time). The log-probability is that of the told sequence
under the policy at update time (results may arrive out of order).

Learning rate: the published 1e-3 (NAS-Bench-201) barely moves the policy in 1,000 results
(Adam moves each logit by about lr per update: entropy 1.604 of the uniform 1.609 nats per
step after 1,000), so it does not beat random search; the default here is the value measured
best on the NAS-Bench-201 table (:data:`DEFAULT_LR`): 0.03 for the logits, 0.003 for the
LSTM.

Controller weights, Adam's moments, the baseline and a batch in progress are part of
``state_dict`` (JSON lists), so a killed search resumes with the same policy. Sampling draws
from the strategy's own ``random.Random``, not torch's generator.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from nasforge.errors import ConfigError, GenomeError
from nasforge.evaluation.budget import Budget
from nasforge.spaces.base import SearchSpace
from nasforge.strategies.base import Candidate, Observation, Problem, Strategy, register_strategy
from nasforge.strategies.controllers import (
    LogitsController, adam_state, load_adam_state, load_module_state, make_controller, module_state,
)
from nasforge.strategies.decisions import (
    decision_choices, from_decisions, step_vocabulary, to_decisions,
)
from nasforge.strategies.population import check_float, check_int

_MASKED = -1e9
DEFAULT_LR = {"logits": 0.03, "lstm": 0.003}
"""Default Adam learning rate per controller, measured on the NAS-Bench-201 table (mean best
at 1,000 evaluations; random search 93.830 +- 0.047 over 30 seeds, 93.803 +- 0.102 over 10).
Logits, 30 seeds: 1e-3 (NAS-Bench-201's) 93.881 +- 0.047, 0.01 93.975 +- 0.036, 0.03
94.059 +- 0.008, 0.1 93.984 +- 0.062. LSTM, 10 seeds: 6e-4 (Zoph & Le's) 94.022 +- 0.048,
0.003 94.053 +- 0.020, 0.01 93.618 +- 0.250, 0.03 93.319 +- 0.291 (the policy collapses
early on a poor cell)."""


@register_strategy("reinforce")
class Reinforce(Strategy):
    """REINFORCE with a per-step-logits or LSTM controller (see the module doc).

    ``lr``: Adam's learning rate (None: ``DEFAULT_LR`` of the controller; must be > 0);
    ``controller``: ``"logits"`` or ``"lstm"``; ``batch``: None (update per result, never
    wait) or the results per synchronous update (>= 1);
    ``baseline_decay`` (0.9); ``entropy`` weight of the entropy bonus (1e-4); ``betas``
    Adam's (0.9, 0.999).
    """

    requires = frozenset({"decisions"})

    def __init__(self, space: SearchSpace, budget: Budget, problem: Problem, seed: int,
                 lr: float | None = None, controller: str = "logits", batch: int | None = None,
                 baseline_decay: float = 0.9, entropy: float = 1e-4,
                 betas: tuple[float, float] = (0.9, 0.999)) -> None:
        super().__init__(space, budget, problem, seed)
        if not isinstance(controller, str):
            raise ConfigError(f"{self.name}: controller must be a name, got {controller!r}")
        self.lr = check_float(self.name, "lr", DEFAULT_LR.get(controller, 0.03)
                              if lr is None else lr, 0.0)
        if self.lr <= 0:
            raise ConfigError(f"{self.name}: lr must be > 0, got {lr!r}")
        self.batch = None if batch is None else check_int(self.name, "batch", batch, 1)
        self.baseline_decay = check_float(self.name, "baseline_decay", baseline_decay, 0, 1)
        self.entropy_weight = check_float(self.name, "entropy", entropy, 0.0)
        if not isinstance(betas, (list, tuple)) or len(betas) != 2:
            raise ConfigError(f"{self.name}: betas must be two numbers, got {betas!r}")
        b1, b2 = (check_float(self.name, "betas", b, 0.0, 1.0) for b in betas)
        self.vocab = step_vocabulary(space)
        self.index = [{c: i for i, c in enumerate(v)} for v in self.vocab]
        self.width = max(len(v) for v in self.vocab)
        self.controller_kind = controller
        self.controller = make_controller(controller, [len(v) for v in self.vocab], seed)
        self.optimizer = torch.optim.Adam(self.controller.parameters(), lr=self.lr,
                                          betas=(b1, b2))
        self.baseline: float | None = None
        self.updates = 0
        self.asked = 0  # asks of the current batch
        self.pending: list[tuple[list[Any], float]] = []  # told (sequence, advantage)

    # ------------------------------------------------------------------ policy
    def _allowed_cols(self, step: int, prefix: list[Any]) -> tuple[tuple[Any, ...], list[int]]:
        allowed = decision_choices(self.space, prefix)
        return allowed, [self.index[step][c] for c in allowed]

    def _sample(self) -> list[Any]:
        seq: list[Any] = []
        if isinstance(self.controller, LogitsController):  # fast path: no recurrence
            rows = self.controller.logits.detach().tolist()
            for step, row in enumerate(rows):
                allowed, cols = self._allowed_cols(step, seq)
                top = max(row[c] for c in cols)
                weights = [math.exp(row[c] - top) for c in cols]
                seq.append(self.rng.choices(allowed, weights=weights)[0])
            return seq
        with torch.no_grad():
            state, previous = self.controller.begin(), None
            for step in range(len(self.vocab)):
                logits, state = self.controller.step(state, step, previous)
                allowed, cols = self._allowed_cols(step, seq)
                probs = torch.softmax(logits[cols], dim=0).tolist()
                choice = self.rng.choices(allowed, weights=probs)[0]
                seq.append(choice)
                previous = self.index[step][choice]
        return seq

    def ask(self) -> Candidate | None:
        if self.batch is not None and self.asked >= self.batch:
            return None  # wait for the batch's results
        for _ in range(50):  # a sequence the space rejects (limits) is drawn again
            genome = from_decisions(self.space, self._sample())
            if self.is_valid(genome):
                break
        else:
            raise GenomeError(f"reinforce: 50 sequences in a row gave networks space "
                              f"{self.space.name!r} rejects; loosen {self.limits()}")
        if self.batch is not None:
            self.asked += 1
        return Candidate(genome, self.budget)

    def distributions(self, seq: list[Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probabilities ``[steps, width]`` of the masked step distributions along
        ``seq`` (teacher-forced: each step sees ``seq``'s earlier choices) and the per-step
        entropies ``[steps]`` (nats)."""
        if isinstance(self.controller, LogitsController):  # all steps at once
            mask = torch.ones(self.controller.logits.shape, dtype=torch.bool)
            for step in range(len(self.vocab)):
                mask[step, self._allowed_cols(step, seq[:step])[1]] = False
            logp = torch.log_softmax(self.controller.logits.masked_fill(mask, _MASKED), dim=1)
            return logp, -(logp.exp() * logp).sum(dim=1)
        rows, ents = [], []
        state, previous = self.controller.begin(), None
        for step in range(len(self.vocab)):
            logits, state = self.controller.step(state, step, previous)
            mask = torch.ones(self.width, dtype=torch.bool)
            mask[self._allowed_cols(step, seq[:step])[1]] = False
            logp = torch.log_softmax(logits.masked_fill(mask, _MASKED), dim=0)
            rows.append(logp)
            ents.append(-(logp.exp() * logp).sum())
            previous = self.index[step][seq[step]]
        return torch.stack(rows), torch.stack(ents)

    def tell(self, observation: Observation) -> None:
        fitness = observation.fitness
        ok = observation.status == "ok" and fitness is not None and math.isfinite(fitness)
        reward = float(fitness) if ok else 0.0  # type: ignore[arg-type]
        self.baseline = reward if self.baseline is None else (
            self.baseline_decay * self.baseline + (1 - self.baseline_decay) * reward)
        self.pending.append((list(to_decisions(self.space, observation.genome)),
                             reward - self.baseline))
        if len(self.pending) >= (self.batch or 1):
            self._update()

    def _update(self) -> None:
        losses = []
        for seq, advantage in self.pending:
            logp, ent = self.distributions(seq)
            picked = torch.tensor([self.index[s][c] for s, c in enumerate(seq)])
            log_prob = logp.gather(1, picked[:, None]).sum()
            losses.append(-advantage * log_prob - self.entropy_weight * ent.sum())
        loss = torch.stack(losses).mean()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.updates += 1
        if self.batch is not None:
            self.asked = max(0, self.asked - self.batch)
        self.pending = []

    def entropy(self) -> float:
        """Mean per-step entropy (nats) of the policy along its most likely sequence
        (greedy decoding)."""
        seq: list[Any] = []
        with torch.no_grad():
            state, previous = self.controller.begin(), None
            for step in range(len(self.vocab)):
                logits, state = self.controller.step(state, step, previous)
                allowed, cols = self._allowed_cols(step, seq)
                best = max(range(len(cols)), key=lambda k: float(logits[cols[k]]))
                seq.append(allowed[best])
                previous = cols[best]
            return float(self.distributions(seq)[1].mean())

    def warm_start(self, genomes: list[Any]) -> None:
        raise ConfigError("strategy 'reinforce' does not support warm starts (--init-from): "
                          "its policy starts uniform; warm-start evolution or genetic instead")

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(controller=self.controller_kind,
                     weights=module_state(self.controller),
                     adam=adam_state(self.optimizer), baseline=self.baseline,
                     updates=self.updates, asked=self.asked,
                     pending=[[list(s), a] for s, a in self.pending])
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if "weights" not in state:  # a state saved before controllers (logits only)
            state = dict(state, controller="logits", weights={"logits": state["logits"]},
                         adam=[state["adam"]], asked=0, pending=[])
        if state["controller"] != self.controller_kind:
            raise ConfigError(f"{self.name}: the saved state is of controller "
                              f"{state['controller']!r}, this search uses "
                              f"{self.controller_kind!r}")
        load_module_state(self.controller, state["weights"])
        load_adam_state(self.optimizer, state["adam"])
        self.baseline = None if state["baseline"] is None else float(state["baseline"])
        self.updates = int(state["updates"])
        self.asked = int(state["asked"])
        self.pending = [(list(s), float(a)) for s, a in state["pending"]]
