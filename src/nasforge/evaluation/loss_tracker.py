"""Per-step training losses of an epoch, checked for NaN/inf without stalling the device
(used by :mod:`nasforge.evaluation.trainer`)."""

from __future__ import annotations

import math

import torch

__all__ = ["DEVICE_CHECK_EVERY", "LossTracker"]

DEVICE_CHECK_EVERY = 32
"""On accelerators the loss is checked for NaN every this many steps (one sync each)."""


class LossTracker:
    """Per-step training losses of one epoch, checked for NaN/inf without stalling the device.

    On CPU each loss is read at once (``.item()`` costs microseconds there and syncs nothing).
    On an accelerator (or with ``deferred=True``) the losses are written into a device buffer
    and checked every ``DEVICE_CHECK_EVERY`` steps and at ``flush``, so the host waits for the
    device only that often; the first bad step is still named exactly.
    """

    def __init__(self, steps: int, device: torch.device, deferred: bool | None = None) -> None:
        self.on_cpu = device.type == "cpu" if deferred is None else not deferred
        self.values: list[float] = []
        self.buffer = None if self.on_cpu else torch.zeros(steps, device=device)
        self.count = 0
        self.checked = 0

    def start_epoch(self) -> None:
        """Forget the previous epoch's losses."""
        self.values.clear()
        self.count = 0
        self.checked = 0

    def record(self, loss: torch.Tensor, epoch: int) -> str | None:
        """Add one step's loss; a reason (``"nan loss at epoch E step S"``) if a checked one is
        not finite."""
        if self.on_cpu:
            value = loss.item()
            self.values.append(value)
            self.count += 1
            self.checked = self.count
            return None if math.isfinite(value) else self._reason(value, epoch, self.count)
        assert self.buffer is not None
        self.buffer[self.count] = loss.detach()
        self.count += 1
        if self.count - self.checked >= DEVICE_CHECK_EVERY:
            return self.flush(epoch)
        return None

    def flush(self, epoch: int) -> str | None:
        """Check the steps recorded since the last check (deferred mode only)."""
        if self.on_cpu or self.checked == self.count:
            return None
        assert self.buffer is not None
        pending = self.buffer[self.checked:self.count]
        finite = torch.isfinite(pending)
        start = self.checked
        self.checked = self.count
        if bool(finite.all()):
            return None
        i = int((~finite).nonzero()[0, 0])
        return self._reason(float(pending[i]), epoch, start + i + 1)

    def mean(self, steps: int) -> float:
        """Mean loss over the epoch's first ``steps`` steps (NaN for none)."""
        if steps == 0:
            return float("nan")
        if self.on_cpu:
            return math.fsum(self.values[:steps]) / steps
        assert self.buffer is not None
        return float(self.buffer[:steps].double().mean())

    @staticmethod
    def _reason(value: float, epoch: int, step: int) -> str:
        return f"{'nan' if math.isnan(value) else 'inf'} loss at epoch {epoch} step {step}"
