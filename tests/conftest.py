from __future__ import annotations

import os

# Tests fork evaluation children from this process (thread-pool executors), and a process that
# has started an OpenMP pool cannot fork a child that computes: stay single-threaded.
os.environ["OMP_NUM_THREADS"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

from nasforge.config import SearchConfig, config_from_dict  # noqa: E402

torch.set_num_threads(1)


def tiny_config_dict(**sections) -> dict:
    """A search on the synthetic set with tiny nets and a few optimizer steps."""
    raw = {
        "name": "tiny",
        "seed": 0,
        "data": {"dataset": "synthetic", "val_fraction": 0.2},
        "space": {"name": "global", "settings": {"max_nodes": 6, "head": "gap"}},
        "strategy": {"name": "evolution", "settings": {"population": 4, "sample": 2}},
        "budget": {"epochs": 1, "width": 4, "batch_size": 32, "max_steps": 3},
        "run": {"max_evals": 8, "workers": 2, "keep_best": 2},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return raw


@pytest.fixture
def tiny_config() -> SearchConfig:
    return config_from_dict(tiny_config_dict(), "tiny")
