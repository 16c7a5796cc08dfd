from __future__ import annotations

import pytest

from nasforge.config import (
    apply_overrides,
    available_presets,
    config_from_dict,
    load_config,
    load_yaml,
)
from nasforge.errors import ConfigError


def test_every_preset_loads_and_validates() -> None:
    names = available_presets()
    assert {"quick", "remnet", "remnet-cpu", "remnet-final"} <= set(names)
    for name in names:
        cfg = load_config(name)
        assert cfg.run.max_evals >= 1
        assert cfg.budget.epochs >= 1


def test_unknown_key_names_key_and_file(tmp_path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("budget:\n  epochz: 3\n")
    with pytest.raises(ConfigError, match=r"c\.yaml.*epochz"):
        load_config(str(path))
    path.write_text("run:\n  workers: two\n")
    with pytest.raises(ConfigError, match=r"run\.workers.*int"):
        load_config(str(path))
    path.write_text("searchh: 1\n")
    with pytest.raises(ConfigError, match="searchh"):
        load_config(str(path))


def test_bad_yaml_and_unknown_preset(tmp_path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("budget: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(str(path))
    with pytest.raises(ConfigError, match="known: .*quick"):
        load_config("no-such-preset")


def test_overrides_and_identity() -> None:
    cfg = load_config("quick")
    changed = apply_overrides(cfg, ["run.workers=1", "run.max_evals=3"])
    assert changed.run.workers == 1 and changed.run.max_evals == 3
    # run settings do not change the study identity; budget does
    assert changed.identity_hash() == cfg.identity_hash()
    other = apply_overrides(cfg, ["budget.epochs=7"])
    assert other.identity_hash() != cfg.identity_hash()
    with pytest.raises(ConfigError, match="negative|positive"):
        apply_overrides(cfg, ["budget.epochs=-1"])
    with pytest.raises(ConfigError, match=r"space.settings.operations: value '\[' is not valid YAML"):
        apply_overrides(cfg, ["space.settings.operations=["])
    for bad in ("run.eval_timeout=-1", "run.time_limit=0", "run.keep_best=-1",
                "run.target_accuracy=1.5", "final.top=0", "run.memory_limit_mb=0"):
        with pytest.raises(ConfigError, match=bad.split("=")[0].split(".")[1]):
            apply_overrides(cfg, [bad])


def test_round_trip_to_dict() -> None:
    for name in available_presets():
        cfg = load_config(name)
        assert config_from_dict(cfg.to_dict()) == cfg


def test_unknown_executor() -> None:
    with pytest.raises(ConfigError, match="executor"):
        config_from_dict(load_yaml("run: {executor: slurmx}", "x"), "x")
