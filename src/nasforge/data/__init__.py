"""Data sets in memory (Fashion-MNIST, .npz files, a synthetic stand-in), splits and
batched augmentation."""

from __future__ import annotations

from nasforge.data.augment import (
    AUGMENT_MODES,
    augment_batch,
    cutout,
    random_erasing,
    random_horizontal_flip,
)
from nasforge.data.datasets import (
    CACHE_DIR_ENV,
    DATA_DIR_ENV,
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_FILES,
    FASHION_MNIST_MIRRORS,
    KNOWN_DATASETS,
    SYSTEM_DATA_DIR,
    DataCheckReport,
    DataSplits,
    FileCheck,
    ImageDataset,
    default_cache_dir,
    load_dataset,
    load_fashion_mnist,
    load_npz,
    normalize,
    split_validation,
    stratified_split_indices,
    stratified_subset,
    synthetic_dataset,
    verify_fashion_mnist,
)

__all__ = [
    "AUGMENT_MODES",
    "CACHE_DIR_ENV",
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
    "augment_batch",
    "cutout",
    "default_cache_dir",
    "load_dataset",
    "load_fashion_mnist",
    "load_npz",
    "normalize",
    "random_erasing",
    "random_horizontal_flip",
    "split_validation",
    "stratified_split_indices",
    "stratified_subset",
    "synthetic_dataset",
    "verify_fashion_mnist",
]
