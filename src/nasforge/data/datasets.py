"""Image classification data sets held in memory as uint8 tensors, and their splits.

Fashion-MNIST is read from a folder of idx files (gzipped or not), from the Debian package
``dataset-fashion-mnist`` or from a download, verified by md5 and cached as ``.npy`` arrays
(``nasforge.data.fashion_mnist``). Other data sets come from an ``.npz`` file
(``nasforge.data.npz``); a tiny synthetic set serves tests (``nasforge.data.synthetic``). The
containers and the stratified splits are in ``nasforge.data.containers``. Data sets known by
name are entries of the ``DATASETS`` registry; this module keeps every public name importable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from nasforge.data.containers import (
    DataSplits,
    ImageDataset,
    normalize,
    split_validation,
    stratified_order,
    stratified_split_indices,
    stratified_subset,
    subset_size,
)
from nasforge.data.fashion_mnist import (
    CACHE_DIR_ENV,
    DATA_DIR_ENV,
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_FILES,
    FASHION_MNIST_MIRRORS,
    SYSTEM_DATA_DIR,
    DataCheckReport,
    FileCheck,
    default_cache_dir,
    load_fashion_mnist,
    verify_fashion_mnist,
)
from nasforge.data.npz import load_npz
from nasforge.data.synthetic import synthetic_dataset
from nasforge.errors import ConfigError
from nasforge.registry import Registry

__all__ = [
    "CACHE_DIR_ENV",
    "DATASETS",
    "DATA_DIR_ENV",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_FILES",
    "FASHION_MNIST_MIRRORS",
    "KNOWN_DATASETS",
    "SYSTEM_DATA_DIR",
    "DataCheckReport",
    "DataSplits",
    "FileCheck",
    "ImageDataset",
    "default_cache_dir",
    "load_dataset",
    "load_fashion_mnist",
    "load_npz",
    "normalize",
    "split_validation",
    "stratified_order",
    "stratified_split_indices",
    "stratified_subset",
    "subset_size",
    "synthetic_dataset",
    "verify_fashion_mnist",
]


def _fashion_mnist(data_dir: str | Path | None, **kw: Any) -> ImageDataset:
    return load_fashion_mnist(data_dir, **kw)


def _synthetic(data_dir: str | Path | None, **kw: Any) -> ImageDataset:
    return synthetic_dataset(**kw)


DATASETS: Registry[Callable[..., ImageDataset]] = Registry("data set", sort_names=False)
"""Data sets by name: each entry is called as ``loader(data_dir, **options)``."""
DATASETS.register("fashion-mnist", _fashion_mnist)
DATASETS.register("synthetic", _synthetic)

KNOWN_DATASETS: tuple[str, ...] = tuple(DATASETS.names())
_ALIASES = {"fashion_mnist": "fashion-mnist", "fashionmnist": "fashion-mnist"}


def load_dataset(
    name: str = "fashion-mnist", data_dir: str | Path | None = None, **kw: object
) -> ImageDataset:
    """A data set by name (an entry of ``DATASETS``: ``"fashion-mnist"``, ``"synthetic"``) or a
    path to an ``.npz`` file.

    Keyword arguments go to the loader (``load_fashion_mnist`` / ``synthetic_dataset``); a
    relative ``.npz`` path is looked up in ``data_dir`` when one is given.

    Raises:
        ConfigError: an unknown name (the known ones listed), or options given for an ``.npz``.
        DataError: the files are missing, damaged or malformed (from the loaders).
    """
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key in DATASETS:
        return DATASETS.get(key)(data_dir, **kw)
    if name.endswith(".npz") or Path(name).expanduser().is_file():
        path = Path(name).expanduser()
        if data_dir is not None and not path.is_absolute():
            path = Path(data_dir).expanduser() / path
        if kw:
            raise ConfigError(f"load_dataset: options {sorted(kw)} do not apply to an .npz file")
        return load_npz(path)
    raise ConfigError(
        f"unknown data set {name!r}; known: {', '.join(KNOWN_DATASETS)}, or a path to an .npz file"
    )
