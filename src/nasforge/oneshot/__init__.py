"""One-shot (gradient-based) architecture search: supernets of the cell spaces, DARTS first
and second order, GDAS, and the discretisation of a supernet to an ordinary genome."""

from nasforge.oneshot.discretise import count_skips, discretise, discretise_darts, discretise_nb201
from nasforge.oneshot.search import (
    SupernetDiverged,
    SupernetSettings,
    evaluate_supernet,
    finite_difference_hvp,
    fit_supernet,
    search_supernet,
    settings_from,
)
from nasforge.oneshot.supernet import DartsSupernet, NB201Supernet, build_supernet

__all__ = [
    "DartsSupernet", "NB201Supernet", "SupernetDiverged", "SupernetSettings", "build_supernet",
    "count_skips", "discretise", "discretise_darts", "discretise_nb201", "evaluate_supernet",
    "finite_difference_hvp", "fit_supernet", "search_supernet", "settings_from",
]
