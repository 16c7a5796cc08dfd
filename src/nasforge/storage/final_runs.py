"""Final runs: the ``final_runs`` table, trials of kind ``final`` (part of ``StudyStorage``).

A final run's life is a trial's: ``start_final_run`` stores it as ``running`` when it is
submitted, ``add_final_run`` finishes that row (``ok``, ``failed``, or ``interrupted`` after a
Ctrl-C). A run cut by a kill stays ``running`` in the file; the next ``start_final_run`` of the
same genome, budget and seed (``--resume``, ``train``) takes that row over, so it is trained
again under its own id instead of being left behind. A run cut by Ctrl-C keeps its
``interrupted`` row and the retraining gets a new one (the history of attempts).
"""

from __future__ import annotations

import time
from typing import Any

from nasforge.storage.records import FinalRunRecord, TrialStatus
from nasforge.storage.schema import FINAL_RUN_COLUMNS, Connected, dumps


class FinalRuns(Connected):
    """The study's final trainings."""

    def _running_final_run(self, genome_key: str, budget: dict[str, Any],
                           seed: int) -> int | None:
        """The id of the newest ``running`` row of this genome, budget and seed, if any."""
        row = self._conn.execute(
            "SELECT id FROM final_runs WHERE status = 'running' AND genome_key = ? AND "
            "budget_json = ? AND seed = ? ORDER BY id DESC LIMIT 1",
            (genome_key, dumps(budget), seed)).fetchone()
        return None if row is None else int(row[0])

    def start_final_run(
        self,
        *,
        trial_number: int | None,
        genome_key: str,
        genome: dict[str, Any],
        budget: dict[str, Any],
        seed: int,
    ) -> int:
        """Store a submitted final run as ``running`` and return its id. A row of the same
        ``genome_key``, ``budget`` and ``seed`` left ``running`` by a killed driver is taken
        over (its id returned, its time of storing renewed) instead of adding another.
        ``seed`` is the seed index (0, 1, ...). Raises ``StorageError`` when the file cannot
        be written."""
        held = self._running_final_run(genome_key, budget, seed)
        if held is not None:
            self._write("UPDATE final_runs SET trial_number = ?, created_at = ? WHERE id = ?",
                        (trial_number, time.time(), held))
            return held
        cur = self._write(
            "INSERT INTO final_runs (trial_number, genome_key, genome_json, budget_json, seed, "
            "status, metrics_json, created_at) VALUES (?, ?, ?, ?, ?, 'running', '{}', ?)",
            (trial_number, genome_key, dumps(genome), dumps(budget), seed, time.time()))
        return int(cur.lastrowid or 0)

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
        """Store one final training's result and return its id: it finishes the ``running``
        row ``start_final_run`` stored for this genome, budget and seed, or adds a row when
        there is none. ``status``: ``ok``, ``failed`` or ``interrupted`` (a ``TrialStatus``
        or its string); ``test_acc`` a fraction; ``metrics`` JSON-ready (``curve``, ``error``,
        ``wall_seconds``, ...). Raises ``StorageError`` for an unknown status or when the
        file cannot be written."""
        status = TrialStatus.parse(status).value
        values = (trial_number, genome_key, dumps(genome), dumps(budget), seed, status, val_acc,
                  test_acc, params, dumps(metrics), checkpoint, time.time())
        held = self._running_final_run(genome_key, budget, seed)
        if held is not None:
            self._write(
                "UPDATE final_runs SET trial_number = ?, genome_key = ?, genome_json = ?, "
                "budget_json = ?, seed = ?, status = ?, val_acc = ?, test_acc = ?, params = ?, "
                "metrics_json = ?, checkpoint = ?, created_at = ? WHERE id = ?",
                values + (held,))
            return held
        cur = self._write(
            "INSERT INTO final_runs (trial_number, genome_key, genome_json, budget_json, seed, "
            "status, val_acc, test_acc, params, metrics_json, checkpoint, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", values)
        return int(cur.lastrowid or 0)

    def final_runs(self, status: str | None = None) -> list[FinalRunRecord]:
        """All final trainings in the order they were stored (by id), optionally of one
        status. A ``running`` one in a study no driver holds was cut by a kill; ``--resume``
        trains it again (``start_final_run``)."""
        sql = f"SELECT {FINAL_RUN_COLUMNS} FROM final_runs"
        params: tuple[Any, ...] = ()
        if status is not None:
            sql += " WHERE status = ?"
            params = (str(status),)
        rows = self._conn.execute(sql + " ORDER BY id", params)
        return [FinalRunRecord.from_row(r, str(self.path)) for r in rows]
