from __future__ import annotations

import gzip
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nasforge.data import (
    DATA_DIR_ENV,
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_FILES,
    DataSplits,
    ImageDataset,
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
from nasforge.data import datasets as dsmod
from nasforge.data import fashion_mnist as fmmod
from nasforge.errors import ConfigError, DataError

SYSTEM = dsmod.SYSTEM_DATA_DIR
HAVE_SYSTEM = all((SYSTEM / name).is_file() for name, _ in FASHION_MNIST_FILES.values())
needs_system = pytest.mark.skipif(
    not HAVE_SYSTEM,
    reason=f"Fashion-MNIST not installed in {SYSTEM} (apt-get install dataset-fashion-mnist)",
)


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests never read the user's data folder setting nor write the user's cache."""
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    monkeypatch.setenv(dsmod.CACHE_DIR_ENV, str(tmp_path / "default-cache"))


def _linked_copy(tmp_path: Path, corrupt: str | None = None) -> Path:
    """A folder with the system files linked in; ``corrupt`` is copied instead, for editing."""
    folder = tmp_path / "fmnist"
    folder.mkdir()
    for key, (name, _) in FASHION_MNIST_FILES.items():
        if key == corrupt:
            shutil.copyfile(SYSTEM / name, folder / name)
        else:
            (folder / name).symlink_to(SYSTEM / name)
    return folder


# ------------------------------------------------------------------ Fashion-MNIST
@needs_system
def test_real_fashion_mnist_loads_verified_and_caches(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    ds = load_fashion_mnist(cache_dir=cache)
    assert ds.name == "fashion-mnist"
    assert ds.x_train.shape == (60000, 1, 28, 28) and ds.x_train.dtype == torch.uint8
    assert ds.x_test.shape == (10000, 1, 28, 28)
    assert ds.y_train.dtype == torch.int64 and ds.y_test.dtype == torch.int64
    assert torch.bincount(ds.y_train).tolist() == [6000] * 10
    assert torch.bincount(ds.y_test).tolist() == [1000] * 10
    assert ds.num_classes == 10 and ds.class_names == FASHION_MNIST_CLASSES
    assert ds.input_shape == (1, 28, 28)
    assert ds.mean[0] == pytest.approx(0.2860, abs=1e-3)
    assert ds.std[0] == pytest.approx(0.3530, abs=1e-3)
    assert len(list((cache / "fashion-mnist").glob("*.npy"))) == 4

    start = time.perf_counter()
    again = load_fashion_mnist(cache_dir=cache)
    elapsed = time.perf_counter() - start
    # timings are noisy on shared machines: only a pathological slowdown fails (measured ~0.15 s)
    assert elapsed < 15.0, f"cached load took {elapsed:.2f} s"
    assert torch.equal(again.x_train, ds.x_train) and torch.equal(again.y_test, ds.y_test)
    assert again.mean == ds.mean


@needs_system
def test_verify_report_on_system_copy() -> None:
    report = verify_fashion_mnist(SYSTEM)
    assert report.ok
    assert [f.md5 for f in report.files] == [md5 for _, md5 in FASHION_MNIST_FILES.values()]
    assert report.train_shape == (60000, 28, 28) and report.test_shape == (10000, 28, 28)
    assert report.train_class_counts == (6000,) * 10
    assert report.test_class_counts == (1000,) * 10
    text = str(report)
    assert "train-images-idx3-ubyte.gz" in text and "OK" in text and "Ankle boot: 6000" in text


@needs_system
def test_decompressed_idx_files_are_accepted(tmp_path: Path) -> None:
    folder = tmp_path / "plain"
    folder.mkdir()
    for key, (name, _) in FASHION_MNIST_FILES.items():
        if "labels" in key:  # plain labels, gzipped images: both forms in one folder
            plain = gzip.decompress((SYSTEM / name).read_bytes())
            (folder / name.removesuffix(".gz")).write_bytes(plain)
        else:
            (folder / name).symlink_to(SYSTEM / name)
    ds = load_fashion_mnist(folder, cache_dir=tmp_path / "cache")
    assert len(ds.y_train) == 60000 and len(ds.y_test) == 10000


@needs_system
def test_flipped_bytes_in_gz_is_a_data_error_naming_the_file(tmp_path: Path) -> None:
    folder = _linked_copy(tmp_path, corrupt="train-labels")
    path = folder / FASHION_MNIST_FILES["train-labels"][0]
    raw = bytearray(path.read_bytes())
    for i in range(100, 110):
        raw[i] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte\.gz is corrupt") as info:
        load_fashion_mnist(folder, cache_dir=tmp_path / "cache")
    assert "\n" not in str(info.value)
    assert "dataset-fashion-mnist" in str(info.value)
    assert not verify_fashion_mnist(folder).ok


@needs_system
def test_truncated_gz_is_a_data_error(tmp_path: Path) -> None:
    folder = _linked_copy(tmp_path, corrupt="t10k-labels")
    path = folder / FASHION_MNIST_FILES["t10k-labels"][0]
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz is corrupt"):
        load_fashion_mnist(folder, cache_dir=tmp_path / "cache")


@needs_system
def test_wrong_content_is_an_md5_error(tmp_path: Path) -> None:
    folder = _linked_copy(tmp_path, corrupt="t10k-labels")
    path = folder / FASHION_MNIST_FILES["t10k-labels"][0]
    data = bytearray(gzip.decompress(path.read_bytes()))
    data[-1] = (data[-1] + 1) % 10  # a valid idx file, wrong content
    path.write_bytes(gzip.compress(bytes(data)))
    pattern = r"t10k-labels-idx1-ubyte\.gz is corrupt \(md5 [0-9a-f]{32}"
    with pytest.raises(DataError, match=pattern):
        load_fashion_mnist(folder, cache_dir=tmp_path / "cache")


def test_bad_idx_header_is_a_data_error(tmp_path: Path) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    for name, _ in FASHION_MNIST_FILES.values():
        (folder / name).write_bytes(gzip.compress(b"\x00\x00\x09\x99" + bytes(20)))
    with pytest.raises(DataError, match=r"labels-idx1-ubyte\.gz is not an idx labels file"):
        load_fashion_mnist(folder, cache_dir=tmp_path / "cache")


def test_missing_folder_and_missing_file_are_data_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(DataError, match=r"nowhere does not exist"):
        load_fashion_mnist(tmp_path / "nowhere", cache_dir=tmp_path / "cache")
    folder = tmp_path / "partial"
    folder.mkdir()
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz is missing"):
        load_fashion_mnist(folder, cache_dir=tmp_path / "cache")
    # the environment variable, when set, is the only place looked at
    monkeypatch.setenv(DATA_DIR_ENV, str(folder))
    with pytest.raises(DataError, match=rf"partial.*\${DATA_DIR_ENV}"):
        load_fashion_mnist(cache_dir=tmp_path / "cache")
    with pytest.raises(DataError, match=r"nowhere"):
        verify_fashion_mnist(tmp_path / "nowhere")


def test_no_data_and_no_download_is_a_data_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fmmod, "SYSTEM_DATA_DIR", tmp_path / "absent")
    with pytest.raises(DataError, match=r"download=False"):
        load_fashion_mnist(cache_dir=tmp_path / "cache", download=False)


@needs_system
def test_download_into_cache_from_a_mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fmmod, "SYSTEM_DATA_DIR", tmp_path / "absent")
    monkeypatch.setattr(
        fmmod, "FASHION_MNIST_MIRRORS", ((tmp_path / "dead").as_uri(), SYSTEM.as_uri())
    )
    cache = tmp_path / "cache"
    ds = load_fashion_mnist(cache_dir=cache)
    assert len(ds.y_train) == 60000
    raw = cache / "fashion-mnist" / "raw"
    expected = sorted(n for n, _ in FASHION_MNIST_FILES.values())
    assert sorted(p.name for p in raw.iterdir()) == expected
    monkeypatch.setattr(fmmod, "FASHION_MNIST_MIRRORS", ((tmp_path / "dead").as_uri(),))
    with pytest.raises(DataError, match=r"could not download train-images-idx3-ubyte\.gz"):
        load_fashion_mnist(cache_dir=tmp_path / "cache2")


# ------------------------------------------------------------------ splits
def _labels(seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    counts = [50, 31, 17, 102, 9]
    y = torch.cat([torch.full((c,), k) for k, c in enumerate(counts)])
    return y[torch.randperm(len(y), generator=gen)]


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.25, 0.5, 0.77, 1.0])
def test_stratified_split_is_a_stratified_partition(fraction: float) -> None:
    y = _labels()
    kept, held = stratified_split_indices(y, fraction, seed=3)
    n = len(y)
    assert len(held) == round(fraction * n)
    both = torch.cat([kept, held])
    assert sorted(both.tolist()) == list(range(n))  # disjoint and complete
    counts = torch.bincount(y, minlength=5).double()
    held_counts = torch.bincount(y[held], minlength=5).double()
    assert torch.all((held_counts - fraction * counts).abs() <= 1.0)


def test_split_depends_only_on_seed() -> None:
    y = _labels()
    a = stratified_split_indices(y, 0.3, seed=1)
    b = stratified_split_indices(y, 0.3, seed=1)
    c = stratified_split_indices(y, 0.3, seed=2)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])
    # the training subset is a prefix of one nested stratified order, not the split's part
    assert len(stratified_subset(y, 0.3, 1)) == len(a[1])
    assert torch.equal(stratified_subset(y, 0.3, 1), stratified_subset(y, 0.3, 1))


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(0, 40), min_size=1, max_size=6).filter(lambda c: sum(c) > 0),
    fraction=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**31 - 1),
)
def test_stratified_split_property(counts: list[int], fraction: float, seed: int) -> None:
    y = torch.cat([torch.full((c,), k) for k, c in enumerate(counts)])
    kept, held = stratified_split_indices(y, fraction, seed)
    assert len(held) == round(fraction * len(y))
    assert sorted(torch.cat([kept, held]).tolist()) == list(range(len(y)))
    per_class = torch.bincount(y[held], minlength=len(counts)).double()
    assert torch.all((per_class - fraction * torch.tensor(counts).double()).abs() < 1.0 + 1e-9)


def test_bad_fraction_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        stratified_split_indices(_labels(), 1.5, seed=0)
    with pytest.raises(ConfigError):
        split_validation(synthetic_dataset(), 0.0)


def test_split_validation_and_subset_train() -> None:
    ds = synthetic_dataset(n_train=400, n_test=80, num_classes=4)
    splits = split_validation(ds, 0.25, seed=5)
    assert isinstance(splits, DataSplits)
    assert len(splits.val_y) == 100 and len(splits.train_y) == 300
    assert torch.bincount(splits.val_y).tolist() == [25] * 4
    assert splits.test_x is ds.x_test and splits.mean == ds.mean
    assert splits.input_shape == (1, 12, 12)
    # the validation images are exactly the held-out training images
    _, held = stratified_split_indices(ds.y_train, 0.25, seed=5)
    assert torch.equal(splits.val_x, ds.x_train[held])

    sub = splits.subset_train(0.2, seed=1)
    assert len(sub.train_y) == 60 and torch.bincount(sub.train_y).tolist() == [15] * 4
    assert sub.val_x is splits.val_x and sub.val_y is splits.val_y and sub.test_x is splits.test_x
    assert splits.subset_train(1.0, seed=1) is splits
    assert torch.equal(splits.subset_train(0.2, seed=1).train_y, sub.train_y)

    renorm = splits.with_normalization((0.1307,), (0.3081,))
    assert renorm.mean == (0.1307,) and renorm.std == (0.3081,) and renorm.train_x is splits.train_x


def test_normalize() -> None:
    x = torch.tensor([0, 255], dtype=torch.uint8).view(1, 1, 1, 2).repeat(2, 2, 1, 1)
    out = normalize(x, (0.5, 0.0), (0.5, 2.0))
    assert out.dtype == torch.float32
    assert out[0, 0, 0].tolist() == [-1.0, 1.0] and out[0, 1, 0].tolist() == [0.0, 0.5]
    assert normalize(x[0], (0.5, 0.0), (0.5, 2.0)).shape == (2, 1, 2)


# ------------------------------------------------------------------ .npz
def test_npz_rgb_channels_last(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    labels = np.array([3, 10, 11, 20, 21, 50, 99])  # any ints, 7 classes
    y_train = np.repeat(labels, 10)
    y_test = labels[rng.integers(0, 7, 14)]
    x_train = rng.random((70, 32, 32, 3)).astype(np.float32)
    x_train[..., 0] *= 0.5  # channels differ
    x_test = rng.random((14, 32, 32, 3)).astype(np.float32)
    path = tmp_path / "cifar7.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    ds = load_npz(path)
    assert ds.name == "cifar7" and ds.input_shape == (3, 32, 32) and ds.num_classes == 7
    assert ds.x_train.dtype == torch.uint8 and ds.x_test.shape == (14, 3, 32, 32)
    assert sorted(torch.unique(ds.y_train).tolist()) == list(range(7))
    assert torch.equal(ds.y_test, torch.from_numpy(np.searchsorted(labels, y_test)))
    expected = np.rint(x_train * 255).astype(np.uint8) / 255.0
    assert ds.mean == pytest.approx(tuple(expected.mean(axis=(0, 1, 2))), abs=1e-9)
    assert ds.std == pytest.approx(tuple(expected.std(axis=(0, 1, 2))), abs=1e-9)
    assert ds.mean[0] < ds.mean[1]
    # the same pixel ends up at [n, c, h, w]
    assert int(ds.x_train[4, 2, 7, 9]) == int(np.rint(x_train[4, 7, 9, 2] * 255))
    assert load_dataset(str(path)).num_classes == 7
    assert load_dataset("cifar7.npz", data_dir=tmp_path).input_shape == (3, 32, 32)


def test_npz_grey_and_channels_first(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    grey = tmp_path / "grey.npz"
    np.savez(
        grey,
        x_train=rng.integers(0, 256, (20, 9, 7), dtype=np.uint8),
        y_train=np.arange(20) % 2,
        x_test=rng.integers(0, 256, (4, 9, 7), dtype=np.uint8),
        y_test=np.array([0, 1, 1, 0]),
    )
    assert load_npz(grey).input_shape == (1, 9, 7)
    cf = tmp_path / "cf.npz"
    x = rng.random((12, 3, 16, 16)) * 255.0  # float on the [0, 255] scale
    np.savez(cf, x_train=x, y_train=np.arange(12) % 3, x_test=x[:2], y_test=np.array([0, 2]))
    ds = load_npz(cf)
    assert ds.input_shape == (3, 16, 16) and ds.num_classes == 3
    assert int(ds.x_train[1, 2, 3, 4]) == int(np.rint(x[1, 2, 3, 4]))


def test_npz_problems_are_data_errors_naming_key_and_file(tmp_path: Path) -> None:
    x = np.zeros((10, 8, 8), dtype=np.uint8)
    y = np.arange(10) % 2
    missing = tmp_path / "missing.npz"
    np.savez(missing, x_train=x, y_train=y, y_test=y)
    with pytest.raises(DataError, match=r"missing\.npz.*'x_test' is missing"):
        load_npz(missing)
    short = tmp_path / "short.npz"
    np.savez(short, x_train=x, y_train=y[:9], x_test=x, y_test=y)
    with pytest.raises(DataError, match=r"short\.npz.*'y_train' has 9 labels"):
        load_npz(short)
    dims = tmp_path / "dims.npz"
    np.savez(dims, x_train=x.reshape(10, 64), y_train=y, x_test=x, y_test=y)
    with pytest.raises(DataError, match=r"dims\.npz.*'x_train' has shape"):
        load_npz(dims)
    rng = tmp_path / "range.npz"
    np.savez(rng, x_train=x.astype(np.float32) - 1, y_train=y, x_test=x, y_test=y)
    with pytest.raises(DataError, match=r"range\.npz.*'x_train' values"):
        load_npz(rng)
    with pytest.raises(DataError, match=r"absent\.npz"):
        load_npz(tmp_path / "absent.npz")


def test_npz_scale_is_decided_once_per_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    y = np.arange(10) % 2
    x_train = rng.random((10, 6, 6)).astype(np.float32)  # [0, 1] floats
    x_test = rng.random((10, 6, 6)).astype(np.float32)
    x_test[0, 0, 0] = 1.02  # one pixel slightly above 1: was read on the 0-255 scale alone
    bad = tmp_path / "mixed.npz"
    np.savez(bad, x_train=x_train, y_train=y, x_test=x_test, y_test=y)
    with pytest.raises(DataError, match=r"mixed\.npz: 'x_train' is on the \[0, 1\] scale.*"
                                        r"'x_test' is not \(float32 up to 1\.02\)") as info:
        load_npz(bad)
    assert "\n" not in str(info.value)
    byte_test = tmp_path / "bytes.npz"  # uint8 test set next to [0, 1] training floats
    np.savez(byte_test, x_train=x_train, y_train=y, x_test=(x_train * 255).astype(np.uint8),
             y_test=y)
    with pytest.raises(DataError, match=r"bytes\.npz: 'x_train' .* 'x_test' is not \(uint8"):
        load_npz(byte_test)
    good = tmp_path / "good.npz"  # both in [0, 1]: both scaled by 255 alike
    np.savez(good, x_train=x_train, y_train=y, x_test=np.clip(x_test, 0, 1), y_test=y)
    ds = load_npz(good)
    assert torch.equal(ds.x_test[1, 0], torch.from_numpy(np.rint(x_test[1] * 255).astype(np.uint8)))
    assert int(ds.x_test[0, 0, 0, 0]) == 255


# ------------------------------------------------------------------ synthetic & names
def test_synthetic_is_deterministic_and_learnable() -> None:
    a, b = synthetic_dataset(seed=7), synthetic_dataset(seed=7)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.x_train, synthetic_dataset(seed=8).x_train)
    assert isinstance(a, ImageDataset) and a.input_shape == (1, 12, 12) and a.num_classes == 4
    assert torch.bincount(a.y_train).tolist() == [150] * 4
    # nearest class mean on the test part
    xtr, xte = a.x_train.float().flatten(1), a.x_test.float().flatten(1)
    means = torch.stack([xtr[a.y_train == k].mean(0) for k in range(a.num_classes)])
    pred = torch.cdist(xte, means).argmin(1)
    assert (pred == a.y_test).float().mean() > 0.8
    rgb = synthetic_dataset(n_train=40, n_test=10, num_classes=5, shape=(3, 8, 10), seed=1)
    assert rgb.x_train.shape == (40, 3, 8, 10) and len(rgb.mean) == 3


def test_load_dataset_by_name() -> None:
    assert load_dataset("synthetic", n_train=40, n_test=8).name == "synthetic"
    with pytest.raises(ConfigError, match=r"unknown data set 'mnist'.*fashion-mnist.*synthetic"):
        load_dataset("mnist")
