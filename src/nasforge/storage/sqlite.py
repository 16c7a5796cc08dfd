"""One SQLite file per study, written by the runner alone (WAL, one transaction per event).

``StudyStorage`` is the study's one reader and writer: the study row, the trials (``Trial``),
the strategy state and ``meta`` values (``storage.meta``) and the final runs
(``storage.final_runs``). The file's tables and its migration are in ``storage.schema``; the
records in ``storage.records``; every name that was importable from here still is.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any, Iterator

from nasforge.errors import StorageError
from nasforge.execution.faults import fault_point
from nasforge.storage.files import artifacts_dir, ensure_dir, resolve_checkpoint
from nasforge.storage.final_runs import FinalRuns
from nasforge.storage.lock import StudyLock
from nasforge.storage.meta import MetaValues
from nasforge.storage.records import (
    FINAL_STATUSES,
    KIND_FINAL,
    STATUSES,
    TRANSIENT_FAILURES,
    FinalRunRecord,
    Trial,
    TrialRecord,
    TrialStatus,
    json_column,
    number_column,
    is_transient_failure,
)
from nasforge.storage.schema import (
    FORMAT,
    SCHEMA,
    SCHEMA_VERSION,
    TRIAL_COLUMNS_V1,
    budget_key,
    check_is_study,
    connect,
    create_tables,
    dumps,
    migrate,
    trial_columns,
)

_SCHEMA = SCHEMA  # the names these had before the split
_dumps = dumps
_check_is_study = check_is_study

__all__ = [
    "FINAL_STATUSES", "FORMAT", "KIND_FINAL", "SCHEMA_VERSION", "STATUSES", "TRANSIENT_FAILURES",
    "FinalRunRecord", "StudyStorage", "Trial", "TrialRecord", "TrialStatus", "artifacts_dir",
    "budget_key", "ensure_dir", "is_transient_failure", "resolve_checkpoint",
]


class StudyStorage(MetaValues, FinalRuns):
    """The study database: study row, trials, strategy state, ``meta`` values and final runs.

    Open one with :meth:`open` (an existing study) or :meth:`create` (a new one) and close it
    (or use it as a context manager). Every write is one transaction; a write that SQLite
    refuses raises ``StorageError`` with one line. Times are Unix seconds."""

    def __init__(self, path: str | Path, conn: sqlite3.Connection,
                 lock: StudyLock | None = None) -> None:
        """Wrap an open connection (use :meth:`open` or :meth:`create`); ``lock``: the study
        lock this driver holds, given back by :meth:`close`."""
        self.path = Path(path)
        self._conn = conn
        self._lock = lock
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        #: the file's schema version (1 for a study not yet upgraded, read as it is)
        self.schema = SCHEMA_VERSION
        if row:
            try:
                self.schema = int(row[0])
            except (TypeError, ValueError):  # edited or damaged by hand: one line, not int()'s
                conn.close()
                raise StorageError(f"{self.path}: meta value schema_version is damaged (holds "
                                   f"{row[0]!r}, expected a whole number); it was left "
                                   "untouched") from None

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
        check_is_study(path)
        held = StudyLock.acquire(path) if (write if lock is None else lock) else None
        try:
            storage = cls(path, connect(path), held)
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
        ``<file>.v1.bak`` (``schema.migrate``). Every trial keeps its number, network key and
        budget key, and the study its identity, so ``--resume`` reuses every stored result.
        Returns the backup's path, or None when nothing was to do. Raises ``StorageError``
        when SQLite refuses (the file is left as it was)."""
        if self.schema >= SCHEMA_VERSION:
            return None
        backup = migrate(self._conn, self.path, self.schema)
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
        """Create a new study file (current schema) with its study row: ``name``, ``config``
        (``SearchConfig.to_dict()``), ``identity`` (what a resume must match) and its hash,
        ``provenance`` (versions, host, commit). It is held by this driver (its lock) until
        :meth:`close`. Raises ``StorageError`` for an existing file and ``StudyLockedError``
        for a study another driver is creating."""
        path = Path(path)
        if path.exists():
            raise StorageError(f"{path} already exists; use --resume to continue it")
        lock = StudyLock.acquire(path)
        try:
            if path.exists():  # created by another driver meanwhile
                raise StorageError(f"{path} already exists; use --resume to continue it")
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = connect(path)
            create_tables(conn, name, config, identity, identity_hash, provenance, time.time())
        except BaseException:
            lock.release()
            raise
        return cls(path, conn, lock)

    _connect = staticmethod(connect)

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

    # ------------------------------------------------------------------- study
    def study(self) -> dict[str, Any]:
        """The study row: ``name``, ``config``, ``identity``, ``identity_hash``,
        ``provenance`` and ``created_at`` (Unix seconds). Raises ``StorageError`` when the
        file has no study row."""
        row = self._conn.execute(
            "SELECT name, config_json, identity_json, identity_hash, provenance_json, created_at "
            "FROM study WHERE id = 1"
        ).fetchone()
        if row is None:
            raise StorageError(f"{self.path} has no study row")
        where = f"{self.path}: study row"
        return {
            "name": row[0],
            "config": json_column(where, "config_json", row[1], {}, dict),
            "identity": json_column(where, "identity_json", row[2], {}, dict),
            "identity_hash": row[3],
            "provenance": json_column(where, "provenance_json", row[4], {}, dict),
            "created_at": row[5],
        }

    def update_config(self, config: dict[str, Any], provenance: dict[str, Any]) -> None:
        """Record the run settings of a resumed search (identity unchanged)."""
        self._write(
            "UPDATE study SET config_json = ?, provenance_json = ? WHERE id = 1",
            (dumps(config), dumps(provenance)),
        )

    def replace_identity(self, identity: dict[str, Any], identity_hash: str) -> None:
        """Overwrite the study identity (``--force`` on resume)."""
        self._write(
            "UPDATE study SET identity_json = ?, identity_hash = ? WHERE id = 1",
            (dumps(identity), identity_hash),
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
        """Insert a ``running`` trial (and the strategy state after its ask) in one
        transaction and return its number (1, 2, ...).

        ``genome_key``: the genome's canonical key; ``genome``: its JSON form; ``budget``:
        ``Budget.to_dict()``; ``strategy_state``: the strategy's state after the ask (None
        keeps the stored one); ``worker``: where it was sent, if known; ``kind``: its kind of
        work (``train``, ``continue``, ``supernet``, ...); ``parent``: the trial it continues.
        Raises ``StorageError`` for a version-1 study opened for reading or a failed write."""
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
                    (genome_key, budget_key(budget), dumps(genome), dumps(budget), worker, now,
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
        """Store a trial's outcome (and the strategy state after its tell) in one transaction.

        ``status``: ``ok``, ``failed`` or ``pruned`` (a ``TrialStatus`` or its string; raises
        ``StorageError`` for an unknown one); the other arguments as ``Trial``'s fields
        (``val_acc`` a fraction, ``flops`` per image, ``curve`` one dict per epoch, times in
        Unix seconds, ``checkpoint`` the kept weights file or None). ``genome``, ``genome_key``: the genome the trial's work produced and its canonical key,
        stored in place of the submitted ones (a ``supernet`` trial's discretised cell, so
        final runs, reports and exports find it by its key); None keeps them."""
        try:
            with self._conn:
                if genome is not None and genome_key is not None:
                    self._conn.execute(
                        "UPDATE trials SET genome_json = ?, genome_key = ? WHERE number = ?",
                        (dumps(genome), genome_key, number))
                self._conn.execute(
                    "UPDATE trials SET status = ?, val_acc = ?, params = ?, flops = ?, "
                    "metrics_json = ?, curve_json = ?, error = ?, stderr = ?, worker = ?, "
                    "attempts = ?, started_at = ?, finished_at = ?, checkpoint = ? WHERE number = ?",
                    (
                        TrialStatus.parse(status).value, val_acc, params, flops, dumps(metrics), dumps(curve), error,
                        stderr, worker, attempts, started_at, finished_at, checkpoint, number,
                    ),
                )
                if strategy_state is not None:
                    self._save_state(strategy_state)
                fault_point("store-finish", number)  # a kill here rolls the write back
        except sqlite3.OperationalError as exc:
            raise StorageError(f"cannot write to study {self.path}: {exc}") from None

    def requeue_trial(self, number: int) -> int:
        """Count one more attempt of a trial left ``running`` by an interrupted run (it is
        evaluated again in the same row); returns the new attempt count."""
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

    @property
    def _TRIAL_COLUMNS(self) -> str:  # noqa: N802 - reads like the constant it was
        """The trial columns to select (``schema.trial_columns`` of this file's schema)."""
        return trial_columns(self.schema)

    def trials(self, status: str | None = None) -> list[Trial]:
        """All trials in submission order (by number), optionally only those of ``status``
        (a ``TrialStatus`` or its string). A ``running`` trial in a study no driver holds was
        cut short; ``--resume`` re-queues it in the same row. Reading writes nothing."""
        sql = f"SELECT {self._TRIAL_COLUMNS} FROM trials"
        params: tuple[Any, ...] = ()
        if status is not None:
            sql += " WHERE status = ?"
            params = (str(status),)
        rows = self._conn.execute(sql + " ORDER BY number", params)
        return [Trial.from_row(r, str(self.path)) for r in rows]

    def trial(self, number: int) -> Trial:
        """One trial by number; raises ``StorageError`` when the study has none so numbered."""
        row = self._conn.execute(
            f"SELECT {self._TRIAL_COLUMNS} FROM trials WHERE number = ?", (number,)
        ).fetchone()
        if row is None:
            raise StorageError(f"study {self.path} has no trial {number}")
        return Trial.from_row(row, str(self.path))

    def find_finished(self, genome_key: str, budget: dict[str, Any]) -> Trial | None:
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
            trial = Trial.from_row(row, str(self.path))
            if trial.kind == "supernet":  # a one-shot search found it: not its training
                continue
            if trial.status == "ok" or not is_transient_failure(trial.error):
                return trial
        return None

    def count(self, status: str | None = None) -> int:
        """Number of trials, optionally of one status (a ``TrialStatus`` or its string)."""
        if status is None:
            return int(self._conn.execute("SELECT COUNT(*) FROM trials").fetchone()[0])
        return int(self._conn.execute("SELECT COUNT(*) FROM trials WHERE status = ?",
                                      (str(status),)).fetchone()[0])

    def count_finished(self) -> int:
        """Number of trials that ended: ok, failed or pruned."""
        return int(
            self._conn.execute(
                "SELECT COUNT(*) FROM trials WHERE status IN ('ok', 'failed', 'pruned')"
            ).fetchone()[0]
        )

    def best(self, k: int = 1) -> list[Trial]:
        """The k best ok trials, ranked at the highest budget each network reached: a network
        (canonical key) is represented by its trial of the largest budget (epochs x data
        fraction; the latest on ties), networks that reached a larger budget rank first (the
        incumbent of a multi-fidelity search comes from its highest rung), then by validation
        accuracy (the earliest trial first on ties). In a study with one budget this is simply
        the highest validation accuracy."""
        # the budget's size is read by SQLite's JSON functions: the runner calls this in its
        # loop, and parsing every trial's budget in Python there grows with the study
        try:
            rows = self._conn.execute(
                "SELECT number, genome_key, COALESCE(json_extract(budget_json, '$.epochs'), 1) * "
                "COALESCE(json_extract(budget_json, '$.data_fraction'), 1.0), val_acc FROM trials "
                "WHERE status = 'ok' AND val_acc IS NOT NULL").fetchall()
        except sqlite3.OperationalError:  # malformed JSON in a row: name the row, else re-raise
            self.trials()
            raise
        top: dict[str, tuple[float, int, float]] = {}
        for number, gkey, size, val_acc in rows:
            where = f"{self.path}: trial {number}"
            size = float(number_column(where, "budget_json (epochs x data_fraction)", size))
            val_acc = number_column(where, "val_acc", val_acc)
            held = top.get(gkey)
            if held is None or (size, number) > (held[0], held[1]):
                top[gkey] = (size, number, float(val_acc))
        order = sorted(top.values(), key=lambda v: (-v[0], -v[2], v[1]))[:max(0, k)]
        return [self.trial(number) for _, number, _ in order]

    def iter_ok_genome_keys(self) -> Iterator[str]:
        """Canonical keys of the ok trials."""
        for (key,) in self._conn.execute("SELECT genome_key FROM trials WHERE status = 'ok'"):
            yield key
