"""Search strategies (ask/tell) and their registry."""

from nasforge.strategies import aco as _aco  # noqa: F401  (registers)
from nasforge.strategies import asha as _asha  # noqa: F401  (registers)
from nasforge.strategies import bohb as _bohb  # noqa: F401  (registers)
from nasforge.strategies import darts as _darts  # noqa: F401  (registers)
from nasforge.strategies import evolution as _evolution  # noqa: F401  (registers)
from nasforge.strategies import fixed_list as _fixed_list  # noqa: F401  (registers)
from nasforge.strategies import genetic as _genetic  # noqa: F401  (registers)
from nasforge.strategies import hyperband as _hyperband  # noqa: F401  (registers)
from nasforge.strategies import nsga2 as _nsga2  # noqa: F401  (registers)
from nasforge.strategies import random_search as _random  # noqa: F401  (registers)
from nasforge.strategies import reinforce as _reinforce  # noqa: F401  (registers)
from nasforge.strategies import smbo as _smbo  # noqa: F401  (registers)
from nasforge.strategies.base import (
    Candidate,
    Observation,
    Problem,
    Strategy,
    available_strategies,
    get_strategy,
    register_strategy,
)

__all__ = [
    "Candidate",
    "Observation",
    "Problem",
    "Strategy",
    "available_strategies",
    "get_strategy",
    "register_strategy",
]
