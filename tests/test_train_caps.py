"""``nasforge train`` plans its final step as ``nasforge search`` does: the final section's
caps cut (or narrow, or grow) the budget from an estimate, flags set on the command line are
kept as set, ``--no-cap`` turns the caps off; and its ``--tta`` / ``--label-smoothing`` flags.

The cost probes get injected timings (a step costs ``K * width**2`` seconds, 100 steps an
epoch, as in ``test_final_width_cut``); the final runs themselves train for real, tiny."""

from __future__ import annotations

import json
import random
import re
from concurrent.futures import Future, ThreadPoolExecutor

import pytest
import yaml

from conftest import tiny_config_dict
from nasforge.cli import main
from nasforge.config import config_from_dict
from nasforge.evaluation.budget import Budget
from nasforge.execution.final_plan import _plan_key, plan_final
from nasforge.execution.results import EvalResult
from nasforge.spaces import get_space
from nasforge.storage import StudyStorage
from tests.test_final_width_cut import WidthCostExecutor, _seconds, study  # noqa: F401

K = 1 / 640  # a probe's step at width 8: 0.1 s, so one epoch (100 steps) is estimated at 10 s


class TimedProbeExecutor(ThreadPoolExecutor):
    """Probes answered at once with injected timings; final runs trained for real."""

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003 - as the executor's
        super().__init__(max_workers=1)

    def submit(self, fn, /, *args, **kwargs):  # noqa: ANN001 - Executor's signature
        task = args[0]
        if task.kind != "probe":
            return super().submit(fn, *args, **kwargs)
        width = int(task.budget["width"])
        future: Future = Future()
        future.set_result(EvalResult(
            status="ok", speed={"setting": {"precision": "fp32", "channels_last": False,
                                            "threads": None}, "measured": False},
            speed_device="cpu/test", metrics={
                "step_seconds": K * width ** 2, "steps_per_epoch": 100, "eval_images": 0,
                "eval_seconds": 0.0, "probe_seconds": 0.0, "pipeline_seconds": 0.0}))
        return future


@pytest.fixture
def timed(monkeypatch):
    """``nasforge train``'s executor: ``TimedProbeExecutor``."""
    monkeypatch.setattr("nasforge.execution.executors.make_executor",
                        lambda *a, **k: TimedProbeExecutor())


def _genome_and_preset(tmp_path, final: dict) -> tuple[str, str]:
    """A genome file and a preset (tiny synthetic config) with ``final``."""
    raw = tiny_config_dict(run={"max_evals": 1, "workers": 1}, final=final)
    cfg = tmp_path / "p.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    config = config_from_dict(raw, "p")
    space = get_space(config.space.name, **config.space.settings)
    genome = tmp_path / "g.json"
    genome.write_text(json.dumps(space.genome_to_dict(space.sample(random.Random(0)))))
    return str(genome), str(cfg)


def _runs(db) -> list:
    with StudyStorage.open(db) as store:
        return store.final_runs()


TINY = {"width": 8, "batch_size": 16, "max_steps": 2, "validate_every": "last"}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("cap", ["max_seconds", "total_seconds"])
def test_a_preset_cap_cuts_the_epochs_train_trains(tmp_path, capsys, timed, cap) -> None:
    # 12 epochs are estimated at 120 s; a 38 s cap fits 3 (total_seconds: all of it is the
    # final's, less the second or so the command has run)
    genome, cfg = _genome_and_preset(tmp_path, {"top": 1, "seeds": 1, cap: 38,
                                                "budget": {**TINY, "epochs": 12}})
    db = tmp_path / "t.db"
    args = ["train", genome, "--preset", cfg, "--storage", str(db)]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert ("12 epoch(s), adam, width 8, on the whole training set as configured (the plan "
            "below fits them to the time)") in err
    cut = re.search(r"final: estimated 120s for 12 epochs exceeds the cap of (\d+)s: training "
                    r"3 epoch\(s\) instead", err)
    assert cut and 30 <= int(cut.group(1)) <= 38, err
    assert "final: estimated 30 s for 3 epoch(s)" in err
    (run,) = _runs(db)
    assert run.budget["epochs"] == 3 and run.metrics["curve"][-1]["epoch"] == 3
    # the plan is stored: the same command again finds its run
    assert main(args) == 0
    assert "(stored, not retrained)" in capsys.readouterr().err
    assert len(_runs(db)) == 1
    # without --preset (the study's own config, caps and all) no cap is applied, and the plan
    # stored for the same budget is still what is trained: found stored
    assert main(["train", genome, "--storage", str(db)]) == 0
    err = capsys.readouterr().err
    assert "as configured" not in err and "(stored, not retrained)" in err
    assert len(_runs(db)) == 1
    # --no-cap: the preset's 12 epochs as given, the stored plan not applied
    assert main(args + ["--no-cap"]) == 0
    err = capsys.readouterr().err
    assert "--no-cap: the final section's caps are off" in err and "exceeds" not in err
    assert sorted(r.budget["epochs"] for r in _runs(db)) == [3, 12]


@pytest.mark.timeout(120)
def test_an_explicit_epochs_flag_is_kept_and_the_cap_narrows_instead(tmp_path, capsys,
                                                                     timed) -> None:
    # width 16: 40 s an epoch; width 8: 10 s. The cap of 100 s with --epochs 12: the cap may
    # narrow (final.min_width 8) but not cut epochs, so 12 epochs at width 8 (120 s) are trained
    # as set, the plan saying so; without the flag the preset's 4 epochs fit at width 8
    genome, cfg = _genome_and_preset(tmp_path, {
        "top": 1, "seeds": 1, "max_seconds": 100, "min_width": 8,
        "budget": {**TINY, "epochs": 4, "width": 16}})
    db = tmp_path / "e.db"
    assert main(["train", genome, "--preset", cfg, "--storage", str(db), "--epochs", "12"]) == 0
    err = capsys.readouterr().err
    assert "(the plan below fits them to the time; --epochs given: kept as set)" in err
    assert "exceeds the cap of 100s: width 8 instead (120s)" in err, err
    assert ("estimated 120s for 12 epochs at width 8 exceeds the cap of 100s: training them as "
            "set (epochs given explicitly)") in err
    assert "epoch(s) instead" not in err
    (run,) = _runs(db)
    assert (run.budget["epochs"], run.budget["width"]) == (12, 8)
    assert run.metrics["curve"][-1]["epoch"] == 12
    # --epochs and --width both given: nothing changes, the estimate is over the cap and said
    assert main(["train", genome, "--preset", cfg, "--storage", str(db), "--epochs", "1",
                 "--width", "24"]) == 0
    err = capsys.readouterr().err
    assert "final: estimated 1 min 30 s for 1 epoch(s)" in err
    assert "exceeds" not in err and "instead" not in err  # 90 s fit: no note at all
    assert main(["train", genome, "--preset", cfg, "--storage", str(db), "--epochs", "2",
                 "--width", "24"]) == 0
    err = capsys.readouterr().err
    assert ("estimated 180s for 2 epochs at width 24 exceeds the cap of 100s: training them as "
            "set (epochs and width given explicitly)") in err, err
    assert {(r.budget["epochs"], r.budget["width"]) for r in _runs(db)} == {
        (12, 8), (1, 24), (2, 24)}


def test_a_kept_width_cuts_epochs_and_a_kept_plan_has_its_own_key(study) -> None:  # noqa: F811
    storage, space, todo = study
    budget = Budget(epochs=12, width=48)
    cap = 0.5 * _seconds(48, 12)
    plan = plan_final(storage, space, todo, budget, {}, WidthCostExecutor(), 1,
                      max_seconds=cap, min_width=16, keep={"width"})
    assert (plan.budget.width, plan.budget.epochs) == (48, 6)  # not narrowed: epochs cut
    assert storage.meta_value(_plan_key(budget, {"width"}))["epochs"] == 6
    assert storage.meta_value(_plan_key(budget)) is None  # the search's plan key untouched
    # kept epochs never grow into room under the cap either (final.max_epochs)
    roomy = plan_final(storage, space, todo, Budget(epochs=4, width=32), {},
                       WidthCostExecutor(), 1, max_seconds=3 * _seconds(32, 4), max_epochs=20,
                       keep={"epochs"})
    assert roomy.budget.epochs == 4 and roomy.note is None
    with pytest.raises(ValueError):
        plan_final(storage, space, todo, budget, {}, WidthCostExecutor(), 1, keep={"lr"})


@pytest.mark.timeout(120)
def test_tta_flip_reports_the_flip_averaged_and_the_single_view_figure(tmp_path, capsys,
                                                                      timed) -> None:
    genome, cfg = _genome_and_preset(tmp_path, {"top": 1, "seeds": 1,
                                                "budget": {**TINY, "width": 4, "epochs": 1}})
    db = tmp_path / "f.db"
    args = ["train", genome, "--preset", cfg, "--storage", str(db)]
    assert main(args + ["--tta", "flip", "--label-smoothing", "0.1"]) == 0
    out = capsys.readouterr()
    line = re.search(r"test acc ([0-9.]+) ± [0-9.]+ over 1 seed\(s\) \[[0-9., ]+\] "
                     r"\(flip-averaged; single view ([0-9.]+)\)", out.out)
    assert line, out.out
    assert "(flip-averaged; single view" in out.err  # the run's own line too
    (run,) = _runs(db)
    assert run.budget["tta"] == "flip" and run.budget["label_smoothing"] == 0.1
    assert float(line.group(1)) == pytest.approx(run.test_acc, abs=1e-4)
    assert float(line.group(2)) == pytest.approx(run.metrics["test_acc_single_view"], abs=1e-4)
    # without the flag: one view, one figure
    assert main(args) == 0
    out = capsys.readouterr().out
    assert re.search(r"test acc [0-9.]+ ± ", out) and "single view" not in out
    runs = _runs(db)
    assert len(runs) == 2 and "tta" not in runs[1].budget


@pytest.mark.parametrize("value", ["1.5", "-0.1", "1", "nan"])
def test_a_bad_label_smoothing_is_one_clear_line(tmp_path, capsys, value) -> None:
    assert main(["train", str(tmp_path / "none.db"), f"--label-smoothing={value}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [f"nasforge: error: --label-smoothing must be in [0, 1), got "
                                f"{float(value):g}"]


def test_a_bad_tta_is_an_argparse_error(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["train", str(tmp_path / "none.db"), "--tta", "mirror"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "argument --tta: invalid choice: 'mirror'" in err and "Traceback" not in err
