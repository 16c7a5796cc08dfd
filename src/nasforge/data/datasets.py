"""Image classification data sets held in memory as uint8 tensors, and their splits.

Fashion-MNIST is read from a folder of idx files (gzipped or not), from the Debian package
``dataset-fashion-mnist`` or from a download, verified by md5 and cached as ``.npy`` arrays.
Other data sets come from an ``.npz`` file; a tiny synthetic set serves tests.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import math
import os
import struct
import tempfile
import urllib.error
import urllib.request
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nasforge.errors import ConfigError, DataError

__all__ = [
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
    "default_cache_dir",
    "load_dataset",
    "load_fashion_mnist",
    "load_npz",
    "normalize",
    "split_validation",
    "stratified_order",
    "stratified_split_indices",
    "stratified_subset",
    "synthetic_dataset",
    "verify_fashion_mnist",
]

FASHION_MNIST_FILES: dict[str, tuple[str, str]] = {
    "train-images": ("train-images-idx3-ubyte.gz", "f4a8712d7a061bf5bd6d2ca38dc4d50a"),
    "train-labels": ("train-labels-idx1-ubyte.gz", "9018921c3c673c538a1fc5bad174d6f9"),
    "t10k-images": ("t10k-images-idx3-ubyte.gz", "8181f5470baa50b63fa0f6fddb340f0a"),
    "t10k-labels": ("t10k-labels-idx1-ubyte.gz", "15d484375f8d13e6eb1aabb0c3f46965"),
}
"""key -> (file name, md5 of the decompressed idx content)."""

FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
FASHION_MNIST_MIRRORS: tuple[str, ...] = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)
"""Base URLs tried in order for the four upstream ``.gz`` files."""

SYSTEM_DATA_DIR = Path("/usr/share/datasets/fashion-mnist")
DATA_DIR_ENV = "NASFORGE_DATA_DIR"
CACHE_DIR_ENV = "NASFORGE_CACHE_DIR"
KNOWN_DATASETS: tuple[str, ...] = ("fashion-mnist", "synthetic")

_FMNIST = "fashion-mnist"
_HOW_TO_GET = (
    f"install Debian package dataset-fashion-mnist (files in {SYSTEM_DATA_DIR}), "
    f"set {DATA_DIR_ENV} to a folder holding the 4 idx files, or allow download"
)
_DOWNLOAD_TIMEOUT_S = 15.0
# idx magic numbers: 0x08 = unsigned byte, last byte = number of dimensions
_IDX_MAGIC = {"images": (0x00000803, 3), "labels": (0x00000801, 1)}
_KEY_ORDER = ("train-labels", "t10k-labels", "train-images", "t10k-images")  # cheap files first


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


# ------------------------------------------------------------------ Fashion-MNIST
def default_cache_dir() -> Path:
    """``$NASFORGE_CACHE_DIR``, else ``~/.cache/nasforge``."""
    env = os.environ.get(CACHE_DIR_ENV)
    return Path(env).expanduser().absolute() if env else Path.home() / ".cache" / "nasforge"


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _find_file(folder: Path, key: str) -> Path | None:
    """The file for ``key`` in ``folder``: the .gz, else the decompressed idx file."""
    gz_name = FASHION_MNIST_FILES[key][0]
    for candidate in (folder / gz_name, folder / gz_name.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    return None


def _read_idx_bytes(path: Path) -> bytes:
    """Decompressed content of an idx file (gzipped or plain)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{_FMNIST}: cannot read {path} ({exc.strerror or exc}); {_HOW_TO_GET}")
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DataError(
                f"{_FMNIST}: {path} is corrupt (bad gzip data: {reason}); "
                f"re-download it or install Debian package dataset-fashion-mnist"
            ) from None
    if path.suffix == ".gz":
        raise DataError(
            f"{_FMNIST}: {path} is corrupt (not a gzip file); "
            f"re-download it or install Debian package dataset-fashion-mnist"
        )
    return raw


def _decode_idx(path: Path, key: str, data: bytes | None = None) -> np.ndarray:
    """The verified uint8 array of one Fashion-MNIST idx file (``data``: its content, if read)."""
    if data is None:
        data = _read_idx_bytes(path)
    kind = "labels" if key.endswith("labels") else "images"
    magic, ndim = _IDX_MAGIC[kind]
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise DataError(
            f"{_FMNIST}: {path} is not an idx {kind} file ({len(data)} bytes, shorter than its "
            f"header); re-download it or install Debian package dataset-fashion-mnist"
        )
    got_magic = struct.unpack(">I", data[:4])[0]
    if got_magic != magic:
        raise DataError(
            f"{_FMNIST}: {path} is not an idx {kind} file (magic 0x{got_magic:08x}, expected "
            f"0x{magic:08x}); re-download it or install Debian package dataset-fashion-mnist"
        )
    dims = struct.unpack(f">{ndim}I", data[4:header_len])
    expected_len = header_len + math.prod(dims)
    if len(data) != expected_len:
        raise DataError(
            f"{_FMNIST}: {path} is corrupt (idx header {dims} needs {expected_len} bytes, file has "
            f"{len(data)}); re-download it or install Debian package dataset-fashion-mnist"
        )
    expected_md5 = FASHION_MNIST_FILES[key][1]
    got_md5 = _md5(data)
    if got_md5 != expected_md5:
        raise DataError(
            f"{_FMNIST}: {path} is corrupt (md5 {got_md5} of its idx content, expected "
            f"{expected_md5}); re-download it or install Debian package dataset-fashion-mnist"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_len).reshape(dims).copy()


def _cache_path(cache_root: Path, key: str) -> Path:
    return cache_root / _FMNIST / f"{key}-{FASHION_MNIST_FILES[key][1]}.npy"


def _load_cached(path: Path) -> np.ndarray | None:
    if not path.is_file():
        return None
    try:
        arr = np.load(path, mmap_mode=None, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None  # a broken cache entry is rebuilt from the source files
    if arr.dtype != np.uint8 or arr.ndim not in (1, 3):
        return None
    return arr


def _save_cached(path: Path, arr: np.ndarray) -> None:
    """Write ``arr`` atomically; a cache that cannot be written only costs speed."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.save(fh, arr, allow_pickle=False)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        warnings.warn(f"{_FMNIST}: cannot write cache {path} ({exc}); loading will stay slow",
                      stacklevel=3)


def _explicit_dir(data_dir: str | Path | None) -> Path | None:
    if data_dir is not None:
        return Path(data_dir).expanduser().absolute()
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env).expanduser().absolute() if env else None


def _require_files(folder: Path, origin: str) -> dict[str, Path]:
    hint = (
        "copy the 4 Fashion-MNIST idx files there, or leave it unset and install "
        "Debian package dataset-fashion-mnist"
    )
    if not folder.is_dir():
        raise DataError(
            f"{_FMNIST}: data folder {folder} does not exist (given by {origin}); {hint}"
        )
    found: dict[str, Path] = {}
    for key in FASHION_MNIST_FILES:
        path = _find_file(folder, key)
        if path is None:
            raise DataError(
                f"{_FMNIST}: {folder / FASHION_MNIST_FILES[key][0]} is missing, gzipped or not "
                f"(folder given by {origin}); {hint}"
            )
        found[key] = path
    return found


def _all_found(folder: Path) -> dict[str, Path] | None:
    if not folder.is_dir():
        return None
    found = {key: _find_file(folder, key) for key in FASHION_MNIST_FILES}
    if any(p is None for p in found.values()):
        return None
    return {k: p for k, p in found.items() if p is not None}


def _download(folder: Path, key: str, mirrors: Sequence[str]) -> Path:
    """Fetch one upstream .gz into ``folder``, verified by the md5 of its content."""
    name, _ = FASHION_MNIST_FILES[key]
    target = folder / name
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"{_FMNIST}: cannot create download folder {folder} ({exc}); {_HOW_TO_GET}")
    problems: list[str] = []
    for base in mirrors:
        url = base.rstrip("/") + "/" + name
        try:
            with urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as response:
                payload = response.read()
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            if isinstance(reason, OSError) and reason.strerror:
                reason = reason.strerror
            problems.append(f"{url}: {reason}")
            continue
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=name, suffix=".part")
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
        try:
            _decode_idx(Path(tmp), key)
        except DataError:
            Path(tmp).unlink(missing_ok=True)
            problems.append(f"{url}: content failed verification")
            continue
        os.replace(tmp, target)
        return target
    raise DataError(
        f"{_FMNIST}: could not download {name} into {folder} ({'; '.join(problems)}); "
        f"install Debian package dataset-fashion-mnist or set {DATA_DIR_ENV} to a folder "
        f"holding the 4 idx files"
    )


def _source_files(cache_root: Path, download: bool) -> dict[str, Path]:
    """The four source files, without an explicit folder: system copy, else cache download."""
    found = _all_found(SYSTEM_DATA_DIR)
    if found is not None:
        return found
    raw_dir = cache_root / _FMNIST / "raw"
    found_raw = {key: _find_file(raw_dir, key) for key in FASHION_MNIST_FILES}
    missing = [k for k, p in found_raw.items() if p is None]
    if missing and not download:
        raise DataError(
            f"{_FMNIST}: not found in {SYSTEM_DATA_DIR} nor {raw_dir} and download=False; "
            f"{_HOW_TO_GET}"
        )
    result: dict[str, Path] = {}
    for key, path in found_raw.items():
        result[key] = path if path is not None else _download(raw_dir, key, FASHION_MNIST_MIRRORS)
    return result


def load_fashion_mnist(
    data_dir: str | Path | None = None,
    *,
    cache_dir: str | Path | None = None,
    download: bool = True,
) -> ImageDataset:
    """Fashion-MNIST (60,000 train / 10,000 test 28x28 grey images, 10 classes), verified.

    Looks in ``data_dir`` or ``$NASFORGE_DATA_DIR`` (then only there), else in
    ``/usr/share/datasets/fashion-mnist``, else in the cache folder, downloading the upstream
    files there when ``download`` is true. Decoded arrays are cached as ``.npy`` under
    ``cache_dir`` (default ``$NASFORGE_CACHE_DIR`` or ``~/.cache/nasforge``), keyed by md5.
    Raises ``DataError`` with a one-line reason when the data is missing or corrupt.
    """
    cache_root = (
        Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    ).absolute()
    explicit = _explicit_dir(data_dir)
    sources: dict[str, Path] | None = None
    if explicit is not None:
        origin = "the data_dir argument" if data_dir is not None else f"${DATA_DIR_ENV}"
        sources = _require_files(explicit, origin)
    arrays: dict[str, np.ndarray] = {}
    for key in _KEY_ORDER:
        cache_file = _cache_path(cache_root, key)
        cached = _load_cached(cache_file)
        if cached is not None:
            arrays[key] = cached
            continue
        if sources is None:
            sources = _source_files(cache_root, download)
        arrays[key] = _decode_idx(sources[key], key)
        _save_cached(cache_file, arrays[key])
    for part in ("train", "t10k"):
        images, labels = arrays[f"{part}-images"], arrays[f"{part}-labels"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataError(
                f"{_FMNIST}: {part} images {images.shape} and labels {labels.shape} do not match "
                f"(clear the cache in {cache_root / _FMNIST})"
            )
        if labels.size and int(labels.max()) >= len(FASHION_MNIST_CLASSES):
            raise DataError(f"{_FMNIST}: {part} labels go up to {int(labels.max())}, expected < 10")
    x_train = torch.from_numpy(arrays["train-images"]).unsqueeze(1)
    mean, std = _channel_stats(x_train)
    return ImageDataset(
        name=_FMNIST,
        x_train=x_train,
        y_train=torch.from_numpy(arrays["train-labels"]).long(),
        x_test=torch.from_numpy(arrays["t10k-images"]).unsqueeze(1),
        y_test=torch.from_numpy(arrays["t10k-labels"]).long(),
        num_classes=len(FASHION_MNIST_CLASSES),
        mean=mean,
        std=std,
        class_names=FASHION_MNIST_CLASSES,
    )


@dataclass(frozen=True)
class FileCheck:
    """The check of one Fashion-MNIST file: where it is, its content md5, and whether it is good."""

    key: str
    name: str
    path: Path | None
    md5: str | None
    expected_md5: str
    ok: bool
    problem: str | None = None


@dataclass(frozen=True)
class DataCheckReport:
    """What ``verify_fashion_mnist`` found: per-file md5 checks, shapes and class counts."""

    folder: Path
    files: tuple[FileCheck, ...]
    train_shape: tuple[int, ...] | None = None
    test_shape: tuple[int, ...] | None = None
    train_class_counts: tuple[int, ...] | None = None
    test_class_counts: tuple[int, ...] | None = None

    @property
    def ok(self) -> bool:
        """Whether every file is present and has the published md5."""
        return all(f.ok for f in self.files)

    def __str__(self) -> str:
        lines = [f"Fashion-MNIST in {self.folder}: {'OK' if self.ok else 'PROBLEMS FOUND'}"]
        width = max(len(f.name) for f in self.files)
        lines.append(f"  {'file'.ljust(width)}  {'md5 of content'.ljust(32)}  status")
        for f in self.files:
            shown = f.path.name if f.path is not None else f.name
            status = "ok" if f.ok else (f.problem or "bad")
            lines.append(f"  {shown.ljust(width)}  {(f.md5 or '-').ljust(32)}  {status}")
        for part, shape, counts in (
            ("train", self.train_shape, self.train_class_counts),
            ("test", self.test_shape, self.test_class_counts),
        ):
            if shape is not None:
                lines.append(f"  {part}: images {shape}")
            if counts is not None:
                per_class = ", ".join(
                    f"{FASHION_MNIST_CLASSES[i] if i < len(FASHION_MNIST_CLASSES) else i}: {c}"
                    for i, c in enumerate(counts)
                )
                lines.append(f"    per class: {per_class}")
        return "\n".join(lines)


def verify_fashion_mnist(data_dir: str | Path | None = None) -> DataCheckReport:
    """Check the Fashion-MNIST files a load would use (without downloading) and report.

    Uses ``data_dir``, else ``$NASFORGE_DATA_DIR``, else the system folder, else the download
    folder in the cache. Raises ``DataError`` only when no such folder exists.
    """
    folder = _explicit_dir(data_dir)
    if folder is None:
        raw_dir = default_cache_dir() / _FMNIST / "raw"
        folder = SYSTEM_DATA_DIR if SYSTEM_DATA_DIR.is_dir() or not raw_dir.is_dir() else raw_dir
    if not folder.is_dir():
        raise DataError(f"{_FMNIST}: data folder {folder} does not exist; {_HOW_TO_GET}")
    checks: list[FileCheck] = []
    arrays: dict[str, np.ndarray] = {}
    for key, (name, expected) in FASHION_MNIST_FILES.items():
        path = _find_file(folder, key)
        if path is None:
            checks.append(FileCheck(key, name, None, None, expected, False, "missing"))
            continue
        md5: str | None = None
        try:
            content = _read_idx_bytes(path)
            md5 = _md5(content)
            arrays[key] = _decode_idx(path, key, content)
        except DataError as exc:
            problem = str(exc).split(" is ", 1)[-1].split(";")[0]
            checks.append(FileCheck(key, name, path, md5, expected, False, problem))
            continue
        checks.append(FileCheck(key, name, path, md5, expected, True))

    def shape(key: str) -> tuple[int, ...] | None:
        return tuple(int(d) for d in arrays[key].shape) if key in arrays else None

    def counts(key: str) -> tuple[int, ...] | None:
        if key not in arrays:
            return None
        return tuple(int(c) for c in np.bincount(arrays[key], minlength=len(FASHION_MNIST_CLASSES)))

    return DataCheckReport(
        folder=folder,
        files=tuple(checks),
        train_shape=shape("train-images"),
        test_shape=shape("t10k-images"),
        train_class_counts=counts("train-labels"),
        test_class_counts=counts("t10k-labels"),
    )


# ------------------------------------------------------------------ .npz files
def _npz_range(path: Path, key: str, arr: np.ndarray) -> tuple[float, float] | None:
    """(min, max) of an image array after checking its dtype and range; None when empty."""
    if arr.dtype == np.bool_ or not (
        np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    ):
        raise DataError(f"{path}: '{key}' has dtype {arr.dtype}; images must be uint8 or float")
    if arr.size == 0:
        return None
    lo, hi = float(arr.min()), float(arr.max())
    if math.isnan(lo) or math.isnan(hi) or lo < 0.0 or hi > 255.0:
        raise DataError(
            f"{path}: '{key}' values span [{lo}, {hi}]; images must be in [0, 1] or [0, 255]"
        )
    return lo, hi


def _npz_scale(path: Path, arrays: dict[str, np.ndarray]) -> float:
    """The one factor that brings every image array of the file to [0, 255]: 255 when all
    of them are floats in [0, 1], else 1 (integers are always read as 0..255).

    The scale is decided once for the whole file: reading each array at its own scale would
    turn a test set whose floats reach 1.02 into a nearly black one next to a [0, 1] training
    set. Arrays that disagree (floats in [0, 1] next to values above 1 or integers) raise a
    DataError naming the file and the arrays."""
    unit: dict[str, float] = {}
    byte: dict[str, float] = {}
    for key, arr in arrays.items():
        span = _npz_range(path, key, arr)
        if span is None:
            continue
        floats = np.issubdtype(arr.dtype, np.floating)
        (unit if floats and span[1] <= 1.0 else byte)[key] = span[1]
    if unit and byte:
        u, b = sorted(unit)[0], sorted(byte)[0]
        raise DataError(
            f"{path}: '{u}' is on the [0, 1] scale (floats up to {unit[u]:g}) but '{b}' is "
            f"not ({arrays[b].dtype} up to {byte[b]:g}); all images of one file must share one "
            "scale, [0, 1] floats or [0, 255]: rescale or clip one of them")
    return 255.0 if unit else 1.0


def _npz_images(arr: np.ndarray, scale: float) -> np.ndarray:
    """``arr`` (range already checked by :func:`_npz_scale`) times ``scale``, as uint8."""
    if arr.dtype == np.uint8:
        return arr
    if scale != 1.0:
        arr = arr * scale
    return np.rint(arr).astype(np.uint8)


def _channels_last(shape: tuple[int, ...]) -> bool:
    """Whether a 4-D image array shape is N, H, W, C rather than N, C, H, W."""
    first, last = shape[1], shape[3]
    chans = (1, 3, 4)
    if last in chans and first not in chans:
        return True
    if last in chans and first in chans:
        # both plausible: prefer the reading that leaves square images
        return shape[1] == shape[2] and shape[2] != shape[3]
    return False


def _npz_layout(path: Path, key: str, arr: np.ndarray, channels_last: bool | None) -> np.ndarray:
    if arr.ndim == 3:
        return arr[:, None, :, :]
    if arr.ndim == 4:
        last = _channels_last(arr.shape) if channels_last is None else channels_last
        return np.transpose(arr, (0, 3, 1, 2)) if last else arr
    raise DataError(
        f"{path}: '{key}' has shape {arr.shape}; expected N,H,W or N,H,W,C or N,C,H,W"
    )


def _npz_labels(path: Path, key: str, arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise DataError(f"{path}: '{key}' has shape {arr.shape}; labels must be a vector")
    if np.issubdtype(arr.dtype, np.integer):
        return arr.astype(np.int64)
    integral = np.issubdtype(arr.dtype, np.floating) and bool(
        np.all(np.isfinite(arr)) and np.all(arr == np.round(arr))
    )
    if integral:
        return arr.astype(np.int64)
    raise DataError(f"{path}: '{key}' has dtype {arr.dtype}; labels must be integers")


def load_npz(path: str | Path) -> ImageDataset:
    """An image data set from an ``.npz`` holding ``x_train``, ``y_train``, ``x_test``, ``y_test``.

    Images are uint8, or float in [0, 1] or [0, 255], one scale for the whole file (arrays
    whose ranges disagree are refused); laid out N,H,W (grey), N,H,W,C or N,C,H,W.
    Labels are any integers, remapped to 0..K-1 in sorted order (K from the training labels);
    an optional ``class_names`` array names them. Mean/std come from the training images.
    """
    p = Path(path).expanduser().absolute()
    if not p.is_file():
        raise DataError(f"{p}: no such .npz file")
    try:
        npz = np.load(p, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{p}: not a readable .npz file ({exc})") from None
    with npz:
        if not hasattr(npz, "files"):
            raise DataError(f"{p}: holds a single array, not an .npz archive of named arrays")
        for key in ("x_train", "y_train", "x_test", "y_test"):
            if key not in npz.files:
                raise DataError(
                    f"{p}: array '{key}' is missing (has {', '.join(npz.files) or 'nothing'}); "
                    f"needs x_train, y_train, x_test, y_test"
                )
        try:
            raw = {key: npz[key] for key in ("x_train", "y_train", "x_test", "y_test")}
            names_arr = npz["class_names"] if "class_names" in npz.files else None
        except (OSError, ValueError, EOFError) as exc:
            raise DataError(f"{p}: cannot read its arrays ({exc})") from None
    scale = _npz_scale(p, {"x_train": raw["x_train"], "x_test": raw["x_test"]})
    x_train = _npz_images(raw["x_train"], scale)
    x_test = _npz_images(raw["x_test"], scale)
    channels_last = _channels_last(x_train.shape) if x_train.ndim == 4 else None
    x_train = _npz_layout(p, "x_train", x_train, channels_last)
    x_test = _npz_layout(p, "x_test", x_test, channels_last)
    if x_test.shape[1:] != x_train.shape[1:]:
        raise DataError(
            f"{p}: 'x_test' images are {x_test.shape[1:]} (C,H,W) "
            f"but 'x_train' are {x_train.shape[1:]}"
        )
    y_train = _npz_labels(p, "y_train", raw["y_train"])
    y_test = _npz_labels(p, "y_test", raw["y_test"])
    parts = (("x_train", "y_train", x_train, y_train), ("x_test", "y_test", x_test, y_test))
    for xk, yk, x, y in parts:
        if len(x) != len(y):
            raise DataError(f"{p}: '{yk}' has {len(y)} labels but '{xk}' has {len(x)} images")
    if len(y_train) == 0:
        raise DataError(f"{p}: 'x_train' is empty")
    classes = np.unique(y_train)
    unknown = np.setdiff1d(np.unique(y_test), classes)
    if unknown.size:
        raise DataError(
            f"{p}: 'y_test' has labels {unknown[:5].tolist()} that never occur in 'y_train'"
        )
    class_names: tuple[str, ...] | None = None
    if names_arr is not None:
        class_names = tuple(str(s) for s in np.asarray(names_arr).reshape(-1))
        if len(class_names) != len(classes):
            raise DataError(
                f"{p}: 'class_names' has {len(class_names)} names for {len(classes)} classes"
            )
    xt = torch.from_numpy(np.ascontiguousarray(x_train))
    mean, std = _channel_stats(xt)
    return ImageDataset(
        name=p.stem,
        x_train=xt,
        y_train=torch.from_numpy(np.searchsorted(classes, y_train).astype(np.int64)),
        x_test=torch.from_numpy(np.ascontiguousarray(x_test)),
        y_test=torch.from_numpy(np.searchsorted(classes, y_test).astype(np.int64)),
        num_classes=int(len(classes)),
        mean=mean,
        std=std,
        class_names=class_names,
        labels=tuple(int(v) for v in classes.tolist()),
    )


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


# ------------------------------------------------------------------ by name
def load_dataset(
    name: str = "fashion-mnist", data_dir: str | Path | None = None, **kw: object
) -> ImageDataset:
    """A data set by name: ``"fashion-mnist"``, ``"synthetic"`` or a path to an ``.npz`` file.

    Keyword arguments go to the loader (``load_fashion_mnist`` / ``synthetic_dataset``); a
    relative ``.npz`` path is looked up in ``data_dir`` when one is given.
    """
    key = name.strip().lower()
    if key in ("fashion-mnist", "fashion_mnist", "fashionmnist"):
        return load_fashion_mnist(data_dir, **kw)  # type: ignore[arg-type]
    if key == "synthetic":
        return synthetic_dataset(**kw)  # type: ignore[arg-type]
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
