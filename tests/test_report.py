"""HTML report, comparison and drawings, on study files written directly with StudyStorage."""

from __future__ import annotations

import argparse
import random
import re
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from conftest import tiny_config_dict
from nasforge.config import config_from_dict
from nasforge.execution.runner import genome_key
from nasforge.report import commands
from nasforge.report.draw import draw_genome, draw_to_file, genome_from_source
from nasforge.report.html import (
    COMPARE_SECTION_IDS,
    SECTION_IDS,
    failure_reason,
    load_snapshot,
    render_report,
    write_compare,
    write_report,
)
from nasforge.report.plots import pareto_front
from nasforge.spaces import get_space
from nasforge.storage import StudyStorage

IMG = "data:image/png;base64,"
NETWORK_REF = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.IGNORECASE)
HAS_DOT = shutil.which("dot") is not None

FAILURES = [
    ("nan loss at epoch 1 step 12", None),
    ("timeout", None),
    ("out-of-memory: RuntimeError: DefaultCPUAllocator: can't allocate memory",
     "Traceback (most recent call last):\n  File \"trainer.py\", line 80\nRuntimeError: can't allocate"),
    ("GenomeError: cannot build genome: spatial size 0 after n3", None),
]


def make_study(
    path: Path,
    *,
    strategy: str = "evolution",
    seed: int = 0,
    n_ok: int = 24,
    failures: int = 4,
    running: int = 2,
    finals: bool = True,
    workers: tuple[str, ...] = ("hostA:101", "hostA:102", "hostB:201"),
    checkpoints: dict[int, str] | None = None,
) -> Path:
    """A study file with realistic fake trials: ok ones improving with noise, failures of
    several kinds, running rows, several workers with idle gaps, and final runs."""
    raw = tiny_config_dict(
        strategy={"name": strategy, "settings": {} if strategy == "random" else
                  {"population": 4, "sample": 2}},
        run={"max_evals": max(1, n_ok + failures + running), "workers": len(workers), "keep_best": 2},
        final={"top": 1, "seeds": 2, "budget": {"epochs": 3, "width": 8}},
    )
    raw["seed"] = seed
    raw["name"] = f"{strategy}-s{seed}"
    config = config_from_dict(raw, "test")
    space = get_space(config.space.name, **config.space.settings)
    rng = random.Random(seed)
    storage = StudyStorage.create(
        path, name=config.name, config=config.to_dict(), identity={"name": config.name},
        identity_hash=f"h{seed}", provenance={"nasforge": "0.1.0", "torch": "2.13.0",
                                              "python": "3.11", "host": "hostA", "device": "cpu"},
    )
    kinds = ["ok"] * n_ok + ["failed"] * failures
    rng.shuffle(kinds)
    clock = {w: 1.7e9 + i * 3.0 for i, w in enumerate(workers)}
    best_acc = 0.55
    records: list[tuple[int, dict[str, Any], str, float]] = []
    n_failed = 0
    for i, kind in enumerate(kinds):
        genome = space.sample(rng)
        gdict = space.genome_to_dict(space.canonical(genome))
        gkey = genome_key(space, genome)
        worker = min(clock, key=clock.get)  # the first free worker takes the next trial
        start = clock[worker] + rng.uniform(0.5, 8.0)
        number = storage.add_trial(genome_key=gkey, genome=gdict, budget=config.budget.to_dict(),
                                   strategy_state={"i": i}, worker=None)
        if kind == "ok":
            duration = rng.uniform(20, 90)
            best_acc = min(0.93, best_acc + rng.uniform(0.0, 0.02))
            acc = best_acc - rng.uniform(0.0, 0.12)
            params = rng.randint(2_000, 150_000)
            curve = [{"epoch": e, "train_loss": 1.6 / e, "val_loss": 1.2 / e + 0.1,
                      "val_acc": acc - 0.1 / e, "seconds": duration / 3} for e in (1, 2, 3)]
            storage.finish_trial(
                number, status="ok", val_acc=acc, params=params, flops=params * 180,
                metrics={"best_val_acc": acc, "train_seconds": duration,
                         "images_per_second": 900.0, "epochs_run": 3},
                curve=curve, error=None, stderr=None, worker=worker, attempts=1,
                started_at=start, finished_at=start + duration,
                checkpoint=(checkpoints or {}).get(number), strategy_state=None,
            )
            records.append((number, gdict, gkey, acc))
        else:
            error, stderr = FAILURES[n_failed % len(FAILURES)]
            n_failed += 1
            duration = rng.uniform(2, 30)
            storage.finish_trial(
                number, status="failed", val_acc=None, params=None, flops=None, metrics={},
                curve=[], error=error, stderr=stderr, worker=worker, attempts=2 if "timeout" in error else 1,
                started_at=start, finished_at=start + duration, checkpoint=None, strategy_state=None,
            )
        clock[worker] = start + duration
    for _ in range(running):
        genome = space.sample(rng)
        storage.add_trial(genome_key=genome_key(space, genome),
                          genome=space.genome_to_dict(space.canonical(genome)),
                          budget=config.budget.to_dict(), strategy_state=None)
    if finals and records:
        number, gdict, gkey, _ = max(records, key=lambda r: r[3])
        budget = config.final.budget.to_dict()  # type: ignore[union-attr]
        for s, acc in enumerate((0.901, 0.897)):
            storage.add_final_run(
                trial_number=number, genome_key=gkey, genome=gdict, budget=budget, seed=s,
                status="ok", val_acc=None, test_acc=acc, params=41_000,
                metrics={"train_seconds": 300.0, "curve": [
                    {"epoch": e, "train_loss": 1.0 / e, "val_loss": 0.8 / e, "val_acc": acc - 0.05 / e,
                     "seconds": 100.0} for e in (1, 2, 3)], "error": None},
                checkpoint=None,
            )
        storage.add_final_run(
            trial_number=number, genome_key=gkey, genome=gdict, budget=budget, seed=2,
            status="failed", val_acc=None, test_acc=None, params=None,
            metrics={"curve": None, "error": "timeout"}, checkpoint=None,
        )
    storage.close()
    # add_trial stamps submission with the real clock; place it just before each start
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE trials SET submitted_at = started_at - 0.2 WHERE started_at IS NOT NULL")
        last = max(clock.values())
        conn.execute("UPDATE trials SET submitted_at = ? - 40 WHERE status = 'running'", (last,))
    return path


def check_self_contained(text: str) -> None:
    assert NETWORK_REF.search(text) is None, NETWORK_REF.search(text)
    assert "<script" not in text.lower()
    assert "@import" not in text and "url(" not in text


def section_ids(text: str) -> set[str]:
    return set(re.findall(r'<section id="([^"]+)"', text))


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_study(tmp_path_factory.mktemp("report") / "study.db")


@pytest.mark.skipif(not HAS_DOT, reason="Graphviz dot not installed")
def test_report_has_every_section_and_inlined_images(study: Path, tmp_path: Path) -> None:
    out = write_report(study, tmp_path / "report.html")
    text = out.read_text()
    assert section_ids(text) == set(SECTION_IDS)
    # 2 progress + 1 histogram + 2 trade-offs + 1 timeline + 5 drawings + 5 curves + 1 final
    assert text.count(IMG) >= 17
    assert 'id="top-5"' in text and 'class="genome"' not in text
    check_self_contained(text)
    for reason in ("timeout", "out-of-memory", "GenomeError", "nan loss at epoch # step #"):
        assert reason in text
    assert "0.8990" in text  # mean final test accuracy of the two ok seeds
    assert "still marked running" in text
    assert "hostB:201" in text


def test_report_without_dot_falls_back_to_text(study: Path) -> None:
    text = render_report(load_snapshot(study), top=5, find_dot=lambda: None)
    assert section_ids(text) == set(SECTION_IDS)
    assert text.count('<pre class="genome">') == 5
    assert "was not found" in text
    assert text.count(IMG) >= 12
    check_self_contained(text)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_ok": 0, "failures": 0, "running": 0, "finals": False},  # empty study
        {"n_ok": 0, "failures": 5, "running": 0, "finals": False},  # only failures
        {"n_ok": 0, "failures": 0, "running": 3, "finals": False},  # only running rows
        {"n_ok": 1, "failures": 0, "running": 0, "finals": False, "workers": ("h:1",)},
    ],
    ids=["empty", "only-failures", "only-running", "one-ok"],
)
def test_report_edge_cases(tmp_path: Path, kwargs: dict[str, Any]) -> None:
    path = make_study(tmp_path / "s.db", **kwargs)
    text = render_report(load_snapshot(path), find_dot=lambda: None)
    assert section_ids(text) == set(SECTION_IDS)
    assert text.count(IMG) >= 6  # every plot renders, even as a "no data" figure
    check_self_contained(text)
    assert "No final training recorded" in text


def test_compare_two_strategies_with_seeds(tmp_path: Path) -> None:
    paths = [
        make_study(tmp_path / "rs.db", strategy="random", seed=0, running=0),
        make_study(tmp_path / "ev0.db", strategy="evolution", seed=0, running=0, finals=False),
        make_study(tmp_path / "ev1.db", strategy="evolution", seed=1, n_ok=18, running=0),
    ]
    out = write_compare(paths, tmp_path / "compare.html")
    text = out.read_text()
    assert section_ids(text) == set(COMPARE_SECTION_IDS)
    assert text.count(IMG) == 2
    check_self_contained(text)
    for name in ("random-s0", "evolution-s0", "evolution-s1", "evolution: 2 studies"):
        assert name in text
    assert "0.8990 (2 seeds)" in text


def test_draw_png_svg_and_fallback(study: Path, tmp_path: Path) -> None:
    src = genome_from_source(study, trial=1)
    assert src.width == 4 and src.input_shape == (1, 12, 12)
    svg = draw_to_file(src, tmp_path / "a.svg")
    assert svg.graphviz == HAS_DOT and b"<svg" in (tmp_path / "a.svg").read_bytes()
    png = draw_to_file(src, tmp_path / "a.png", find_dot=lambda: None)
    assert not png.graphviz
    assert (tmp_path / "a.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    dot = draw_to_file(src, tmp_path / "a.dot")
    assert (tmp_path / "a.dot").read_text().startswith("digraph")
    if HAS_DOT:
        drawing = draw_genome(src.space, src.genome, "png", 8, (1, 28, 28))
        assert drawing.graphviz and drawing.data[:4] == b"\x89PNG"
    assert dot.text == src.space.describe(src.genome, 4, input_shape=(1, 12, 12))


def _run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="nasforge")
    commands.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_cli_commands(study: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    space = get_space("global")
    genome_file = tmp_path / "g.json"
    genome_file.write_text(json.dumps(space.genome_to_dict(space.sample(random.Random(3)))))
    assert _run_cli(["draw", str(genome_file), "-o", str(tmp_path / "g.png"), "--width", "8"]) == 0
    assert (tmp_path / "g.png").stat().st_size > 0
    assert _run_cli(["draw", str(study), "--trial", "2", "-o", str(tmp_path / "t.svg")]) == 0
    assert _run_cli(["compare", str(study), str(study), "-o", str(tmp_path / "c.html")]) == 0
    assert _run_cli(["report", str(study), "-o", str(tmp_path / "r.html"), "--top", "2"]) == 0
    assert 'id="top-2"' in (tmp_path / "r.html").read_text()
    from nasforge.errors import NasforgeError

    with pytest.raises(NasforgeError):
        _run_cli(["report", str(tmp_path / "missing.db")])
    with pytest.raises(NasforgeError):
        _run_cli(["draw", str(genome_file), "-o", str(tmp_path / "g.jpg")])
    with pytest.raises(NasforgeError, match="neither"):
        _run_cli(["export", str(study), "--format", "onnx", "-o", str(tmp_path / "m.onnx")])


def test_pareto_front_and_failure_reasons() -> None:
    costs = [10, 5, 20, 5, 30, 1]
    accs = [0.8, 0.7, 0.9, 0.75, 0.85, 0.5]
    assert pareto_front(costs, accs) == [5, 3, 0, 2]
    assert failure_reason("nan loss at epoch 3 step 17") == "nan loss at epoch # step #"
    assert failure_reason("RuntimeError: boom") == "RuntimeError"
    assert failure_reason(None) == "unknown error"


def test_learning_curve_labels_name_flip_averaging_and_label_smoothing() -> None:
    from nasforge.report.html_base import _curve_labels

    assert _curve_labels({"epochs": 3}) == ("val acc", "train loss")
    assert _curve_labels(None) == ("val acc", "train loss")
    assert _curve_labels({"tta": "flip", "label_smoothing": 0.1}) == (
        "val acc (flip-averaged)", "train loss (label smoothing 0.1)")
