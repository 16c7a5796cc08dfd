from __future__ import annotations

import sqlite3

import pytest

from nasforge.errors import StorageError
from nasforge.storage import StudyStorage


def _create(path):
    return StudyStorage.create(
        path, name="t", config={"a": 1}, identity={"seed": 0}, identity_hash="abc",
        provenance={"torch": "x"},
    )


def test_trial_lifecycle(tmp_path) -> None:
    path = tmp_path / "s.db"
    with _create(path) as store:
        n = store.add_trial(genome_key="g1", genome={"x": 1}, budget={"epochs": 1},
                            strategy_state={"step": 1})
        assert store.trial(n).status == "running"
        assert store.count_finished() == 0
        store.finish_trial(n, status="ok", val_acc=0.5, params=10, flops=20, metrics={"m": 1},
                           curve=[{"epoch": 1}], error=None, stderr=None, worker="w",
                           attempts=1, started_at=1.0, finished_at=2.0, checkpoint=None,
                           strategy_state={"step": 2})
        assert store.strategy_state() == {"step": 2}
        assert store.find_finished("g1", {"epochs": 1}).number == n
        assert store.find_finished("g1", {"epochs": 2}) is None
        assert store.best(1)[0].val_acc == 0.5
    # reopen: everything is still there
    with StudyStorage.open(path) as store:
        t = store.trial(n)
        assert (t.status, t.val_acc, t.curve, t.worker) == ("ok", 0.5, [{"epoch": 1}], "w")
        assert store.study()["config"] == {"a": 1}


def test_foreign_files_are_refused_untouched(tmp_path) -> None:
    text = tmp_path / "notes.db"
    text.write_bytes(b"hello, not a database\n" * 10)
    before = text.read_bytes()
    with pytest.raises(StorageError, match="not a nasforge study"):
        StudyStorage.open(text)
    assert text.read_bytes() == before

    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE x (a)")
    conn.commit()
    conn.close()
    before = other.read_bytes()
    with pytest.raises(StorageError, match="not a nasforge study"):
        StudyStorage.open(other)
    assert other.read_bytes() == before


def test_create_refuses_existing(tmp_path) -> None:
    path = tmp_path / "s.db"
    _create(path).close()
    with pytest.raises(StorageError, match="already exists"):
        _create(path)


def test_checkpoints_resolve_in_the_studys_own_folder(tmp_path, monkeypatch) -> None:
    """Two studies with the same relative layout: a relative stored path is never read against
    the working directory (it would name the other study's weights)."""
    from nasforge.storage import resolve_checkpoint

    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        (d / "s_files" / "weights").mkdir(parents=True)
        (d / "s_files" / "weights" / "trial_1.pt").write_text(d.name)
    monkeypatch.chdir(a)
    rel = "s_files/weights/trial_1.pt"  # as b's study recorded it, run from b
    assert resolve_checkpoint(rel, b / "s.db").read_text() == "b"
    assert resolve_checkpoint(rel, "s.db").read_text() == "a"
    # a moved study: the recorded absolute path is gone, the file is found by name
    gone = str(tmp_path / "old" / "s_files" / "weights" / "trial_1.pt")
    assert resolve_checkpoint(gone, b / "s.db").read_text() == "b"
    # not in the study's own folder: missing, even though the working directory has one
    (b / "s_files" / "weights" / "trial_1.pt").unlink()
    assert resolve_checkpoint(rel, b / "s.db") is None
    assert resolve_checkpoint(None, b / "s.db") is None


@pytest.mark.parametrize(("error", "reused"), [
    ("timeout after 5s", False),
    ("out-of-memory (killed by the kernel OOM killer)", False),
    ("evaluation process killed by SIGKILL", False),
    ("evaluation lost 2 times: BrokenProcessPool: gone", False),
    ("nan loss at epoch 1 step 3", True),
    ("GenomeError: the genome has no path from input to output", True),
    ("RuntimeError: boom in forward", True),
])
def test_only_failures_that_would_repeat_are_reused(tmp_path, error, reused) -> None:
    """A timeout, out-of-memory or lost evaluation is trained again when the same network is
    proposed (e.g. after --resume with a longer timeout); a NaN loss or a network that cannot
    be built is not."""
    with _create(tmp_path / "s.db") as store:
        n = store.add_trial(genome_key="g", genome={}, budget={"epochs": 1}, strategy_state=None)
        store.finish_trial(n, status="failed", val_acc=None, params=None, flops=None, metrics={},
                           curve=[], error=error, stderr=None, worker="w", attempts=1,
                           started_at=1.0, finished_at=2.0, checkpoint=None, strategy_state=None)
        found = store.find_finished("g", {"epochs": 1})
        assert (found is not None) == reused
        if not reused:  # a later ok trial of the same network is found
            m = store.add_trial(genome_key="g", genome={}, budget={"epochs": 1},
                                strategy_state=None)
            store.finish_trial(m, status="ok", val_acc=0.5, params=1, flops=1, metrics={},
                               curve=[], error=None, stderr=None, worker="w", attempts=1,
                               started_at=1.0, finished_at=2.0, checkpoint=None,
                               strategy_state=None)
            assert store.find_finished("g", {"epochs": 1}).number == m


def test_best_ranks_each_network_at_the_highest_budget_it_reached(tmp_path) -> None:
    """A network trained to 1 epoch (high accuracy) and continued to 3 (lower) is ranked by its
    3-epoch trial; networks at a larger budget rank before those at a smaller one."""
    with _create(tmp_path / "s.db") as store:
        def add(key, epochs, acc):
            n = store.add_trial(genome_key=key, genome={}, budget={"epochs": epochs},
                                strategy_state=None)
            store.finish_trial(n, status="ok", val_acc=acc, params=1, flops=1, metrics={},
                               curve=[], error=None, stderr=None, worker="w", attempts=1,
                               started_at=1.0, finished_at=2.0, checkpoint=None,
                               strategy_state=None)
            return n
        a1 = add("a", 1, 0.90)
        b1 = add("b", 1, 0.80)
        a3 = add("a", 3, 0.70)
        c1 = add("c", 1, 0.85)
        assert [t.number for t in store.best(5)] == [a3, c1, b1]
        assert a1 not in [t.number for t in store.best(5)]
