"""Fashion-MNIST (Xiao et al. 2017): read from a folder of idx files (gzipped or not), from
the Debian package ``dataset-fashion-mnist`` or from a download, verified by md5 and cached as
``.npy`` arrays; ``verify_fashion_mnist`` checks the files.
"""

from __future__ import annotations

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

from nasforge.data.containers import ImageDataset, _channel_stats
from nasforge.errors import DataError


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
_FMNIST = "fashion-mnist"
_HOW_TO_GET = (
    f"install Debian package dataset-fashion-mnist (files in {SYSTEM_DATA_DIR}), "
    f"set {DATA_DIR_ENV} to a folder holding the 4 idx files, or allow download"
)
_DOWNLOAD_TIMEOUT_S = 15.0
# idx magic numbers: 0x08 = unsigned byte, last byte = number of dimensions
_IDX_MAGIC = {"images": (0x00000803, 3), "labels": (0x00000801, 1)}
_KEY_ORDER = ("train-labels", "t10k-labels", "train-images", "t10k-images")  # cheap files first



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
