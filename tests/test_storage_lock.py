"""One driver per study: the lock beside the study file (nasforge.storage.lock)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import nasforge
from nasforge.api import open_study
from nasforge.storage import StudyStorage
from nasforge.storage.lock import StudyLockedError, lock_path

SRC = str(Path(nasforge.__file__).resolve().parents[1])

HOLDER = """
import sys, time
from nasforge.storage import StudyStorage
storage = StudyStorage.open(sys.argv[1], write=True)
print("held", flush=True)
time.sleep(120)
"""


def _new_study(path: Path) -> None:
    StudyStorage.create(path, name="t", config={}, identity={}, identity_hash="h",
                        provenance={}).close()


def test_second_driver_refused_and_killed_holder_frees_the_study(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    _new_study(path)
    assert not lock_path(path).exists()  # closing gives the lock back and removes its file
    env = {**os.environ, "PYTHONPATH": SRC}
    child = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE,
                             text=True, env=env)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        with pytest.raises(StudyLockedError) as info:
            StudyStorage.open(path, write=True)
        message = str(info.value)
        assert f"process {child.pid} on host {socket.gethostname()}" in message
        assert "\n" not in message
        with StudyStorage.open(path) as reader:  # reading commands never take the lock
            assert reader.study()["name"] == "t"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    assert lock_path(path).exists()  # left behind by kill -9, but no longer held
    storage = StudyStorage.open(path, write=True)
    storage.close()
    assert not lock_path(path).exists()


def test_open_study_holds_the_study_until_closed(tmp_path: Path, tiny_config) -> None:
    path = tmp_path / "s.db"
    first = open_study(path, tiny_config, resume=False, force=False)
    with pytest.raises(StudyLockedError, match=f"process {os.getpid()} "):
        open_study(path, tiny_config, resume=True, force=False)
    first.close()
    open_study(path, tiny_config, resume=True, force=False).close()


def test_a_forked_child_does_not_keep_the_study_locked(tmp_path: Path) -> None:
    from nasforge.storage import lock as lock_module

    path = tmp_path / "s.db"
    _new_study(path)
    storage = StudyStorage.open(path, write=True)
    held = storage._lock
    assert held is not None and held._fd is not None
    ready, started = os.pipe()
    pid = os.fork()
    if pid == 0:  # an evaluation child forked from the driver, still running
        os.write(started, b"1")  # (after the fork hooks)
        signal.pause()
        os._exit(0)
    try:
        assert os.read(ready, 1) == b"1"
        # the driver dies (kill -9): its copy of the lock closes without an unlock
        fd, held._fd = held._fd, None
        lock_module._HELD_FDS.discard(fd)
        os.close(fd)
        StudyStorage.open(path, write=True).close()  # the live child holds no copy
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(ready)
        os.close(started)
        storage.close()
