"""Fuzzed genome files: each loads to a network that runs, or is refused with one
nasforge.errors exception; nothing else (benchmarks/genome_fuzz.py runs 10,000)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from nasforge.errors import GenomeError
from nasforge.spaces.fuzz import fuzz
from nasforge.spaces.genome_file import read_genome_items


@pytest.mark.timeout(120)
def test_300_fuzzed_genome_files_build_or_are_refused_never_crash() -> None:
    tally = fuzz(300, seed=0)
    assert tally.counts.get("crash", 0) == 0, [c.detail for c in tally.crashes[:3]]
    assert tally.counts.get("built", 0) > 50 and tally.counts.get("rejected", 0) > 50
    assert len(tally.by_space) >= 3  # every registered space took part


def test_a_binary_or_deeply_nested_genome_file_is_one_genome_error(tmp_path) -> None:
    binary = tmp_path / "bin.json"
    binary.write_bytes(b'{"schema": "nasforge.global/1", \xff}')
    with pytest.raises(GenomeError, match="not UTF-8"):
        read_genome_items(binary)
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(GenomeError, match="nested too deeply"):
        read_genome_items(deep)
    shown = subprocess.run([sys.executable, "-m", "nasforge", "space", "show", str(binary)],
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 2 and shown.stderr.count("\n") == 1, shown.stderr
    assert "not UTF-8" in shown.stderr and "Traceback" not in shown.stderr
