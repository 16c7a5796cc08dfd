"""One SQLite file per study, written by the runner alone (WAL, one transaction per event)."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from nasforge.execution.faults import fault_point
from nasforge.errors import StorageError
from nasforge.storage.lock import StudyLock

FORMAT = "nasforge-study"
SCHEMA_VERSION = 2
"""Schema history: 1 (round 1); 2 adds a trial's ``kind`` (``train``, ``continue``, ...),
its ``parent`` (the trial a continued one went on from) and the ``pruned`` status. A version-1
study is read as it is, without writing; the first write (``--resume``, ``train``) or
``nasforge study upgrade FILE`` migrates it after copying it to ``FILE.v1.bak``."""
STATUSES: tuple[str, ...] = ("running", "ok", "failed", "pruned")
"""``running`` (submitted, or cut short and waiting for --resume); ``ok``; ``failed`` (with its
error); ``pruned`` (stopped early by a pruner from its intermediate values, curve kept). All but
``running`` are final."""

_SCHEMA = """
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


@dataclass
class TrialRecord:
    """One stored trial (an evaluation of a genome under a budget)."""

    number: int
    genome_key: str
    budget_key: str
    genome: dict[str, Any]
    budget: dict[str, Any]
    status: str
    val_acc: float | None = None
    params: int | None = None
    flops: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    curve: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    stderr: str | None = None
    worker: str | None = None
    attempts: int = 0
    checkpoint: str | None = None
    submitted_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    kind: str = "train"
    parent: int | None = None

    @property
    def finished(self) -> bool:
        """True when the trial ended (ok, failed or pruned)."""
        return self.status in ("ok", "failed", "pruned")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dict(self.__dict__)


@dataclass
class FinalRunRecord:
    """One final training of a genome on the full training set, with its test accuracy."""

    id: int
    trial_number: int | None
    genome_key: str
    genome: dict[str, Any]
    budget: dict[str, Any]
    seed: int
    status: str
    val_acc: float | None
    test_acc: float | None
    params: int | None
    metrics: dict[str, Any]
    checkpoint: str | None
    created_at: float


TRANSIENT_FAILURES: tuple[str, ...] = (
    "timeout", "out-of-memory", "evaluation process killed", "evaluation process exited",
    "evaluation lost", "final run lost",
)
"""Starts of the error texts (``execution.isolation`` and the runner) of failures caused by the
circumstances of one evaluation rather than by the network."""


def is_transient_failure(error: str | None) -> bool:
    """Whether a failed trial's ``error`` names a failure of the circumstances (timeout,
    out-of-memory, a killed or lost evaluation) that another attempt might not repeat."""
    text = (error or "").strip().lower()
    return any(text.startswith(prefix) for prefix in TRANSIENT_FAILURES)


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def budget_key(budget: dict[str, Any]) -> str:
    """A stable key for a budget mapping."""
    import hashlib

    return hashlib.sha256(_dumps(budget).encode()).hexdigest()[:16]


def _check_is_study(path: Path) -> None:
    """Refuse, without writing, a file that is not a nasforge study."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
        finally:
            conn.close()
    except sqlite3.DatabaseError:
        raise StorageError(f"{path} is not a nasforge study database; it was left untouched") from None
    if row is None or row[0] != FORMAT:
        raise StorageError(f"{path} is not a nasforge study database; it was left untouched")


class StudyStorage:
    """The study database: study row, trials, strategy state and final runs."""

    def __init__(self, path: str | Path, conn: sqlite3.Connection,
                 lock: StudyLock | None = None) -> None:
        self.path = Path(path)
        self._conn = conn
        self._lock = lock
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        self.schema = int(row[0]) if row else SCHEMA_VERSION

    # ----------------------------------------------------------------- opening
    @classmethod
    def open(cls, path: str | Path, *, write: bool = False,
             lock: bool | None = None) -> "StudyStorage":
        """Open an existing study: for reading (a version-1 study is read as it is, nothing
        written), or with ``write`` for resuming or adding to it (a version-1 study is first
        migrated, see ``upgrade``). Raises ``StorageError`` for a missing file, a file that is
        not a study, or a study of a newer schema than this nasforge knows.

        ``lock`` (default: ``write``) makes this the study's one driver (search, resume,
        training into it) until :meth:`close`: another driver holding it raises
        :class:`~nasforge.storage.lock.StudyLockedError` naming its pid and host. Taking the
        lock writes nothing to the study (``open_study`` reads a study to resume under it
        before it decides to write)."""
        path = Path(path)
        if not path.is_file():
            raise StorageError(f"study {path} not found")
        _check_is_study(path)
        held = StudyLock.acquire(path) if (write if lock is None else lock) else None
        try:
            storage = cls(path, cls._connect(path), held)
        except BaseException:
            if held is not None:
                held.release()
            raise
        if storage.schema > SCHEMA_VERSION:
            storage.close()
            raise StorageError(f"{path} was written by a newer nasforge (study schema "
                               f"{storage.schema}; this one knows up to {SCHEMA_VERSION}); it was "
                               "left untouched")
        if write and storage.schema < SCHEMA_VERSION:
            try:
                storage.upgrade()
            except BaseException:
                storage.close()
                raise
        return storage

    def upgrade(self) -> Path | None:
        """Migrate a version-1 study to the current schema in place, after copying it to
        ``<file>.v1.bak`` (SQLite's online backup: a consistent copy). Every trial keeps its
        number, network key and budget key, and the study its identity, so ``--resume`` reuses
        every stored result. Returns the backup's path, or None when nothing was to do."""
        if self.schema >= SCHEMA_VERSION:
            return None
        backup = Path(f"{self.path}.v{self.schema}.bak")
        target = sqlite3.connect(str(backup))
        try:
            self._conn.backup(target)
        finally:
            target.close()
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")  # DDL and copy in one transaction
            conn.execute("ALTER TABLE trials RENAME TO trials_v1")
            conn.execute("DROP INDEX IF EXISTS trials_key")
            for statement in _SCHEMA.split(";"):
                if "TABLE IF NOT EXISTS trials (" in statement or "INDEX" in statement:
                    conn.execute(statement)
            columns = self._TRIAL_COLUMNS_V1
            conn.execute(f"INSERT INTO trials ({columns}) SELECT {columns} FROM trials_v1")
            conn.execute("DROP TABLE trials_v1")
            conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'",
                         (str(SCHEMA_VERSION),))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StorageError(f"cannot upgrade study {self.path}: {exc} (a copy of the "
                               f"original is in {backup})") from None
        self.schema = SCHEMA_VERSION
        return backup

    @classmethod
    def create(
        cls,
        path: str | Path,
        *,
        name: str,
        config: dict[str, Any],
        identity: dict[str, Any],
        identity_hash: str,
        provenance: dict[str, Any],
    ) -> "StudyStorage":
        """Create a new study file, held by this driver (its lock) until :meth:`close`;
        an existing file is refused (StorageError), as is a study another driver is
        creating (StudyLockedError)."""
        path = Path(path)
        if path.exists():
            raise StorageError(f"{path} already exists; use --resume to continue it")
        lock = StudyLock.acquire(path)
        try:
            if path.exists():  # created by another driver meanwhile
                raise StorageError(f"{path} already exists; use --resume to continue it")
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = cls._connect(path)
            with conn:
                conn.executescript(_SCHEMA)
                conn.execute("INSERT INTO meta VALUES ('format', ?)", (FORMAT,))
                conn.execute("INSERT INTO meta VALUES ('schema_version', ?)",
                             (str(SCHEMA_VERSION),))
                conn.execute(
                    "INSERT INTO study VALUES (1, ?, ?, ?, ?, ?, ?)",
                    (name, _dumps(config), _dumps(identity), identity_hash, _dumps(provenance),
                     time.time()),
                )
        except BaseException:
            lock.release()
            raise
        return cls(path, conn, lock)

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(str(path), timeout=30.0, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open study {path}: {exc}") from None
        conn.isolation_level = "DEFERRED"
        return conn

    def close(self) -> None:
        """Close the connection and give back the study's lock when this driver holds it."""
        try:
            self._conn.close()
        finally:
            if self._lock is not None:
                self._lock.release()

    def __enter__(self) -> "StudyStorage":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self, sql: str, params: tuple[Any, ...]) -> sqlite3.Cursor:
        try:
            with self._conn:
                return self._conn.execute(sql, params)
        except sqlite3.OperationalError as exc:
            raise StorageError(f"cannot write to study {self.path}: {exc}") from None

    # ------------------------------------------------------------------- study
    def study(self) -> dict[str, Any]:
        """The study row: name, config, identity, provenance, creation time."""
        row = self._conn.execute(
            "SELECT name, config_json, identity_json, identity_hash, provenance_json, created_at "
            "FROM study WHERE id = 1"
        ).fetchone()
        if row is None:
            raise StorageError(f"{self.path} has no study row")
        return {
            "name": row[0],
            "config": json.loads(row[1]),
            "identity": json.loads(row[2]),
            "identity_hash": row[3],
            "provenance": json.loads(row[4]),
            "created_at": row[5],
        }

    def update_config(self, config: dict[str, Any], provenance: dict[str, Any]) -> None:
        """Record the run settings of a resumed search (identity unchanged)."""
        self._write(
            "UPDATE study SET config_json = ?, provenance_json = ? WHERE id = 1",
            (_dumps(config), _dumps(provenance)),
        )

    def replace_identity(self, identity: dict[str, Any], identity_hash: str) -> None:
        """Overwrite the study identity (``--force`` on resume)."""
        self._write(
            "UPDATE study SET identity_json = ?, identity_hash = ? WHERE id = 1",
            (_dumps(identity), identity_hash),
        )

    # ------------------------------------------------------------------ trials
    def add_trial(
        self,
        *,
        genome_key: str,
        genome: dict[str, Any],
        budget: dict[str, Any],
        strategy_state: dict[str, Any] | None,
        worker: str | None = None,
        kind: str = "train",
        parent: int | None = None,
    ) -> int:
        """Insert a running trial (and the strategy state after its ask) in one transaction.
        ``kind`` names its kind of work, ``parent`` the trial it continues (if any)."""
        if self.schema < SCHEMA_VERSION:
            raise StorageError(f"{self.path} is a schema-{self.schema} study opened for "
                               "reading; open it with write=True to add trials")
        now = time.time()
        try:
            with self._conn:
                cur = self._conn.execute(
                    "INSERT INTO trials (genome_key, budget_key, genome_json, budget_json, status, "
                    "worker, attempts, submitted_at, kind, parent) "
                    "VALUES (?, ?, ?, ?, 'running', ?, 1, ?, ?, ?)",
                    (genome_key, budget_key(budget), _dumps(genome), _dumps(budget), worker, now,
                     kind, parent),
                )
                if strategy_state is not None:
                    self._save_state(strategy_state)
        except sqlite3.OperationalError as exc:
            raise StorageError(f"cannot write to study {self.path}: {exc}") from None
        assert cur.lastrowid is not None
        return int(cur.lastrowid)

    def finish_trial(
        self,
        number: int,
        *,
        status: str,
        val_acc: float | None,
        params: int | None,
        flops: int | None,
        metrics: dict[str, Any],
        curve: list[dict[str, Any]],
        error: str | None,
        stderr: str | None,
        worker: str | None,
        attempts: int,
        started_at: float | None,
        finished_at: float,
        checkpoint: str | None,
        strategy_state: dict[str, Any] | None,
        genome: dict[str, Any] | None = None,
        genome_key: str | None = None,
    ) -> None:
        """Mark a trial ok or failed with its results (and the strategy state after its tell).
        ``genome``, ``genome_key``: the genome the trial's work produced and its canonical key,
        stored in place of the submitted ones (a ``supernet`` trial's discretised cell, so
        final runs, reports and exports find it by its key); None keeps them."""
        try:
            with self._conn:
                if genome is not None and genome_key is not None:
                    self._conn.execute(
                        "UPDATE trials SET genome_json = ?, genome_key = ? WHERE number = ?",
                        (_dumps(genome), genome_key, number))
                self._conn.execute(
                    "UPDATE trials SET status = ?, val_acc = ?, params = ?, flops = ?, "
                    "metrics_json = ?, curve_json = ?, error = ?, stderr = ?, worker = ?, "
                    "attempts = ?, started_at = ?, finished_at = ?, checkpoint = ? WHERE number = ?",
                    (
                        status, val_acc, params, flops, _dumps(metrics), _dumps(curve), error,
                        stderr, worker, attempts, started_at, finished_at, checkpoint, number,
                    ),
                )
                if strategy_state is not None:
                    self._save_state(strategy_state)
                fault_point("store-finish", number)  # a kill here rolls the write back
        except sqlite3.OperationalError as exc:
            raise StorageError(f"cannot write to study {self.path}: {exc}") from None

    def requeue_trial(self, number: int) -> int:
        """Count one more attempt of a trial left running by an interrupted run; returns it."""
        self._write("UPDATE trials SET attempts = attempts + 1 WHERE number = ?", (number,))
        return int(self._conn.execute(
            "SELECT attempts FROM trials WHERE number = ?", (number,)).fetchone()[0])

    def checkpoints(self) -> list[tuple[int, str]]:
        """(trial number, weights file) of every trial that still has kept weights."""
        return [(int(n), str(c)) for n, c in self._conn.execute(
            "SELECT number, checkpoint FROM trials WHERE checkpoint IS NOT NULL ORDER BY number")]

    def set_checkpoint(self, number: int, checkpoint: str | None) -> None:
        """Record (or clear) the kept weights file of a trial."""
        self._write("UPDATE trials SET checkpoint = ? WHERE number = ?", (checkpoint, number))

    def _row_to_trial(self, row: tuple[Any, ...]) -> TrialRecord:
        return TrialRecord(
            number=row[0], genome_key=row[1], budget_key=row[2], genome=json.loads(row[3]),
            budget=json.loads(row[4]), status=row[5], val_acc=row[6], params=row[7],
            flops=row[8], metrics=json.loads(row[9]) if row[9] else {},
            curve=json.loads(row[10]) if row[10] else [], error=row[11], stderr=row[12],
            worker=row[13], attempts=row[14], checkpoint=row[15], submitted_at=row[16],
            started_at=row[17], finished_at=row[18], kind=row[19], parent=row[20],
        )

    _TRIAL_COLUMNS_V1 = (
        "number, genome_key, budget_key, genome_json, budget_json, status, val_acc, params, flops, "
        "metrics_json, curve_json, error, stderr, worker, attempts, checkpoint, submitted_at, "
        "started_at, finished_at"
    )

    @property
    def _TRIAL_COLUMNS(self) -> str:  # noqa: N802 - reads like the constant it was
        """The trial columns to select: a version-1 study has no kind or parent."""
        if self.schema < 2:
            return self._TRIAL_COLUMNS_V1 + ", 'train', NULL"
        return self._TRIAL_COLUMNS_V1 + ", kind, parent"


    def trials(self, status: str | None = None) -> list[TrialRecord]:
        """All trials in submission order, optionally of one status."""
        sql = f"SELECT {self._TRIAL_COLUMNS} FROM trials"
        params: tuple[Any, ...] = ()
        if status is not None:
            sql += " WHERE status = ?"
            params = (status,)
        return [self._row_to_trial(r) for r in self._conn.execute(sql + " ORDER BY number", params)]

    def trial(self, number: int) -> TrialRecord:
        """One trial by number."""
        row = self._conn.execute(
            f"SELECT {self._TRIAL_COLUMNS} FROM trials WHERE number = ?", (number,)
        ).fetchone()
        if row is None:
            raise StorageError(f"study {self.path} has no trial {number}")
        return self._row_to_trial(row)

    def find_finished(self, genome_key: str, budget: dict[str, Any]) -> TrialRecord | None:
        """The earliest finished trial of this (canonical genome, budget) whose result would
        come out the same if it were evaluated again, if any: an ``ok`` trial, or one that
        failed for a reason of the network itself (it cannot be built, a NaN loss, an error
        in its code). A failure of the circumstances (a timeout, out-of-memory, a killed or
        lost evaluation: ``is_transient_failure``) is never reused: a ``--resume`` with a
        longer timeout or fewer workers per GPU trains that network again."""
        rows = self._conn.execute(
            f"SELECT {self._TRIAL_COLUMNS} FROM trials WHERE genome_key = ? AND budget_key = ? "
            "AND status IN ('ok', 'failed', 'pruned') ORDER BY number",
            (genome_key, budget_key(budget)),
        )
        for row in rows:
            trial = self._row_to_trial(row)
            if trial.kind == "supernet":  # a one-shot search found it: not its training
                continue
            if trial.status == "ok" or not is_transient_failure(trial.error):
                return trial
        return None

    def count(self, status: str | None = None) -> int:
        """Number of trials, optionally of one status."""
        if status is None:
            return int(self._conn.execute("SELECT COUNT(*) FROM trials").fetchone()[0])
        return int(
            self._conn.execute("SELECT COUNT(*) FROM trials WHERE status = ?", (status,)).fetchone()[0]
        )

    def count_finished(self) -> int:
        """Number of trials that ended, ok or failed."""
        return int(
            self._conn.execute(
                "SELECT COUNT(*) FROM trials WHERE status IN ('ok', 'failed', 'pruned')"
            ).fetchone()[0]
        )

    def best(self, k: int = 1) -> list[TrialRecord]:
        """The k best ok trials, ranked at the highest budget each network reached: a network
        (canonical key) is represented by its trial of the largest budget (epochs x data
        fraction; the latest on ties), networks that reached a larger budget rank first (the
        incumbent of a multi-fidelity search comes from its highest rung), then by validation
        accuracy (the earliest trial first on ties). In a study with one budget this is simply
        the highest validation accuracy."""
        # the budget's size is read by SQLite's JSON functions: the runner calls this in its
        # loop, and parsing every trial's budget in Python there grows with the study
        rows = self._conn.execute(
            "SELECT number, genome_key, COALESCE(json_extract(budget_json, '$.epochs'), 1) * "
            "COALESCE(json_extract(budget_json, '$.data_fraction'), 1.0), val_acc FROM trials "
            "WHERE status = 'ok' AND val_acc IS NOT NULL").fetchall()
        top: dict[str, tuple[float, int, float]] = {}
        for number, gkey, size, val_acc in rows:
            size = float(size)
            held = top.get(gkey)
            if held is None or (size, number) > (held[0], held[1]):
                top[gkey] = (size, number, float(val_acc))
        order = sorted(top.values(), key=lambda v: (-v[0], -v[2], v[1]))[:max(0, k)]
        return [self.trial(number) for _, number, _ in order]

    def iter_ok_genome_keys(self) -> Iterator[str]:
        """Canonical keys of the ok trials."""
        for (key,) in self._conn.execute("SELECT genome_key FROM trials WHERE status = 'ok'"):
            yield key

    # --------------------------------------------------------- strategy state
    def _save_state(self, state: dict[str, Any]) -> None:
        self._conn.execute(
            "INSERT INTO strategy_state (id, state_json, updated_at) VALUES (1, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET state_json = excluded.state_json, "
            "updated_at = excluded.updated_at",
            (_dumps(state), time.time()),
        )

    def save_strategy_state(self, state: dict[str, Any]) -> None:
        """Store the strategy state."""
        try:
            with self._conn:
                self._save_state(state)
        except sqlite3.OperationalError as exc:
            raise StorageError(f"cannot write to study {self.path}: {exc}") from None

    def strategy_state(self) -> dict[str, Any] | None:
        """The last stored strategy state, if any."""
        row = self._conn.execute("SELECT state_json FROM strategy_state WHERE id = 1").fetchone()
        return json.loads(row[0]) if row else None

    # ------------------------------------------------------------ meta values
    def meta_value(self, key: str) -> Any:
        """A JSON value stored under ``key`` in the study's ``meta`` table, or None."""
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def meta_values(self, prefix: str) -> dict[str, Any]:
        """Every JSON value whose ``meta`` key starts with ``prefix``, by the rest of the key."""
        rows = self._conn.execute(
            "SELECT key, value FROM meta WHERE substr(key, 1, ?) = ?", (len(prefix), prefix))
        return {key[len(prefix):]: json.loads(value) for key, value in rows}

    def set_meta_value(self, key: str, value: Any) -> None:
        """Store a JSON value under ``key`` (replacing an earlier one). The keys ``format`` and
        ``schema_version`` are the file's own and are refused."""
        if key in ("format", "schema_version"):
            raise StorageError(f"meta key {key!r} is reserved")
        self._write("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, _dumps(value)))

    def start_run(self, provenance: dict[str, Any], settings: dict[str, Any]) -> int:
        """Record the start of one run of the study (a new search or a ``--resume``): its
        provenance (versions, host, commit) and run settings; returns its number (1, 2, ...).
        Earlier runs' rows are kept (a resume never overwrites them)."""
        number = len(self.meta_values("run:")) + 1
        self.set_meta_value(f"run:{number:05d}", {
            "number": number, "started_at": time.time(), "ended_at": None,
            "stop_reason": None, "provenance": provenance, "settings": settings})
        return number

    def end_run(self, number: int, stop_reason: str) -> None:
        """Record how run ``number`` ended."""
        key = f"run:{number:05d}"
        row = self.meta_value(key)
        if row is not None:
            row.update(ended_at=time.time(), stop_reason=stop_reason)
            self.set_meta_value(key, row)

    def runs(self) -> list[dict[str, Any]]:
        """Every run of the study, oldest first (see ``start_run``)."""
        return [v for _, v in sorted(self.meta_values("run:").items())]

    def delete_meta_value(self, key: str) -> None:
        """Remove a ``meta`` value (no error when absent)."""
        if key in ("format", "schema_version"):
            raise StorageError(f"meta key {key!r} is reserved")
        self._write("DELETE FROM meta WHERE key = ?", (key,))

    def speed_choices(self, key: str) -> dict[str, dict[str, Any]]:
        """Stored speed choices of one network setting (``speed.speed_key`` without the device),
        by device key: ``{"cpu/x86_64/2t": {...SpeedChoice.to_dict()}}``."""
        return self.meta_values(f"speed:{key}|")

    def put_speed_choice(self, key: str, device: str, choice: dict[str, Any]) -> None:
        """Store a measured speed choice so reruns and ``--resume`` reuse it."""
        self.set_meta_value(f"speed:{key}|{device}", choice)

    # -------------------------------------------------------------- final runs
    def add_final_run(
        self,
        *,
        trial_number: int | None,
        genome_key: str,
        genome: dict[str, Any],
        budget: dict[str, Any],
        seed: int,
        status: str,
        val_acc: float | None,
        test_acc: float | None,
        params: int | None,
        metrics: dict[str, Any],
        checkpoint: str | None,
    ) -> int:
        """Store one final training result."""
        cur = self._write(
            "INSERT INTO final_runs (trial_number, genome_key, genome_json, budget_json, seed, "
            "status, val_acc, test_acc, params, metrics_json, checkpoint, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                trial_number, genome_key, _dumps(genome), _dumps(budget), seed, status, val_acc,
                test_acc, params, _dumps(metrics), checkpoint, time.time(),
            ),
        )
        return int(cur.lastrowid or 0)

    def final_runs(self) -> list[FinalRunRecord]:
        """All final trainings in order."""
        rows = self._conn.execute(
            "SELECT id, trial_number, genome_key, genome_json, budget_json, seed, status, val_acc, "
            "test_acc, params, metrics_json, checkpoint, created_at FROM final_runs ORDER BY id"
        )
        return [
            FinalRunRecord(
                id=r[0], trial_number=r[1], genome_key=r[2], genome=json.loads(r[3]),
                budget=json.loads(r[4]), seed=r[5], status=r[6], val_acc=r[7], test_acc=r[8],
                params=r[9], metrics=json.loads(r[10]) if r[10] else {}, checkpoint=r[11],
                created_at=r[12],
            )
            for r in rows
        ]


def artifacts_dir(study_path: str | Path) -> Path:
    """The folder beside a study database for its weights and log."""
    p = Path(study_path)
    return p.with_name(p.stem + "_files")


def resolve_checkpoint(path: str | None, study_path: str | Path) -> Path | None:
    """The existing weights file a study recorded as ``path``, looked up in the study's own
    artifacts folder first (``weights/`` or ``final/`` by file name, so a moved study and one
    run from another working directory still find theirs), then as stored if absolute. A
    relative path is never read against the current directory: it could name another study's
    file. None if missing."""
    if not path:
        return None
    p = Path(path)
    folder = artifacts_dir(study_path)
    candidates = [folder / p.parent.name / p.name, folder / p.name]
    if p.is_absolute():
        candidates.append(p)
    for c in candidates:
        if c.is_file():
            return c
    if folder.is_dir():
        for c in folder.rglob(p.name):
            if c.is_file():
                return c
    return None


def ensure_dir(path: Path) -> Path:
    """Create a folder (and parents) and return it."""
    os.makedirs(path, exist_ok=True)
    return path
