"""Test-time augmentation (TTA): predict from an image and its horizontal mirror together.

With ``Budget.tta == "flip"`` validation and test accuracy come from the class probabilities
averaged over the image and its mirror (the images the recipes already train on with
``augment: flip``): a standard evaluation trick for flip-symmetric data (Krizhevsky et al.
2012, section 4.1, averaged predictions over reflections at test time). It costs a second
forward pass per image and changes no weights; the final step prints the single-view test
accuracy beside it, and an export of such a run includes the averaging (:class:`FlipAverage`).
"""

from __future__ import annotations

import torch
from torch import nn

from nasforge.evaluation.budget import TTA_MODES


def flip_average(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Log of the class probabilities averaged over ``x`` [N, C, H, W] and ``x`` mirrored
    left-right (the last dimension): [N, classes], float32. Its softmax is the average, so it
    serves as logits (argmax, cross-entropy). Under an autocast context the two forward passes
    run in that precision; the averaging is done in float32."""
    first = model(x).float().softmax(dim=1)
    second = model(torch.flip(x, dims=[3])).float().softmax(dim=1)
    return ((first + second) * 0.5).clamp_min(1e-12).log()


def predict(model: nn.Module, x: torch.Tensor, tta: str | None) -> torch.Tensor:
    """The logits ``model`` gives ``x`` under test-time augmentation ``tta`` (None or
    ``none``: one plain forward pass; ``flip``: :func:`flip_average`). Raises ValueError for
    an unknown mode."""
    if tta in (None, "none"):
        return model(x)
    if tta == "flip":
        return flip_average(model, x)
    raise ValueError(f"unknown test-time augmentation {tta!r}; known: {', '.join(TTA_MODES)}")


class FlipAverage(nn.Module):
    """``model`` wrapped so that its forward is :func:`flip_average` (for exports of runs
    evaluated with ``tta: flip``): input [N, C, H, W], output [N, classes] log-probabilities."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return flip_average(self.model, x)


__all__ = ["FlipAverage", "TTA_MODES", "flip_average", "predict"]
