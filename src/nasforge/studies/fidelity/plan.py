"""The fidelity study's plan: the architectures and every training run (the budgets grid)."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nasforge.config import _budget
from nasforge.errors import GenomeError
from nasforge.evaluation.budget import Budget
from nasforge.spaces.base import SearchSpace, genome_key
from nasforge.strategies.base import Candidate, Problem
from nasforge.studies.fidelity.config import (
    FidelityConfig,
    _search_config,
    fidelity_config_from_dict,
)


@dataclass(frozen=True)
class ReducedBudget:
    """A reduced budget of the grid and where its figure comes from: ``run`` trained, read at
    epoch ``epoch`` of its curve."""

    label: str
    kind: str  # "grid" | "extra"
    optimizer: str
    epochs: int
    data_fraction: float
    width: int
    run: Budget
    epoch: int


@dataclass
class Plan:
    """The architectures and every training run of a study, in submission order."""

    config: FidelityConfig
    space: SearchSpace
    problem: Problem
    genomes: list[Any]
    references: list[Budget]
    reduced: list[ReducedBudget]
    runs: list[Budget]

    @property
    def candidates(self) -> list[Candidate]:
        """(genome, run budget) pairs: budget-major, so a partial study holds whole budgets."""
        return [Candidate(g, b) for b in self.runs for g in self.genomes]


def _fmt_fraction(f: float) -> str:
    return f"{f * 100:g}%"


def reduced_label(optimizer: str, epochs: int, fraction: float, width: int) -> str:
    """A short name of a reduced budget, e.g. ``adam 2ep 10% w16``."""
    return f"{optimizer} {epochs}ep {_fmt_fraction(fraction)} w{width}"


def _constant_schedule(b: Budget) -> bool:
    return b.schedule == "none" and b.patience is None


def _grid(cfg: FidelityConfig) -> tuple[list[Budget], list[ReducedBudget], list[Budget]]:
    ref = cfg.reference
    references = [ref.replace(seed=s) for s in range(cfg.reference_seeds)]
    runs: list[Budget] = list(references)
    reduced: list[ReducedBudget] = []

    def add_run(b: Budget) -> Budget:
        if b not in runs:
            runs.append(b)
        return b

    top = max(cfg.epochs)
    for opt in cfg.optimizers:
        for frac in cfg.data_fractions:
            for width in cfg.widths:
                cell = ref.replace(optimizer=opt, data_fraction=float(frac), width=int(width),
                                   lr=None if opt != ref.optimizer else ref.lr, seed=0)
                for e in cfg.epochs:
                    if _constant_schedule(cell):
                        if cell.replace(epochs=ref.epochs) == references[0] and e <= ref.epochs:
                            run, at = references[0], e
                        else:
                            run, at = cell.replace(epochs=top), e
                    else:
                        run, at = cell.replace(epochs=e), e
                    if run == references[0] and e == ref.epochs:
                        continue  # that is the reference itself
                    reduced.append(ReducedBudget(reduced_label(opt, e, frac, width), "grid", opt,
                                                 e, float(frac), int(width), add_run(run), at))
    for item in cfg.extra:
        b = _budget("reduced.extra", item, "<plan>", ref).replace(seed=0)
        if "lr" not in item and b.optimizer != ref.optimizer:
            b = b.replace(lr=None)
        reduced.append(ReducedBudget(reduced_label(b.optimizer, b.epochs, b.data_fraction,
                                                   b.width), "extra", b.optimizer, b.epochs,
                                     b.data_fraction, b.width, add_run(b), b.epochs))
    return references, reduced, runs


def default_seed_genome(space: SearchSpace) -> Any:
    """The simple conv net the study mutates: in -> conv -> maxpool -> conv -> maxpool -> out,
    with the space's 3x3 full-width convolution (padded if the space has it) and 2x2 max pool."""
    from nasforge.spaces.global_dag import INPUT, OUTPUT, split_edge

    ops = list(getattr(space, "operations", ()))
    conv = next((o for o in ("conv3N_pad", "conv3N") if o in ops),
                next((o for o in ops if o.startswith("conv")), None))
    pool = next((o for o in ("maxpool2", "avgpool2") if o in ops),
                next((o for o in ops if "pool" in o), None))
    if conv is None or pool is None:
        raise GenomeError(f"space {space.name!r} has no convolution or no pooling operation for "
                          "the default seed genome; give architectures.seed_genome")
    genome = space.initial()
    src = INPUT
    for op in (conv, pool, conv, pool):
        genome = split_edge(genome, src, OUTPUT, op)
        src = genome.nodes[-1].id
    return genome


def _architectures(cfg: FidelityConfig, space: SearchSpace, problem: Problem,
                   widths: Sequence[int]) -> list[Any]:
    def valid(g: Any) -> bool:
        check = getattr(space, "validate_for", None)
        if check is None:
            return not space.validate(g)
        return all(not check(g, problem.input_shape, problem.num_classes, w) for w in widths)

    rng = random.Random(cfg.seed)
    genomes: list[Any] = []
    keys: set[str] = set()

    def keep(g: Any) -> None:
        g = space.canonical(g)
        k = genome_key(space, g)
        if k not in keys and valid(g):
            keys.add(k)
            genomes.append(g)

    seed = None
    if cfg.source == "mutate":
        seed = (space.genome_from_dict(cfg.seed_genome) if cfg.seed_genome
                else default_seed_genome(space))
        if not valid(seed):
            raise GenomeError("the seed genome is not valid for this problem and widths")
        keep(seed)
    tries = 0
    while len(genomes) < cfg.count:
        tries += 1
        if tries > 200 * cfg.count:
            raise GenomeError(f"found only {len(genomes)} distinct valid architectures of "
                              f"{cfg.count}; loosen the space or lower architectures.count")
        if seed is not None:
            g = seed
            for _ in range(rng.randint(1, cfg.mutations)):
                g = space.mutate(g, rng)
        else:
            g = space.sample(rng)
        keep(g)
    return genomes


def make_plan(cfg: FidelityConfig, problem: Problem | None = None,
              genomes: Sequence[Mapping[str, Any]] | None = None) -> Plan:
    """The study's architectures (generated from ``cfg.seed``, or the given genome dicts) and
    its training runs."""
    from nasforge.api import data_dict
    from nasforge.execution.tasks import load_splits
    from nasforge.spaces import get_space

    space = get_space(cfg.space.name, **cfg.space.settings)
    if problem is None:
        splits = load_splits(data_dict(_search_config(cfg, [])))
        shape = tuple(int(d) for d in splits.input_shape)
        problem = Problem(shape, int(splits.num_classes))  # type: ignore[arg-type]
    references, reduced, runs = _grid(cfg)
    widths = sorted({b.width for b in runs})
    if genomes is None:
        archs = _architectures(cfg, space, problem, widths)
    else:
        archs = [space.genome_from_dict(g) for g in genomes]
    return Plan(cfg, space, problem, archs, references, reduced, runs)


def run_budgets(identity: Mapping[str, Any]) -> list[Budget]:
    """The training runs of a study, in submission order, from its identity (the mapping
    ``FidelityConfig.identity()`` gives and a study file stores in its strategy settings):
    what the fixed-list strategy of a resumed study rebuilds its list from.

    Raises ``ConfigError`` when ``identity`` is not a valid fidelity study config."""
    cfg = fidelity_config_from_dict(dict(identity), "fidelity study identity")
    return _grid(cfg)[2]
