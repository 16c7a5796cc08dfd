"""The NAS-Bench-201 CIFAR-10 table, read from the PyPI package ``analog-nasbench==0.1.3``.

The package ships all 15,625 NAS-Bench-201 cells in a pickle, ``analognasbench/data.anb``
(5,610,467 bytes, sha256 ``TABLE_SHA256``). ``baseline_accuracy`` is the CIFAR-10 test
accuracy (percent) after 200 epochs, one seed, of the NAS-Bench-201 training (SGD Nesterov,
lr 0.1 cosine, wd 5e-4, batch 256; Dong & Yang, ICLR 2020, Sec. 2.3).

- **Never imported.** The package imports ``pkg_resources`` (gone from current setuptools)
  and pandas; it is found with ``importlib.util.find_spec`` (which runs none of its code) and
  installed with ``pip install --no-deps analog-nasbench==0.1.3``.
- **No code from the file runs.** The file is checked against ``TABLE_SHA256`` first, then
  read by :class:`_TableUnpickler`, which resolves exactly two globals, the package's
  ``Architecture`` and ``DriftMeasurement`` classes, to plain stand-in classes here (found
  by ``pickletools``: the pickle has no other global; its other opcodes build only dicts,
  tuples, ints, floats and strings).
- **Keys.** NASLib's operation ids (0 skip_connect, 1 none, 2 nor_conv_3x3, 3 nor_conv_1x1,
  4 avg_pool_3x3) in NASLib's edge order (1<-0, 2<-0, 3<-0, 2<-1, 3<-1, 3<-2).
- **A query answers by exact cell**, not by class: isomorphic cells have different values
  (training noise). The package states no licence: its data is never copied into this
  repository.
- **Cost model (assumed, not measured):** simulated training seconds of a cell =
  ``SECONDS_PER_FLOP`` x its forward FLOPs on one 3x32x32 image at the published C=16, N=5,
  10 classes (``nasforge.spaces.nb201_ops.count_flops``: conv and linear, 2 per multiply-add).
  ``SECONDS_PER_FLOP = 200 epochs x 50,000 images x 3 (forward + backward) / 3e12 FLOP/s
  (an assumed sustained GPU throughput) = 1e-5``: 156 s for the all-``none`` cell
  (15.6 MFLOPs; NB201 reports 7.8 M multiply-adds), 4,402 s for the all-3x3 cell.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import io
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nasforge.errors import DataError
from nasforge.spaces.nb201 import NB201Genome, all_genomes
from nasforge.spaces.nb201_ops import EDGES, count_flops

TABLE_PACKAGE = "analog-nasbench"
TABLE_VERSION = "0.1.3"
TABLE_MODULE = "analognasbench"
TABLE_FILE = "data.anb"
TABLE_SHA256 = "85f3435b877aa2d36268d55ce07f6ff6d73643d17a840f1941745da5eb80db32"
INSTALL_COMMAND = f"pip install --no-deps {TABLE_PACKAGE}=={TABLE_VERSION}"
SECONDS_PER_FLOP = 200 * 50_000 * 3 / 3e12
"""k of the cost model (s per forward FLOP of one image): see the module doc."""
PUBLISHED_SETUP: dict[str, Any] = {"input_shape": (3, 32, 32), "num_classes": 10,
                                   "channels": 16, "cells": 5}

NASLIB_OPS: dict[str, int] = {
    "skip_connect": 0, "none": 1, "nor_conv_3x3": 2, "nor_conv_1x1": 3, "avg_pool_3x3": 4,
}
NASLIB_EDGES: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (3, 0), (2, 1), (3, 1), (3, 2))
_FROM_OURS = tuple(EDGES.index(e) for e in NASLIB_EDGES)


class TableError(DataError):
    """The NAS-Bench-201 table is missing, corrupt or not the expected file."""


class TableMissingError(TableError):
    """The optional package holding the table is not installed."""


def naslib_key(genome: NB201Genome) -> tuple[int, ...]:
    """The table's key of a cell: NASLib operation ids in NASLib edge order."""
    return tuple(NASLIB_OPS[genome.ops[k]] for k in _FROM_OURS)


def locate_table() -> Path:
    """Path of the installed ``data.anb`` without importing the package; ``TableMissingError``
    (one line, with the install command) when it is not installed."""
    spec = importlib.util.find_spec(TABLE_MODULE)
    if spec is not None and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            candidate = Path(folder) / TABLE_FILE
            if candidate.is_file():
                return candidate
    try:
        for f in importlib.metadata.files(TABLE_PACKAGE) or []:
            if str(f).replace("\\", "/") == f"{TABLE_MODULE}/{TABLE_FILE}":
                path = Path(str(f.locate()))
                if path.is_file():
                    return path
    except importlib.metadata.PackageNotFoundError:
        pass
    raise TableMissingError(
        f"the NAS-Bench-201 table is not installed; get it with: {INSTALL_COMMAND} "
        "(or ./setup.sh)"
    )


class _Architecture:
    """Stand-in for ``analognasbench.data.Architecture``: attributes only, no code."""


class _DriftMeasurement:
    """Stand-in for ``analognasbench.data.DriftMeasurement``: attributes only, no code."""


_ALLOWED: dict[tuple[str, str], type] = {
    ("analognasbench.data", "Architecture"): _Architecture,
    ("analognasbench.data", "DriftMeasurement"): _DriftMeasurement,
}


class _TableUnpickler(pickle.Unpickler):
    """Resolves only the package's two classes (to stand-ins); any other global is refused."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed") from None


@dataclass(frozen=True)
class NB201Table:
    """CIFAR-10 test accuracy (percent) of every NB201 cell, and its simulated cost.

    ``accuracy``: NASLib key -> percent; ``seconds``: NASLib key -> simulated seconds.
    """

    path: str
    sha256: str
    accuracy: dict[tuple[int, ...], float]
    seconds: dict[tuple[int, ...], float]

    def lookup(self, genome: NB201Genome) -> float:
        """Test accuracy (percent) of the exact cell."""
        return self.accuracy[naslib_key(genome)]

    def cost(self, genome: NB201Genome) -> float:
        """Simulated seconds of a full (200-epoch) training of the cell (cost model above)."""
        return self.seconds[naslib_key(genome)]

    def values(self) -> np.ndarray:
        """All 15,625 accuracies (percent), float64, in table order."""
        return np.fromiter(self.accuracy.values(), dtype=np.float64, count=len(self.accuracy))

    def best(self) -> float:
        """The best accuracy in the table (percent)."""
        return max(self.accuracy.values())

    def expected_best_of(self, n: int) -> float:
        """Exact expectation of the best of ``n`` independent uniform draws (with
        replacement) from the table: sum_i v_(i) [(i/M)^n - ((i-1)/M)^n] over sorted values."""
        v = np.sort(self.values())
        m = len(v)
        cdf = np.arange(1, m + 1, dtype=np.float64) / m
        return float(np.sum(v * (cdf ** n - (cdf - 1.0 / m) ** n)))


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_table(path: str | Path | None = None, expected_sha256: str = TABLE_SHA256) -> NB201Table:
    """Read the table (from the installed package, or ``path``): check its sha256, unpickle
    with the restricted unpickler, check all 15,625 cells. ``TableMissingError`` when not
    installed, ``TableError`` (one line) for a wrong or corrupt file. About 0.3 s."""
    p = locate_table() if path is None else Path(path)
    if not p.is_file():
        raise TableError(f"NAS-Bench-201 table {p} not found")
    data = p.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected_sha256:
        raise TableError(f"NAS-Bench-201 table {p} has sha256 {digest[:16]}..., expected "
                         f"{expected_sha256[:16]}... (corrupt or another version; reinstall "
                         f"with: {INSTALL_COMMAND} --force-reinstall)")
    try:
        raw = _TableUnpickler(io.BytesIO(data)).load()
    except Exception as exc:  # any failure of a foreign file is a data problem
        raise TableError(f"NAS-Bench-201 table {p} cannot be read: {exc}") from None
    accuracy: dict[tuple[int, ...], float] = {}
    if isinstance(raw, dict):
        for key, arch in raw.items():
            value = getattr(arch, "baseline_accuracy", None)
            if isinstance(key, tuple) and isinstance(value, float):
                accuracy[tuple(int(k) for k in key)] = value
    genomes = all_genomes()
    keys = [naslib_key(g) for g in genomes]
    if len(accuracy) != len(genomes) or any(k not in accuracy for k in keys):
        raise TableError(f"NAS-Bench-201 table {p} does not hold the 15,625 cells")
    s = PUBLISHED_SETUP
    seconds = {
        k: SECONDS_PER_FLOP * count_flops(g.ops, s["input_shape"], s["num_classes"],
                                          s["channels"], s["cells"])
        for g, k in zip(genomes, keys)
    }
    return NB201Table(str(p), digest, accuracy, seconds)
