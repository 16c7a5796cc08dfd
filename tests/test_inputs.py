"""Bad inputs get one line, up front: budgets that cannot train, empty studies, genome files."""

from __future__ import annotations

from pathlib import Path

import pytest

from nasforge.api import Search
from nasforge.cli import main
from nasforge.config import apply_overrides
from nasforge.errors import ConfigError
from nasforge.evaluation.budget import Budget


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The one error line on stderr (progress lines before it allowed, no traceback)."""
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("nasforge: ")]
    assert len(errors) == 1 and err[-1] == errors[0] and "Traceback" not in "".join(err), err
    return errors[0]


def test_batch_of_one_is_refused_up_front(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError, match="batch_size must be at least 2"):
        Budget(batch_size=1)
    assert Budget(batch_size=2).batch_size == 2
    code = main(["train-net", "--dataset", "synthetic", "--batch-size", "1"])
    assert code == 2
    assert "batch_size must be at least 2: batch norm" in _one_error_line(capsys)


def test_fraction_leaving_one_image_is_refused_up_front(
        tmp_path: Path, tiny_config, capsys: pytest.CaptureFixture[str]) -> None:
    # the synthetic set has 480 training images after its 20% validation split
    config = apply_overrides(tiny_config, ["budget.data_fraction=0.002"])
    with pytest.raises(ConfigError, match=r"budget\.data_fraction 0\.002 of 480 training "
                                          r"images keeps 1; training needs at least 2"):
        Search(config, tmp_path / "s.db")
    assert not (tmp_path / "s.db").exists()  # refused before the study was written
    code = main(["train-net", "--dataset", "synthetic", "--data-fraction", "0.001",
                 "--val-fraction", "0.2"])
    assert code == 2
    line = _one_error_line(capsys)
    assert "data_fraction 0.001 of 480 training images keeps 0" in line
    assert "internal error" not in line
    from nasforge.data.datasets import split_validation, synthetic_dataset

    with pytest.raises(ConfigError, match=r"val_fraction 0\.75 of 4 training images leaves 1 "
                                          r"to train on; training needs at least 2"):
        split_validation(synthetic_dataset(n_train=4, num_classes=2), 0.75)


def test_best_on_a_study_without_successful_trial(
        tmp_path: Path, tiny_config, capsys: pytest.CaptureFixture[str]) -> None:
    from nasforge.api import open_study

    path = tmp_path / "s.db"
    storage = open_study(path, tiny_config, resume=False, force=False)
    for status in ("failed", "running"):
        number = storage.add_trial(genome_key=status, genome={}, budget={}, strategy_state=None)
        if status == "failed":
            storage.finish_trial(number, status="failed", val_acc=None, params=None, flops=None,
                                 metrics={}, curve=[], error="boom", stderr=None, worker=None,
                                 attempts=1, started_at=None, finished_at=1.0, checkpoint=None,
                                 strategy_state=None)
    storage.close()
    for flags in ([], ["--json"]):
        assert main(["best", str(path), *flags]) == 1
        captured = capsys.readouterr()
        assert captured.err.strip() == (f"nasforge: {path} has no successful trial (2 trial(s): "
                                        "1 failed, 1 running); nothing to show")
        assert captured.out.strip() == ("[]" if flags else "")


def test_space_show_reads_what_space_sample_writes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from nasforge.api import load_genomes
    from nasforge.spaces import get_space

    assert main(["space", "sample", "--json", "--n", "3", "--seed", "4"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    many = tmp_path / "GENOMES.json"
    many.write_text("\n".join(lines) + "\n")
    assert main(["space", "show", str(many), "--width", "4"]) == 0
    out = capsys.readouterr().out
    assert [f"genome {i} of 3:" in out for i in (1, 2, 3)] == [True] * 3
    assert out.count("canonical key") == 3
    one = tmp_path / "GENOME.json"
    one.write_text(lines[0] + "\n")
    assert main(["space", "show", str(one), "--width", "4"]) == 0
    assert "genome 1 of" not in capsys.readouterr().out
    # a command that takes one genome says so in one line; --init-from takes them all
    assert main(["draw", str(many), "-o", str(tmp_path / "a.dot")]) == 2
    assert _one_error_line(capsys).endswith("GENOMES.json holds 3 genomes; draw takes one")
    assert len(load_genomes(get_space("global"), many)) == 3
