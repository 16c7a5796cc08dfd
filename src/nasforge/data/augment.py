"""Batched data augmentation on image tensors [N, C, H, W], driven by a passed-in generator.

Random numbers are drawn on the generator's device and moved to the images' device, so a CPU
generator can drive augmentation of GPU batches and results depend only on the generator state.
"""

from __future__ import annotations

import math

import torch

from nasforge.errors import ConfigError

__all__ = ["AUGMENT_MODES", "augment_batch", "cutout", "random_erasing", "random_horizontal_flip"]

AUGMENT_MODES: tuple[str, ...] = ("none", "flip", "flip+erase", "cutout", "flip+cutout")

_ERASE_ATTEMPTS = 10  # rectangle draws per sample, as torchvision's RandomErasing


def _check_batch(x: torch.Tensor, what: str) -> None:
    if x.dim() != 4:
        raise ValueError(f"{what}: expected images [N, C, H, W], got shape {tuple(x.shape)}")


def _rand(generator: torch.Generator, *size: int) -> torch.Tensor:
    return torch.rand(*size, generator=generator, device=generator.device)


def random_horizontal_flip(
    x: torch.Tensor, generator: torch.Generator, p: float = 0.5
) -> torch.Tensor:
    """Each image mirrored left-right with probability ``p``; a new tensor, ``x`` untouched."""
    _check_batch(x, "random_horizontal_flip")
    chosen = (_rand(generator, x.shape[0]) < p).to(x.device)
    return torch.where(chosen.view(-1, 1, 1, 1), x.flip(-1), x)


def random_erasing(
    x: torch.Tensor,
    generator: torch.Generator,
    p: float = 0.5,
    scale: tuple[float, float] = (0.02, 0.33),
    ratio: tuple[float, float] = (0.3, 3.3),
    value: float = 0.0,
) -> torch.Tensor:
    """With probability ``p`` per image, one rectangle (all channels) set to ``value``.

    As torchvision's ``RandomErasing``: the rectangle's area is a uniform fraction in ``scale``
    of the image, its aspect ratio log-uniform in ``ratio``, its place uniform; up to ten draws
    are made and an image whose draws all fail to fit is left as is. The erased area fraction
    always lies within ``scale``.
    """
    _check_batch(x, "random_erasing")
    n, _, h, w = x.shape
    if n == 0:
        return x.clone()
    area = float(h * w)
    apply = _rand(generator, n) < p
    target = area * (scale[0] + (scale[1] - scale[0]) * _rand(generator, n, _ERASE_ATTEMPTS))
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * _rand(generator, n, _ERASE_ATTEMPTS))
    eh = torch.sqrt(target * aspect).round().long()
    ew = torch.sqrt(target / aspect).round().long()
    frac = (eh * ew).double() / area
    valid = (
        (eh >= 1) & (ew >= 1) & (eh < h) & (ew < w)
        & (frac >= scale[0] - 1e-12) & (frac <= scale[1] + 1e-12)
    )
    # first valid attempt per image (argmax of a bool row gives the first True)
    first = valid.long().argmax(dim=1, keepdim=True)
    has_valid = valid.any(dim=1)
    eh = eh.gather(1, first).squeeze(1)
    ew = ew.gather(1, first).squeeze(1)
    top = (_rand(generator, n) * (h - eh + 1).to(torch.float32)).floor().long().clamp_(min=0)
    left = (_rand(generator, n) * (w - ew + 1).to(torch.float32)).floor().long().clamp_(min=0)
    top = torch.minimum(top, h - eh)
    left = torch.minimum(left, w - ew)
    erase = (apply & has_valid).to(x.device)
    top, left, eh, ew = (t.to(x.device) for t in (top, left, eh, ew))
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    inside = (
        (rows >= top.view(n, 1, 1)) & (rows < (top + eh).view(n, 1, 1))
        & (cols >= left.view(n, 1, 1)) & (cols < (left + ew).view(n, 1, 1))
        & erase.view(n, 1, 1)
    )
    fill = torch.tensor(value, dtype=x.dtype, device=x.device)
    return torch.where(inside.unsqueeze(1), fill, x)


CUTOUT_LENGTH = 16
"""Cutout's square side in pixels: 16 on CIFAR-10 (DeVries & Taylor 2017, Sec. 4.1; the DARTS
evaluation setup, Liu et al. 2019, appendix A.1.2)."""


def cutout(x: torch.Tensor, generator: torch.Generator, length: int = CUTOUT_LENGTH,
           value: float = 0.0) -> torch.Tensor:
    """Cutout (DeVries & Taylor 2017, arXiv:1708.04552): in every image one ``length`` x
    ``length`` square (all channels) set to ``value``; its centre is uniform over the whole
    image and the square is clipped at the borders, so less may be cut near an edge (as
    published). Applied after normalisation (as here in the trainer), ``value`` 0 is the
    data set's mean. A new tensor; ``x`` [N, C, H, W] untouched. ValueError for a length < 1."""
    _check_batch(x, "cutout")
    if not isinstance(length, int) or length < 1:
        raise ValueError(f"cutout: length must be a positive int, got {length!r}")
    n, _, h, w = x.shape
    cy = (_rand(generator, n) * h).floor().long().clamp_(max=h - 1).to(x.device)
    cx = (_rand(generator, n) * w).floor().long().clamp_(max=w - 1).to(x.device)
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    lo = length // 2
    inside = (
        (rows >= (cy - lo).view(n, 1, 1)) & (rows < (cy - lo + length).view(n, 1, 1))
        & (cols >= (cx - lo).view(n, 1, 1)) & (cols < (cx - lo + length).view(n, 1, 1))
    )
    fill = torch.tensor(value, dtype=x.dtype, device=x.device)
    return torch.where(inside.unsqueeze(1), fill, x)


def augment_batch(x: torch.Tensor, mode: str, generator: torch.Generator) -> torch.Tensor:
    """``x`` augmented per ``mode``: ``"none"`` (``x`` itself), ``"flip"`` (random horizontal
    flip, p 0.5), ``"flip+erase"`` (flip, then random erasing with the REMNet settings),
    ``"cutout"`` or ``"flip+cutout"`` (flip, then cutout of 16 pixels: DARTS' evaluation)."""
    if mode == "none":
        return x
    if mode == "flip":
        return random_horizontal_flip(x, generator)
    if mode == "flip+erase":
        return random_erasing(random_horizontal_flip(x, generator), generator)
    if mode == "cutout":
        return cutout(x, generator)
    if mode == "flip+cutout":
        return cutout(random_horizontal_flip(x, generator), generator)
    raise ConfigError(f"unknown augmentation {mode!r}; known: {', '.join(AUGMENT_MODES)}")
