"""``run.search_seconds``: the search's own time budget. After it no new trial starts, the
running ones finish (not cut), and a ``--resume`` searches only what is left."""

from __future__ import annotations

import hashlib
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from conftest import tiny_config_dict
from nasforge.api import Search
from nasforge.config import config_from_dict
from nasforge.errors import ConfigError
from nasforge.execution.results import EvalResult
from nasforge.execution.runner import SEARCH_SECONDS_KEY, Runner
from nasforge.storage import StudyStorage

TRIAL_SECONDS = 0.4


def _slow_score(task: Any, **_: Any) -> EvalResult:
    """A made-up fitness after TRIAL_SECONDS of sleep (no training)."""
    time.sleep(TRIAL_SECONDS)
    now = time.time()
    digest = hashlib.sha256(repr(task.genome).encode()).hexdigest()
    return EvalResult(status="ok", val_acc=int(digest[:8], 16) / 2**32, params=1, flops=1,
                      started_at=now - TRIAL_SECONDS, finished_at=now)


def _run(db, budget_seconds: float):  # noqa: ANN001, ANN202
    config = config_from_dict(tiny_config_dict(
        run={"max_evals": 1000, "workers": 2, "search_seconds": budget_seconds}))
    search = Search(config, db, resume=db.exists())
    runner = Runner(config=config, storage=search.storage, space=search.space,
                    strategy=search.strategy, executor=ThreadPoolExecutor(2),
                    evaluate=_slow_score)
    started = time.time()
    summary = runner.run()
    wall = time.time() - started
    search.close()
    return summary, wall


@pytest.mark.timeout(60)
def test_the_search_stops_starting_trials_and_lets_running_ones_finish(tmp_path) -> None:
    db = tmp_path / "s.db"
    summary, wall = _run(db, 2.0)
    assert "search time budget" in summary.stop_reason
    with StudyStorage.open(db) as store:
        assert store.count("running") == 0  # none cut
        finished = store.count_finished()
        spent = float(store.meta_value(SEARCH_SECONDS_KEY))
    # 2 workers, 0.4 s a trial: about 10 trials in 2 s, far from max_evals (1000)
    assert 4 <= finished <= 20
    assert 2.0 <= wall < 2.0 + 3 * TRIAL_SECONDS + 2.0
    assert spent >= 2.0

    # a resume with the budget spent starts nothing new
    again, wall2 = _run(db, 2.0)
    with StudyStorage.open(db) as store:
        assert store.count_finished() == finished
    assert "search time budget" in again.stop_reason and wall2 < 2.0

    # a larger budget on resume searches only the difference
    _run(db, spent + 1.0)
    with StudyStorage.open(db) as store:
        more = store.count_finished() - finished
    assert 1 <= more <= 10


def test_search_seconds_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="search_seconds"):
        config_from_dict(tiny_config_dict(run={"search_seconds": 0}))
    config = config_from_dict(tiny_config_dict(run={"search_seconds": "20m"}))
    assert config.run.search_seconds == 1200
