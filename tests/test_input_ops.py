"""The global space's ``input_ops`` (a search limit, session 12): bad values are one config
error, and a network already chosen is not refused for what it applies to the input image."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import tiny_config_dict
from nasforge.cli import main
from nasforge.config import config_from_dict
from nasforge.errors import ConfigError
from nasforge.spaces import get_space
from nasforge.storage import StudyStorage

OPS = ["conv3N", "maxpool2"]
POOL_FIRST = {"schema": "nasforge.global/1",  # in -> maxpool2 -> conv3N -> out
              "nodes": [{"id": "n1", "op": "maxpool2"}, {"id": "n2", "op": "conv3N"}],
              "edges": [{"src": "in", "dst": "n1", "enabled": True},
                        {"src": "n1", "dst": "n2", "enabled": True},
                        {"src": "n2", "dst": "out", "enabled": True}]}


@pytest.mark.parametrize("bad", [5, {"conv3N": 1}, ["conv3N", "conv3N"], "conv3N", [],
                                 ["conv5N"], [["conv3N"]]])
def test_bad_input_ops_are_one_config_error(bad) -> None:
    """Before: ``5`` was an internal TypeError, a mapping or a repeated name was accepted."""
    with pytest.raises(ConfigError, match="input_ops must be a non-empty list"):
        get_space("global", operations=OPS, input_ops=bad)


@pytest.mark.timeout(120)
def test_train_of_a_genome_file_into_a_study_with_input_ops_trains_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``input_ops`` binds the search's candidates, not a chosen network (as max_params):
    before, ``train GENOME.json --storage STUDY`` refused a network that pools the image first
    (``'maxpool2' reads the input image``) although its final training builds it."""
    raw = tiny_config_dict(space={"name": "global", "settings": {
        "operations": OPS, "input_ops": ["conv3N"], "head": "gap"}})
    config = config_from_dict(raw, "tiny")
    db = tmp_path / "s.db"
    StudyStorage.create(db, name="tiny", config=config.to_dict(), identity=config.identity(),
                        identity_hash=config.identity_hash(), provenance={}).close()
    genome = POOL_FIRST
    space = get_space("global", **raw["space"]["settings"])
    assert any("reads the input image" in r
               for r in space.validate(space.genome_from_dict(genome)))  # not a candidate
    path = tmp_path / "g.json"
    path.write_text(json.dumps(genome))
    assert main(["train", str(path), "--storage", str(db), "--epochs", "1"]) == 0
    assert "in -> maxpool2 -> conv3(4) -> out: test acc" in capsys.readouterr().out


def test_a_cluster_launch_of_a_preset_with_input_ops_reads_a_pool_first_genome(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``python -m nasforge.execution.data_parallel train GENOME --preset P``: the genome is
    read by the chosen network's space (before: refused, as ``train`` was)."""
    from nasforge.execution import data_parallel

    class Joined(Exception):
        pass

    def join() -> None:  # the genome was read and its task built: stop before any group
        raise Joined

    monkeypatch.setattr(data_parallel, "_join_group", join)
    preset = tmp_path / "p.yaml"
    preset.write_text(
        "name: p\nkind: final-training\ndata: {dataset: synthetic, val_fraction: 0.2}\n"
        f"space: {{name: global, settings: {{operations: {OPS}, input_ops: [conv3N]}}}}\n"
        "final: {top: 1, seeds: 1, budget: {epochs: 1, width: 4, batch_size: 32}}\n")
    path = tmp_path / "g.json"
    path.write_text(json.dumps(POOL_FIRST))
    with pytest.raises(Joined):
        data_parallel._train_main([str(path), "--preset", str(preset), "--out",
                                   str(tmp_path / "out")])
