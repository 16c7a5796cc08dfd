"""Read-only views of study files for the dashboard: which files are studies, and the JSON the
page draws from (progress, best-so-far series, worker timeline, trade-offs with the Pareto front,
trial table, one trial, final runs).

Every study is opened with SQLite's read-only URI mode (``file:...?mode=ro``): the dashboard never
writes a study or its files, and as a WAL reader it never blocks the runner, the single writer.
Series and summaries come from the static report's helpers (``nasforge.report.plots`` and
``nasforge.report.html``), so the report and the dashboard agree on what they show.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nasforge.errors import ConfigError, StorageError
from nasforge.report import plots
from nasforge.report.html import StudySnapshot, _short_budget, failure_reason
from nasforge.storage.records import single_view_acc
from nasforge.storage.sqlite import FORMAT, StudyStorage, TrialRecord

STUDY_SUFFIXES: tuple[str, ...] = (".db", ".sqlite", ".sqlite3")
"""File endings a folder is scanned for."""

_BUSY_TIMEOUT_S = 2.0


# ------------------------------------------------------------------ opening
def _ro_connect(path: Path) -> sqlite3.Connection:
    """A read-only connection (``mode=ro``).

    While a runner has the study open its ``-wal`` and ``-shm`` files exist and the dashboard
    reads through them as one more WAL reader (it never blocks the writer). A study nobody has
    open has no ``-wal`` file: it is then opened ``immutable``, so that reading it does not
    leave new ``-wal``/``-shm`` files beside it."""
    uri = path.resolve().as_uri() + "?mode=ro"
    if not path.with_name(path.name + "-wal").exists():
        uri += "&immutable=1"
    return sqlite3.connect(uri, uri=True, timeout=_BUSY_TIMEOUT_S, check_same_thread=False)


def read_snapshot(path: str | Path) -> StudySnapshot:
    """Read the study row, trials and final runs of ``path`` through a read-only connection.

    Raises ``StorageError`` with a one-line reason for a missing file, a file that is not a
    nasforge study (or not one yet: a study being created), or a study locked for longer than
    two seconds."""
    p = Path(path)
    if not p.is_file():
        raise StorageError(f"{p} not found")
    try:
        conn = _ro_connect(p)
    except sqlite3.Error as exc:
        raise StorageError(f"cannot open {p}: {exc}") from None
    try:
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise StorageError(f"{p} is being written (locked); retrying") from None
            raise StorageError(f"{p} is not a nasforge study (or not one yet)") from None
        except sqlite3.DatabaseError:
            raise StorageError(f"{p} is not a nasforge study (not an SQLite file)") from None
        if row is None or row[0] != FORMAT:
            raise StorageError(f"{p} is not a nasforge study (or not one yet)")
        storage = StudyStorage(p, conn)  # only its read methods are used
        try:
            conn.execute("BEGIN")  # one consistent snapshot across the three reads
            snap = StudySnapshot(p, storage.study(), storage.trials(), storage.final_runs())
            conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise StorageError(f"{p} is being written (locked); retrying") from None
            raise StorageError(f"cannot read {p}: {exc}") from None
        except (sqlite3.DatabaseError, ValueError) as exc:
            raise StorageError(f"cannot read {p}: {exc}") from None
        return snap
    finally:
        conn.close()


def _file_stamp(path: Path) -> tuple[float, ...]:
    """Modification times and sizes of the database and its WAL: they change on every write."""
    out: list[float] = []
    for p in (path, path.with_name(path.name + "-wal")):
        try:
            st = p.stat()
            out += [st.st_mtime_ns, st.st_size]
        except OSError:
            out += [0, 0]
    return tuple(out)


def study_id(path: Path) -> str:
    """A short stable id for a study path (used in URLs)."""
    return hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]


@dataclass
class StudyEntry:
    """One study file the dashboard shows, with its last good snapshot or its error."""

    id: str
    path: Path
    stamp: tuple[float, ...] = ()
    snapshot: StudySnapshot | None = None
    error: str | None = None
    read_at: float = 0.0


@dataclass
class StudyCatalog:
    """The studies given on the command line: files, and folders scanned for new studies.

    Snapshots are cached per file and read again only when the file or its WAL changed, so a
    page polling every two seconds reads a study once per write of the runner."""

    files: list[Path]
    folders: list[Path]
    _entries: dict[str, StudyEntry] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def from_paths(cls, paths: Sequence[str | Path]) -> tuple["StudyCatalog", list[str]]:
        """Split ``paths`` into study files and folders; returns the catalog and one warning
        line per path that does not exist. Raises ``ConfigError`` when none exists."""
        files: list[Path] = []
        folders: list[Path] = []
        warnings: list[str] = []
        for raw in paths:
            p = Path(raw)
            if p.is_dir():
                folders.append(p)
            elif p.is_file():
                files.append(p)
            else:
                warnings.append(f"{p}: no such study file or folder; skipped")
        if not files and not folders:
            raise ConfigError("no study file or folder to show: "
                              + "; ".join(w.split(";")[0] for w in warnings))
        return cls(files, folders), warnings

    def paths(self) -> list[Path]:
        """The study files now: the given files, then every study-like file in the folders."""
        seen: set[Path] = set()
        out: list[Path] = []
        candidates = list(self.files)
        for folder in self.folders:
            try:
                names = sorted(os.listdir(folder))
            except OSError:
                continue
            candidates += [folder / n for n in names if n.endswith(STUDY_SUFFIXES)]
        for p in candidates:
            key = p.resolve()
            if key not in seen:
                seen.add(key)
                out.append(p)
        return out

    def refresh(self, only: str | None = None) -> list[StudyEntry]:
        """Re-read the studies whose files changed (or just the one with id ``only``)."""
        with self._lock:
            current: dict[str, StudyEntry] = {}
            for p in self.paths():
                sid = study_id(p)
                entry = self._entries.get(sid) or StudyEntry(sid, p)
                current[sid] = entry
                if only is not None and sid != only:
                    continue
                stamp = _file_stamp(p)
                if stamp == entry.stamp and (entry.snapshot is not None or entry.error is None):
                    continue
                try:
                    entry.snapshot = read_snapshot(p)
                    entry.error = None
                    entry.stamp = stamp
                except StorageError as exc:
                    entry.error = str(exc)
                    # a locked read is retried on the next poll; a foreign file only on change
                    entry.stamp = () if "locked" in entry.error else stamp
                entry.read_at = time.time()
            self._entries = current
            return list(current.values())

    def get(self, sid: str) -> StudyEntry | None:
        """The (refreshed) entry with id ``sid``, or None."""
        for entry in self.refresh(only=sid):
            if entry.id == sid:
                return entry
        return None


# ------------------------------------------------------------------ views
def trial_kind(t: TrialRecord) -> str:
    """A trial's kind: ``kind`` on the record or in its metrics where the runner stores one
    (final runs, rungs), else "search"."""
    kind = getattr(t, "kind", None) or t.metrics.get("kind")
    return str(kind) if kind else "search"


def trial_parent(t: TrialRecord) -> int | None:
    """The trial a continued trial resumed from, where the runner records one."""
    parent = getattr(t, "parent", None)
    if parent is None:
        parent = t.metrics.get("parent") or t.metrics.get("parent_trial")
    try:
        return int(parent) if parent is not None else None
    except (TypeError, ValueError):
        return None


def _run_config(snap: StudySnapshot) -> dict[str, Any]:
    return dict(snap.config.get("run") or {})


def summary(snap: StudySnapshot, now: float | None = None) -> dict[str, Any]:
    """Counts by status, best trial, elapsed time and time left for one study.

    Time left (seconds) is the smaller of the ``run.time_limit`` left and the remaining
    ``max_evals`` at the finished-trial rate so far; None when it cannot be estimated yet."""
    now = time.time() if now is None else now
    counts = Counter(t.status for t in snap.trials)
    finished = sum(1 for t in snap.trials if t.finished)
    best = snap.best(1)
    start = plots.study_start(snap.trials)
    ends = [float(t.finished_at) for t in snap.trials if t.finished_at]
    running = counts.get("running", 0)
    last = max(ends) if ends else None
    live_end = now if running else (last or now)
    elapsed = (live_end - start) if start is not None else None
    run = _run_config(snap)
    max_evals = run.get("max_evals")
    left: list[float] = []
    if running and elapsed and finished and isinstance(max_evals, int):
        left.append(max(0, max_evals - finished) * elapsed / finished)
    if running and start is not None and run.get("time_limit"):
        left.append(max(0.0, float(run["time_limit"]) - (now - start)))
    return {
        "name": snap.study.get("name"),
        "path": str(snap.path),
        "total": len(snap.trials),
        "finished": finished,
        "counts": dict(sorted(counts.items())),
        "running": running,
        "ok": counts.get("ok", 0),
        "failed": counts.get("failed", 0),
        "pruned": counts.get("pruned", 0),
        "max_evals": max_evals,
        "time_limit": run.get("time_limit"),
        "workers": run.get("workers"),
        "best_acc": best[0].val_acc if best else None,
        "best_trial": best[0].number if best else None,
        "started_at": start,
        "last_finished_at": last,
        "elapsed_s": elapsed,
        "time_left_s": min(left) if left else None,
        "finals": len(snap.finals),
        "live": bool(running),
    }


def overview_item(entry: StudyEntry) -> dict[str, Any]:
    """A study's line on the overview: id, path, error (one line or None) and, once it could be
    read, its summary and best-so-far against seconds since its first trial."""
    item: dict[str, Any] = {"id": entry.id, "path": str(entry.path), "error": entry.error}
    if entry.snapshot is not None:
        item["summary"] = summary(entry.snapshot)
        xs, ys = plots.best_so_far_by_time(entry.snapshot.trials)
        item["best_by_time"] = {"x": xs, "y": ys}
    return item


def _timeline(trials: Sequence[TrialRecord], start: float | None, now: float) -> list[dict[str, Any]]:
    """One bar per trial with a start: worker lane, start and end in seconds since ``start``."""
    if start is None:
        return []
    bars = []
    for t in trials:
        begin = t.started_at or (t.submitted_at if t.status == "running" else None)
        if begin is None:
            continue
        end = t.finished_at if t.finished_at else now
        bars.append({"n": t.number, "worker": t.worker or (f"running #{t.number}" if t.status == "running" else "(no worker)"), "status": t.status,
                     "x0": float(begin) - start, "x1": float(end) - start})
    return bars


def _pareto(trials: Sequence[TrialRecord], cost: str) -> list[int]:
    pts = [t for t in plots.ok_trials(trials) if getattr(t, cost)]
    front = plots.pareto_front([float(getattr(t, cost)) for t in pts],
                               [float(t.val_acc or 0.0) for t in pts])
    return [pts[i].number for i in front]


def trial_row(t: TrialRecord) -> dict[str, Any]:
    """The trial table's row: numbers stay numbers (the page formats and sorts them)."""
    m = t.metrics
    return {
        "n": t.number, "status": t.status, "val_acc": t.val_acc, "params": t.params,
        "flops": t.flops, "epochs": m.get("epochs_run"), "seconds": (
            float(t.finished_at) - float(t.started_at) if t.finished_at and t.started_at else None),
        "budget": _short_budget(t.budget), "kind": trial_kind(t), "worker": t.worker,
        "error": failure_reason(t.error) if t.status == "failed" else None,
        "parent": trial_parent(t),
    }


def final_rows(snap: StudySnapshot) -> list[dict[str, Any]]:
    """The final runs (whole training set, test accuracy), one row each."""
    return [{"id": f.id, "trial": f.trial_number, "seed": f.seed, "status": f.status,
             "val_acc": f.val_acc, "test_acc": f.test_acc, "params": f.params,
             # with budget.tta the test accuracy is flip-averaged; this is the one-view figure
             "test_acc_single_view": single_view_acc(f.metrics),
             "budget": _short_budget(f.budget),
             "seconds": f.metrics.get("train_seconds"),
             "curve": [{"epoch": r.get("epoch"), "acc": r.get("val_acc")}
                       for r in (f.metrics.get("curve") or []) if isinstance(r, dict)]}
            for f in snap.finals]


def study_view(snap: StudySnapshot, now: float | None = None) -> dict[str, Any]:
    """Everything the study page draws: summary, series, timeline, trade-offs, rows, finals."""
    now = time.time() if now is None else now
    start = plots.study_start(snap.trials)
    by_n = plots.best_so_far_by_number(snap.trials)
    by_t = plots.best_so_far_by_time(snap.trials, start)
    ok = plots.ok_trials(snap.trials)
    return {
        "summary": summary(snap, now),
        "config": snap.config,
        "best_by_trial": {"x": by_n[0], "y": by_n[1]},
        "best_by_time": {"x": by_t[0], "y": by_t[1]},
        "points": [{"n": t.number, "acc": t.val_acc, "params": t.params, "flops": t.flops}
                   for t in ok],
        "pareto": {"params": _pareto(snap.trials, "params"), "flops": _pareto(snap.trials, "flops")},
        "timeline": _timeline(snap.trials, start, now),
        "trials": [trial_row(t) for t in snap.trials],
        "finals": final_rows(snap),
    }


def trial_view(snap: StudySnapshot, number: int) -> dict[str, Any]:
    """One trial in full: row, genome, budget, metrics, curve, error and stderr, parent,
    children (trials continued from it) and final runs of its genome."""
    by_n = {t.number: t for t in snap.trials}
    t = by_n.get(number)
    if t is None:
        raise StorageError(f"study {snap.path} has no trial {number}")
    text = None
    try:
        from nasforge.report.html import _space_of

        space = _space_of(snap.config)
        if space is not None:
            from nasforge.report.draw import genome_text

            text = genome_text(space, space.genome_from_dict(t.genome),
                               t.budget.get("width"))
    except Exception:  # noqa: BLE001 - a trial page without the text form still shows the rest
        text = None
    return {
        "row": trial_row(t),
        "genome": t.genome, "genome_text": text, "budget": t.budget, "metrics": t.metrics,
        "curve": [r for r in t.curve if isinstance(r, dict)],
        "error": t.error, "stderr": t.stderr, "attempts": t.attempts,
        "submitted_at": t.submitted_at, "started_at": t.started_at, "finished_at": t.finished_at,
        "checkpoint": t.checkpoint,
        "children": [c.number for c in snap.trials if trial_parent(c) == number],
        "finals": [r for r in final_rows(snap) if r["trial"] == number],
        "study": snap.study.get("name"),
    }


def drawing_svg(snap: StudySnapshot, number: int) -> bytes:
    """The trial's network drawn as SVG by the report's drawer (Graphviz, or the text form).

    Raises ``StorageError`` for an unknown trial and ``NasforgeError`` when it cannot be drawn."""
    from nasforge.report.draw import draw_genome, input_shape_hint
    from nasforge.report.html import _space_of

    t = next((t for t in snap.trials if t.number == number), None)
    if t is None:
        raise StorageError(f"study {snap.path} has no trial {number}")
    space = _space_of(snap.config)
    if space is None:
        raise ConfigError("the study's search space cannot be built here")
    genome = space.genome_from_dict(t.genome)
    shape = input_shape_hint(snap.config.get("data") or {})
    return draw_genome(space, genome, "svg", t.budget.get("width"), shape).data
