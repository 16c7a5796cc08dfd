"""The preset listing, the default study path of a config file, the final step's note."""

from __future__ import annotations

from pathlib import Path

import pytest

from nasforge.api import Search
from nasforge.cli import _search_config, build_parser, default_storage, main
from nasforge.config import load_config, preset_text
from nasforge.errors import ConfigError


def test_presets_list_final_training_presets_as_such(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["presets"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    for name in ("remnet-final", "remnet-final-long"):
        assert "final training (no search)" in lines[name] and "trials" not in lines[name]
        assert f"--preset {name}" in lines[name]
        assert load_config(name).kind == "final-training"
    assert lines["quick"].split()[1] == "search:" and "then final training" in lines["quick"]
    assert load_config("quick").kind == "search"


def test_search_refuses_a_final_training_preset(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"remnet-final is a final-training preset, not a "
                                          r"search: use `nasforge train"):
        Search(load_config("remnet-final"), tmp_path / "s.db")
    assert not (tmp_path / "s.db").exists()


def test_a_copied_preset_gets_its_own_study(tmp_path: Path) -> None:
    mine = tmp_path / "my.yaml"
    mine.write_text(preset_text("quick"))  # still says name: quick
    config = load_config(str(mine))
    assert config.name == "quick"
    assert default_storage(str(mine), config) == Path("studies/my.db")
    assert default_storage("quick", load_config("quick")) == Path("studies/quick.db")


def test_max_evals_says_the_final_step_is_not_scaled(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    _search_config(parser.parse_args(["search", "quick", "--max-evals", "4"]))
    out = capsys.readouterr().out
    assert out.startswith("note: --max-evals limits the search only; the final training runs "
                          "as configured") and out.count("\n") == 1
    for extra in (["--no-final"], ["--quiet"], []):
        flags = ["search", "quick", *extra] + (["--max-evals", "4"] if extra else [])
        _search_config(parser.parse_args(flags))
        assert capsys.readouterr().out == ""


def test_another_space_drops_the_presets_space_settings_and_constraints() -> None:
    """quick's FLOPs window is calibrated on its global space at width 16: a search of another
    space from the same preset starts without it (as without the space settings)."""
    parser = build_parser()
    assert load_config("quick").constraints  # the window is there by default
    same = _search_config(parser.parse_args(["search", "quick", "--space", "global"]))
    assert same.constraints == load_config("quick").constraints
    other = _search_config(parser.parse_args(["search", "quick", "--space", "nb201"]))
    assert other.space.name == "nb201" and other.constraints == () and not other.space.settings


HAVE_TABLE = __import__("importlib.util").util.find_spec("analognasbench") is not None


@pytest.mark.skipif(not HAVE_TABLE, reason="optional table: pip install --no-deps "
                    "analog-nasbench==0.1.3")
def test_the_printed_best_meets_the_constraints(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """With constraints the search's `best:` line names the trial the final step would take
    (the best feasible one), not the best infeasible one."""
    from nasforge.storage import StudyStorage

    base = ["search", "quick", "--space", "nb201", "--evaluator", "tabular:nb201",
            "--strategy", "random", "--max-evals", "12"]
    assert main(base + ["--storage", str(tmp_path / "a.db")]) == 0
    with StudyStorage.open(tmp_path / "a.db") as store:
        trials = [t for t in store.trials() if t.status == "ok"]
    top = max(trials, key=lambda t: (t.val_acc, -t.number))
    op = "<" if any(t.params < top.params for t in trials) else ">"
    feasible = [t for t in trials if (t.params < top.params if op == "<" else t.params > top.params)]
    assert feasible, "12 cells of one parameter count"
    want = max(feasible, key=lambda t: (t.val_acc, -t.number))
    capsys.readouterr()
    # random search: the same 12 cells whatever the constraint says
    assert main(base + ["--storage", str(tmp_path / "b.db"),
                        "--set", f"constraints=['params {op} {top.params}']"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("best: "))
    assert line.startswith(f"best: trial {want.number}, ") and "meeting the constraints" in line
