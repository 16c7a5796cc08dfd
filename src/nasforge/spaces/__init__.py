"""Search spaces: the interface, the registry and the global (REMNet) DAG space.

Importing this package registers the built-in spaces ("global", "nb201").
"""

from __future__ import annotations

from nasforge.spaces.base import (
    SearchSpace,
    available_spaces,
    chosen_network_space,
    genome_key,
    get_space,
    register_space,
)
from nasforge.spaces.darts import DARTS_V2, DartsGenome, DartsSpace  # noqa: F401 (registers "darts")
from nasforge.spaces.global_dag import GlobalGenome, GlobalSpace, remnet_best_genome
from nasforge.spaces.merge import MERGE_POLICIES, MergePolicy
from nasforge.spaces.nb201 import NB201Genome, NB201Space
from nasforge.spaces.ops import register_operation

__all__ = [
    "MERGE_POLICIES",
    "GlobalGenome",
    "GlobalSpace",
    "MergePolicy",
    "NB201Genome",
    "NB201Space",
    "SearchSpace",
    "available_spaces",
    "chosen_network_space",
    "genome_key",
    "get_space",
    "register_operation",
    "register_space",
    "remnet_best_genome",
]
