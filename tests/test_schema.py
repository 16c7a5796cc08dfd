"""Schema v2: a version-1 study is read without being written, migrated (after a backup) on the
first write or by `nasforge study upgrade`, keeps every trial's identity, and a newer schema is
refused."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from nasforge.cli import main
from nasforge.errors import StorageError
from nasforge.storage import StudyStorage

V1_STUDY = Path(__file__).resolve().parent.parent / "experiments/reduced_training/full.db"


def _fingerprint(capsys, path: Path) -> str:
    assert main(["trials", str(path), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    keys = sorted((r["number"], r["genome_key"], r["status"], r["val_acc"], r["params"],
                   r["flops"], json.dumps(r["curve"], sort_keys=True)) for r in rows)
    return hashlib.sha256(json.dumps(keys).encode()).hexdigest()


@pytest.fixture
def v1_copy(tmp_path) -> Path:
    copy = tmp_path / "full.db"
    shutil.copy(V1_STUDY, copy)
    with sqlite3.connect(copy) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == "1"
    return copy


def test_reading_a_v1_study_writes_nothing_and_upgrade_keeps_every_trial(v1_copy, capsys) -> None:
    before_bytes = v1_copy.read_bytes()
    before = _fingerprint(capsys, v1_copy)
    assert main(["best", str(v1_copy), "--k", "3"]) == 0
    capsys.readouterr()
    assert v1_copy.read_bytes() == before_bytes  # reading commands never write
    with StudyStorage.open(v1_copy) as store:
        assert store.schema == 1 and len(store.trials()) == 300
        with pytest.raises(StorageError, match="opened for reading"):
            store.add_trial(genome_key="g", genome={}, budget={}, strategy_state=None)
    assert main(["study", "upgrade", str(v1_copy)]) == 0
    assert "schema 1 -> 2" in capsys.readouterr().out
    backup = Path(f"{v1_copy}.v1.bak")
    assert backup.is_file()
    with StudyStorage.open(backup) as old:
        assert old.schema == 1 and len(old.trials()) == 300
    with StudyStorage.open(v1_copy) as store:
        assert store.schema == 2
        assert all(t.kind == "train" and t.parent is None for t in store.trials())
        number = store.add_trial(genome_key="g", genome={}, budget={}, strategy_state=None,
                                 kind="continue", parent=1)
        assert store.trial(number).parent == 1
        store.finish_trial(number, status="pruned", val_acc=None, params=None, flops=None,
                           metrics={}, curve=[{"epoch": 1}], error=None, stderr=None,
                           worker="w", attempts=1, started_at=1.0, finished_at=2.0,
                           checkpoint=None, strategy_state=None)
        assert store.trial(number).status == "pruned"
        with store._conn:
            store._conn.execute("DELETE FROM trials WHERE number = ?", (number,))
    assert _fingerprint(capsys, v1_copy) == before
    assert main(["study", "upgrade", str(v1_copy)]) == 0
    assert "nothing to do" in capsys.readouterr().out


def test_a_newer_schema_is_refused_untouched(v1_copy) -> None:
    with sqlite3.connect(v1_copy) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    data = v1_copy.read_bytes()
    with pytest.raises(StorageError, match="newer nasforge"):
        StudyStorage.open(v1_copy)
    assert v1_copy.read_bytes() == data
