"""Data sets from an ``.npz`` file (``x_train``, ``y_train``, ``x_test``, ``y_test``; optional
class names): one scale for the whole file, channels first or last.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from nasforge.data.containers import ImageDataset, _channel_stats
from nasforge.errors import DataError


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
