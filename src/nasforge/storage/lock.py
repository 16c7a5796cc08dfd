"""One driver per study: an exclusive lock beside the study file (``X.db.lock``).

Every command that writes a study (``search``, ``search --resume``, ``train`` into a study,
``study fidelity``) takes the lock before it opens the file; a second one refuses at once and
names the process and host that hold it. Reading commands (``trials``, ``best``, ``report``,
``compare``, ``export``) never take it.

The lock is ``flock(2)`` on an open file descriptor, so the operating system drops it when the
holding process ends in any way (``kill -9`` included): a dead driver never locks a study for
good. On NFS, Linux maps ``flock`` to a lock on the server, which frees the lock of a lost node
when that node's lease runs out (NFSv4: about 90 s). The file itself only carries the holder's
pid, host and start time for the message; it is removed when the lock is given back, and a file
left behind by a killed process is simply taken over.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from nasforge.errors import StorageError

try:  # POSIX only; without it (Windows) studies are not locked
    import fcntl
except ImportError:  # pragma: no cover - not on the platforms nasforge supports
    fcntl = None  # type: ignore[assignment]


# The lock fds this process holds. A forked child (an evaluation child forked from the driver
# by an in-process executor) would share the lock's open file description and keep the study
# locked after a kill -9 of the driver, until the child too had gone: each child closes its
# copies at once (closing a copy never unlocks the parent's). Process-local bookkeeping of
# OS handles, read only by the fork hook.
_HELD_FDS: set[int] = set()


def _close_in_child() -> None:
    for fd in list(_HELD_FDS):
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD_FDS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_in_child)


class StudyLockedError(StorageError):
    """The study is held by another running driver."""


def lock_path(study_path: str | Path) -> Path:
    """The lock file of a study: the study's path with ``.lock`` appended."""
    return Path(str(study_path) + ".lock")


def _holder(fd: int) -> dict[str, Any]:
    """The pid/host/start time the holder wrote, or {} while it is still writing it."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return dict(json.loads(os.read(fd, 4096).decode() or "{}"))
    except (OSError, ValueError, TypeError):
        return {}


def _describe(holder: dict[str, Any]) -> str:
    if not holder:
        return "another process"
    since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(holder.get("started", 0))))
    return f"process {holder.get('pid', '?')} on host {holder.get('host', '?')} (since {since})"


class StudyLock:
    """An exclusive hold on one study, given back by :meth:`release` or by the holder's end."""

    def __init__(self, path: Path, fd: int | None) -> None:
        self.path = path
        self._fd = fd

    @classmethod
    def acquire(cls, study_path: str | Path) -> "StudyLock":
        """Take the lock of ``study_path`` without waiting.

        Raises :class:`StudyLockedError` (one line: the pid and host of the holder) when
        another driver holds it, :class:`StorageError` when the lock file cannot be created."""
        path = lock_path(study_path)
        if fcntl is None:  # pragma: no cover
            return cls(path, None)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create the folder of {path}: {exc}") from None
        for _ in range(10):
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise StorageError(f"cannot lock study {study_path}: {exc}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fd)
                os.close(fd)
                raise StudyLockedError(
                    f"study {study_path} is in use by {_describe(holder)}; one driver at a time "
                    f"(the lock {path.name} is freed when that process ends)") from None
            except OSError as exc:
                os.close(fd)
                raise StorageError(f"cannot lock study {study_path}: {exc}") from None
            # the previous holder removes the file as it lets go: a lock on a removed file
            # guards nothing, so take the file that is there now
            try:
                current = os.stat(path)
                mine = os.fstat(fd)
                same = (current.st_ino, current.st_dev) == (mine.st_ino, mine.st_dev)
            except FileNotFoundError:
                same = False
            if same:
                info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
                os.ftruncate(fd, 0)
                os.pwrite(fd, json.dumps(info).encode(), 0)
                _HELD_FDS.add(fd)
                return cls(path, fd)
            os.close(fd)
        raise StorageError(f"cannot lock study {study_path}: its lock file keeps changing")

    @property
    def held(self) -> bool:
        """True until :meth:`release`."""
        return self._fd is not None

    def release(self) -> None:
        """Remove the lock file and give the lock back (idempotent)."""
        fd, self._fd = self._fd, None
        if fd is None or fcntl is None:
            return
        _HELD_FDS.discard(fd)
        try:
            self.path.unlink(missing_ok=True)
        except OSError:
            pass  # left behind: the next driver takes it over
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
