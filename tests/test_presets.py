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
