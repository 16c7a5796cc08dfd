"""How the ranks of one data-parallel training ended, and which rank's failure is the reason.

The launcher (:func:`nasforge.execution.data_parallel.launch`) records one :class:`RankEnd` per
rank; :func:`first_failure` picks the rank whose failure explains the group's (a rank that
only lost a peer's connection is an effect, not the cause) and words its reason in one line.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from typing import Any, Sequence

from nasforge.execution.results import EvalResult


@dataclass
class RankEnd:
    """How one rank ended: its exit code (negative: killed by that signal), its return value
    (None if it wrote none), when it ended (``time.time()``), its output's tail, and whether
    the launcher killed it."""

    rank: int
    code: int | None
    value: Any
    ended_at: float
    output: str
    killed: bool = False
    poll: int = 0  # the launcher's poll round that saw the end


def _field(value: Any, name: str) -> Any:
    """``name`` of a rank's return value: an ``EvalResult`` field or a dict key (a ping's
    result), else None."""
    if isinstance(value, EvalResult):
        return getattr(value, name)
    return value.get(name) if isinstance(value, dict) else None


def _failed_value(value: Any) -> bool:
    status = _field(value, "status")
    return status not in (None, "ok", "pruned")


def _why(end: RankEnd, nproc: int, timeout: float) -> str:
    """A one-line reason for a rank that did not succeed."""
    who = f"data-parallel rank {end.rank} of {nproc}"
    error = _field(end.value, "error")
    if error:
        text = f"{who}: {error}"
    elif end.killed:
        return f"{who} did not end within {timeout:g}s of the others (hung); killed"
    elif end.code is not None and end.code < 0:
        return f"{who} killed by {signal.Signals(-end.code).name}"
    else:
        last = [line for line in end.output.splitlines() if line.strip()]
        text = f"{who} exited with code {end.code}" + (f": {last[-1].strip()}" if last else "")
    if "timed out" in text.lower():
        text += f" (another rank hung or died: group timeout {timeout:g}s)"
    return text


PEER_LOSS = ("Connection reset by peer", "Connection closed by peer", "Broken pipe")
"""Texts with which gloo fails a rank whose peer died: the peer's failure is the cause."""


def _lost_peer(end: RankEnd) -> bool:
    """Whether ``end``'s rank failed only because another rank's connection went away."""
    error = _field(end.value, "error")
    text = f"{error or ''}\n{end.output[-3000:]}"
    return any(marker in text for marker in PEER_LOSS)


def first_failure(ends: Sequence[RankEnd], timeout: float) -> str | None:
    """The reason of the first rank that did not succeed, if any: a rank that lost a peer's
    connection comes after every other; then by the poll round that saw its end; within one
    round a non-zero exit before a failed result, then by rank."""
    bad = [e for e in ends if e.killed or e.code != 0 or _failed_value(e.value)
           or e.value is None]
    if not bad:
        return None
    alive_at_end = [e for e in bad if not e.killed]
    # a rank that failed because a peer's connection went away is an effect, whenever it was
    # seen; in the same poll round, a crashed rank is the cause and a failed result the effect
    first = min(alive_at_end or bad, key=lambda e: (_lost_peer(e), e.poll, e.code == 0, e.rank))
    return _why(first, len(ends), timeout)


__all__ = ["PEER_LOSS", "RankEnd", "first_failure"]
