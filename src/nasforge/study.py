"""One read-only handle for a stored study, as ``optuna.load_study`` gives one.

``load_study(path)`` returns a :class:`StoredStudy`: the stored config, the search space
built once from it, the trials, the best trials (ranked at the highest budget each network
reached), the Pareto front under the study's objectives and constraints, and the final
runs. The handle never writes to the study file: every read opens the file for reading
(a version-1 study is read as it is, not migrated) and closes it again, so it always sees
what a running search has stored so far and holds no lock.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from nasforge.errors import ConfigError
from nasforge.storage import FinalRunRecord, StudyStorage, TrialRecord

if TYPE_CHECKING:  # pragma: no cover
    from nasforge.config import SearchConfig
    from nasforge.objectives import Constraint, Objective
    from nasforge.spaces.base import SearchSpace

__all__ = ["StoredStudy", "load_study", "space_of_config"]

_ALL = 10**9  # "every network": storage.best's k for a whole ranking


def space_of_config(config: Mapping[str, Any], name: str | None = None) -> SearchSpace:
    """The search space a stored config dict describes (its ``space.name`` and
    ``space.settings``; ``global`` when the config names none).

    ``name`` overrides the space's name and keeps the stored settings (``draw --space``).
    Raises ``ConfigError`` (from ``get_space``) for an unknown space or bad settings."""
    from nasforge.spaces import get_space

    space_cfg = config.get("space") or {}
    return get_space(name or space_cfg.get("name", "global"), **(space_cfg.get("settings") or {}))


class StoredStudy:
    """A read-only view of one study file (see :func:`load_study`).

    Attributes read once when the handle is made: ``path``, ``name``, ``raw_config`` (the
    stored config dict), ``identity_hash``, ``provenance`` and ``created_at`` (unix seconds).
    ``config`` and ``space`` are built on first use and kept."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        with self._open() as storage:
            row = storage.study()
        self.name: str = row["name"]
        self.raw_config: dict[str, Any] = dict(row.get("config") or {})
        self.identity_hash: str = row.get("identity_hash", "")
        self.provenance: dict[str, Any] = dict(row.get("provenance") or {})
        self.created_at: float | None = row.get("created_at")
        self._row = row

    def __repr__(self) -> str:
        return f"StoredStudy({str(self.path)!r}, name={self.name!r})"

    def _open(self) -> StudyStorage:
        """The study opened for reading only (no lock, no migration)."""
        return StudyStorage.open(self.path)

    # ------------------------------------------------------------ configuration
    @property
    def row(self) -> dict[str, Any]:
        """The stored study row as ``StudyStorage.study()`` gives it (a copy)."""
        return dict(self._row)

    @cached_property
    def config(self) -> SearchConfig:
        """The stored config, validated. Raises ``ConfigError`` naming the study file when
        the stored config is not one this nasforge reads."""
        from nasforge.config import config_from_dict

        return config_from_dict(self.raw_config, str(self.path))

    @cached_property
    def space(self) -> SearchSpace:
        """The study's search space, built once from the stored ``space`` section."""
        return space_of_config(self.raw_config)

    @property
    def objectives(self) -> tuple[Objective, ...]:
        """The study's objectives (``val_acc`` max for a single-objective study)."""
        from nasforge.objectives import of_config

        return of_config(self.config)

    @property
    def constraints(self) -> tuple[Constraint, ...]:
        """The study's constraints (empty when it has none)."""
        return tuple(self.config.constraints)

    @property
    def width(self) -> int | None:
        """The search budget's base channel count, as stored."""
        return (self.raw_config.get("budget") or {}).get("width")

    # ------------------------------------------------------------------ trials
    def trials(self, status: str | None = None) -> list[TrialRecord]:
        """Every trial in number order, or those of one ``status`` (``ok``, ``failed``,
        ``running``, ``pruned``...)."""
        with self._open() as storage:
            return storage.trials(status)

    def trial(self, number: int) -> TrialRecord:
        """One trial by number; ``StorageError`` when the study has none of that number."""
        with self._open() as storage:
            return storage.trial(number)

    def best(self, k: int = 5, by: str | None = None) -> list[TrialRecord]:
        """The ``k`` best ok trials, one per network, each at the highest budget that
        network reached (``StudyStorage.best``).

        ``by`` None ranks networks that reached a larger budget first, then by validation
        accuracy (what ``nasforge best`` prints). ``by`` naming one of the study's objectives
        (e.g. ``params``) ranks the same trials by that objective in its direction, leaving
        out trials without its value; earlier trials first on ties. Raises ``ConfigError``
        for a name that is not an objective of the study."""
        if by is None:
            with self._open() as storage:
                return storage.best(k)
        from nasforge.objectives import trial_value

        objective = next((o for o in self.objectives if o.name == by), None)
        if objective is None:
            raise ConfigError(f"{self.path}: {by!r} is not an objective of this study; its "
                              f"objectives: {', '.join(o.name for o in self.objectives)}")
        sign = -1.0 if objective.direction == "max" else 1.0
        with self._open() as storage:
            pool = storage.best(_ALL)
        scored = [(sign * v, t.number, t) for t in pool
                  if (v := trial_value(t, objective.name)) is not None]
        return [t for _, _, t in sorted(scored, key=lambda s: (s[0], s[1]))][:max(0, k)]

    def pareto_front(self) -> list[TrialRecord]:
        """The non-dominated feasible trials under the study's objectives and constraints
        (each network at the highest budget it reached), best first by the first objective;
        a single-objective study's front is its best trial(s)."""
        from nasforge.objectives import pareto_trials

        with self._open() as storage:
            pool = storage.best(_ALL)
        return pareto_trials(pool, self.objectives, self.constraints)

    def final_runs(self) -> list[FinalRunRecord]:
        """The study's final-training runs (one per genome and seed), in the order stored."""
        with self._open() as storage:
            return storage.final_runs()

    # ----------------------------------------------------------------- genomes
    def genome(self, trial: TrialRecord | int) -> Any:
        """A trial's genome (a trial record or its number) decoded by the study's space."""
        record = self.trial(trial) if isinstance(trial, int) else trial
        from nasforge.storage.records import trial_genome

        return trial_genome(self.space, record, self.path)

    def describe(self, trial: TrialRecord | int, width: int | None = None) -> str:
        """A trial's network as the space's one-line text form, at ``width`` (default the
        search budget's width)."""
        return self.space.describe(self.genome(trial), width if width is not None else self.width)


def load_study(path: str | Path) -> StoredStudy:
    """Open a stored study for reading: ``nasforge.load_study("studies/quick.db").best(3)``.

    Never writes to the file (a version-1 study stays version 1). Raises ``StorageError`` for
    a missing file, a file that is not a study, or a study of a newer schema."""
    return StoredStudy(path)
