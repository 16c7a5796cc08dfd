"""A script that runs a search without ``if __name__ == "__main__":`` is told why its workers
died (nasforge.execution.guard), instead of losing every evaluation."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nasforge
from nasforge.execution.guard import broken_pool_hint

SCRIPT = """
from nasforge.config import config_from_dict
from nasforge.api import Search

config = config_from_dict({
    "name": "demo", "data": {"dataset": "synthetic", "val_fraction": 0.2},
    "space": {"name": "global", "settings": {"max_nodes": 4, "head": "gap"}},
    "budget": {"epochs": 1, "width": 4, "batch_size": 32, "max_steps": 1},
    "run": {"max_evals": 1, "workers": 1}})
search = Search(config, "demo.db")
print("best:", search.run().best.val_acc)
search.close()
"""


def test_a_script_without_main_guard_is_told_why_its_workers_died(tmp_path: Path) -> None:
    script = tmp_path / "demo.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(Path(nasforge.__file__).resolve().parents[1]),
           "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                         text=True, env=env, timeout=120)
    assert out.returncode != 0 and "best:" not in out.stdout
    last = out.stderr.strip().splitlines()[-1]
    assert last == ("nasforge.errors.ConfigError: the worker processes died while starting: "
                    "demo.py starts the search when it is imported, and each new worker "
                    "imports it (start method spawn); put the code that runs the search under "
                    "`if __name__ == \"__main__\":`")
    assert "AttributeError" not in out.stderr


def test_a_pool_whose_workers_started_is_not_blamed_on_the_guard() -> None:
    assert broken_pool_hint(1) is None
