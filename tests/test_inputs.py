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

