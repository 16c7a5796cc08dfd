"""Adversarial checks (session 12, outside ``quick``): bad genome files, studies and configs
given to the commands that are not the evolution path must be one clear error line naming the
file, create nothing and leave stored results as they were."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nasforge.cli import main
from nasforge.spaces import get_space


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nasforge: error: "), err
    return err[0]


def _global_genome_with_cycle() -> dict:
    """A sampled global genome plus the reverse of one of its enabled node-to-node edges."""
    import random

    space = get_space("global")
    for seed in range(100):
        genome = space.genome_to_dict(space.sample(random.Random(seed)))
        inner = [e for e in genome["edges"] if e["enabled"]
                 and e["src"] not in ("in", "out") and e["dst"] not in ("in", "out")]
        if inner:
            genome["edges"].append({"src": inner[0]["dst"], "dst": inner[0]["src"],
                                    "enabled": True})
            return genome
    raise AssertionError("no sampled genome with an edge between two nodes")


@pytest.mark.parametrize("name,space,genome,reason", [
    ("cycle.json", "global", _global_genome_with_cycle(), "cycle among enabled edges"),
    ("darts.json", "darts", {"schema": "nasforge.darts/1",
                             "normal": [["skip_connect", 0], ["skip_connect", 5]] * 4,
                             "reduce": [["skip_connect", 0], ["skip_connect", 1]] * 4},
     "input 5 is not an earlier node"),
])
def test_train_refuses_an_invalid_genome_file_before_creating_a_study(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, space: str,
        genome: dict, reason: str) -> None:
    """Before: the study was created, the data loaded and a FAILED final run stored (or, for
    a cycle, an error line without the file's name after the study was created)."""
    path = tmp_path / name
    path.write_text(json.dumps(genome))
    db = tmp_path / "t.db"
    assert main(["train", str(path), "--space", space, "--epochs", "1",
                 "--storage", str(db)]) == 2
    line = _error_line(capsys)
    assert str(path) in line and f"invalid {space} genome" in line and reason in line
    assert not db.exists()


def test_draw_of_a_genome_file_with_a_cycle_names_the_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Before: ``nasforge: error: cycle among enabled edges: ...`` without the file's name."""
    path = tmp_path / "cycle.json"
    path.write_text(json.dumps(_global_genome_with_cycle()))
    out = tmp_path / "x.dot"
    assert main(["draw", str(path), "-o", str(out)]) == 2
    line = _error_line(capsys)
    assert f"{path}: cycle among enabled edges" in line and not out.exists()
