"""Who trains one network: one process, or the ranks of a data-parallel group.

The trainer (:func:`nasforge.evaluation.trainer.train`) and the one-shot search
(:func:`nasforge.oneshot.search.fit_supernet`) each run one loop. What differs between one
process and N data-parallel ranks is asked of a *training group*: :class:`SingleProcess`
here (the default, every hook the identity, so the one-process numerics are unchanged) or
:class:`nasforge.evaluation.ddp.RankGroup` (the ranks of a ``torch.distributed`` group),
which overrides the hooks. The hooks are called in the same order on every rank, so a
collective inside one never waits for a rank that took another path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from nasforge.data import DataSplits
from nasforge.errors import ConfigError
from nasforge.evaluation.budget import Budget
from nasforge.evaluation.metrics import evaluate_accuracy
from nasforge.evaluation.speed import SpeedChoice

__all__ = ["EVAL_BATCH", "SingleProcess"]

EVAL_BATCH = 1024
"""Images a validation forward pass takes at once."""


class SingleProcess:
    """The training group of one process (rank 0 of 1): data, losses, gradients and
    decisions are this process's own."""

    rank: int = 0
    world: int = 1

    @property
    def primary(self) -> bool:
        """Whether this process writes results, checkpoints and progress (rank 0)."""
        return self.rank == 0

    def usable(self, n: int, data: DataSplits, budget: Budget) -> int:
        """How many of the ``n`` training images an epoch uses (all of them here).
        ``ConfigError`` for an empty training or validation split."""
        if n == 0 or len(data.val_y) == 0:
            raise ConfigError(f"{data.name}: the {'training' if n == 0 else 'validation'} "
                              "split is empty")
        return n

    def check_resume(self, resume: dict[str, Any]) -> None:
        """Raise ``ConfigError`` if a state to continue cannot be continued by this group."""

    def choose_speed(self, speed: SpeedChoice | None,
                     choose: Callable[[], SpeedChoice]) -> SpeedChoice:
        """``speed`` if given, else ``choose()`` (the measurement)."""
        return speed if speed is not None else choose()

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """The module a training step calls (``model`` itself here)."""
        return model

    def share(self, perm: torch.Tensor) -> torch.Tensor:
        """This process's part of one epoch's permutation ``perm`` [n] (all of it here)."""
        return perm

    def seed_streams(self, seed: int) -> torch.Generator:
        """The augmentation generator for a run seeded ``seed`` (``seed + 1``)."""
        return torch.Generator().manual_seed(int(seed) + 1)

    def restore_streams(self, resume: dict[str, Any], augment: torch.Generator) -> None:
        """Set the augmentation and torch generators from a state to continue."""
        augment.set_state(resume["augment_rng"])
        torch.set_rng_state(resume["torch_rng"])

    def stream_state(self, augment: torch.Generator) -> dict[str, Any]:
        """The generators' states, for a state to continue from."""
        return {"augment_rng": augment.get_state(), "torch_rng": torch.get_rng_state()}

    def before_step(self, step: int) -> None:
        """Called before global step ``step`` (1-based over the run)."""

    def mean_loss(self, loss: torch.Tensor) -> torch.Tensor:
        """The step's loss over the whole group (``loss`` itself here)."""
        return loss

    def sync_buffers(self, model: nn.Module) -> None:
        """Make every process's buffers (batch-norm statistics) the primary's."""

    def evaluate(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, data: DataSplits,
                 budget: Budget) -> tuple[float, float]:
        """(accuracy, mean cross-entropy) of ``model`` on images ``x`` [N, C, H, W] and labels
        ``y`` [N], standardised with ``data``'s mean and std, at ``budget``'s precision and
        test-time augmentation (``budget.tta``)."""
        return evaluate_accuracy(model, x, y, data.mean, data.std, batch_size=EVAL_BATCH,
                                 precision=budget.precision, channels_last=budget.channels_last,
                                 tta=budget.tta)

    def agree(self, ask: Callable[[], bool]) -> bool:
        """The primary's answer to ``ask()`` (asked on the primary only) on every process."""
        return bool(ask())

    def average(self, tensors: Sequence[torch.Tensor | None],
                like: Sequence[torch.Tensor]) -> list[torch.Tensor | None]:
        """The mean over the group of each tensor (a gradient; None: none on this process;
        ``like``: a tensor of each one's shape, e.g. its parameter); here the tensors."""
        return list(tensors)

    def shard(self, n: int) -> tuple[int, int]:
        """The contiguous range [lo, hi) of ``n`` items this process evaluates (all here)."""
        return 0, n

    def total(self, values: Sequence[float]) -> list[float]:
        """The sum over the group of each of ``values`` (the values here)."""
        return [float(v) for v in values]
