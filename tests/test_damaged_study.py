"""A study file SQLite finds malformed, and a ``--storage`` file that is no study: every command
that opens it says so in one line naming the file, exits 2, and leaves the file as it was
(before: ``internal error: DatabaseError``, a resume wrote to the damaged file first, and a
foreign file was answered with "add --resume")."""

from __future__ import annotations

import importlib.util
import shutil
import sqlite3
from pathlib import Path

import pytest

from nasforge.cli import main
from nasforge.errors import StorageError
from nasforge.storage import StudyStorage

HAVE_TABLE = importlib.util.find_spec("analognasbench") is not None
needs_table = pytest.mark.skipif(not HAVE_TABLE, reason="optional NAS-Bench-201 table")
TABULAR = ["--space", "nb201", "--evaluator", "tabular:nb201"]


def _damage(path: Path, table: str) -> None:
    """Overwrite the first 64 bytes of ``table``'s root page (not the file header) with 0xFF."""
    conn = sqlite3.connect(path)
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    (root,) = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?",
                           (table,)).fetchone()
    conn.close()
    assert root > 1  # page 1 holds the file header
    with open(path, "r+b") as f:
        f.seek((root - 1) * page_size)
        f.write(b"\xff" * 64)


def _error_line(capsys, path: Path) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"nasforge: error: {path} "), err
    assert "internal error" not in err[0] and "--resume" not in err[0]
    return err[0]


def _untouched(path: Path, before: bytes) -> None:
    assert path.read_bytes() == before
    assert not Path(f"{path}-wal").exists() and not Path(f"{path}-shm").exists()


@pytest.fixture(scope="module")
def tabular_study(tmp_path_factory) -> Path:
    """A real study: a tabular NAS-Bench-201 search of 30 trials (nothing is trained)."""
    db = tmp_path_factory.mktemp("tab") / "t.db"
    assert main(["search", "quick", *TABULAR, "--storage", str(db), "--max-evals", "30",
                 "--quiet"]) == 0
    return db


@needs_table
def test_commands_on_a_damaged_study_say_so_in_one_line(tabular_study, tmp_path, capsys,
                                                         monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # `report` writes beside the study, nowhere else
    capsys.readouterr()
    db = tmp_path / "x.db"
    shutil.copy(tabular_study, db)
    _damage(db, "trials")
    before = db.read_bytes()
    for args in (["search", "quick", *TABULAR, "--storage", str(db), "--resume"],
                 ["search", "quick", *TABULAR, "--storage", str(db)],
                 ["trials", str(db)], ["best", str(db)], ["report", str(db)]):
        assert main(args) == 2, args
        line = _error_line(capsys, db)
        assert "is damaged (sqlite: database disk image is malformed" in line, line
        assert f"nothing was changed; `sqlite3 {db} .recover` may save its trials" in line
        _untouched(db, before)
    assert not (tmp_path / "x.html").exists()


def test_a_study_damaged_in_its_meta_page_is_damaged_not_foreign(tmp_path) -> None:
    """SQLite raises (not quick_check) when the ``meta`` page itself is malformed: that is a
    damaged study too, and opening it to write changes nothing."""
    db = tmp_path / "s.db"
    with StudyStorage.create(db, name="t", config={}, identity={}, identity_hash="x",
                             provenance={}) as store:
        store.add_trial(genome_key="g", genome={}, budget={}, strategy_state=None)
    _damage(db, "meta")
    before = db.read_bytes()
    with pytest.raises(StorageError, match=r"s\.db is damaged \(sqlite: database disk image "
                                           r"is malformed\); nothing was changed"):
        StudyStorage.open(db, write=True)
    _untouched(db, before)


@pytest.mark.parametrize("kind", ["text", "sqlite"])
def test_a_new_search_on_a_file_that_is_no_study_says_so(kind, tmp_path, capsys) -> None:
    """Without --resume, an existing file that is not a nasforge study is named as such (not
    "add --resume"), and left as it was."""
    path = tmp_path / "notastudy.db"
    if kind == "text":
        path.write_text("my notes\n")
    else:
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE notes (line TEXT)")
        conn.execute("INSERT INTO notes VALUES ('keep me')")
        conn.commit()
        conn.close()
    before = path.read_bytes()
    assert main(["search", "quick", "--storage", str(path)]) == 2
    line = _error_line(capsys, path)
    assert line.endswith("is not a nasforge study database; it was left untouched"), line
    _untouched(path, before)
