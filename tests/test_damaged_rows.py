"""A study whose rows were damaged by hand (text where JSON or a number belongs): the commands
that read it stop with one line naming the file, the row and the column, and write nothing."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from nasforge.cli import main
from nasforge.errors import StorageError
from nasforge.storage import StudyStorage
from tests.test_export import trained_study  # noqa: F401

DAMAGE = [
    ("metrics_json", "'not json'", "column metrics_json is damaged (not JSON"),
    ("metrics_json", "'[1, 2]'", "column metrics_json is damaged (holds list, expected dict)"),
    ("curve_json", "'{}'", "column curve_json is damaged (holds dict, expected list)"),
    ("val_acc", "'abc'", "column val_acc is damaged (holds 'abc', expected a number)"),
    ("genome_json", "'{'", "column genome_json is damaged (not JSON"),
    ("budget_json", "'{'", "column budget_json is damaged (not JSON"),
]


@pytest.mark.parametrize(("column", "value", "message"), DAMAGE)
def test_a_damaged_trial_row_is_named_in_one_line(
        trained_study: dict[str, Any], tmp_path: Path, capsys, column: str, value: str,
        message: str) -> None:  # noqa: F811
    study = tmp_path / "copy.db"
    study.write_bytes(Path(trained_study["study"]).read_bytes())
    with sqlite3.connect(study) as conn:
        conn.execute(f"UPDATE trials SET {column} = {value} WHERE number = 1")
    before = study.read_bytes()
    with pytest.raises(StorageError, match=re.escape(f"copy.db: trial 1: {message}")):
        with StudyStorage.open(study) as storage:
            storage.trials()
    for command in (["best", str(study)], ["trials", str(study)],
                    ["report", str(study), "-o", str(tmp_path / "r.html")]):
        assert main(command) != 0
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "internal error" not in err[0] and message in err[0], err
    assert study.read_bytes() == before  # reading wrote nothing


def test_a_damaged_final_run_row_is_named_in_one_line(
        trained_study: dict[str, Any], tmp_path: Path) -> None:  # noqa: F811
    from nasforge.evaluation.budget import Budget
    from tests.test_export import _add_final_run

    copy = dict(trained_study, study=tmp_path / "f.db")
    copy["study"].write_bytes(Path(trained_study["study"]).read_bytes())
    _add_final_run(copy, 5, "g_w6_s0.pt", Budget(epochs=2, width=6), 0.72, {})
    with sqlite3.connect(copy["study"]) as conn:
        conn.execute("UPDATE final_runs SET test_acc = 'abc'")
    with pytest.raises(StorageError, match=r"f\.db: final run \d+ \(trial \d+, seed 0\): column "
                                           r"test_acc is damaged"):
        with StudyStorage.open(copy["study"]) as storage:
            storage.final_runs()
