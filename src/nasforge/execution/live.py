"""The driver's end of the live channel: epochs of running trials in, stop requests out.

A running evaluation appends one JSON line per epoch to ``LIVE_DIR/trial_N.jsonl`` (the
task's ``progress_path``); the driver reads the new lines of each running trial, shows a
supernet search's epochs, and writes ``trial_N.stop`` where the pruner says a trial should
stop (the worker checks for it after every epoch and ends as ``pruned``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Iterable, Iterator, Protocol

__all__ = ["LiveChannel"]


class _Watched(Protocol):
    number: int
    budget: Any
    live_seen: int
    stop_sent: bool
    kind: str


class LiveChannel:
    """Reads the live files of running trials and sends the pruner's stop requests.

    Args:
        live_dir: the study's live folder.
        pruner: the run's pruner (``execution.pruners``), or None.
        message: where progress lines go (``Reporter.message``).
        logger: the study's log.
    """

    def __init__(self, live_dir: Path, pruner: Any, message: Any,
                 logger: logging.Logger) -> None:
        self.live_dir = live_dir
        self.pruner = pruner
        self.message = message
        self.logger = logger
        self.history: dict[int, list[float]] = {}  # epoch -> values of finished trials

    def remember(self, curve: Iterable[dict[str, Any]]) -> None:
        """Add a finished trial's curve to what the pruner compares with."""
        for point in curve:
            if point.get("val_acc") is not None:
                self.history.setdefault(int(point["epoch"]), []).append(float(point["val_acc"]))

    def new_points(self, flight: _Watched) -> Iterator[dict[str, Any]]:
        """The epochs a running trial wrote since the last look, in order; each one counted
        as seen when it is handed out (a caller that stops early leaves the rest for the next
        look). A line still being written ends the look."""
        try:
            lines = (self.live_dir / f"trial_{flight.number}.jsonl").read_text().splitlines()
        except OSError:
            return
        for line in lines[flight.live_seen:]:
            try:
                point = json.loads(line)
            except json.JSONDecodeError:
                return  # still being written
            flight.live_seen += 1
            yield point

    def show_supernet(self, flight: _Watched) -> None:
        """One progress line per epoch the supernet trial wrote since the last look."""
        for point in self.new_points(flight):
            self.message(
                f"trial {flight.number} supernet epoch {point['epoch']}/"
                f"{flight.budget.epochs}: supernet acc {point['val_acc']:.4f}  skips "
                f"{point['skips']}  {point['seconds']:.0f}s  cell {point['cell']}")

    def poll(self, flights: Iterable[_Watched]) -> None:
        """Show running supernet searches' new epochs; with a pruner, send a stop request to
        each running trial it would prune at its newest epoch."""
        for flight in flights:
            if flight.kind == "supernet":
                self.show_supernet(flight)
            elif self.pruner is not None and not flight.stop_sent:
                for point in self.new_points(flight):
                    if point.get("val_acc") is None:  # an epoch the budget does not validate
                        continue
                    epoch, value = int(point["epoch"]), float(point["val_acc"])
                    if self.pruner.should_prune(epoch, value, self.history):
                        (self.live_dir / f"trial_{flight.number}.stop").write_text(str(epoch))
                        flight.stop_sent = True
                        self.logger.info("trial %d: pruned at epoch %d (val acc %.4f)",
                                         flight.number, epoch, value)
                        break

    def finished(self, flight: _Watched, status: str, curve: list[dict[str, Any]]) -> None:
        """A trial ended: show a supernet's last epochs, remove its live files, and remember
        its curve for the pruner (ok and pruned trials)."""
        if flight.kind == "supernet":
            self.show_supernet(flight)  # the epochs not shown yet
            (self.live_dir / f"trial_{flight.number}.jsonl").unlink(missing_ok=True)
        if self.pruner is not None:
            for suffix in (".jsonl", ".stop"):
                (self.live_dir / f"trial_{flight.number}{suffix}").unlink(missing_ok=True)
            if status in ("ok", "pruned"):
                self.remember(curve)
