"""Measurements of a network: trainable parameters, FLOPs and accuracy on a labelled set."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any, ContextManager

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from nasforge.evaluation.tta import predict

__all__ = ["count_flops", "count_params", "evaluate_accuracy"]


def count_params(model: nn.Module) -> int:
    """Number of trainable parameters (``requires_grad``) of ``model``; shared tensors count once."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a stateless model)."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def count_flops(model: nn.Module, input_shape: Sequence[int]) -> int:
    """FLOPs of one forward pass on a single image of ``input_shape`` (C, H, W), in eval mode.

    Counted by ``torch.utils.flop_counter.FlopCounterMode``, which counts the matrix products and
    convolutions only (not normalisation, activations, pooling or element-wise sums) and counts
    a multiply-add as 2 FLOPs (a ``[m,k] @ [k,n]`` product is ``2*m*k*n``). The model's
    training mode is restored afterwards; its parameters are not changed.
    """
    was_training = model.training
    x = torch.zeros((1, *(int(d) for d in input_shape)), device=_model_device(model))
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


class Normalizer:
    """uint8 images -> float32 standardised per channel, as one fused multiply-add.

    ``x / 255`` then ``(x - mean) / std`` is the same as ``x * scale + shift`` with
    ``scale = 1 / (255 std)`` and ``shift = -mean / std``; precomputing these once makes the
    per-batch cost a single ``addcmul``.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], device: torch.device | str) -> None:
        if len(mean) != len(std):
            raise ValueError(f"normalisation has {len(mean)} means but {len(std)} stds")
        m = torch.tensor([float(v) for v in mean], dtype=torch.float64)
        s = torch.tensor([float(v) for v in std], dtype=torch.float64)
        self.channels = len(mean)
        self.scale = (1.0 / (255.0 * s)).float().view(1, -1, 1, 1).to(device)
        self.shift = (-m / s).float().view(1, -1, 1, 1).to(device)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Float32 standardised copy of uint8 (or float, 0-255 scale) images [N, C, H, W]."""
        if x.shape[1] != self.channels:
            raise ValueError(f"images have {x.shape[1]} channels, normalisation has {self.channels}")
        # one kernel: addcmul promotes the uint8 operand to float32 as it reads it
        return torch.addcmul(self.shift, x, self.scale)


def autocast_context(device: torch.device, precision: str) -> ContextManager[object]:
    """``torch.autocast`` to bfloat16 (``bf16``) or float16 (``fp16``); a no-op context for
    ``fp32`` and ``tf32`` (TF32 is a switch on CUDA matmuls, set by ``speed.applied``)."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    if precision == "fp16":
        return torch.autocast(device_type=device.type, dtype=torch.float16)
    if precision not in ("fp32", "tf32"):
        raise ValueError(f"unknown precision {precision!r}; known: fp32, tf32, bf16, fp16")
    return nullcontext()


def grad_scaler(device: torch.device, precision: str) -> Any:
    """A ``torch.amp.GradScaler`` for fp16 training (loss scaling keeps small gradients from
    underflowing in half precision), None for the other precisions."""
    if precision != "fp16":
        return None
    return torch.amp.GradScaler(device.type)


def evaluate_accuracy(
    model: nn.Module,
    x_uint8: torch.Tensor,
    y: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    batch_size: int = 1024,
    precision: str = "fp32",
    channels_last: bool = False,
    tta: str | None = None,
) -> tuple[float, float]:
    """(accuracy, mean cross-entropy loss) of ``model`` on uint8 images and int64 labels.

    ``tta="flip"`` predicts from the probabilities averaged over each image and its mirror
    (``nasforge.evaluation.tta``; the loss is then that average's negative log-likelihood).

    Runs in eval mode under ``torch.no_grad`` in batches of ``batch_size`` on the model's device
    (the images are moved batch by batch if they live elsewhere); the model's training mode is
    restored afterwards. The loss is computed in float32 even under bf16 autocast. An empty set
    gives ``(nan, nan)``.
    """
    n = int(len(y))
    if n == 0:
        return float("nan"), float("nan")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = _model_device(model)
    norm = Normalizer(mean, std, device)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    try:
        with torch.no_grad():
            for start in range(0, n, batch_size):
                xb = norm(x_uint8[start:start + batch_size].to(device, non_blocking=True))
                yb = y[start:start + batch_size].to(device, non_blocking=True)
                if channels_last:
                    xb = xb.contiguous(memory_format=memory_format)
                with autocast_context(device, precision):
                    logits = predict(model, xb, tta)
                logits = logits.float()
                loss_sum += nn.functional.cross_entropy(logits, yb, reduction="sum").double()
                correct += (logits.argmax(dim=1) == yb).sum()
    finally:
        model.train(was_training)
    return int(correct.item()) / n, float(loss_sum.item()) / n
