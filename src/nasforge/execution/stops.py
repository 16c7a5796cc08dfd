"""Stopping a command on Ctrl-C: the first one lets running work finish, the second ends it now.

A terminal's Ctrl-C reaches the driver's whole process group, but not the processes that do
the work: pool workers ignore it, each evaluation child runs in its own process group, and an
MPI job's workers hang under Open MPI's ``orted`` in a session of their own. Waiting for the
executor to shut down therefore waits for every running training (a second Ctrl-C once took
32 s under MPI, and final training did not end at all). So a stop here never waits on an
executor: it kills the *process trees* the command started.

- :class:`GracefulStop` is the SIGINT handler of a phase that has evaluations running (the
  search runner, final training): the first Ctrl-C asks for no new work and gives running work
  ``run.grace_period`` seconds; the second calls :func:`hard_stop`.
- :func:`hard_stop` SIGKILLs every descendant of this process (pool workers, their evaluation
  children, ``orted`` and the MPI ranks it spawned, a local Dask cluster) and arms a watchdog
  that ends this process :data:`HARD_STOP_SECONDS` later whatever it is waiting on (an exit
  handler joining a dead pool, say). What was finished is already committed to the study (each
  trial and final run is written in its own transaction when it ends).
- :func:`interrupt_now` is the command-wide handler outside such phases (loading data,
  planning, export): a Ctrl-C there is a hard stop at once and raises ``KeyboardInterrupt``.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from types import FrameType
from typing import Any, Callable, Iterable

HARD_STOP_SECONDS = 5.0
"""How long after a hard stop the process may take to end by itself before it is ended with
exit status 130 (the bound is 10 s from the second Ctrl-C; the margin is for a loaded
machine, where a sleeping thread wakes late)."""


def descendants(pid: int | None = None) -> list[int]:
    """Process ids of every descendant of ``pid`` (default: this process), parents first.

    Uses psutil where installed, else Linux's ``/proc``; an empty list where neither works."""
    root = os.getpid() if pid is None else pid
    try:
        import psutil

        try:
            return [p.pid for p in psutil.Process(root).children(recursive=True)]
        except psutil.Error:
            return []
    except ImportError:
        pass
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                text = fh.read().decode("ascii", "replace")
            ppid = int(text.rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out: list[int] = []
    frontier = [root]
    while frontier:
        nxt = []
        for parent in frontier:
            for child in children.get(parent, []):
                out.append(child)
                nxt.append(child)
        frontier = nxt
    return out


def _spared() -> set[int]:
    """Helpers that must outlive a stop: multiprocessing's resource tracker (killing it makes
    its successor print tracebacks about the shared-memory names it never saw)."""
    tracker = sys.modules.get("multiprocessing.resource_tracker")
    pid = getattr(getattr(tracker, "_resource_tracker", None), "_pid", None)
    return {pid} if isinstance(pid, int) else set()


def kill_trees(roots: Iterable[int], include_roots: bool = True) -> int:
    """SIGKILL each process in ``roots`` (if ``include_roots``) and all their descendants.

    Listed first, killed together, twice (a process forked while the first list was made dies
    in the second round, or with its parent through ``PR_SET_PDEATHSIG``). Returns how many
    processes were sent the signal."""
    killed: set[int] = set()
    me = os.getpid()
    spared = _spared()
    roots = list(roots)
    for _ in range(2):
        targets: list[int] = []
        for root in roots:
            if include_roots and root != me:
                targets.append(root)
            targets.extend(descendants(root))
        for pid in targets:
            if pid == me or pid in spared:
                continue
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except (ProcessLookupError, PermissionError):
                pass
    return len(killed)


def quiet_engines() -> None:
    """Silence the engines' loggers for the rest of this process: a stop kills their workers,
    and a Dask nanny then logs its failed restart with a traceback the user need not see."""
    if "distributed" in sys.modules:
        for name in ("distributed", "asyncio", "tornado"):
            logging.getLogger(name).setLevel(logging.CRITICAL + 1)


def _name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as fh:
            return fh.read().strip()
    except OSError:
        return ""


def kill_evaluations(roots: Iterable[int]) -> int:
    """SIGKILL the evaluation children among the descendants of ``roots`` (processes named
    ``nasforge-eval`` by ``isolation``), leaving their workers alive: each worker's task then
    ends with a retryable "killed" result at once, so the executor can shut down (or be used
    again) without waiting for a training. Returns how many were signalled."""
    from nasforge.execution.isolation import EVAL_PROCESS_NAME

    killed = 0
    for root in list(roots):
        for pid in descendants(root):
            if _name(pid) == EVAL_PROCESS_NAME:
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed += 1
                except (ProcessLookupError, PermissionError):
                    pass
    return killed


def kill_descendants() -> int:
    """SIGKILL every descendant of this process; returns how many were signalled."""
    return kill_trees([os.getpid()], include_roots=False)


def _exit_later(seconds: float, code: int) -> None:
    time.sleep(seconds)
    try:
        sys.stderr.write(f"nasforge: stopped (still exiting {seconds:.0f}s after the stop; "
                         "ended now)\n")
        sys.stderr.flush()
        sys.stdout.flush()
    except Exception:  # noqa: BLE001 - the streams may be closed already
        pass
    os._exit(code)


def arm_exit_watchdog(seconds: float = HARD_STOP_SECONDS, code: int = 130) -> threading.Thread:
    """End this process with ``code`` after ``seconds`` unless it has ended by itself (a daemon
    thread: it also runs during interpreter shutdown, where exit handlers may wait)."""
    thread = threading.Thread(target=_exit_later, args=(seconds, code), daemon=True,
                              name="nasforge-exit-watchdog")
    thread.start()
    return thread


def hard_stop(message: Callable[[str], None] | None = None) -> int:
    """Stop now: kill every process this one started and arm the exit watchdog.

    ``message`` (one line) is told how many processes were ended. Returns that count."""
    quiet_engines()
    count = kill_descendants()
    arm_exit_watchdog()
    if message is not None:
        message(f"stopping now: ended {count} process(es); finished work is stored, running "
                "work is left for --resume")
    return count


def interrupt_now(signum: int, frame: FrameType | None) -> None:
    """The command-wide SIGINT handler outside phases with running work: stop at once."""
    hard_stop()
    raise KeyboardInterrupt


class GracefulStop:
    """The SIGINT handler of a phase with running work, as a context manager.

    First Ctrl-C: ``requested_at`` is set (the phase starts no new work) and a line says how
    long running work may go on; second: :func:`hard_stop` and ``hard`` is set. Installed only
    from the main thread (elsewhere it does nothing); the previous handler is restored on exit.
    """

    def __init__(self, grace_period: float, message: Callable[[str], None] | None = None,
                 what: str = "running evaluations") -> None:
        self.grace_period = float(grace_period)
        self.message = message or (lambda text: print(text, file=sys.stderr, flush=True))
        self.what = what
        self.requested_at: float | None = None
        self.hard = False
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> "GracefulStop":
        try:
            self._previous = signal.signal(signal.SIGINT, self.handler)
            self._installed = True
        except ValueError:  # not the main thread
            self._installed = False
        return self

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)

    def handler(self, signum: int, frame: FrameType | None) -> None:
        """First Ctrl-C: request a stop; second: stop now."""
        if self.requested_at is None:
            self.request()
            self.message(f"interrupt: nothing new starts; waiting up to {self.grace_period:.0f}s "
                         f"for {self.what} (Ctrl-C again to stop now; they will be left for "
                         "--resume)")
        else:
            self.hard = True
            hard_stop(self.message)

    def request(self) -> None:
        """Ask for a stop (as a first Ctrl-C does); the grace period counts from now."""
        if self.requested_at is None:
            self.requested_at = time.time()

    @property
    def requested(self) -> bool:
        """Whether a stop was asked for."""
        return self.requested_at is not None

    def expired(self) -> bool:
        """Whether running work must be cut now: a second Ctrl-C, or the grace period is over."""
        return self.hard or (self.requested_at is not None
                             and time.time() - self.requested_at > self.grace_period)
