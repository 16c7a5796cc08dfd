"""Progress lines under a time budget: with ``run.search_seconds`` the prefix counts the time
searched (over every run of the study) against the budget instead of ``/max_evals``, and the
tally's eta is the time left of it."""

from __future__ import annotations

import io
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from conftest import tiny_config_dict
from nasforge.api import Search
from nasforge.config import config_from_dict
from nasforge.execution.reporting import Reporter, TimeBounds, clock
from nasforge.execution.runner import SEARCH_SECONDS_KEY, Runner
from nasforge.storage import StudyStorage
from nasforge.storage.sqlite import TrialRecord
from test_search_seconds import _slow_score

CLEAR = "\r\033[K"


class _Terminal(io.StringIO):
    """A stream that says it is a terminal, so the reporter writes its running tally."""

    def isatty(self) -> bool:
        return True


def _record(number: int = 612) -> TrialRecord:
    return TrialRecord(number=number, genome_key="k", budget_key="b", genome={}, budget={},
                       status="ok", val_acc=0.9012, params=1234)


def _lines(stream: io.StringIO) -> list[str]:
    """Every line and every tally the stream got, without the terminal's clear codes."""
    text = stream.getvalue().replace(CLEAR, "\n")
    return [line for line in text.split("\n") if line]


def test_clock_formats() -> None:
    assert clock(45) == "45s"
    assert clock(902.4) == "15m02s"
    assert clock(3900) == "1h05m00s"
    assert clock(-3) == "0s"


def test_without_a_time_budget_the_count_is_against_max_evals() -> None:
    stream = _Terminal()
    reporter = Reporter(stream=stream)
    reporter.trial(_record(), "net", 573, 2000)
    reporter.status(573, 2000, 2, 1, 0.9012, 100.0)
    first, tally = _lines(stream)
    assert first == "[573/2000] trial 612 ok  val acc 0.9012  params 1234  net"
    # 100 s for 573 trials: (2000 - 573) more take about 249 s
    assert tally == ("[573/2000] running 2  failed 1  best val acc 0.9012  elapsed 100s  "
                     "eta 249s")


def test_a_time_limit_alone_keeps_max_evals_and_caps_the_eta() -> None:
    stream = _Terminal()
    reporter = Reporter(stream=stream)
    reporter.bounds = TimeBounds(time_limit=150.0)
    reporter.status(573, 2000, 2, 0, None, 100.0)
    assert _lines(stream)[-1].startswith("[573/2000] running 2")
    assert _lines(stream)[-1].endswith("eta 50s")  # the limit ends it before max_evals


def test_a_search_budget_replaces_max_evals_with_time_searched_of_it() -> None:
    stream = _Terminal()
    reporter = Reporter(stream=stream)
    # an earlier run of the study searched 300 s; this one 602 s
    reporter.bounds = TimeBounds(search_seconds=1200.0, spent_before=300.0)
    reporter.trial(_record(), "net", 573, 2000, elapsed=602.0)
    reporter.status(573, 2000, 2, 0, 0.9012, 602.0)
    first, tally = _lines(stream)
    assert first == "[573 | 15m02s of 20m] trial 612 ok  val acc 0.9012  params 1234  net"
    # the eta is what is left of the budget, not 602 s / 573 * 1427 = 1499 s
    assert tally == ("[573 | 15m02s of 20m] running 2  failed 0  best val acc 0.9012  "
                     "elapsed 602s  eta 4m58s")
    reporter.status(700, 2000, 1, 0, 0.9012, 950.0)  # spent: running ones finish
    assert _lines(stream)[-1] == ("[700 | 20m50s of 20m] running 1  failed 0  best val acc "
                                  "0.9012  elapsed 950s  eta 0s")


def test_the_time_limit_is_shown_where_it_ends_the_run_first() -> None:
    stream = _Terminal()
    reporter = Reporter(stream=stream)
    reporter.bounds = TimeBounds(search_seconds=1200.0, time_limit=600.0)
    reporter.status(10, 2000, 2, 0, None, 100.0)
    assert _lines(stream)[-1].startswith("[10 | 1m40s of 10m limit] running 2")
    assert _lines(stream)[-1].endswith("eta 8m20s")
    reporter.bounds = TimeBounds(search_seconds=1200.0, time_limit=5400.0)
    reporter.status(11, 2000, 2, 0, None, 100.0)
    assert _lines(stream)[-1].startswith("[11 | 1m40s of 20m] running 2")
    assert _lines(stream)[-1].endswith("eta 18m20s")
    reporter.bounds = TimeBounds(search_seconds=5400.0, time_limit=7200.0)
    reporter.status(12, 2000, 2, 0, None, 100.0)
    assert _lines(stream)[-1].startswith("[12 | 1m40s of 1h30m] running 2")


def _search(db: Any, budget_seconds: float) -> list[str]:
    """One run of a tiny search under ``run.search_seconds``; its progress lines."""
    config = config_from_dict(tiny_config_dict(
        run={"max_evals": 1000, "workers": 2, "search_seconds": budget_seconds}))
    stream = _Terminal()
    search = Search(config, db, resume=db.exists(), reporter=Reporter(stream=stream))
    try:
        Runner(config=config, storage=search.storage, space=search.space,
               strategy=search.strategy, executor=ThreadPoolExecutor(2),
               evaluate=_slow_score, reporter=search.reporter).run()
    finally:
        search.close()
    return _lines(stream)


def _seconds(text: str) -> int:
    minutes, _, secs = text.rpartition("m")
    return int(minutes or 0) * 60 + int(secs.rstrip("s"))


@pytest.mark.timeout(60)
def test_a_real_search_counts_time_over_its_runs(tmp_path) -> None:
    db = tmp_path / "s.db"
    lines = _search(db, 2.0)
    trials = [line for line in lines if " trial " in line]
    tallies = [line for line in lines if " running " in line]
    assert trials and tallies
    pattern = re.compile(r"^\[(\d+) \| (\d+s) of 2s\] ")
    for line in lines:
        assert "/1000" not in line, line
        assert pattern.match(line), line
    counts = [int(pattern.match(line).group(1)) for line in trials]
    assert counts == sorted(counts) and counts[-1] >= 4
    assert all(re.search(r"eta (\d+s)$", line) for line in tallies)
    assert tallies[0].endswith("eta 2s") and tallies[-1].endswith("eta 0s")

    # a resume with a larger budget goes on counting from what the first run spent
    with StudyStorage.open(db) as store:
        spent = float(store.meta_value(SEARCH_SECONDS_KEY))
    lines = _search(db, spent + 1.0)
    first = re.match(r"^\[(\d+) \| (\d+s) of (\d+s)\] ", lines[0])
    assert first is not None, lines[0]
    assert int(first.group(1)) >= counts[-1]
    assert _seconds(first.group(2)) >= int(spent)
    assert _seconds(first.group(3)) == round(spent + 1.0)
