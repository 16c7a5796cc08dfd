"""The reduced-training (fidelity) study: how well cheap evaluations keep the ranking.

``K`` architectures (mutations of a simple conv net, or samples of a space) are each trained
under a *reference* budget (several seeds) and under a grid of *reduced* budgets (epochs x
optimizer x data fraction x width, plus extra budgets), and scored by zero-cost proxies on their
untrained seed-0 initialisation. Every training run is a trial of an ordinary study database,
run by the search ``Runner`` with a fixed-list strategy, so the study is resumable (finished
trials are reused, interrupted ones re-queued) and runs on any executor.

Design choices, stated once:

- **Reduced epochs are read from learning curves.** With a constant learning rate
  (``schedule: none``) and no early stopping, the model after ``e`` epochs of an ``E``-epoch run
  is exactly the model of an ``e``-epoch run (the batch order is drawn epoch by epoch from one
  seeded generator), so one run per (optimizer, data fraction, width) at the largest grid epoch
  count gives every epoch figure. A grid cell with the reference's optimizer, fraction and width
  is read from the reference seed-0 curve itself. With a schedule that depends on the epoch
  count (cosine) or with patience, every epoch count is a run of its own.
- **Same initialisation, same data.** The seed-0 reference, every reduced run and the proxies
  of an architecture start from the same initial weights (seeded by the study seed and the
  architecture); reference seed ``s`` uses another initialisation and batch order. The data
  fraction is one stratified subset for all architectures (seeded by the study seed), so
  architectures are compared on the same images.
- **Reference accuracy** is the mean final-epoch validation accuracy over the reference seeds;
  the **noise ceiling** is Kendall tau-b between the seed-0 and seed-1 final accuracies.
- **Cost** is measured wall-clock: the sum over architectures of the epoch seconds a reduced
  budget needs (training + per-epoch validation, from the curves), or of a proxy's seconds,
  divided by the same sum for one reference seed.

The package is split by concern: ``config`` (``FidelityConfig``, parsing, presets), ``plan``
(budgets grid, architectures, ``make_plan``), ``run`` (the kind of work and ``run_fidelity``),
``analysis`` (rows, ``analyse``, summary lines) and ``outputs`` (tables and plots); the rank
statistics live in ``nasforge.evaluation.ranking`` and the fixed-list strategy in
``nasforge.strategies.fixed_list``. Every public name is importable from here; the names are
re-exported lazily (PEP 562), so importing ``nasforge.studies.fidelity.plan`` (as the fixed-list
strategy does) does not import the execution layer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nasforge.lazy import lazy_exports

if TYPE_CHECKING:
    from nasforge.evaluation.ranking import (
        RankMetrics,
        best_half_tau,
        bootstrap_ci,
        rank_metrics,
        top_overlap,
    )
    from nasforge.strategies.fixed_list import FixedListStrategy
    from nasforge.studies.fidelity.analysis import FidelityResults, Row, analyse, summary_lines
    from nasforge.studies.fidelity.config import (
        ALL_PROXIES,
        ARCH_SOURCES,
        FidelityConfig,
        available_study_presets,
        config_hash,
        fidelity_config_from_dict,
        load_fidelity_config,
    )
    from nasforge.studies.fidelity.outputs import write_outputs
    from nasforge.studies.fidelity.plan import (
        Plan,
        ReducedBudget,
        default_seed_genome,
        make_plan,
        reduced_label,
        run_budgets,
    )
    from nasforge.studies.fidelity.run import (
        evaluate_fidelity_task,
        fidelity_settings,
        make_fidelity_task,
        run_fidelity,
    )

_SOURCES: dict[str, tuple[str, ...]] = {
    "nasforge.evaluation.ranking": (
        "RankMetrics", "best_half_tau", "bootstrap_ci", "rank_metrics", "top_overlap",
    ),
    "nasforge.strategies.fixed_list": ("FixedListStrategy",),
    "nasforge.studies.fidelity.analysis": ("FidelityResults", "Row", "analyse", "summary_lines"),
    "nasforge.studies.fidelity.config": (
        "ALL_PROXIES", "ARCH_SOURCES", "FidelityConfig", "available_study_presets",
        "config_hash", "fidelity_config_from_dict", "load_fidelity_config",
    ),
    "nasforge.studies.fidelity.outputs": ("write_outputs",),
    "nasforge.studies.fidelity.plan": (
        "Plan", "ReducedBudget", "default_seed_genome", "make_plan", "reduced_label",
        "run_budgets",
    ),
    "nasforge.studies.fidelity.run": (
        "evaluate_fidelity_task", "fidelity_settings", "make_fidelity_task", "run_fidelity",
    ),
}
_LAZY: dict[str, str] = {name: module for module, names in _SOURCES.items() for name in names}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
