"""The reduced-training (fidelity) study: statistics, plan, config, run, kill and resume."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from nasforge.errors import ConfigError
from nasforge.storage.sqlite import StudyStorage
from nasforge.studies.fidelity import (
    best_half_tau,
    analyse,
    available_study_presets,
    bootstrap_ci,
    fidelity_config_from_dict,
    load_fidelity_config,
    make_plan,
    rank_metrics,
    run_fidelity,
    top_overlap,
    write_outputs,
)
from nasforge.strategies import Problem


# ------------------------------------------------------------------------ statistics
def test_correlations_with_ties_match_hand_values() -> None:
    # pairs: 4 concordant, 0 discordant, one tied in x only, one tied in y only:
    # tau-b = 4 / sqrt((4 + 1) * (4 + 1)) = 0.8
    # ranks x = 1, 2.5, 2.5, 4; y = 1, 2, 3.5, 3.5: rho = 3.75 / sqrt(4.5 * 4.5) = 5/6
    m = rank_metrics([1, 2, 2, 3], [1, 2, 3, 3], resamples=200)
    assert m.tau_b == pytest.approx(0.8)
    assert m.rho == pytest.approx(5 / 6)
    # no ties, two discordant pairs of ten: tau = 6/10; rho = 1 - 6*4/(5*24) = 0.8
    m = rank_metrics([1, 2, 3, 4, 5], [2, 1, 4, 3, 5], resamples=200)
    assert m.tau_b == pytest.approx(0.6)
    assert m.rho == pytest.approx(0.8)


def test_top_overlap_by_hand() -> None:
    ref = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0]
    assert top_overlap(ref, ref, 0.2) == 1.0
    assert top_overlap(ref, [0.8, 0.9, 0, 0, 0, 0, 0, 0, 0, 1.0], 0.2) == 0.5
    assert top_overlap(ref, list(reversed(ref)), 0.1) == 0.0


def test_best_half_tau_by_hand() -> None:
    # the reference's best half of 6 is the architectures with references 6, 5, 4; the other
    # ranking orders them 4 > 6 > 5: pairs (6,5) concordant, (6,4) and (5,4) discordant
    ref = [1, 2, 3, 4, 5, 6]
    other = [9, 9, 9, 0.9, 0.1, 0.5]  # the bottom half's values must not matter
    assert best_half_tau(ref, other) == pytest.approx((1 - 2) / 3)
    assert rank_metrics(ref, other, resamples=200).tau_b_best_half == pytest.approx(-1 / 3)
    assert best_half_tau(ref, ref) == pytest.approx(1.0)
    assert math.isnan(best_half_tau([1, 2, 3, 4], [1, 2, 3, 4]))  # 2 architectures: undefined
    # the half chosen by other scores (the noise ceiling's mean of seeds): indices 0, 1, 2
    assert best_half_tau(ref, [3, 1, 2, 0, 0, 0], half_by=[6, 5, 4, 3, 2, 1]) == pytest.approx(
        (1 - 2) / 3)


def test_bootstrap_interval_contains_the_point_estimate() -> None:
    import random

    rng = random.Random(0)
    x = [rng.random() for _ in range(25)]
    y = [v + rng.gauss(0, 0.3) for v in x]
    for stat in ("tau_b", "rho"):
        lo, hi = bootstrap_ci(x, y, stat, resamples=500, seed=1)
        point = rank_metrics(x, y, resamples=200)
        value = point.tau_b if stat == "tau_b" else point.rho
        assert lo <= value <= hi, (stat, lo, value, hi)
        assert lo < hi


# ----------------------------------------------------------------- config and plan
def _tiny_raw(**changes: object) -> dict:
    raw = {
        "name": "tiny-fidelity", "seed": 0,
        "data": {"dataset": "synthetic", "val_fraction": 0.2},
        "space": {"name": "global", "settings": {
            "max_nodes": 6, "head": "gap",
            "operations": ["conv3N_pad", "conv3H_pad", "maxpool2", "avgpool2"]}},
        "architectures": {"count": 3, "mutations": 2},
        "reference": {"seeds": 2, "budget": {"epochs": 2, "width": 4, "batch_size": 32,
                                             "data_fraction": 0.5, "max_steps": 2}},
        "reduced": {"epochs": [1], "optimizers": ["sgd"], "data_fractions": [0.5],
                    "extra": [{"width": 2, "epochs": 1}]},
        "proxies": {"batch_size": 16}, "analysis": {"bootstrap": 200},
        "run": {"workers": 2},
    }
    raw.update(changes)
    return raw


def test_plan_reads_reduced_epochs_from_curves() -> None:
    raw = _tiny_raw(reduced={"epochs": [1, 2, 3], "optimizers": ["sgd", "adam"],
                             "data_fractions": [0.5], "extra": [{"width": 2, "epochs": 1}]})
    raw["reference"]["budget"]["epochs"] = 3
    plan = make_plan(fidelity_config_from_dict(raw, "t"), problem=Problem((1, 12, 12), 4))
    by_label = {rb.label: rb for rb in plan.reduced}
    ref0 = plan.references[0]
    # the reference's own optimizer and fraction: read from the seed-0 reference curve
    assert by_label["adam 1ep 50% w4"].run == ref0 and by_label["adam 2ep 50% w4"].epoch == 2
    assert "adam 3ep 50% w4" not in by_label  # that is the reference itself
    # another optimizer: one 3-epoch run, read at epochs 1, 2, 3
    sgd = {by_label[f"sgd {e}ep 50% w4"].run for e in (1, 2, 3)}
    assert len(sgd) == 1 and next(iter(sgd)).epochs == 3 and next(iter(sgd)).lr is None
    # 2 reference seeds + the sgd run + the width-2 extra run
    assert len(plan.runs) == 4 and len(plan.candidates) == 4 * len(plan.genomes)
    # with a cosine schedule every epoch count is a run of its own
    raw["reference"]["budget"]["schedule"] = "cosine"
    plan = make_plan(fidelity_config_from_dict(raw, "t"), problem=Problem((1, 12, 12), 4))
    assert len(plan.runs) == 2 + 3 + 2 + 1


def test_config_errors_name_the_key_and_file(tmp_path: Path) -> None:
    path = tmp_path / "study.yaml"
    raw = _tiny_raw()
    raw["reduced"]["optimisers"] = ["sgd"]
    import yaml

    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"study\.yaml.*reduced\.optimisers"):
        load_fidelity_config(str(path))
    raw = _tiny_raw()
    raw["reference"]["seeds"] = 1
    with pytest.raises(ConfigError, match="reference.seeds"):
        fidelity_config_from_dict(raw, "x.yaml")
    raw = _tiny_raw()
    raw["proxies"]["names"] = ["synflow", "tea_leaves"]
    with pytest.raises(ConfigError, match="tea_leaves"):
        fidelity_config_from_dict(raw, "x.yaml")
    for name in available_study_presets():
        load_fidelity_config(name)


# --------------------------------------------------------------- run, kill, resume
_CHILD = textwrap.dedent("""
    import json, os, sys
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch
    torch.set_num_threads(1)
    from concurrent.futures import ThreadPoolExecutor
    from nasforge.studies.fidelity import fidelity_config_from_dict, run_fidelity
    cfg = fidelity_config_from_dict(json.loads(sys.argv[1]), "child")
    run_fidelity(cfg, sys.argv[2], executor=ThreadPoolExecutor(1))
""")


def _finished(path: Path) -> int:
    if not path.exists():
        return 0
    try:
        with StudyStorage.open(path) as st:
            return st.count_finished()
    except Exception:
        return 0


def test_tiny_study_end_to_end_survives_kill_and_resume(tmp_path: Path) -> None:
    raw = _tiny_raw()
    db = tmp_path / "tiny.db"
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    child = subprocess.Popen([sys.executable, str(script), json.dumps(raw), str(db)],
                             start_new_session=True, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
    deadline = time.time() + 120  # generous: CI machines may be shared
    while _finished(db) < 2 and time.time() < deadline and child.poll() is None:
        time.sleep(0.05)
    os.killpg(child.pid, signal.SIGKILL)  # the study, its worker and the evaluation child
    child.wait()
    before = {t.number: (t.status, t.val_acc, t.finished_at)
              for t in StudyStorage.open(db).trials() if t.finished}
    assert 1 <= len(before) < 12, child.stderr.read().decode()[-2000:] if child.stderr else ""

    cfg = fidelity_config_from_dict(raw, "t")
    with ThreadPoolExecutor(2) as ex:
        summary = run_fidelity(cfg, db, resume=True, executor=ex)
    assert summary.stop_reason == "max_evals reached"
    with StudyStorage.open(db) as st:
        trials = st.trials()
    assert len(trials) == 12 and all(t.status == "ok" for t in trials)
    assert len({(t.genome_key, t.budget_key) for t in trials}) == 12  # nothing run twice
    for t in trials:
        if t.number in before:  # nothing that had finished was lost or redone
            assert (t.status, t.val_acc, t.finished_at) == before[t.number]

    res = analyse(db)
    assert len(res.reference) == 3 and res.trials_ok == 12
    kinds = {r.kind for r in res.rows}
    assert {"noise ceiling", "grid", "extra", "proxy"} <= kinds
    proxy_rows = {r.label for r in res.rows if r.kind == "proxy"}
    assert {"synflow", "naswot", "params", "flops"} <= proxy_rows
    assert any(label.startswith("vote(") for label in proxy_rows)
    # budgets that differ only in epochs share a plot series; "sgd 1ep 50% w4" -> "sgd 50% w4"
    series = {r.label: r.series for r in res.rows if r.kind in ("grid", "extra")}
    assert series["sgd 1ep 50% w4"] == "sgd 50% w4"
    assert all(s for s in series.values())
    out = tmp_path / "out"
    written = write_outputs(res, out)
    names = {p.name for p in written}
    assert {"fidelity.csv", "fidelity.md", "architectures.csv", "rank_vs_cost.png",
            "reduced_vs_reference.png"} <= names
    text = (out / "fidelity.md").read_text()
    assert "Noise ceiling" in text and "sgd 1ep 50% w4" in text
    header = (out / "fidelity.csv").read_text().splitlines()[0]
    assert header.startswith("kind,budget_or_proxy,n,tau_b") and header.endswith(",tau_b_best_half")

    # `nasforge study report STUDY.db` regenerates the same tables
    import argparse

    from nasforge.studies import commands

    parser = argparse.ArgumentParser()
    commands.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["study", "report", str(db), "-o", str(tmp_path / "again")])
    assert args.func(args) == 0
    assert (tmp_path / "again" / "fidelity.csv").read_text() == (out / "fidelity.csv").read_text()
