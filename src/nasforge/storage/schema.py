"""The study file's format: its tables, its schema version, and the one migration (v1 -> v2).

A study is one SQLite file (WAL journal, one transaction per event) with the tables ``meta``
(``format``, ``schema_version`` and JSON values by key), ``study`` (one row: name, config,
identity, provenance), ``trials``, ``strategy_state`` (one row) and ``final_runs``.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

from nasforge.errors import StorageError

FORMAT = "nasforge-study"
"""The ``meta`` value under ``format`` that marks a file as a nasforge study."""

SCHEMA_VERSION = 2
"""Schema history: 1 (round 1); 2 adds a trial's ``kind`` (``train``, ``continue``, ...),
its ``parent`` (the trial a continued one went on from) and the ``pruned`` status. A version-1
study is read as it is, without writing; the first write (``--resume``, ``train``) or
``nasforge study upgrade FILE`` migrates it after copying it to ``FILE.v1.bak``. Final runs
(table ``final_runs``) are the same in both versions; they are presented as trials of kind
``final`` (``FinalRunRecord.as_trial``) without a schema change."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS study (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    name TEXT NOT NULL,
    config_json TEXT NOT NULL,
    identity_json TEXT NOT NULL,
    identity_hash TEXT NOT NULL,
    provenance_json TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS trials (
    number INTEGER PRIMARY KEY,
    genome_key TEXT NOT NULL,
    budget_key TEXT NOT NULL,
    genome_json TEXT NOT NULL,
    budget_json TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'ok', 'failed', 'pruned')),
    val_acc REAL,
    params INTEGER,
    flops INTEGER,
    metrics_json TEXT,
    curve_json TEXT,
    error TEXT,
    stderr TEXT,
    worker TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    checkpoint TEXT,
    submitted_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    kind TEXT NOT NULL DEFAULT 'train',
    parent INTEGER
);
CREATE INDEX IF NOT EXISTS trials_key ON trials (genome_key, budget_key);
CREATE TABLE IF NOT EXISTS strategy_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    state_json TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS final_runs (
    id INTEGER PRIMARY KEY,
    trial_number INTEGER,
    genome_key TEXT NOT NULL,
    genome_json TEXT NOT NULL,
    budget_json TEXT NOT NULL,
    seed INTEGER NOT NULL,
    status TEXT NOT NULL,
    val_acc REAL,
    test_acc REAL,
    params INTEGER,
    metrics_json TEXT,
    checkpoint TEXT,
    created_at REAL NOT NULL
);
"""
"""Every table of the current schema (``CREATE ... IF NOT EXISTS``, so it can run twice)."""

TRIAL_COLUMNS_V1 = (
    "number, genome_key, budget_key, genome_json, budget_json, status, val_acc, params, flops, "
    "metrics_json, curve_json, error, stderr, worker, attempts, checkpoint, submitted_at, "
    "started_at, finished_at"
)
"""The ``trials`` columns a version-1 study has (v2 adds ``kind`` and ``parent``)."""

FINAL_RUN_COLUMNS = (
    "id, trial_number, genome_key, genome_json, budget_json, seed, status, val_acc, test_acc, "
    "params, metrics_json, checkpoint, created_at"
)
"""The ``final_runs`` columns, in ``FinalRunRecord``'s field order."""


def trial_columns(schema: int) -> str:
    """The ``trials`` columns to select from a study of ``schema``, in ``Trial``'s order; a
    version-1 study reads ``kind`` as ``'train'`` and ``parent`` as NULL."""
    if schema < 2:
        return TRIAL_COLUMNS_V1 + ", 'train', NULL"
    return TRIAL_COLUMNS_V1 + ", kind, parent"


def dumps(value: Any) -> str:
    """Canonical JSON (sorted keys, no spaces): what every ``*_json`` column holds."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


KEY_FREE_BUDGET_FIELDS: tuple[str, ...] = ("validate_every",)
"""Budget fields left out of ``budget_key``: they change when a run is measured, not what it
trains (same weights, same last validation), so they keep its model seed and stored runs."""


def budget_key(budget: dict[str, Any]) -> str:
    """A stable key for a budget mapping: the first 16 hex digits of the SHA-256 of its
    canonical JSON (``dumps``), so equal mappings give equal keys whatever their key order;
    ``KEY_FREE_BUDGET_FIELDS`` are left out."""
    kept = {k: v for k, v in budget.items() if k not in KEY_FREE_BUDGET_FIELDS}
    return hashlib.sha256(dumps(kept).encode()).hexdigest()[:16]


def check_is_study(path: Path) -> None:
    """Refuse, without writing (opened read-only), a file that is not a nasforge study or a
    study whose pages are damaged.

    Raises ``StorageError`` when ``path`` is not an SQLite database or has no ``meta`` row
    ``format = nasforge-study``, and (``damaged``) when SQLite finds it malformed, by reading
    it or by its ``PRAGMA quick_check`` (about 1 ms per MB): a damaged study is refused before
    anything reads its trials or writes to it. A file without a ``-wal`` beside it (no driver
    has it open; none was cut short) is read as immutable, so checking it creates no ``-wal`` and
    ``-shm`` files beside a file that is then refused."""
    real = Path(path).resolve()
    wal = real.with_name(real.name + "-wal").exists()
    try:
        conn = sqlite3.connect(real.as_uri() + ("?mode=ro" if wal else "?mode=ro&immutable=1"),
                               uri=True)
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
            problems = (conn.execute("PRAGMA quick_check(1)").fetchall()
                        if row is not None and row[0] == FORMAT else None)
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        if getattr(exc, "sqlite_errorname", "").startswith("SQLITE_CORRUPT"):
            raise damaged(path, str(exc)) from None
        raise StorageError(f"{path} is not a nasforge study database; it was left untouched") from None
    if problems is None:
        raise StorageError(f"{path} is not a nasforge study database; it was left untouched")
    if problems != [("ok",)]:
        detail = [line for line in str(problems[0][0]).splitlines() if not line.startswith("***")]
        raise damaged(path, "database disk image is malformed; quick_check: "
                      + (detail[0] if detail else str(problems[0][0])))


def damaged(path: Path, why: str) -> StorageError:
    """The one-line error for a study file SQLite finds malformed (``why``: what it said)."""
    return StorageError(f"{path} is damaged (sqlite: {why}); nothing was changed; "
                        f"`sqlite3 {path} .recover` may save its trials")


def connect(path: Path) -> sqlite3.Connection:
    """Open a study file in WAL mode (30 s busy timeout, ``synchronous=NORMAL``).

    Raises ``StorageError`` (one line) when SQLite cannot open it."""
    try:
        conn = sqlite3.connect(str(path), timeout=30.0, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
    except sqlite3.Error as exc:
        raise StorageError(f"cannot open study {path}: {exc}") from None
    conn.isolation_level = "DEFERRED"
    return conn


def create_tables(conn: sqlite3.Connection, name: str, config: dict[str, Any],
                  identity: dict[str, Any], identity_hash: str, provenance: dict[str, Any],
                  created_at: float) -> None:
    """Write a new study's tables, ``meta`` marks and study row in one transaction
    (``created_at``: Unix seconds)."""
    with conn:
        conn.executescript(SCHEMA)
        conn.execute("INSERT INTO meta VALUES ('format', ?)", (FORMAT,))
        conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        conn.execute(
            "INSERT INTO study VALUES (1, ?, ?, ?, ?, ?, ?)",
            (name, dumps(config), dumps(identity), identity_hash, dumps(provenance), created_at),
        )


def migrate(conn: sqlite3.Connection, path: Path, schema: int) -> Path:
    """Migrate the study open on ``conn`` from ``schema`` (1) to ``SCHEMA_VERSION`` in place,
    after copying it to ``<path>.v<schema>.bak`` (SQLite's online backup: a consistent copy).

    The ``trials`` table is rebuilt with the v2 columns (``kind`` = ``train``, ``parent`` =
    NULL) in one transaction; every trial keeps its number, network key and budget key, and the
    study row (its identity) is not touched. Returns the backup's path. Raises ``StorageError``
    when SQLite refuses (the file is then as it was; the backup stays)."""
    backup = Path(f"{path}.v{schema}.bak")
    target = sqlite3.connect(str(backup))
    try:
        conn.backup(target)
    finally:
        target.close()
    try:
        conn.execute("BEGIN IMMEDIATE")  # DDL and copy in one transaction
        conn.execute("ALTER TABLE trials RENAME TO trials_v1")
        conn.execute("DROP INDEX IF EXISTS trials_key")
        for statement in SCHEMA.split(";"):
            if "TABLE IF NOT EXISTS trials (" in statement or "INDEX" in statement:
                conn.execute(statement)
        conn.execute(f"INSERT INTO trials ({TRIAL_COLUMNS_V1}) SELECT {TRIAL_COLUMNS_V1} "
                     "FROM trials_v1")
        conn.execute("DROP TABLE trials_v1")
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'",
                     (str(SCHEMA_VERSION),))
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise StorageError(f"cannot upgrade study {path}: {exc} (a copy of the original is in "
                           f"{backup})") from None
    return backup


class Connected:
    """What the parts of ``StudyStorage`` share: the file's ``path``, its open connection and
    one way to write (one transaction per call)."""

    path: Path
    _conn: sqlite3.Connection

    def _write(self, sql: str, params: tuple[Any, ...]) -> sqlite3.Cursor:
        """Run one statement in its own transaction; raises ``StorageError`` (one line) when
        SQLite cannot write (a locked or read-only file, a full disk)."""
        try:
            with self._conn:
                return self._conn.execute(sql, params)
        except sqlite3.OperationalError as exc:
            raise StorageError(f"cannot write to study {self.path}: {exc}") from None
