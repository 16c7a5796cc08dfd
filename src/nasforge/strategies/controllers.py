"""Policies ("controllers") that emit a decision sequence one choice at a time, for REINFORCE.

Both take the same step interface: ``begin()`` gives a fresh recurrent state,
``step(state, step, previous)`` the unmasked logits ``[width]`` of step ``step`` given the
column index ``previous`` chosen at the step before (None at step 0) and the next state. Columns
are a step's vocabulary (:func:`~nasforge.strategies.decisions.step_vocabulary`) padded to
the widest step; the caller masks the columns a prefix does not allow.

- ``"logits"``: one free vector of logits per step, initialised to 0 (a uniform policy); the
  previous choice is ignored. NAS-Bench-201's REINFORCE baseline (Dong & Yang, ICLR 2020).
- ``"lstm"``: Zoph & Le (ICLR 2017, Sec. 3.1 and 4): a two-layer LSTM with 35 hidden units a
  layer; its input at each step is the embedding of the choice made at the step before (a
  learned start embedding at step 0); one softmax classifier per step reads the top layer's
  output. Weights initialised uniformly in [-0.08, 0.08] (Zoph & Le, Sec. 4), drawn from a
  generator seeded by the strategy's seed, not torch's global one.

All parameters are float64, so the policy is the same on every machine for the same state.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from nasforge.errors import ConfigError

CONTROLLERS: tuple[str, ...] = ("logits", "lstm")
LSTM_HIDDEN = 35
"""Hidden units per LSTM layer (Zoph & Le 2017, Sec. 4)."""
LSTM_LAYERS = 2
"""LSTM layers (Zoph & Le 2017, Sec. 4)."""
INIT_RANGE = 0.08
"""Uniform initialisation range of the LSTM controller's weights (Zoph & Le 2017, Sec. 4)."""


class LogitsController(nn.Module):
    """One vector of logits per step (``[steps, width]``, zeros: uniform)."""

    def __init__(self, steps: int, width: int) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(steps, width, dtype=torch.float64))

    def begin(self) -> Any:
        """The state before step 0 (none)."""
        return None

    def step(self, state: Any, step: int, previous: int | None) -> tuple[torch.Tensor, Any]:
        """Logits ``[width]`` of ``step``; the previous choice does not matter."""
        return self.logits[step], state


class LSTMController(nn.Module):
    """Zoph & Le's controller: a stacked LSTM fed the previous choice (see the module doc).

    ``widths``: the number of columns of each step; ``hidden``, ``layers``: the LSTM's size.
    """

    def __init__(self, widths: list[int], seed: int, hidden: int = LSTM_HIDDEN,
                 layers: int = LSTM_LAYERS) -> None:
        super().__init__()
        self.offsets = [0]
        for w in widths:
            self.offsets.append(self.offsets[-1] + w)
        width = max(widths)
        # row 0: the start token; row 1 + offsets[s] + c: column c chosen at step s
        self.embed = nn.Embedding(1 + self.offsets[-1], hidden, dtype=torch.float64)
        self.cells = nn.ModuleList(
            nn.LSTMCell(hidden, hidden, dtype=torch.float64) for _ in range(layers))
        self.heads = nn.ModuleList(
            nn.Linear(hidden, width, dtype=torch.float64) for _ in widths)
        generator = torch.Generator().manual_seed(int(seed))
        with torch.no_grad():
            for p in self.parameters():
                p.uniform_(-INIT_RANGE, INIT_RANGE, generator=generator)
        self.hidden = hidden

    def begin(self) -> Any:
        """Zero hidden and cell states of every layer, each ``[1, hidden]``."""
        zero = torch.zeros(1, self.hidden, dtype=torch.float64)
        return [(zero, zero) for _ in self.cells]

    def step(self, state: Any, step: int, previous: int | None) -> tuple[torch.Tensor, Any]:
        """Logits ``[width]`` of ``step`` after column ``previous`` of the step before."""
        token = 0 if previous is None else 1 + self.offsets[step - 1] + previous
        x = self.embed(torch.tensor([token]))
        new_state = []
        for cell, (h, c) in zip(self.cells, state):
            h, c = cell(x, (h, c))
            new_state.append((h, c))
            x = h
        return self.heads[step](x)[0], new_state


def make_controller(kind: str, widths: list[int], seed: int) -> nn.Module:
    """The controller named ``kind`` (``"logits"`` or ``"lstm"``) for steps of ``widths``
    columns; ``ConfigError`` naming ``controller`` for another name."""
    if kind == "logits":
        return LogitsController(len(widths), max(widths))
    if kind == "lstm":
        return LSTMController(widths, seed)
    raise ConfigError(f"reinforce: controller must be one of {', '.join(CONTROLLERS)}, "
                      f"got {kind!r}")


def module_state(module: nn.Module) -> dict[str, list[Any]]:
    """The module's parameters as JSON-ready nested lists, by name."""
    return {k: v.detach().tolist() for k, v in module.state_dict().items()}


def load_module_state(module: nn.Module, state: dict[str, list[Any]]) -> None:
    """Restore parameters saved by :func:`module_state` (float64)."""
    module.load_state_dict({k: torch.tensor(v, dtype=torch.float64) for k, v in state.items()})


def adam_state(optimizer: torch.optim.Optimizer) -> list[dict[str, Any]]:
    """Adam's per-parameter moments and step counts, JSON-ready, in parameter order."""
    raw = optimizer.state_dict()["state"]
    count = len(optimizer.param_groups[0]["params"])
    return [{k: (v.tolist() if torch.is_tensor(v) else v) for k, v in raw.get(i, {}).items()}
            for i in range(count)]


def load_adam_state(optimizer: torch.optim.Optimizer, moments: list[dict[str, Any]]) -> None:
    """Restore moments saved by :func:`adam_state`."""
    full = optimizer.state_dict()
    full["state"] = {
        i: {k: torch.tensor(v, dtype=torch.float32 if k == "step" else torch.float64)
            for k, v in m.items()}
        for i, m in enumerate(moments) if m
    }
    optimizer.load_state_dict(full)


__all__ = ["CONTROLLERS", "INIT_RANGE", "LSTMController", "LSTM_HIDDEN", "LSTM_LAYERS",
           "LogitsController", "adam_state", "load_adam_state", "load_module_state",
           "make_controller", "module_state"]
