"""Export a trained network of a study: TorchScript, ONNX, or a state_dict with its genome.

The weights come from the chosen genome's final training when there is one (the lowest seed
of its latest final budget, never the seed with the best test accuracy), else from the trial's
kept weights. Beside the exported file goes
``FILE.json``: the genome, the space, the width, the input shape, the class count, the
normalisation constants, the label mapping (output index i is the data file's label
``labels.labels[i]``, named ``labels.class_names[i]``) and the metrics, so the file can be used without nasforge (TorchScript
with plain ``torch.jit.load``, ONNX with onnxruntime) and rebuilt with it (state_dict).

Inputs of exported models are float32 [N, C, H, W] images scaled to [0, 1] and standardised
per channel: ``x = (uint8 / 255 - mean[c]) / std[c]``; outputs are logits [N, classes].
"""

from __future__ import annotations

import datetime as _dt
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nasforge.errors import ConfigError, DataError, NasforgeError
from nasforge.storage.sqlite import (
    FinalRunRecord,
    StudyStorage,
    TrialRecord,
    budget_key,
    resolve_checkpoint,
)
from nasforge.storage.records import single_view_acc

EXPORT_FORMATS: tuple[str, ...] = ("torchscript", "onnx", "state_dict")
META_FORMAT = "nasforge-export/1"
STATE_DICT_FORMAT = "nasforge-state-dict/1"
DEFAULT_OPSET = 17
_TOLERANCE = 1e-4


class ExportError(NasforgeError):
    """A network cannot be exported (no weights, or the exported file does not match)."""


@dataclass
class WeightsSource:
    """Which genome and which weights an export uses."""

    trial: TrialRecord
    kind: str  # "final" or "trial"
    checkpoint: Path
    width: int
    budget: dict[str, Any]
    final: FinalRunRecord | None
    seed_test_accs: list[float] | None = None  # every seed's test accuracy under that budget


@dataclass
class ExportResult:
    """What ``export_model`` wrote and how closely the written file matches the model."""

    path: Path
    meta_path: Path
    meta: dict[str, Any]
    max_abs_diff: float | None


def meta_path_for(path: str | Path) -> Path:
    """Where the metadata of an exported file goes: ``FILE.json`` beside it."""
    p = Path(path)
    return p.with_name(p.name + ".json")


def final_run_to_export(finals: list[FinalRunRecord],
                        study_path: str | Path) -> tuple[FinalRunRecord, Path] | None:
    """The final run an export uses among ``finals`` (ok runs of one genome): of the most
    recent final budget, the lowest seed whose weights are on disk. Never the seed with the
    best test accuracy: that would select on the test set; the mean and standard deviation
    over seeds are reported beside it."""
    usable = [(f, resolve_checkpoint(f.checkpoint, study_path)) for f in finals]
    usable = [(f, c) for f, c in usable if c is not None]
    if not usable:
        return None
    latest = budget_key(max(usable, key=lambda fc: fc[0].id)[0].budget)
    same = [(f, c) for f, c in usable if budget_key(f.budget) == latest]
    return min(same, key=lambda fc: (fc[0].seed, fc[0].id))


def choose_weights(storage: StudyStorage, trial: int | None = None) -> WeightsSource:
    """The trial to export (``trial`` or the best by validation accuracy) and its weights:
    the best ok final run of the same genome with a checkpoint, else the trial's own."""
    study = storage.study()
    if trial is not None:
        record = storage.trial(trial)
    else:
        best = storage.best(1)
        if not best:
            raise ExportError(f"{storage.path} has no successful trial to export")
        record = best[0]
    finals = [
        f for f in storage.final_runs()
        if f.genome_key == record.genome_key and f.status == "ok"
    ]
    chosen = final_run_to_export(finals, storage.path)
    if chosen is not None:
        f, ckpt = chosen
        width = int(f.budget.get("width", study["config"]["budget"]["width"]))
        by_seed = {r.seed: r.test_acc for r in sorted(finals, key=lambda r: r.id)
                   if budget_key(r.budget) == budget_key(f.budget) and r.test_acc is not None}
        same = list(by_seed.values())  # one figure a seed (a retrained seed: its latest run)
        return WeightsSource(record, "final", ckpt, width, f.budget, f, same)
    ckpt = resolve_checkpoint(record.checkpoint, storage.path)
    if ckpt is not None:
        width = int(record.budget.get("width", study["config"]["budget"]["width"]))
        return WeightsSource(record, "trial", ckpt, width, record.budget, None)
    raise ExportError(
        f"trial {record.number} has neither final-training weights nor kept search weights "
        f"(only the best run.keep_best trials keep theirs); train it first with "
        f"`nasforge train {storage.path} --trial {record.number}`"
    )


def load_state(path: Path) -> dict[str, Any]:
    """A state_dict from a checkpoint file (a bare state_dict or one under "state_dict")."""
    import torch

    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a corrupt file is a user-facing error
        raise ExportError(f"cannot read weights {path}: {exc}") from None
    if isinstance(data, dict) and "state_dict" in data and isinstance(data["state_dict"], dict):
        data = data["state_dict"]
    if not isinstance(data, dict):
        raise ExportError(f"{path} does not hold a state_dict")
    return data


@dataclass
class LoadedModel:
    """A study's network rebuilt with its weights, and what an export records about it."""

    model: Any
    meta: dict[str, Any]
    example: Any  # a normalised batch of test images


def load_study_model(study_path: str | Path, trial: int | None = None,
                     data_dir: str | None = None) -> LoadedModel:
    """Rebuild the chosen network of a study with its weights (eval mode) and the metadata
    an export writes beside it."""
    import torch

    import nasforge
    from nasforge.api import data_dict
    from nasforge.config import config_from_dict
    from nasforge.data import normalize
    from nasforge.data.fingerprint import label_mapping
    from nasforge.execution.tasks import load_splits
    from nasforge.report.draw import genome_text
    from nasforge.spaces import chosen_network_space

    study_path = Path(study_path)
    with StudyStorage.open(study_path) as storage:
        study = storage.study()
        source = choose_weights(storage, trial)
        stored_labels = storage.meta_value("label_mapping")
    config = config_from_dict(study["config"], str(study_path))
    data = data_dict(config)
    if data_dir is not None:
        data["data_dir"] = data_dir
    try:
        splits = load_splits(data)
    except (DataError, ConfigError) as exc:
        raise ExportError(f"cannot load the study's data set to get its input shape and "
                          f"normalisation ({exc}); point --data-dir at it") from None
    space = chosen_network_space(config.space.name, dict(config.space.settings))
    from nasforge.storage.records import trial_genome

    genome = trial_genome(space, source.trial, study_path)
    input_shape = tuple(int(d) for d in splits.input_shape)
    model = space.build(genome, input_shape, int(splits.num_classes), source.width)
    state = load_state(source.checkpoint)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise ExportError(f"weights {source.checkpoint} do not fit trial {source.trial.number}'s "
                          f"network at width {source.width}: {first[1] if len(first) > 1 else first[0]}"
                          ) from None
    model.eval()
    example = normalize(splits.test_x[:2], splits.mean, splits.std)
    metrics: dict[str, Any] = {
        "val_acc": source.trial.val_acc,
        "params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "flops": source.trial.flops if source.kind == "trial" else None,
    }
    if source.final is not None:
        metrics["test_acc"] = source.final.test_acc
        metrics["final_seed"] = source.final.seed
        metrics["final_rule"] = "the lowest seed of the latest final budget (not chosen by test accuracy)"
        accs = source.seed_test_accs or []
        if accs:
            import statistics

            metrics["test_acc_mean"] = statistics.fmean(accs)
            metrics["test_acc_std"] = statistics.stdev(accs) if len(accs) > 1 else 0.0
            metrics["test_acc_seeds"] = len(accs)
        metrics["final_epochs"] = source.final.budget.get("epochs")
        single = single_view_acc(source.final.metrics)
        if single is not None:  # test_acc above is flip-averaged (budget.tta)
            metrics["test_acc_single_view"] = single
    meta: dict[str, Any] = {
        "format": META_FORMAT,
        "genome": source.trial.genome,
        "genome_key": source.trial.genome_key,
        "description": genome_text(space, genome, source.width),
        "space": {"name": space.name, "settings": space.settings()},
        "width": source.width,
        "input_shape": list(input_shape),
        "num_classes": int(splits.num_classes),
        "normalize": {"mean": [float(m) for m in splits.mean],
                      "std": [float(s) for s in splits.std]},
        "input": {
            "name": "input", "dtype": "float32", "layout": "NCHW",
            "preprocess": "x = uint8_image / 255; x[:, c] = (x[:, c] - mean[c]) / std[c]",
        },
        "output": {"name": "logits", "shape": ["N", int(splits.num_classes)]},
        # output index i is the file's label labels[i] (named class_names[i])
        "labels": stored_labels or label_mapping(splits),
        "dataset": data.get("dataset"),
        "metrics": metrics,
        "source": {
            "study": str(study_path.resolve()),
            "study_name": study["name"],
            "trial": source.trial.number,
            "weights": source.kind,
            "checkpoint": str(source.checkpoint),
            "budget": source.budget,
        },
        "nasforge": str(nasforge.__version__),
        "torch": str(torch.__version__),
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    return LoadedModel(model, meta, example)


def _max_diff(a: Any, b: Any) -> float:
    import numpy as np

    return float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))


def _check_batch(example: Any) -> Any:
    """A batch of another size than the example (to check the batch axis is dynamic)."""
    import torch

    gen = torch.Generator().manual_seed(0)
    extra = torch.randn((1, *example.shape[1:]), generator=gen)
    return torch.cat([example, extra])


def export_torchscript(model: Any, example: Any, out: Path) -> float:
    """Trace ``model`` (scripting it when the trace does not generalise over the batch size),
    save it, reload it and return the largest logit difference to the eager model."""
    import torch

    check = _check_batch(example)
    with torch.no_grad():
        expected = model(check)
        diffs: list[str] = []
        for how in ("trace", "script"):
            try:
                with warnings.catch_warnings():  # TracerWarnings; jit save/load deprecation
                    warnings.simplefilter("ignore")
                    module = (torch.jit.trace(model, example, check_trace=False) if how == "trace"
                              else torch.jit.script(model))
                    torch.jit.save(module, str(out))
                    loaded = torch.jit.load(str(out), map_location="cpu")
                diff = _max_diff(loaded(check), expected)
            except Exception as exc:  # noqa: BLE001 - try the other way, then report both
                diffs.append(f"{how}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
                continue
            if diff < _TOLERANCE:
                return diff
            diffs.append(f"{how}: outputs differ by {diff:.3g}")
    raise ExportError("TorchScript export failed: " + "; ".join(diffs))


def export_onnx(model: Any, example: Any, out: Path, opset: int = DEFAULT_OPSET,
                output_name: str = "logits") -> float | None:
    """Export ``model`` to ONNX (TorchScript-based exporter, dynamic batch axis; the graph's
    input named ``input``, its output ``output_name``), then run it with onnxruntime when
    installed and return the largest logit difference to the eager model (None when
    onnxruntime is missing; the file is then checked with ``onnx`` if present)."""
    import torch

    if opset < 17:
        raise ConfigError(f"ONNX opset must be >= 17, got {opset}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model, (example,), str(out), dynamo=False, opset_version=opset,
                input_names=["input"], output_names=[output_name],
                dynamic_axes={"input": {0: "batch"}, output_name: {0: "batch"}},
            )
    except Exception as exc:  # noqa: BLE001 - an exporter failure is reported in one line
        raise ExportError(f"ONNX export failed: {type(exc).__name__}: {exc}") from None
    check = _check_batch(example)
    try:
        import onnxruntime as ort
    except ImportError:
        try:
            import onnx

            onnx.checker.check_model(str(out))
        except ImportError:
            pass
        return None
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = session.run([output_name], {"input": check.numpy()})[0]
    with torch.no_grad():
        diff = _max_diff(got, model(check))
    if diff >= _TOLERANCE:
        raise ExportError(f"ONNX export does not match the model (max logit difference {diff:.3g})")
    return diff


def export_model(
    study_path: str | Path,
    out: str | Path,
    fmt: str,
    trial: int | None = None,
    data_dir: str | None = None,
    opset: int = DEFAULT_OPSET,
) -> ExportResult:
    """Export trial ``trial`` (default: the best) of a study as ``fmt`` (torchscript, onnx,
    state_dict) to ``out``, with ``out + ".json"`` holding the metadata. Weights of a final
    run evaluated with ``tta: flip`` export as the network wrapped in
    ``nasforge.evaluation.tta.FlipAverage`` (torchscript, onnx; the state_dict stays the plain
    network and its metadata says so)."""
    import torch

    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; use one of {', '.join(EXPORT_FORMATS)}")
    loaded = load_study_model(study_path, trial, data_dir)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = json.loads(json.dumps(dict(loaded.meta, export_format=fmt, file=out.name)))
    model = loaded.model
    if (meta["source"].get("budget") or {}).get("tta") == "flip":
        # the reported test accuracy averaged over each image and its mirror: so does the file
        meta["test_time_augmentation"] = "flip"
        if fmt != "state_dict":
            from nasforge.evaluation.tta import FlipAverage

            model = FlipAverage(model).eval()
            meta["output"] = dict(meta["output"], name="log_probs", averaged=(
                "log of the class probabilities averaged over the image and its left-right "
                "mirror (nasforge.evaluation.tta)"))
        else:
            meta["output"] = dict(meta["output"], averaged=(
                "the reported accuracy averages softmax(net(x)) and softmax(net(flip(x))); "
                "this state_dict is the plain network"))
    diff: float | None
    if fmt == "torchscript":
        diff = export_torchscript(model, loaded.example, out)
    elif fmt == "onnx":
        diff = export_onnx(model, loaded.example, out, opset, meta["output"]["name"])
        meta["onnx_opset"] = opset
    else:
        torch.save({"format": STATE_DICT_FORMAT, "meta": meta,
                    "state_dict": loaded.model.state_dict()}, str(out))
        diff = None
    meta_path = meta_path_for(out)
    meta_path.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return ExportResult(out, meta_path, meta, diff)


def load_state_dict_export(path: str | Path) -> tuple[Any, dict[str, Any]]:
    """Rebuild a network written by ``export_model(..., fmt="state_dict")`` with nasforge:
    (the module in eval mode, its metadata)."""
    import torch

    from nasforge.spaces import chosen_network_space

    try:
        data = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise ExportError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != STATE_DICT_FORMAT:
        raise ExportError(f"{path} is not a nasforge state_dict export")
    meta = data["meta"]
    space = chosen_network_space(meta["space"]["name"], dict(meta["space"]["settings"]))
    genome = space.genome_from_dict(meta["genome"])
    model = space.build(genome, tuple(meta["input_shape"]), int(meta["num_classes"]),
                        int(meta["width"]))
    model.load_state_dict(data["state_dict"], strict=True)
    model.eval()
    return model, meta
