"""The pieces of one training step, shared by the trainer (:mod:`nasforge.evaluation.trainer`),
the speed measurement and the task kinds: the budget's optimizer, the training loss, the
optimizer step (with or without a ``GradScaler``) and the number of steps in an epoch.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from nasforge.errors import ConfigError
from nasforge.evaluation.budget import Budget

__all__ = ["optimizer_step", "training_loss"]


def _make_optimizer(model: nn.Module, budget: Budget) -> torch.optim.Optimizer:
    """The budget's optimizer over the model's trainable parameters.

    ``momentum`` applies to SGD only (plain, not Nesterov); the other optimizers use PyTorch's
    defaults apart from the learning rate and weight decay. Where every parameter is a float
    tensor on CPU or CUDA, SGD/Adam/AdamW use PyTorch's fused kernels and Adamax/RMSprop the
    multi-tensor ("foreach") ones: the same update rule, one kernel call instead of several per
    parameter (on CPU PyTorch would otherwise pick the slowest, per-tensor loop).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    lr, wd = budget.learning_rate, float(budget.weight_decay)
    fast = bool(params) and all(
        p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params
    )
    fused: dict[str, Any] = {"fused": True} if fast else {}
    foreach: dict[str, Any] = {"foreach": True} if fast else {}
    name = budget.optimizer
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=float(budget.momentum), weight_decay=wd,
                               nesterov=False, **fused)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd, **fused)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd, **fused)
    if name == "adamax":
        return torch.optim.Adamax(params, lr=lr, weight_decay=wd, **foreach)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, weight_decay=wd, **foreach)
    raise ConfigError(f"unknown optimizer {name!r}")


def training_loss(model: nn.Module, output: Any, labels: torch.Tensor,
                  smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy of the logits (computed in float32), with ``smoothing`` the label
    smoothing epsilon (``Budget.label_smoothing``). A network that returns
    ``(logits, aux_logits)`` in training mode (the DARTS evaluation network with its auxiliary
    head; Szegedy et al. 2015) adds ``model.auxiliary_weight`` (DARTS: 0.4) times the
    auxiliary cross-entropy."""
    if isinstance(output, tuple):
        logits, aux = output
        weight = float(getattr(model, "auxiliary_weight", 0.4))
        return (nn.functional.cross_entropy(logits.float(), labels, label_smoothing=smoothing)
                + weight * nn.functional.cross_entropy(aux.float(), labels,
                                                       label_smoothing=smoothing))
    return nn.functional.cross_entropy(output.float(), labels, label_smoothing=smoothing)


def optimizer_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: Any) -> None:
    """Zero the gradients, back-propagate ``loss`` and step; with a ``GradScaler`` (fp16) the
    loss is scaled and the step skipped on inf/NaN gradients, as ``torch.amp`` prescribes."""
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()


def _steps_per_epoch(n: int, batch_size: int, max_steps: int | None) -> int:
    """Optimizer steps in one epoch over ``n`` images.

    The last, partial batch is kept unless it would hold a single image (batch norm cannot
    train on one); ``max_steps`` caps the count.
    """
    steps = math.ceil(n / batch_size)
    if steps > 1 and n % batch_size == 1:
        steps -= 1
    if max_steps is not None:
        steps = min(steps, max_steps)
    return steps
