"""The live dashboard: served pages and JSON over real tiny studies, a search seen growing, and
bad input (not a study, a study being written, a missing folder, a port in use)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import tiny_config_dict
from nasforge.api import Search
from nasforge.config import config_from_dict
from nasforge.dashboard import data
from nasforge.dashboard.app import finite, make_server, no_auth_warning
from nasforge.errors import ConfigError, StorageError
from nasforge.storage import StudyStorage

ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 4-trial study of the tiny search configuration."""
    folder = tmp_path_factory.mktemp("dash")
    cfg = config_from_dict(tiny_config_dict(run={"max_evals": 4, "workers": 2}), "tiny")
    db = folder / "tiny.db"
    search = Search(cfg, db)
    search.run()
    search.close()
    return db


@contextmanager
def serving(paths: list[str | Path], **kwargs: Any) -> Iterator[tuple[str, list[str]]]:
    """Run the dashboard in a thread on a free loopback port; yields its URL and warnings."""
    server, warnings = make_server([str(p) for p in paths], port=0, **kwargs)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 10
    while not server.server.started and time.time() < deadline:
        time.sleep(0.02)
    assert server.server.started, "the dashboard did not start"
    try:
        yield server.url, warnings
    finally:
        server.stop()
        thread.join(timeout=10)
        server.sock.close()


def get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()


def get_json(url: str) -> Any:
    status, ctype, body = get(url)
    assert "application/json" in ctype
    return status, json.loads(body)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.timeout(120)
def test_page_and_endpoints_show_the_study_read_only(tiny_study: Path) -> None:
    before = _digest(tiny_study)
    siblings = sorted(p.name for p in tiny_study.parent.iterdir())
    with StudyStorage.open(tiny_study) as store:
        stored = {t.number: t for t in store.trials()}
        best = store.best(1)[0]
    with serving([tiny_study]) as (url, warnings):
        assert warnings == []
        status, ctype, page = get(url)
        assert status == 200 and "text/html" in ctype
        assert b"/static/plotly.min.js" in page and b"/static/dashboard.js" in page
        status, ctype, js = get(url + "static/plotly.min.js")  # served from the plotly package
        assert status == 200 and len(js) > 1_000_000 and b"plotly" in js[:2000].lower()
        assert get(url + "static/dashboard.js")[0] == 200
        assert get(url + "static/secret.txt")[0] == 404

        _, studies = get_json(url + "api/studies")
        (entry,) = studies["studies"]
        assert entry["error"] is None and entry["path"] == str(tiny_study)
        s = entry["summary"]
        assert (s["finished"], s["max_evals"], s["running"], s["name"]) == (4, 4, 0, "tiny")
        assert s["best_trial"] == best.number and s["best_acc"] == pytest.approx(best.val_acc)

        status, view = get_json(url + f"api/study/{entry['id']}")
        assert status == 200
        assert [r["n"] for r in view["trials"]] == sorted(stored)
        for row in view["trials"]:
            assert row["status"] == stored[row["n"]].status
            assert row["val_acc"] == pytest.approx(stored[row["n"]].val_acc)
        assert len(view["best_by_trial"]["x"]) == 4 and view["best_by_trial"]["y"][-1] == s["best_acc"]
        # a most accurate trial is on the front (of several equally accurate, the smallest)
        top = [t for t in stored.values() if t.val_acc == best.val_acc]
        smallest = min(t.params for t in top)
        assert any(t.number in view["pareto"]["params"] for t in top if t.params == smallest)
        assert {b["n"] for b in view["timeline"]} == set(stored)

        n = best.number
        status, trial = get_json(url + f"api/study/{entry['id']}/trial/{n}")
        assert status == 200 and trial["row"]["n"] == n and trial["genome"] == stored[n].genome
        assert trial["curve"] and trial["genome_text"].startswith("in ->")
        status, ctype, svg = get(url + f"api/study/{entry['id']}/trial/{n}/drawing.svg")
        assert status == 200 and ctype.startswith("image/svg+xml") and b"<svg" in svg
        assert get_json(url + f"api/study/{entry['id']}/trial/999")[0] == 404
        assert get_json(url + "api/study/nosuchid")[0] == 404
    assert _digest(tiny_study) == before  # never written,
    assert sorted(p.name for p in tiny_study.parent.iterdir()) == siblings  # nor files added


@pytest.mark.timeout(60)
def test_shown_text_is_never_markup(tiny_study: Path, tmp_path: Path) -> None:
    odd = tmp_path / "<img src=x onerror=alert(1)>.db"
    shutil.copy(tiny_study, odd)
    with serving([tmp_path]) as (url, _):
        status, _, page = get(url)
        assert b"onerror" not in page  # study data never enters the HTML
        _, studies = get_json(url + "api/studies")
        assert studies["studies"][0]["path"] == str(odd)  # as a JSON string, drawn as text
    js = (Path(data.__file__).parent / "static" / "dashboard.js").read_text()
    assert "innerHTML" not in js and "insertAdjacentHTML" not in js and "document.write" not in js
    assert finite({"a": [float("nan"), 1.0, float("inf")]}) == {"a": [None, 1.0, None]}


@pytest.mark.timeout(180)
def test_a_search_beside_it_is_seen_growing(tmp_path: Path) -> None:
    cfg = tmp_path / "grow.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config_dict(run={"max_evals": 8, "workers": 1},
                                                   budget={"max_steps": 6})))
    folder = tmp_path / "studies"
    folder.mkdir()
    db = folder / "grow.db"
    with serving([folder]) as (url, _):
        _, first = get_json(url + "api/studies")
        assert first["studies"] == []  # nothing yet; the study appears once the search starts
        proc = subprocess.Popen([sys.executable, "-m", "nasforge", "search", str(cfg), "--storage",
                                 str(db), "--quiet"], env=ENV, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        seen: list[int] = []
        running_seen = False
        try:
            deadline = time.time() + 150
            while time.time() < deadline:
                _, studies = get_json(url + "api/studies")
                ready = [s for s in studies["studies"] if s.get("summary")]
                if ready:
                    summary = ready[0]["summary"]
                    seen.append(summary["finished"])
                    running_seen |= summary["running"] > 0
                if proc.poll() is not None and seen and seen[-1] == 8:
                    break
                time.sleep(0.25)
        finally:
            if proc.poll() is None:
                proc.kill()
            _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
    print(f"finished counts seen by the dashboard: {sorted(set(seen))} in {len(seen)} polls")
    assert seen and seen[-1] == 8
    assert seen == sorted(seen)  # the finished count only grows
    assert len(set(seen)) >= 3, seen  # and was seen growing while the search ran
    assert running_seen


_HOLD_LOCK = """
import sqlite3, sys
w = sqlite3.connect(sys.argv[1], isolation_level=None)
w.execute("PRAGMA journal_mode=WAL")
w.execute("PRAGMA locking_mode=EXCLUSIVE")
w.execute("BEGIN EXCLUSIVE")
w.execute("UPDATE study SET name = 'renamed' WHERE id = 1")
print("locked", flush=True)
sys.stdin.readline()
w.execute("ROLLBACK")
w.close()
"""
"""A writer that holds a study locked (another process, as the runner is) until told."""


@pytest.mark.timeout(60)
def test_bad_studies_are_one_line_each_and_the_rest_is_served(tiny_study: Path,
                                                               tmp_path: Path) -> None:
    (tmp_path / "notes.db").write_text("not a database at all\n")
    (tmp_path / "creating.db").touch()  # a study the runner has only just created
    other = sqlite3.connect(tmp_path / "other.db")
    other.execute("CREATE TABLE t (x)")
    other.close()
    locked = tmp_path / "locked.db"
    shutil.copy(tiny_study, locked)
    good = tmp_path / "good.db"
    shutil.copy(tiny_study, good)
    writer = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(locked)], env=ENV,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert writer.stdout is not None and writer.stdout.readline().strip() == "locked"
    try:
        with serving([tmp_path, tmp_path / "missing"]) as (url, warnings):
            assert any("missing: no such study file or folder" in w for w in warnings)
            _, studies = get_json(url + "api/studies")
            by_name = {Path(s["path"]).name: s for s in studies["studies"]}
            assert set(by_name) == {"notes.db", "creating.db", "other.db", "locked.db", "good.db"}
            assert by_name["good.db"]["summary"]["finished"] == 4
            for name, words in (("notes.db", "not a nasforge study"),
                                ("creating.db", "not one yet"), ("other.db", "not a nasforge study"),
                                ("locked.db", "being written")):
                err = by_name[name]["error"]
                assert words in err and "\n" not in err and "Traceback" not in err, (name, err)
            status, body = get_json(url + f"api/study/{by_name['locked.db']['id']}")
            assert status == 409 and "being written" in body["error"]
            writer.communicate("\n", timeout=30)  # the writer lets go
            status, body = get_json(url + f"api/study/{by_name['locked.db']['id']}")
            assert status == 200 and body["summary"]["finished"] == 4, body  # read again once free
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()


def _one_line_failure(args: list[str]) -> str:
    proc = subprocess.run([sys.executable, "-m", "nasforge", "dashboard", *args], env=ENV,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nasforge: error:"), proc.stderr
    return lines[0]


@pytest.mark.timeout(120)
def test_cli_missing_folder_and_port_in_use_are_one_line(tiny_study: Path, tmp_path: Path) -> None:
    assert "no such study file or folder" in _one_line_failure([str(tmp_path / "nowhere")])
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        line = _one_line_failure([str(tiny_study), "--port", str(port)])
    assert f"port {port} on 127.0.0.1 is in use" in line
    with pytest.raises(ConfigError, match="no study file or folder"):
        make_server([str(tmp_path / "a"), str(tmp_path / "b")])


def test_only_loopback_goes_without_a_warning() -> None:
    assert no_auth_warning("127.0.0.1") is None and no_auth_warning("localhost") is None
    warning = no_auth_warning("0.0.0.0")
    assert warning is not None and "no authentication" in warning


@pytest.mark.timeout(60)
def test_snapshots_are_cached_until_the_file_changes(tiny_study: Path, tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    shutil.copy(tiny_study, db)
    catalog, _ = data.StudyCatalog.from_paths([db])
    (entry,) = catalog.refresh()
    first = entry.snapshot
    assert first is not None and catalog.refresh()[0].snapshot is first  # not read again
    with StudyStorage.open(db) as store:  # a write by "the runner"
        store.set_checkpoint(1, None)
    assert catalog.refresh()[0].snapshot is not first
    with pytest.raises(StorageError, match="not found"):
        data.read_snapshot(tmp_path / "gone.db")


@pytest.mark.timeout(60)
def test_failed_and_continued_trials_are_shown_as_data(tiny_study: Path, tmp_path: Path) -> None:
    db = tmp_path / "f.db"
    shutil.copy(tiny_study, db)
    with StudyStorage.open(db) as store:
        first = store.trials()[0]
        n = store.add_trial(genome_key="failed-key", genome=first.genome, budget=first.budget,
                            strategy_state=None)
        store.finish_trial(
            n, status="failed", val_acc=None, params=None, flops=None,
            metrics={"parent": first.number}, error="<script>alert(1)</script>: nan loss",
            curve=[{"epoch": 1, "val_acc": 0.1, "train_loss": float("nan")}],
            stderr="line one\n<b>line two</b>", worker="w:1", attempts=1,
            started_at=time.time() - 1, finished_at=time.time(), checkpoint=None,
            strategy_state=None)
    with serving([db]) as (url, _):
        _, studies = get_json(url + "api/studies")
        sid = studies["studies"][0]["id"]
        assert studies["studies"][0]["summary"]["failed"] == 1
        status, trial = get_json(url + f"api/study/{sid}/trial/{n}")
        assert status == 200  # NaN in the curve does not break the JSON
        assert trial["error"] == "<script>alert(1)</script>: nan loss"  # as data, drawn as text
        assert trial["stderr"] == "line one\n<b>line two</b>"
        assert trial["curve"][0]["train_loss"] is None
        assert trial["row"]["parent"] == first.number
        _, parent = get_json(url + f"api/study/{sid}/trial/{first.number}")
        assert parent["children"] == [n]
        _, view = get_json(url + f"api/study/{sid}")
        row = next(r for r in view["trials"] if r["n"] == n)
        assert row["status"] == "failed" and row["error"] == "<script>alert(#)</script>"
