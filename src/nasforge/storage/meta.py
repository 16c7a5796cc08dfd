"""The study's ``meta`` values: JSON by key, the run history, stored speed choices and the
strategy state (part of ``StudyStorage``)."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from nasforge.errors import StorageError
from nasforge.storage.records import json_column
from nasforge.storage.schema import Connected, dumps

RESERVED_KEYS: tuple[str, ...] = ("format", "schema_version")
"""``meta`` keys that belong to the file itself and cannot be set or deleted."""


class MetaValues(Connected):
    """JSON values by key in the ``meta`` table, and the one-row strategy state."""

    # --------------------------------------------------------- strategy state
    def _save_state(self, state: dict[str, Any]) -> None:
        """Upsert the strategy state inside the caller's transaction."""
        self._conn.execute(
            "INSERT INTO strategy_state (id, state_json, updated_at) VALUES (1, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET state_json = excluded.state_json, "
            "updated_at = excluded.updated_at",
            (dumps(state), time.time()),
        )

    def save_strategy_state(self, state: dict[str, Any]) -> None:
        """Store the strategy state (``Strategy.state_dict()``, JSON-ready), replacing the last.
        Raises ``StorageError`` when the file cannot be written."""
        try:
            with self._conn:
                self._save_state(state)
        except sqlite3.OperationalError as exc:
            raise StorageError(f"cannot write to study {self.path}: {exc}") from None

    def strategy_state(self) -> dict[str, Any] | None:
        """The last stored strategy state, or None when none was stored. Raises
        ``StorageError`` naming the file when the stored state is not a JSON object."""
        row = self._conn.execute("SELECT state_json FROM strategy_state WHERE id = 1").fetchone()
        return (json_column(f"{self.path}: strategy state", "state_json", row[0], {}, dict)
                if row else None)

    # ------------------------------------------------------------ meta values
    def meta_value(self, key: str) -> Any:
        """A JSON value stored under ``key`` in the study's ``meta`` table, or None. Raises
        ``StorageError`` naming the file and key when the stored value is not JSON."""
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json_column(f"{self.path}: meta {key}", "value", row[0], None, object) if row else None

    def meta_values(self, prefix: str) -> dict[str, Any]:
        """Every JSON value whose ``meta`` key starts with ``prefix``, by the rest of the key."""
        rows = self._conn.execute(
            "SELECT key, value FROM meta WHERE substr(key, 1, ?) = ?", (len(prefix), prefix))
        return {key[len(prefix):]: json_column(f"{self.path}: meta {key}", "value", value, None,
                                               object) for key, value in rows}

    def set_meta_value(self, key: str, value: Any) -> None:
        """Store a JSON value under ``key`` (replacing an earlier one). The keys ``format`` and
        ``schema_version`` are the file's own and are refused (``StorageError``)."""
        if key in RESERVED_KEYS:
            raise StorageError(f"meta key {key!r} is reserved")
        self._write("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, dumps(value)))

    def delete_meta_value(self, key: str) -> None:
        """Remove a ``meta`` value (no error when absent; ``StorageError`` for a reserved key)."""
        if key in RESERVED_KEYS:
            raise StorageError(f"meta key {key!r} is reserved")
        self._write("DELETE FROM meta WHERE key = ?", (key,))

    # -------------------------------------------------------------------- runs
    def start_run(self, provenance: dict[str, Any], settings: dict[str, Any]) -> int:
        """Record the start of one run of the study (a new search or a ``--resume``): its
        provenance (versions, host, commit) and run settings; returns its number (1, 2, ...).
        Earlier runs' rows are kept (a resume never overwrites them). Times in Unix seconds."""
        number = len(self.meta_values("run:")) + 1
        self.set_meta_value(f"run:{number:05d}", {
            "number": number, "started_at": time.time(), "ended_at": None,
            "stop_reason": None, "provenance": provenance, "settings": settings})
        return number

    def end_run(self, number: int, stop_reason: str) -> None:
        """Record how run ``number`` ended (``stop_reason``, e.g. ``max_evals`` or
        ``interrupted``) and when; nothing for an unknown run."""
        key = f"run:{number:05d}"
        row = self.meta_value(key)
        if row is not None:
            row.update(ended_at=time.time(), stop_reason=stop_reason)
            self.set_meta_value(key, row)

    def runs(self) -> list[dict[str, Any]]:
        """Every run of the study, oldest first (see ``start_run``)."""
        return [v for _, v in sorted(self.meta_values("run:").items())]

    # ----------------------------------------------------------- speed choices
    def speed_choices(self, key: str) -> dict[str, dict[str, Any]]:
        """Stored speed choices of one network setting (``speed.speed_key`` without the device),
        by device key: ``{"cpu/x86_64/2t": {...SpeedChoice.to_dict()}}``."""
        return self.meta_values(f"speed:{key}|")

    def put_speed_choice(self, key: str, device: str, choice: dict[str, Any]) -> None:
        """Store a measured speed choice so reruns and ``--resume`` reuse it."""
        self.set_meta_value(f"speed:{key}|{device}", choice)
