"""Image data sets held in memory as uint8 tensors (``ImageDataset``), their training /
validation / test splits (``DataSplits``), normalisation, and stratified splits and subsets.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from nasforge.errors import ConfigError, DataError


# ------------------------------------------------------------------ containers
def _check_images(name: str, what: str, x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.dtype != torch.uint8 or x.dim() != 4:
        desc = f"{x.dtype} {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise DataError(f"{name}: {what} must be a uint8 tensor [N, C, H, W], got {desc}")


def _check_labels(name: str, what: str, y: torch.Tensor, n: int) -> None:
    if not isinstance(y, torch.Tensor) or y.dtype != torch.int64 or y.dim() != 1:
        desc = f"{y.dtype} {tuple(y.shape)}" if isinstance(y, torch.Tensor) else type(y).__name__
        raise DataError(f"{name}: {what} must be an int64 tensor [N], got {desc}")
    if len(y) != n:
        raise DataError(f"{name}: {what} has {len(y)} labels for {n} images")


@dataclass(frozen=True, eq=False)
class ImageDataset:
    """A whole labelled image data set in memory: uint8 images [N, C, H, W], int64 labels.

    ``mean``/``std`` are per channel, on the [0, 1] scale, measured on ``x_train``.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...] | None = None
    #: the label value of each class index as the file had it (an .npz with labels 1..10 or
    #: sparse integers is remapped to 0..K-1 in sorted order); None: the file's own 0..K-1
    labels: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        _check_images(self.name, "x_train", self.x_train)
        _check_images(self.name, "x_test", self.x_test)
        _check_labels(self.name, "y_train", self.y_train, len(self.x_train))
        _check_labels(self.name, "y_test", self.y_test, len(self.x_test))
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise DataError(
                f"{self.name}: train images are {tuple(self.x_train.shape[1:])} but test images "
                f"are {tuple(self.x_test.shape[1:])}"
            )
        channels = self.x_train.shape[1]
        if len(self.mean) != channels or len(self.std) != channels:
            raise DataError(f"{self.name}: mean/std need {channels} values, one per channel")
        if self.class_names is not None and len(self.class_names) != self.num_classes:
            raise DataError(
                f"{self.name}: {len(self.class_names)} class names for {self.num_classes} classes"
            )

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        c, h, w = self.x_train.shape[1:]
        return (int(c), int(h), int(w))


@dataclass(frozen=True, eq=False)
class DataSplits:
    """Train / validation / test parts that trainers consume.

    Search fitness uses the validation part; the test part is for final evaluation only.
    Images are uint8 [N, C, H, W], labels int64 [N]; ``mean``/``std`` are the normalisation
    to apply (per channel, [0, 1] scale).
    """

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...] | None = None
    labels: tuple[int, ...] | None = None  # see ImageDataset.labels

    def __post_init__(self) -> None:
        for part in ("train", "val", "test"):
            x, y = getattr(self, f"{part}_x"), getattr(self, f"{part}_y")
            _check_images(self.name, f"{part}_x", x)
            _check_labels(self.name, f"{part}_y", y, len(x))
        if len(self.mean) != self.train_x.shape[1] or len(self.std) != self.train_x.shape[1]:
            raise DataError(f"{self.name}: mean/std need one value per channel")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        c, h, w = self.train_x.shape[1:]
        return (int(c), int(h), int(w))

    def with_normalization(self, mean: Sequence[float], std: Sequence[float]) -> DataSplits:
        """The same splits with another per-channel normalisation."""
        return dataclasses.replace(
            self, mean=tuple(float(m) for m in mean), std=tuple(float(s) for s in std)
        )

    def subset_train(self, fraction: float, seed: int) -> DataSplits:
        """A stratified ``fraction`` of the training part; validation and test are untouched.

        Raises ConfigError when the fraction keeps fewer than 2 images (batch norm cannot
        train on one)."""
        if fraction == 1.0:
            return self
        if not 0.0 < fraction < 1.0:
            raise ConfigError(f"training data fraction must be in (0, 1], got {fraction!r}")
        keep = stratified_subset(self.train_y, fraction, seed)
        if len(keep) < 2:  # batch norm cannot train on one image
            raise ConfigError(
                f"budget.data_fraction {fraction} of {len(self.train_y)} training images keeps "
                f"{len(keep)}; training needs at least 2 (batch norm): raise the fraction"
            )
        return dataclasses.replace(self, train_x=self.train_x[keep], train_y=self.train_y[keep])


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 images [N, C, H, W] or [C, H, W] as float32, scaled to [0, 1] and standardised
    per channel."""
    channels = x.shape[-3]
    if len(mean) != channels or len(std) != channels:
        raise ValueError(f"normalize: {channels} channels but {len(mean)} means, {len(std)} stds")
    out = x.float().div_(255.0)
    m = torch.tensor(mean, dtype=out.dtype, device=out.device).view(-1, 1, 1)
    s = torch.tensor(std, dtype=out.dtype, device=out.device).view(-1, 1, 1)
    return out.sub_(m).div_(s)


def _channel_stats(x: np.ndarray | torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean and (population) std on the [0, 1] scale of uint8 [N, C, H, W]."""
    arr = x.numpy() if isinstance(x, torch.Tensor) else x
    means, stds = [], []
    values = np.arange(256, dtype=np.float64) / 255.0
    for c in range(arr.shape[1]):
        counts = np.bincount(np.ascontiguousarray(arr[:, c]).reshape(-1), minlength=256)
        total = counts.sum()
        if total == 0:
            means.append(0.0)
            stds.append(1.0)
            continue
        mean = float(counts @ values / total)
        var = float(counts @ (values - mean) ** 2 / total)
        means.append(mean)
        stds.append(math.sqrt(var) if var > 0 else 1.0)
    return tuple(means), tuple(stds)




# ------------------------------------------------------------------ splits
def _check_fraction(fraction: float, what: str) -> float:
    f = float(fraction)
    if not 0.0 <= f <= 1.0 or math.isnan(f):
        raise ConfigError(f"{what} must be in [0, 1], got {fraction!r}")
    return f


def stratified_split_indices(
    y: torch.Tensor, fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(kept, held_out) index tensors over ``y``, both sorted.

    ``held_out`` has ``round(fraction * n)`` items, each class contributing within one of its
    proportional share; the choice depends only on ``y``, ``fraction`` and ``seed``.
    """
    f = _check_fraction(fraction, "split fraction")
    y = torch.as_tensor(y).reshape(-1).cpu().long()
    n = len(y)
    total = int(round(f * n))
    gen = torch.Generator().manual_seed(int(seed))
    classes, counts = torch.unique(y, return_counts=True)
    # largest-remainder allocation of `total` over classes, so each class is within one of
    # fraction * count; ties broken by a seeded order
    quota = counts.double() * f
    take = quota.floor().long()
    rest = min(max(total - int(take.sum()), 0), len(classes))
    if rest > 0:
        remainder = quota - take.double()
        tiebreak = torch.randperm(len(classes), generator=gen)
        order = sorted(range(len(classes)), key=lambda i: (-float(remainder[i]), int(tiebreak[i])))
        for i in order[:rest]:
            take[i] += 1
    take = torch.minimum(take, counts)
    held_parts = []
    for cls, k in zip(classes.tolist(), take.tolist()):
        members = torch.nonzero(y == cls).reshape(-1)
        perm = torch.randperm(len(members), generator=gen)
        held_parts.append(members[perm[:k]])
    held_mask = torch.zeros(n, dtype=torch.bool)
    if held_parts:
        held_mask[torch.cat(held_parts)] = True
    held = torch.nonzero(held_mask).reshape(-1)
    kept = torch.nonzero(~held_mask).reshape(-1)
    return kept, held


def subset_size(n: int, fraction: float) -> int:
    """How many of ``n`` training images a stratified ``fraction`` keeps (``round(f * n)``,
    all of them at 1.0): what :meth:`DataSplits.subset_train` returns, without the data."""
    return n if float(fraction) >= 1.0 else min(n, int(round(float(fraction) * n)))


def stratified_order(y: torch.Tensor, seed: int) -> torch.Tensor:
    """A seeded order of all indices of ``y`` whose every prefix is stratified: nested subsets.

    Each class's members are shuffled (seeded), and the j-th member (0-based) of a class of
    n_c members is placed at time (j + 1/2) / n_c, ties between classes broken by a seeded
    class order (stride scheduling, the Sainte-Lague rule). A prefix of k items then holds
    ``round(t * n_c)`` of class c for one t, which is within ``1/2 + C * p_c / 2`` of its share
    k * p_c (C classes, p_c = n_c / n): within one item for balanced classes. Shapes: ``y``
    [n] labels; returns [n] int64 indices.
    """
    y = torch.as_tensor(y).reshape(-1).cpu().long()
    gen = torch.Generator().manual_seed(int(seed))
    classes = torch.unique(y)
    rank = torch.randperm(len(classes), generator=gen)
    index_parts, time_parts, rank_parts = [], [], []
    for c, cls in enumerate(classes.tolist()):
        members = torch.nonzero(y == cls).reshape(-1)
        members = members[torch.randperm(len(members), generator=gen)]
        index_parts.append(members)
        time_parts.append((torch.arange(len(members), dtype=torch.float64) + 0.5) / len(members))
        rank_parts.append(torch.full((len(members),), int(rank[c])))
    if not index_parts:
        return torch.zeros(0, dtype=torch.long)
    index, times, ranks = torch.cat(index_parts), torch.cat(time_parts), torch.cat(rank_parts)
    order = np.lexsort((ranks.numpy(), times.numpy()))  # by time, then by class rank
    return index[torch.from_numpy(order)]


def stratified_subset(y: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """Sorted indices of a stratified ``round(fraction * n)``-item subset of ``y``: the first
    items of :func:`stratified_order`, so a smaller fraction's subset (same ``y`` and seed) is
    contained in a larger one's (multi-fidelity searches retrain a promoted network on a
    larger, nested subset)."""
    f = _check_fraction(fraction, "subset fraction")
    keep = stratified_order(y, seed)[:subset_size(len(torch.as_tensor(y).reshape(-1)), f)]
    return torch.sort(keep).values


def split_validation(ds: ImageDataset, val_fraction: float = 0.1, seed: int = 0) -> DataSplits:
    """Hold a seeded stratified ``val_fraction`` of the training set out for validation.

    Raises ConfigError when either part is empty or fewer than 2 images are left to train on
    (batch norm cannot train on one)."""
    if not 0.0 < float(val_fraction) < 1.0:
        raise ConfigError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    train_idx, val_idx = stratified_split_indices(ds.y_train, val_fraction, seed)
    if len(val_idx) == 0 or len(train_idx) == 0:
        raise ConfigError(
            f"val_fraction {val_fraction} of {len(ds.y_train)} training images leaves an empty part"
        )
    if len(train_idx) < 2:  # batch norm cannot train on one image
        raise ConfigError(
            f"val_fraction {val_fraction} of {len(ds.y_train)} training images leaves "
            f"{len(train_idx)} to train on; training needs at least 2 (batch norm)"
        )
    return DataSplits(
        name=ds.name,
        train_x=ds.x_train[train_idx],
        train_y=ds.y_train[train_idx],
        val_x=ds.x_train[val_idx],
        val_y=ds.y_train[val_idx],
        test_x=ds.x_test,
        test_y=ds.y_test,
        num_classes=ds.num_classes,
        mean=ds.mean,
        std=ds.std,
        class_names=ds.class_names,
        labels=ds.labels,
    )
