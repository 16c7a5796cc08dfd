"""Where a study keeps its files: weights, logs and live channels beside the database."""

from __future__ import annotations

import os
from pathlib import Path


def artifacts_dir(study_path: str | Path) -> Path:
    """The folder beside a study database for its weights and log (``X.db`` -> ``X_files``)."""
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
