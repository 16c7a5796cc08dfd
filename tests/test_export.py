"""Export a real (tiny) network of a study and run it in a fresh process without nasforge."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from conftest import tiny_config_dict
from nasforge.api import data_dict
from nasforge.config import config_from_dict
from nasforge.data import normalize
from nasforge.evaluation.budget import Budget
from nasforge.evaluation.trainer import set_determinism, train
from nasforge.execution.runner import genome_key
from nasforge.execution.tasks import load_splits
from nasforge.report.export import ExportError, export_model, load_state_dict_export
from nasforge.spaces import get_space
from nasforge.storage import StudyStorage

pytest.importorskip("onnxruntime")

DATA = {"dataset": "synthetic", "val_fraction": 0.2, "split_seed": 0, "data_dir": None,
        "normalize": None}
WIDTH = 4

FRESH_PROCESS = textwrap.dedent(
    """
    import importlib.abc, json, sys

    class NoNasforge(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "nasforge" or name.startswith("nasforge."):
                raise ImportError("this process must not import nasforge")
            return None

    sys.meta_path.insert(0, NoNasforge())
    import numpy as np
    import onnxruntime as ort
    import torch

    images, ts_path, onnx_path, out_dir = sys.argv[1:5]
    meta = json.load(open(ts_path + ".json"))
    mean = np.array(meta["normalize"]["mean"], dtype=np.float32).reshape(1, -1, 1, 1)
    std = np.array(meta["normalize"]["std"], dtype=np.float32).reshape(1, -1, 1, 1)
    x = (np.load(images).astype(np.float32) / np.float32(255.0) - mean) / std
    assert list(x.shape[1:]) == meta["input_shape"]
    module = torch.jit.load(ts_path)
    with torch.no_grad():
        np.save(out_dir + "/ts.npy", module(torch.from_numpy(x)).numpy())
    session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    np.save(out_dir + "/onnx.npy", session.run(["logits"], {"input": x})[0])
    assert not any(m == "nasforge" or m.startswith("nasforge.") for m in sys.modules)
    print("fresh process ok")
    """
)


def _buildable_genome(space: Any, shape: tuple[int, int, int], classes: int) -> Any:
    for seed in range(100):
        genome = space.sample(random.Random(seed))
        if not space.validate_for(genome, shape, classes, WIDTH):
            return genome
    raise AssertionError("no buildable genome in 100 samples")


@pytest.fixture(scope="module")
def trained_study(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A study with one ok trial whose kept weights come from a few real training steps."""
    root = tmp_path_factory.mktemp("export")
    config = config_from_dict(tiny_config_dict(data=DATA), "export-test")
    assert data_dict(config) == DATA
    splits = load_splits(DATA)
    space = get_space(config.space.name, **config.space.settings)
    genome = _buildable_genome(space, splits.input_shape, splits.num_classes)
    set_determinism(0)
    model = space.build(genome, splits.input_shape, splits.num_classes, WIDTH)
    result = train(model, splits, Budget(epochs=1, width=WIDTH, batch_size=32, max_steps=8))
    assert result.status == "ok"
    study = root / "study.db"
    ckpt = root / "study_files" / "weights" / "trial_1.pt"
    ckpt.parent.mkdir(parents=True)
    torch.save(model.state_dict(), ckpt)
    storage = StudyStorage.create(study, name="export-test", config=config.to_dict(),
                                  identity={}, identity_hash="x", provenance={})
    gdict = space.genome_to_dict(space.canonical(genome))
    number = storage.add_trial(genome_key=genome_key(space, genome), genome=gdict,
                               budget=config.budget.to_dict(), strategy_state=None)
    now = time.time()
    storage.finish_trial(number, status="ok", val_acc=result.val_acc, params=result.params,
                         flops=result.flops, metrics={}, curve=[], error=None, stderr=None,
                         worker="h:1", attempts=1, started_at=now - 1, finished_at=now,
                         checkpoint=str(ckpt), strategy_state=None)
    storage.close()
    model.eval()
    return {"study": study, "model": model, "space": space, "genome": genome, "splits": splits,
            "root": root, "config": config}


def _add_final_run(trained_study: dict[str, Any], seed: int, name: str, budget: Budget,
                   test_acc: float, metrics: dict[str, Any]) -> torch.nn.Module:
    """Store in the module's study a final run of its genome at ``budget`` (fresh weights
    from ``seed``, saved as ``name``); the model, in eval mode."""
    space, genome, splits = (trained_study[k] for k in ("space", "genome", "splits"))
    set_determinism(seed)
    final_model = space.build(genome, splits.input_shape, splits.num_classes,
                              budget.width).eval()
    ckpt = trained_study["root"] / "study_files" / "final" / name
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    torch.save(final_model.state_dict(), ckpt)
    with StudyStorage.open(trained_study["study"]) as storage:
        trial = storage.trial(1)
        storage.add_final_run(trial_number=1, genome_key=trial.genome_key, genome=trial.genome,
                              budget=budget.to_dict(), seed=0, status="ok", val_acc=None,
                              test_acc=test_acc, params=None, metrics=metrics,
                              checkpoint=str(ckpt))
    return final_model


def test_torchscript_and_onnx_match_in_a_fresh_process(trained_study: dict[str, Any],
                                                        tmp_path: Path) -> None:
    study, model, splits = trained_study["study"], trained_study["model"], trained_study["splits"]
    ts = export_model(study, tmp_path / "net.pt", "torchscript", trial=1)
    onnx_file = export_model(study, tmp_path / "net.onnx", "onnx")  # --best is trial 1
    assert ts.max_abs_diff is not None and ts.max_abs_diff < 1e-4
    assert onnx_file.max_abs_diff is not None and onnx_file.max_abs_diff < 1e-4
    meta = json.loads((tmp_path / "net.pt.json").read_text())
    assert meta["input_shape"] == [1, 12, 12] and meta["num_classes"] == 4
    assert meta["width"] == WIDTH and meta["space"]["name"] == "global"
    assert meta["normalize"]["mean"] == pytest.approx(list(splits.mean))
    assert meta["normalize"]["std"] == pytest.approx(list(splits.std))
    assert meta["source"]["weights"] == "trial" and meta["metrics"]["val_acc"] is not None
    assert trained_study["space"].genome_from_dict(meta["genome"]) is not None

    images = splits.test_x[:100]
    np.save(tmp_path / "images.npy", images.numpy())
    script = tmp_path / "fresh.py"
    script.write_text(FRESH_PROCESS)
    proc = subprocess.run(
        [sys.executable, "-I", str(script), str(tmp_path / "images.npy"), str(tmp_path / "net.pt"),
         str(tmp_path / "net.onnx"), str(tmp_path)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    with torch.no_grad():
        expected = model(normalize(images, splits.mean, splits.std)).numpy()
    labels = splits.test_y[:100].numpy()
    for name in ("ts", "onnx"):
        got = np.load(tmp_path / f"{name}.npy")
        diff = float(np.max(np.abs(got - expected)))
        print(f"{name}: max abs logit difference {diff:.3g}")
        assert got.shape == (100, 4)
        assert diff < 1e-4
        assert (got.argmax(1) == labels).mean() == (expected.argmax(1) == labels).mean()
        assert (got.argmax(1) == expected.argmax(1)).all()


def test_state_dict_prefers_final_weights_and_round_trips(trained_study: dict[str, Any],
                                                          tmp_path: Path) -> None:
    study, splits = trained_study["study"], trained_study["splits"]
    # a final training of the same genome at another width, with its checkpoint
    final_model = _add_final_run(trained_study, 1, "g_w6_s0.pt", Budget(epochs=2, width=6),
                                 0.71, {})
    try:
        res = export_model(study, tmp_path / "net.sd", "state_dict", trial=1)
        assert res.meta["source"]["weights"] == "final"
        assert res.meta["width"] == 6 and res.meta["metrics"]["test_acc"] == 0.71
        rebuilt, meta = load_state_dict_export(tmp_path / "net.sd")
        assert meta == json.loads((tmp_path / "net.sd.json").read_text())
        x = normalize(splits.test_x[:16], splits.mean, splits.std)
        with torch.no_grad():
            assert torch.equal(rebuilt(x), final_model(x))
    finally:
        import sqlite3

        with sqlite3.connect(study) as conn:  # leave the module's study as it was
            conn.execute("DELETE FROM final_runs")


def test_final_weights_over_the_search_max_params_still_export(
        trained_study: dict[str, Any], tmp_path: Path) -> None:
    """max_params limits the search's candidates; a final training at a larger width may
    exceed it, and its weights must still export and load again."""
    space, genome, splits = (trained_study[k] for k in ("space", "genome", "splits"))
    params_at_search_width = sum(p.numel() for p in trained_study["model"].parameters())
    raw = tiny_config_dict(data=DATA)
    raw["space"]["settings"]["max_params"] = params_at_search_width
    config = config_from_dict(raw, "limit-test")
    limited = get_space(config.space.name, **config.space.settings)
    assert not limited.validate_for(genome, splits.input_shape, splits.num_classes, WIDTH)
    assert limited.validate_for(genome, splits.input_shape, splits.num_classes, 8)  # over it

    set_determinism(2)
    final_model = space.build(genome, splits.input_shape, splits.num_classes, 8).eval()
    ckpt = tmp_path / "limit_files" / "final" / "g_w8_s0.pt"
    ckpt.parent.mkdir(parents=True)
    torch.save(final_model.state_dict(), ckpt)
    study = tmp_path / "limit.db"
    with StudyStorage.create(study, name="limit-test", config=config.to_dict(), identity={},
                             identity_hash="x", provenance={}) as storage:
        number = storage.add_trial(genome_key=genome_key(space, genome),
                                   genome=space.genome_to_dict(space.canonical(genome)),
                                   budget=config.budget.to_dict(), strategy_state=None)
        now = time.time()
        storage.finish_trial(number, status="ok", val_acc=0.5, params=params_at_search_width,
                             flops=None, metrics={}, curve=[], error=None, stderr=None,
                             worker="h:1", attempts=1, started_at=now - 1, finished_at=now,
                             checkpoint=None, strategy_state=None)
        trial = storage.trial(number)
        storage.add_final_run(trial_number=number, genome_key=trial.genome_key,
                              genome=trial.genome, budget=Budget(epochs=1, width=8).to_dict(),
                              seed=0, status="ok", val_acc=None, test_acc=0.7, params=None,
                              metrics={}, checkpoint=str(ckpt))
    res = export_model(study, tmp_path / "net.sd", "state_dict", trial=number)
    assert res.meta["width"] == 8 and res.meta["source"]["weights"] == "final"
    rebuilt, _ = load_state_dict_export(tmp_path / "net.sd")
    x = normalize(splits.test_x[:8], splits.mean, splits.std)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), final_model(x))


def test_export_errors(trained_study: dict[str, Any], tmp_path: Path) -> None:
    from nasforge.errors import ConfigError, StorageError

    with pytest.raises(ConfigError):
        export_model(trained_study["study"], tmp_path / "x", "keras")
    with pytest.raises(StorageError):
        export_model(trained_study["study"], tmp_path / "x.pt", "torchscript", trial=99)
    with pytest.raises(ConfigError):
        export_model(trained_study["study"], tmp_path / "x.onnx", "onnx", opset=13)
    assert issubclass(ExportError, Exception)


def test_weights_evaluated_with_flip_tta_export_with_the_averaging(
        trained_study: dict[str, Any], tmp_path: Path) -> None:
    """A final run measured with ``tta: flip`` reported flip-averaged accuracy: its TorchScript
    export computes the same averaged prediction, its state_dict stays the plain network."""
    from nasforge.evaluation.tta import flip_average

    study, splits = trained_study["study"], trained_study["splits"]
    final_model = _add_final_run(trained_study, 3, "g_tta_w6_s0.pt",
                                 Budget(epochs=2, width=6, tta="flip"), 0.72,
                                 {"test_acc_single_view": 0.70})
    try:
        res = export_model(study, tmp_path / "net.pt", "torchscript", trial=1)
        assert res.meta["test_time_augmentation"] == "flip"
        assert res.meta["output"]["name"] == "log_probs"
        x = normalize(splits.test_x[:8], splits.mean, splits.std)
        with torch.no_grad():
            got = torch.jit.load(str(tmp_path / "net.pt"))(x)
            assert torch.allclose(got, flip_average(final_model, x), atol=1e-5)
            assert not torch.allclose(got, final_model(x), atol=1e-3)
        onnx = export_model(study, tmp_path / "net.onnx", "onnx", trial=1)
        import onnxruntime as ort

        session = ort.InferenceSession(str(tmp_path / "net.onnx"),
                                       providers=["CPUExecutionProvider"])
        out = session.run([onnx.meta["output"]["name"]], {"input": x.numpy()})[0]
        assert np.allclose(out, got.numpy(), atol=1e-4)
        assert onnx.meta["metrics"]["test_acc_single_view"] == 0.70
        plain = export_model(study, tmp_path / "net.sd", "state_dict", trial=1)
        rebuilt, _ = load_state_dict_export(tmp_path / "net.sd")
        assert "plain network" in plain.meta["output"]["averaged"]
        with torch.no_grad():
            assert torch.equal(rebuilt(x), final_model(x))
    finally:
        import sqlite3

        with sqlite3.connect(study) as conn:  # leave the module's study as it was
            conn.execute("DELETE FROM final_runs")
