"""The NAS-Bench-201 table (optional package analog-nasbench), its fidelity layer and
``nasforge bench``. Tests that read the table are skipped only when the package is missing."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import pickle

import numpy as np
import pytest

from nasforge.benchmarks import nb201_table
from nasforge.benchmarks.bench import mean_interval, run_strategy, write_csv
from nasforge.benchmarks.commands import parse_settings, table_rows
from nasforge.benchmarks.fidelity import SyntheticFidelity
from nasforge.benchmarks.nb201_table import (
    INSTALL_COMMAND, TableError, TableMissingError, load_table, naslib_key,
)
from nasforge.cli import main
from nasforge.errors import ConfigError
from nasforge.spaces import get_space
from nasforge.spaces.nb201 import NB201Genome, parse_nb201
from nasforge.spaces.nb201_ops import EDGES

HAVE_TABLE = importlib.util.find_spec("analognasbench") is not None
needs_table = pytest.mark.skipif(not HAVE_TABLE, reason=f"optional table: {INSTALL_COMMAND}")


@pytest.fixture(scope="module")
def table():
    return load_table()


def _hide_package(monkeypatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)

    def no_files(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "files", no_files)


def test_missing_package_is_one_line(monkeypatch, capsys) -> None:
    _hide_package(monkeypatch)
    with pytest.raises(TableMissingError, match="pip install --no-deps analog-nasbench==0.1.3"):
        load_table()
    assert main(["bench", "random", "--evals", "3", "--seeds", "1", "--no-plot"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and INSTALL_COMMAND in err and "Traceback" not in err


def test_naslib_key_order() -> None:
    # ours: 1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2; NASLib: 1<-0, 2<-0, 3<-0, 2<-1, 3<-1, 3<-2
    g = NB201Genome(("skip_connect", "none", "nor_conv_3x3", "nor_conv_1x1", "avg_pool_3x3",
                     "none"))
    assert naslib_key(g) == (0, 1, 3, 2, 4, 1)


@needs_table
def test_single_edge_cells(table) -> None:
    values = {}
    for k, edge in enumerate(EDGES):
        ops = ["none"] * 6
        ops[k] = "nor_conv_3x3"
        values[edge] = round(table.lookup(NB201Genome(tuple(ops))), 2)
    assert values == {(1, 0): 10.0, (2, 0): 10.0, (2, 1): 10.0, (3, 0): 91.70, (3, 1): 10.0,
                      (3, 2): 10.0}


@needs_table
def test_table_facts(table) -> None:
    assert len(table.accuracy) == 15625 and table.sha256 == nb201_table.TABLE_SHA256
    assert round(table.best(), 2) == 94.07
    best = max(table.accuracy, key=table.accuracy.get)
    assert best == (2, 2, 0, 2, 3, 2)
    assert round(table.expected_best_of(100), 3) == 93.502
    assert round(table.expected_best_of(200), 3) == 93.626
    assert table.expected_best_of(1) == pytest.approx(table.values().mean())
    g = parse_nb201("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|"
                    "+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|")
    assert table.cost(g) == pytest.approx(4402.3936)  # 440.24 MFLOPs x 1e-5 s
    rows = dict(table_rows("|none~0|+|none~0|none~1|+|nor_conv_3x3~0|none~1|none~2|", table))
    assert rows["table test accuracy"].startswith("91.70%")


@needs_table
def test_corrupt_or_wrong_file_is_refused(table, tmp_path) -> None:
    data = bytearray(open(table.path, "rb").read())
    data[1000] ^= 0xFF
    bad = tmp_path / "data.anb"
    bad.write_bytes(bytes(data))
    with pytest.raises(TableError, match="sha256"):
        load_table(bad)
    with pytest.raises(TableError, match="not found"):
        load_table(tmp_path / "missing.anb")


def test_unpickler_runs_no_code(tmp_path) -> None:
    import hashlib

    evil = tmp_path / "evil.anb"
    evil.write_bytes(pickle.dumps(print))  # a global the restricted unpickler must refuse
    digest = hashlib.sha256(evil.read_bytes()).hexdigest()
    with pytest.raises(TableError, match="not allowed"):
        load_table(evil, expected_sha256=digest)
    empty = tmp_path / "empty.anb"
    empty.write_bytes(pickle.dumps({}))
    with pytest.raises(TableError, match="15,625"):
        load_table(empty, expected_sha256=hashlib.sha256(empty.read_bytes()).hexdigest())


@needs_table
def test_bench_runs_strategies_on_the_table(table, tmp_path) -> None:
    space = get_space("nb201")
    results = [run_strategy(name, space, table, 60, [0, 1, 2]) for name in ("random", "evolution")]
    for r in results:
        assert r.best.shape == (3, 60) and np.all(np.diff(r.best, axis=1) >= 0)
        assert np.all(np.diff(r.seconds, axis=1) > 0) and r.best.max() <= table.best()
    assert results[1].settings == {"population": 20, "sample": 5}
    write_csv(results, table, tmp_path / "c.csv")
    head = (tmp_path / "c.csv").read_text().splitlines()
    assert table.sha256 in head[0] and len(head) == 3 + 2 * 3 * 60
    with pytest.raises(ConfigError):
        run_strategy("nope", space, table, 5, [0])


@needs_table
def test_random_search_matches_exact_expectation(table) -> None:
    r = run_strategy("random", get_space("nb201"), table, 100, list(range(100)))
    mean, half = mean_interval(r.best)
    for n in (10, 100):
        assert abs(mean[n - 1] - table.expected_best_of(n)) <= half[n - 1]


@needs_table
def test_bench_cli(tmp_path, capsys) -> None:
    rc = main(["bench", "random", "evolution", "--evals", "20", "--seeds", "3", "-o",
               str(tmp_path), "--settings", "evolution:population=5,sample=2"])
    out = capsys.readouterr().out
    assert rc == 0 and "exact E[best of 20]" in out and "{'population': 5, 'sample': 2}" in out
    assert (tmp_path / "curves.csv").is_file() and (tmp_path / "bench.png").stat().st_size > 0
    assert main(["bench", "random", "--evaluator", "train", "--no-plot"]) == 2
    assert main(["bench", "random", "--space", "global", "--no-plot"]) == 2


def test_parse_settings() -> None:
    assert parse_settings(["evolution:population=20,sample=5", "x:a=b"]) == {
        "evolution": {"population": 20, "sample": 5}, "x": {"a": "b"}}
    for bad in ("evolution", "evolution:population"):
        with pytest.raises(ConfigError):
            parse_settings([bad])


@needs_table
def test_synthetic_fidelity(table) -> None:
    fid = SyntheticFidelity(table, seed=3)
    g = parse_nb201("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|"
                    "nor_conv_1x1~1|nor_conv_3x3~2|")
    assert fid.accuracy(g, 200) == pytest.approx(table.lookup(g))
    assert fid.accuracy(g, 20) == SyntheticFidelity(table, seed=3).accuracy(g, 20)
    assert fid.accuracy(g, 20) != SyntheticFidelity(table, seed=4).accuracy(g, 20)
    assert fid.accuracy(g, 2) < fid.accuracy(g, 100) and fid.cost(g, 20) == table.cost(g) / 10
    taus = fid.rank_agreement()
    all_cells = np.mean([v[0] for v in taus.values()])
    best_half = np.mean([v[1] for v in taus.values()])
    assert 0.86 <= all_cells <= 0.90 and 0.65 <= best_half <= 0.71
    assert taus[0.1][0] < taus[0.2][0] < taus[0.5][0]
    with pytest.raises(ConfigError):
        fid.accuracy(g, 0)


@needs_table
def test_a_search_with_the_tabular_evaluator_answers_from_the_table(tmp_path, table, capsys) -> None:
    """`nasforge search --evaluator tabular:nb201` runs the ordinary runner and study in this
    process: every trial's fitness is its cell's table value; it resumes like any study."""
    from nasforge.spaces.nb201 import NB201Genome
    from nasforge.storage import StudyStorage

    db = tmp_path / "t.db"
    args = ["search", "quick", "--space", "nb201", "--evaluator", "tabular:nb201",
            "--storage", str(db), "--set", "strategy.settings={population: 8, sample: 3}"]
    assert main(args + ["--max-evals", "30"]) == 0
    out = capsys.readouterr().out
    assert "tabular benchmark run" in out and "no final training" in out
    assert main(args + ["--max-evals", "40", "--resume"]) == 0
    capsys.readouterr()
    space = get_space("nb201")
    with StudyStorage.open(db) as store:
        trials = store.trials()
        assert len(trials) == 40 and all(t.status == "ok" for t in trials)
        for t in trials:
            genome = space.genome_from_dict(t.genome)
            assert isinstance(genome, NB201Genome)
            assert t.val_acc == pytest.approx(table.lookup(genome) / 100)
            assert t.metrics["benchmark"] == "tabular:nb201"
    # the table answers nb201 cells only: one line, no study
    assert main(["search", "quick", "--evaluator", "tabular:nb201",
                 "--storage", str(tmp_path / "g.db")]) == 2
    assert "answers the nb201 space only" in capsys.readouterr().err
    assert not (tmp_path / "g.db").exists()


@needs_table
def test_space_show_prints_a_cells_table_value(capsys, table) -> None:
    cell = "|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    assert main(["space", "show", "--space", "nb201", cell, "--table",
                 "--input", "3x32x32"]) == 0
    out = capsys.readouterr().out
    assert f"{table.lookup(parse_nb201(cell)):.2f}%" in out and "table test accuracy" in out
    assert main(["space", "show", "--space", "nb201", "|bogus~0|+|none~0|none~1|+|none~0|"
                 "none~1|none~2|", "--table"]) == 2
    assert "bogus" in capsys.readouterr().err
