"""A tiny synthetic image data set for tests and smoke runs.
"""

from __future__ import annotations


import torch

from nasforge.data.containers import ImageDataset, _channel_stats
from nasforge.errors import ConfigError


# ------------------------------------------------------------------ synthetic
def synthetic_dataset(
    n_train: int = 600,
    n_test: int = 200,
    num_classes: int = 4,
    shape: tuple[int, int, int] = (1, 12, 12),
    seed: int = 0,
) -> ImageDataset:
    """A tiny, deterministic, learnable data set: each class a fixed blocky pattern plus noise.

    Classes are balanced; the same ``seed`` gives the same tensors. A small CNN gets well above
    chance on it in a few steps, so tests need no download.
    """
    if num_classes < 2 or n_train < num_classes or n_test < 1:
        raise ConfigError(
            f"synthetic data set needs num_classes >= 2, n_train >= num_classes and n_test >= 1; "
            f"got {num_classes}, {n_train}, {n_test}"
        )
    c, h, w = (int(d) for d in shape)
    if c < 1 or h < 2 or w < 2:
        raise ConfigError(f"synthetic data set shape must be (C>=1, H>=2, W>=2), got {shape}")
    gen = torch.Generator().manual_seed(int(seed))
    grid_h, grid_w = min(4, h), min(4, w)
    coarse = (torch.rand(num_classes, c, grid_h, grid_w, generator=gen) > 0.5).float()
    protos = torch.nn.functional.interpolate(coarse, size=(h, w), mode="nearest")
    protos = 0.2 + 0.6 * protos  # patterns in [0.2, 0.8]

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(n) % num_classes
        y = y[torch.randperm(n, generator=gen)]
        contrast = 0.7 + 0.6 * torch.rand(n, 1, 1, 1, generator=gen)
        noise = 0.25 * torch.randn(n, c, h, w, generator=gen)
        x = 0.5 + contrast * (protos[y] - 0.5) + noise
        return (x.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8), y.long()

    x_train, y_train = draw(int(n_train))
    x_test, y_test = draw(int(n_test))
    mean, std = _channel_stats(x_train)
    return ImageDataset(
        name="synthetic",
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        num_classes=int(num_classes),
        mean=mean,
        std=std,
        class_names=tuple(f"class{i}" for i in range(num_classes)),
    )
