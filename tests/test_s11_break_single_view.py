"""Adversarial checks (session 11): a final run whose stored single-view accuracy is damaged
(text, a list, out of [0, 1]) is shown without that figure by ``best``, ``report``, the
dashboard, ``export`` and a resumed final step, never an internal error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from nasforge.cli import main
from nasforge.evaluation.budget import Budget
from nasforge.final_training import _single_view
from nasforge.report.export import export_model
from nasforge.storage import StudyStorage
from nasforge.storage.records import single_view_acc
from tests.test_export import _add_final_run, trained_study  # noqa: F401

DAMAGED = ["abc", [1, 2], {"x": 1}, True, 1.5, -0.1, float("nan")]


@pytest.mark.parametrize("value", DAMAGED)
def test_a_damaged_single_view_figure_reads_as_none(value: Any) -> None:
    assert single_view_acc({"test_acc_single_view": value}) is None
    assert _single_view({"test_acc_single_view": value}) is None


def test_a_stored_single_view_figure_reads_as_a_float() -> None:
    assert single_view_acc({"test_acc_single_view": 0.9285}) == 0.9285
    assert single_view_acc({"test_acc_single_view": 1}) == 1.0
    assert single_view_acc(None) is None and single_view_acc([0.5]) is None


def test_commands_leave_a_damaged_single_view_figure_out(
        trained_study: dict[str, Any], tmp_path: Path, capsys) -> None:  # noqa: F811
    study = trained_study["study"]
    _add_final_run(trained_study, 5, "g_bad_w6_s0.pt", Budget(epochs=2, width=6, tta="flip"),
                   0.72, {"test_acc_single_view": "abc"})
    try:
        assert main(["best", str(study)]) == 0
        out = capsys.readouterr()
        assert "test acc 0.7200" in out.out and "single view" not in out.out
        assert "internal error" not in out.err
        assert main(["report", str(study), "-o", str(tmp_path / "r.html")]) == 0
        assert "internal error" not in capsys.readouterr().err
        res = export_model(study, tmp_path / "net.pt", "torchscript", trial=1)
        assert res.meta["metrics"]["test_acc"] == 0.72
        assert "test_acc_single_view" not in res.meta["metrics"]
        with StudyStorage.open(study) as storage:  # nothing stored was removed
            assert [f.test_acc for f in storage.final_runs()] == [0.72]
    finally:
        import sqlite3

        with sqlite3.connect(study) as conn:  # leave the module's study as it was
            conn.execute("DELETE FROM final_runs")


def test_export_says_what_a_flip_tta_file_reproduces(
        trained_study: dict[str, Any], tmp_path: Path, capsys) -> None:  # noqa: F811
    """The printed test accuracy of a ``tta: flip`` run is flip-averaged: the export line says
    that TorchScript/ONNX include the averaging and that a state_dict does not (its figure
    is the single-view one)."""
    study = trained_study["study"]
    _add_final_run(trained_study, 6, "g_flip_w6_s0.pt", Budget(epochs=2, width=6, tta="flip"),
                   0.72, {"test_acc_single_view": 0.70})
    try:
        assert main(["export", str(study), "--format", "state_dict", "-o",
                     str(tmp_path / "n.sd")]) == 0
        out = capsys.readouterr().out
        assert "final test acc 0.7200 (seed 0, flip-averaged)" in out
        assert "the state_dict is the plain network (single view 0.7000)" in out
        assert main(["export", str(study), "--format", "torchscript", "-o",
                     str(tmp_path / "n.pt")]) == 0
        out = capsys.readouterr().out
        assert "the file averages each image and its mirror" in out
    finally:
        import sqlite3

        with sqlite3.connect(study) as conn:  # leave the module's study as it was
            conn.execute("DELETE FROM final_runs")
