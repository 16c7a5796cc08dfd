"""Adversarial checks (session 12, outside ``quick``): bad genome files, studies and configs
given to the commands that are not the evolution path must be one clear error line naming the
file, create nothing and leave stored results as they were."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from nasforge.cli import main
from nasforge.spaces import get_space

needs_table = pytest.mark.skipif(importlib.util.find_spec("analognasbench") is None,
                                 reason="optional NAS-Bench-201 table (analog-nasbench)")
TABULAR = ["--space", "nb201", "--evaluator", "tabular:nb201"]


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nasforge: error: "), err
    return err[0]


def _global_genome_with_cycle() -> dict:
    """A sampled global genome plus the reverse of one of its enabled node-to-node edges."""
    import random

    space = get_space("global")
    for seed in range(100):
        genome = space.genome_to_dict(space.sample(random.Random(seed)))
        inner = [e for e in genome["edges"] if e["enabled"]
                 and e["src"] not in ("in", "out") and e["dst"] not in ("in", "out")]
        if inner:
            genome["edges"].append({"src": inner[0]["dst"], "dst": inner[0]["src"],
                                    "enabled": True})
            return genome
    raise AssertionError("no sampled genome with an edge between two nodes")


@pytest.mark.parametrize("name,space,genome,reason", [
    ("cycle.json", "global", _global_genome_with_cycle(), "cycle among enabled edges"),
    ("darts.json", "darts", {"schema": "nasforge.darts/1",
                             "normal": [["skip_connect", 0], ["skip_connect", 5]] * 4,
                             "reduce": [["skip_connect", 0], ["skip_connect", 1]] * 4},
     "input 5 is not an earlier node"),
])
def test_train_refuses_an_invalid_genome_file_before_creating_a_study(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, space: str,
        genome: dict, reason: str) -> None:
    """Before: the study was created, the data loaded and a FAILED final run stored (or, for
    a cycle, an error line without the file's name after the study was created)."""
    path = tmp_path / name
    path.write_text(json.dumps(genome))
    db = tmp_path / "t.db"
    assert main(["train", str(path), "--space", space, "--epochs", "1",
                 "--storage", str(db)]) == 2
    line = _error_line(capsys)
    assert str(path) in line and f"invalid {space} genome" in line and reason in line
    assert not db.exists()


def test_draw_of_a_genome_file_with_a_cycle_names_the_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Before: ``nasforge: error: cycle among enabled edges: ...`` without the file's name."""
    path = tmp_path / "cycle.json"
    path.write_text(json.dumps(_global_genome_with_cycle()))
    out = tmp_path / "x.dot"
    assert main(["draw", str(path), "-o", str(out)]) == 2
    line = _error_line(capsys)
    assert f"{path}: cycle among enabled edges" in line and not out.exists()


def _small_study(folder: Path) -> Path:
    """A study with its study row and no trials (nothing trained)."""
    from nasforge.config import config_from_dict
    from nasforge.storage import StudyStorage
    from tests.conftest import tiny_config_dict

    config = config_from_dict(tiny_config_dict(), "tiny")
    db = folder / "s.db"
    StudyStorage.create(db, name="tiny", config=config.to_dict(), identity={"a": 1},
                        identity_hash="h", provenance={}).close()
    return db


@pytest.mark.parametrize("sql,message", [
    ("UPDATE study SET config_json = '{'", "s.db: study row: column config_json is damaged"),
    ("UPDATE study SET provenance_json = '[1]'",
     "s.db: study row: column provenance_json is damaged (holds list, expected dict)"),
    ("UPDATE meta SET value = 'abc' WHERE key = 'schema_version'",
     "s.db: meta value schema_version is damaged (holds 'abc', expected a whole number)"),
    ("INSERT INTO strategy_state VALUES (1, '{', 0)",
     "s.db: strategy state: column state_json is damaged (not JSON"),
    ("INSERT INTO meta VALUES ('multi_fidelity', '{')",
     "s.db: meta multi_fidelity: column value is damaged (not JSON"),
])
def test_a_study_damaged_outside_its_trial_rows_is_one_line_and_untouched(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], sql: str, message: str) -> None:
    """Before: ``nasforge: internal error: JSONDecodeError`` (config, strategy state, meta
    value) or ``ValueError: invalid literal for int()`` (schema version)."""
    import sqlite3

    db = _small_study(tmp_path)
    with sqlite3.connect(db) as conn:
        conn.execute(sql)
    before = db.read_bytes()
    assert main(["report", str(db), "-o", str(tmp_path / "r.html")]) == 2
    assert message in _error_line(capsys)
    assert db.read_bytes() == before and not (tmp_path / "r.html").exists()


@needs_table
@pytest.mark.parametrize("how", ["other strategy", "damaged state"])
def test_a_resume_whose_strategy_state_cannot_be_restored_writes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], how: str) -> None:
    """Before: ``internal error: KeyError: 'pheromone'`` (``--resume --force`` after changing
    ``strategy.name``) or ``KeyError: 'rng'`` (a state edited by hand), after the resume had
    already rewritten the study's config and identity (a later plain ``--resume`` was then
    refused as another study)."""
    import sqlite3

    db = tmp_path / "t.db"
    base = ["search", "quick", *TABULAR, "--storage", str(db), "--quiet"]
    assert main(base + ["--max-evals", "12"]) == 0
    args = base + ["--max-evals", "20", "--resume"]
    if how == "other strategy":
        args += ["--force", "--strategy", "aco"]
        expected = "cannot be restored by strategy 'aco' (missing key 'pheromone')"
    else:
        conn = sqlite3.connect(db)
        with conn:
            conn.execute("UPDATE strategy_state SET state_json = '{\"population\": 3}'")
        conn.close()
        expected = "cannot be restored by strategy 'evolution' (missing key 'rng')"
    capsys.readouterr()
    before = db.read_bytes()
    assert main(args) == 2
    line = _error_line(capsys)
    assert line.startswith(f"nasforge: error: {db}: ") and expected in line
    assert db.read_bytes() == before and not Path(f"{db}-wal").exists()
    if how == "other strategy":  # the study is still the evolution study it was
        assert main(base + ["--max-evals", "20", "--resume"]) == 0


@pytest.mark.parametrize("strategy,key,value,message", [
    ("evolution", "population", "abc", "evolution: population must be an int >= 1, got 'abc'"),
    ("evolution", "sample", "2.5", "evolution: sample must be an int >= 1, got 2.5"),
    ("smbo", "candidates", "x", "smbo: candidates must be an int >= 1, got 'x'"),
    ("smbo", "ucb_beta", "x", "smbo: ucb_beta must be a number >= 0.0, got 'x'"),
    ("hyperband", "iterations", "x", "hyperband: iterations must be an int >= 1, got 'x'"),
    ("bohb", "samples", "x", "bohb: samples must be an int >= 1, got 'x'"),
    ("asha", "novelty_tries", "x", "asha: novelty_tries must be an int >= 0, got 'x'"),
])
def test_a_strategy_setting_of_the_wrong_type_is_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], strategy: str, key: str,
        value: str, message: str) -> None:
    """Before: ``internal error: TypeError: '<' not supported between instances of 'str' and
    'int'`` (a float population was taken as it was)."""
    db = tmp_path / "s.db"
    assert main(["search", "quick", "--space", "nb201", "--strategy", strategy, "--set",
                 f"strategy.settings.{key}={value}", "--storage", str(db), "--no-final"]) == 2
    assert message in _error_line(capsys)
    assert not db.exists()


def test_a_binary_config_file_is_one_line(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """Before: ``internal error: UnicodeDecodeError``."""
    path = tmp_path / "c.yaml"
    path.write_bytes(b"\xf7\x00\x01binary")
    assert main(["search", str(path), "--storage", str(tmp_path / "c.db")]) == 2
    assert f"{path}: not a YAML text file" in _error_line(capsys)


@needs_table
def test_a_stored_genome_the_space_refuses_names_the_study_and_trial(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Before: ``nasforge: error: nb201 genome: unknown operation 'conv_9x9'; ...`` without the
    study or the trial (``best``, ``draw``, and a ``--resume`` after its search)."""
    import sqlite3

    db = tmp_path / "t.db"
    assert main(["search", "quick", *TABULAR, "--storage", str(db), "--max-evals", "6",
                 "--quiet"]) == 0
    conn = sqlite3.connect(db)
    with conn:  # every trial: whichever is best holds the damaged genome
        conn.execute("UPDATE trials SET genome_json = replace(genome_json, 'none', 'conv_9x9')")
        conn.execute("UPDATE trials SET genome_json = replace(genome_json, 'skip_connect', "
                     "'conv_9x9')")
    conn.close()
    capsys.readouterr()
    before = db.read_bytes()
    for args in (["best", str(db)], ["draw", str(db), "-o", str(tmp_path / "x.dot")]):
        assert main(args) == 2
        line = _error_line(capsys)
        assert f"{db}: trial " in line and ": column genome_json is damaged (nb201 genome: " \
            "unknown operation 'conv_9x9'" in line, line
    assert db.read_bytes() == before


@needs_table
@pytest.mark.parametrize("strategy", ["darts", "gdas"])
def test_bench_refuses_a_one_shot_strategy(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           strategy: str) -> None:
    """Before: the supernet's stand-in genome was answered from the table as if searched
    (``darts`` and ``gdas`` printed the same figures) and the curves written."""
    out = tmp_path / "b"
    assert main(["bench", strategy, *TABULAR, "--evals", "5", "--seeds", "1", "-o",
                 str(out)]) == 2
    assert f"bench: '{strategy}' is a one-shot strategy" in _error_line(capsys)
    assert not out.exists()


@needs_table
def test_bench_output_that_is_a_file_is_one_line(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Before: ``internal error: FileExistsError`` after the runs."""
    out = tmp_path / "f"
    out.write_text("keep")
    assert main(["bench", "random", *TABULAR, "--evals", "5", "--seeds", "1", "-o",
                 str(out)]) == 2
    assert f"-o {out}: exists and is not a folder" in _error_line(capsys)
    assert out.read_text() == "keep"


def _has_trial(db: Path, number: int) -> bool:
    """Whether the study (being written by another process) holds trial ``number`` yet."""
    import sqlite3

    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            return conn.execute("SELECT 1 FROM trials WHERE number = ?",
                                (number,)).fetchone() is not None
        finally:
            conn.close()
    except sqlite3.Error:  # not created yet
        return False


@pytest.mark.timeout(300)
def test_an_interrupted_search_says_its_final_step_was_not_started(tmp_path: Path) -> None:
    """Before: one Ctrl-C in the search of a config with a ``final`` section ended with
    ``study stored in ...`` and exit 0, the final training skipped without a word."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import yaml

    from tests.conftest import tiny_config_dict

    raw = tiny_config_dict(run={"max_evals": 6, "workers": 1},
                           budget={"max_steps": 2, "epochs": 1, "width": 4})
    raw["final"] = {"top": 1, "seeds": 1, "budget": {"epochs": 1, "width": 4, "max_steps": 2}}
    cfg = tmp_path / "f.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "NASFORGE_FAULTS": "eval-start:2.1=sleep:120"}
    proc = subprocess.Popen([sys.executable, "-m", "nasforge", "search", str(cfg), "--storage",
                             str(tmp_path / "f.db"), "--set", "run.grace_period=1"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 200  # generous: the machine may be loaded
    while not _has_trial(tmp_path / "f.db", 2) and time.time() < deadline:
        time.sleep(0.2)  # the second trial's evaluation is then held by the fault point
    time.sleep(1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=90)
    assert "stopped: interrupted" in out, (out, err)
    assert ("final training not started: the search was interrupted; --resume finishes the "
            "search and then trains") in out
    assert "Traceback" not in err


@pytest.mark.parametrize("flags,message", [
    (["--epochs", "0"], "budget.epochs must be a positive integer, got 0"),
    (["--optimizer", "foo"], "unknown optimizer 'foo'"),
    (["--nproc", "0"], "--nproc must be at least 1, got 0"),
])
def test_train_with_a_bad_flag_leaves_no_empty_study(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str],
        message: str) -> None:
    """Before: the genome file's new study was created first and left behind, empty."""
    path = tmp_path / "g.json"
    path.write_text(json.dumps({"cell": "|nor_conv_3x3~0|+|nor_conv_3x3~0|none~1|+|"
                                        "skip_connect~0|none~1|nor_conv_3x3~2|"}))
    db = tmp_path / "t.db"
    assert main(["train", str(path), "--space", "nb201", *flags, "--storage", str(db)]) == 2
    assert message in _error_line(capsys)
    assert not db.exists()
