"""What a study remembers of its data: a fingerprint (to refuse a resume on other data) and
the label mapping (what each output index of its networks means)."""

from __future__ import annotations

import hashlib
from typing import Any

from nasforge.data.datasets import DataSplits


def label_mapping(splits: DataSplits) -> dict[str, Any]:
    """What each output index of a network trained on ``splits`` means: ``labels[i]`` is the
    label value index i stands for in the data file, ``class_names[i]`` its name (None where
    the file names none)."""
    labels = splits.labels if splits.labels is not None else tuple(range(splits.num_classes))
    return {"labels": [int(v) for v in labels],
            "class_names": list(splits.class_names) if splits.class_names else None}


def data_fingerprint(splits: DataSplits) -> dict[str, Any]:
    """A fingerprint of the data a study trains on: input shape, class count, part sizes, the
    label mapping and a sha256 over every image and label byte (train, validation, test), so
    a study can tell that its data file was replaced. Hashing Fashion-MNIST takes about 0.1 s."""
    digest = hashlib.sha256()
    for part in ("train", "val", "test"):
        for tensor in (getattr(splits, f"{part}_x"), getattr(splits, f"{part}_y")):
            t = tensor.contiguous()
            digest.update(str(tuple(t.shape)).encode())
            digest.update(t.numpy().tobytes())
    return {
        "name": splits.name,
        "input_shape": list(splits.input_shape),
        "num_classes": int(splits.num_classes),
        "sizes": {p: int(len(getattr(splits, f"{p}_y"))) for p in ("train", "val", "test")},
        "labels": label_mapping(splits)["labels"],
        "sha256": digest.hexdigest(),
    }


def describe_fingerprint(fp: dict[str, Any]) -> str:
    """``name: 1x8x8, 4 classes, 480/120/200 images, sha256 0123abcd``."""
    sizes = fp.get("sizes") or {}
    return (f"{fp.get('name')}: {'x'.join(map(str, fp.get('input_shape') or []))}, "
            f"{fp.get('num_classes')} classes, "
            f"{'/'.join(str(sizes.get(p)) for p in ('train', 'val', 'test'))} images, "
            f"sha256 {str(fp.get('sha256'))[:8]}")


def store_data_facts(storage: Any, data: dict[str, Any] | None) -> None:
    """Keep the data fingerprint and the label mapping in the study (meta values)."""
    if data is not None:
        storage.set_meta_value("data_fingerprint", data["fingerprint"])
        storage.set_meta_value("label_mapping", data["labels"])


def data_facts(config: Any) -> dict[str, Any]:
    """The fingerprint and label mapping of the configured data (loads it in this process)."""
    from nasforge.execution.tasks import load_splits

    splits = load_splits(config.data.task_dict())
    return {"fingerprint": data_fingerprint(splits), "labels": label_mapping(splits)}
