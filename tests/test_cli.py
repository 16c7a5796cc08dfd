from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nasforge.cli import main

FMNIST = Path("/usr/share/datasets/fashion-mnist")


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("nasforge: error: ")
    return err[0]


def test_help_and_module_entry_point() -> None:
    out = subprocess.run([sys.executable, "-m", "nasforge", "--help"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0
    for command in ("search", "train-net", "data", "space", "presets", "report", "export"):
        assert command in out.stdout


@pytest.mark.skipif(not FMNIST.is_dir(), reason="Debian dataset-fashion-mnist not installed")
def test_data_check_real_files(capsys) -> None:
    assert main(["data", "check"]) == 0
    out = capsys.readouterr().out
    assert "60000" in out and "10000" in out and "6000" in out and "OK" in out


def test_missing_data_folder(capsys, tmp_path) -> None:
    code = main(["train-net", "--data-dir", str(tmp_path / "nowhere"), "--epochs", "1"])
    assert code == 2
    assert "does not exist" in _one_error_line(capsys)


@pytest.mark.skipif(not FMNIST.is_dir(), reason="Debian dataset-fashion-mnist not installed")
def test_corrupt_gz(capsys, tmp_path, monkeypatch) -> None:
    folder = tmp_path / "fm"
    shutil.copytree(FMNIST, folder)
    target = folder / "train-labels-idx1-ubyte.gz"
    data = bytearray(gzip.decompress(target.read_bytes()))
    data[100] ^= 0xFF
    target.write_bytes(gzip.compress(bytes(data)))
    monkeypatch.setenv("NASFORGE_CACHE_DIR", str(tmp_path / "cache"))
    code = main(["data", "check", "--data-dir", str(folder)])
    assert code == 1
    code = main(["train-net", "--data-dir", str(folder), "--epochs", "1"])
    assert code == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "corrupt" in line and "train-labels" in line


def test_npz_without_arrays(capsys, tmp_path) -> None:
    path = tmp_path / "mine.npz"
    np.savez(path, x_train=np.zeros((4, 8, 8), np.uint8), y_train=np.zeros(4, np.int64))
    assert main(["train-net", "--dataset", str(path), "--epochs", "1"]) == 2
    assert "x_test" in _one_error_line(capsys)


def test_unknown_optimizer_and_negative_epochs(capsys) -> None:
    assert main(["train-net", "--dataset", "synthetic", "--optimizer", "adagradx"]) == 2
    assert "unknown optimizer 'adagradx'" in _one_error_line(capsys)
    assert main(["train-net", "--dataset", "synthetic", "--epochs", "-2"]) == 2
    assert "epochs" in _one_error_line(capsys)


def test_train_net_on_synthetic_json(capsys) -> None:
    code = main(["train-net", "--dataset", "synthetic", "--epochs", "2", "--width", "8",
                 "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["status"] == "ok" and len(result["curve"]) == 2
    assert result["val_acc"] > 0.4  # 4 classes: chance is 0.25


def test_unknown_preset_space_strategy(capsys) -> None:
    assert main(["search", "no-such-preset"]) == 2
    assert "known: " in _one_error_line(capsys)
    assert main(["presets", "show", "nope"]) == 2
    assert "quick" in _one_error_line(capsys)
    assert main(["space", "sample", "--space", "nope"]) == 2
    assert "global" in _one_error_line(capsys).split("known: ")[1]  # every registered space


def test_space_sample_and_show(capsys, tmp_path) -> None:
    assert main(["space", "sample", "--space", "global", "--n", "5", "--seed", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 5 and all(" -> " in line for line in lines)
    assert main(["space", "sample", "--n", "1", "--seed", "1", "--json"]) == 0
    genome_file = tmp_path / "g.json"
    genome_file.write_text(capsys.readouterr().out)
    assert main(["space", "show", str(genome_file), "--width", "8"]) == 0
    out = capsys.readouterr().out
    assert "parameters" in out and "FLOPs" in out
    genome_file.write_text('{"schema": "nasforge.global/1", "nodes": [], "edges": [], "x": 1}')
    assert main(["space", "show", str(genome_file)]) == 2
    assert str(genome_file) in _one_error_line(capsys)


def test_search_refuses_foreign_storage(capsys, tmp_path) -> None:
    foreign = tmp_path / "notes.db"
    foreign.write_text("my notes\n")
    assert main(["search", "quick", "--storage", str(foreign), "--resume"]) == 2
    assert "not a nasforge study" in _one_error_line(capsys)
    assert foreign.read_text() == "my notes\n"


def test_a_bad_init_from_leaves_no_study_and_a_good_one_seeds_the_search(capsys, tmp_path) -> None:
    import yaml

    from conftest import tiny_config_dict
    from nasforge.storage import StudyStorage

    cfg = tmp_path / "t.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config_dict(run={"max_evals": 2, "workers": 1})))
    db = tmp_path / "s.db"
    assert main(["search", str(cfg), "--storage", str(db), "--init-from",
                 str(tmp_path / "nope.db"), "--no-final"]) == 2
    assert "--init-from" in _one_error_line(capsys) and not db.exists()
    # the same command with a genome file: no --resume needed, the first trial is that genome
    genome = {"schema": "nasforge.global/1", "nodes": [{"id": "a", "op": "maxpool2"}],
              "edges": [{"src": "in", "dst": "a", "enabled": True},
                        {"src": "a", "dst": "out", "enabled": True}]}
    (tmp_path / "g.json").write_text(json.dumps(genome))
    assert main(["search", str(cfg), "--storage", str(db), "--init-from",
                 str(tmp_path / "g.json"), "--no-final", "--quiet"]) == 0
    with StudyStorage.open(db) as store:
        first = store.trials()[0]
    assert [n["op"] for n in first.genome["nodes"]] == ["maxpool2"]


def test_a_search_whose_trials_all_break_the_constraints_says_nothing_is_trained(
        capsys, tmp_path) -> None:
    import yaml

    from conftest import tiny_config_dict

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config_dict(
        run={"max_evals": 2, "workers": 1}, constraints=["val_acc > 1"],
        final={"top": 1, "budget": {"epochs": 1, "width": 4, "max_steps": 2}})))
    assert main(["search", str(cfg), "--storage", str(tmp_path / "c.db")]) == 0
    captured = capsys.readouterr()
    assert "final: nothing trained: no successful trial meets the constraints" in captured.out
    assert "no successful trial meets the constraints: nothing to train" in captured.err
    assert "best 0" not in captured.err
