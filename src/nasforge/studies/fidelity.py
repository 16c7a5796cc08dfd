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
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from nasforge.config import (
    ComponentConfig,
    DataConfig,
    RunConfig,
    SearchConfig,
    _budget,
    _check_keys,
    _typed,
    config_from_dict,
    load_yaml,
)
from nasforge.errors import ConfigError, GenomeError
from nasforge.evaluation.budget import OPTIMIZERS, Budget
from nasforge.execution.runner import Reporter, Runner, RunSummary, genome_key
from nasforge.execution.tasks import EvalTask, model_seed
from nasforge.spaces.base import SearchSpace
from nasforge.storage.sqlite import StudyStorage, budget_key
from nasforge.strategies.base import Candidate, Observation, Problem, Strategy

__all__ = [
    "FidelityConfig",
    "FidelityResults",
    "Plan",
    "analyse",
    "default_seed_genome",
    "evaluate_fidelity_task",
    "load_fidelity_config",
    "fidelity_config_from_dict",
    "make_plan",
    "rank_metrics",
    "run_fidelity",
    "write_outputs",
]

ALL_PROXIES: tuple[str, ...] = (
    "synflow", "snip", "grad_norm", "naswot", "jacob_cov", "fisher", "params", "flops",
)
ARCH_SOURCES: tuple[str, ...] = ("mutate", "sample")


# =============================================================================== configuration
@dataclass(frozen=True)
class FidelityConfig:
    """A fidelity study: data, space, architectures, reference budget, reduced grid, proxies."""

    name: str = "fidelity"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    space: ComponentConfig = field(default_factory=lambda: ComponentConfig("global"))
    count: int = 30
    source: str = "mutate"
    mutations: int = 3
    seed_genome: Mapping[str, Any] | None = None
    reference: Budget = field(default_factory=lambda: Budget(epochs=10, data_fraction=0.5))
    reference_seeds: int = 2
    epochs: tuple[int, ...] = (1, 2, 5)
    optimizers: tuple[str, ...] = ("sgd", "adam", "adamax", "rmsprop")
    data_fractions: tuple[float, ...] = (0.1, 0.5)
    widths: tuple[int, ...] = (16,)
    extra: tuple[Mapping[str, Any], ...] = ()
    proxies: tuple[str, ...] = ALL_PROXIES
    proxy_batch: int = 64
    vote: tuple[str, ...] = ("synflow", "jacob_cov", "snip")
    bootstrap: int = 1000
    confidence: float = 0.95
    top_fraction: float = 0.1
    run: RunConfig = field(default_factory=RunConfig)

    def identity(self) -> dict[str, Any]:
        """Everything but ``run`` (and the data directory): what a resume must not change."""
        out = self.to_dict()
        out.pop("run")
        out["data"].pop("data_dir", None)
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON-ready form that ``fidelity_config_from_dict`` reads back."""
        return {
            "name": self.name,
            "seed": self.seed,
            "data": _plain(dataclasses.asdict(self.data)),
            "space": {"name": self.space.name, "settings": _plain(dict(self.space.settings))},
            "architectures": {
                "count": self.count, "source": self.source, "mutations": self.mutations,
                "seed_genome": _plain(self.seed_genome) if self.seed_genome else None,
            },
            "reference": {"seeds": self.reference_seeds, "budget": self.reference.to_dict()},
            "reduced": {
                "epochs": list(self.epochs), "optimizers": list(self.optimizers),
                "data_fractions": list(self.data_fractions), "widths": list(self.widths),
                "extra": [_plain(dict(e)) for e in self.extra],
            },
            "proxies": {"names": list(self.proxies), "batch_size": self.proxy_batch,
                        "vote": list(self.vote)},
            "analysis": {"bootstrap": self.bootstrap, "confidence": self.confidence,
                         "top_fraction": self.top_fraction},
            "run": _plain(dataclasses.asdict(self.run)),
        }


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _list(section: str, key: str, value: Any, kind: str, source: str) -> tuple[Any, ...]:
    if not isinstance(value, (list, tuple)) or not value:
        raise ConfigError(f"{source}: '{section}.{key}' must be a non-empty list, got {value!r}")
    return tuple(_typed(section, f"{key}[{i}]", v, kind, source) for i, v in enumerate(value))


def fidelity_config_from_dict(raw: Mapping[str, Any], source: str = "<fidelity>") -> FidelityConfig:
    """Validate a mapping into a ``FidelityConfig``; errors name the key and the source."""
    top = _check_keys("", raw, {"name", "seed", "data", "space", "architectures", "reference",
                                "reduced", "proxies", "analysis", "run"}, source)
    # data, space and run share the search config's validation
    base = config_from_dict(
        {k: top[k] for k in ("name", "seed", "data", "space", "run") if k in top}, source
    )
    a = _check_keys("architectures", top.get("architectures"),
                    {"count", "source", "mutations", "seed_genome"}, source)
    count = _typed("architectures", "count", a.get("count", 30), "int", source)
    if count < 3:
        raise ConfigError(f"{source}: 'architectures.count' must be >= 3, got {count}")
    arch_source = _typed("architectures", "source", a.get("source", "mutate"), "str", source)
    if arch_source not in ARCH_SOURCES:
        raise ConfigError(f"{source}: 'architectures.source' must be one of "
                          f"{', '.join(ARCH_SOURCES)}, got {arch_source!r}")
    mutations = _typed("architectures", "mutations", a.get("mutations", 3), "int", source)
    if mutations < 1:
        raise ConfigError(f"{source}: 'architectures.mutations' must be >= 1, got {mutations}")
    seed_genome = a.get("seed_genome")
    if seed_genome is not None and not isinstance(seed_genome, Mapping):
        raise ConfigError(f"{source}: 'architectures.seed_genome' must be a genome mapping")

    r = _check_keys("reference", top.get("reference"), {"seeds", "budget"}, source)
    reference = _budget("reference.budget", r.get("budget"), source,
                        Budget(epochs=10, data_fraction=0.5))
    seeds = _typed("reference", "seeds", r.get("seeds", 2), "int", source)
    if seeds < 2:
        raise ConfigError(f"{source}: 'reference.seeds' must be >= 2 (the noise ceiling needs "
                          f"two), got {seeds}")

    d = _check_keys("reduced", top.get("reduced"),
                    {"epochs", "optimizers", "data_fractions", "widths", "extra"}, source)
    epochs = _list("reduced", "epochs", d.get("epochs", [1, 2, 5]), "int", source)
    if min(epochs) < 1:
        raise ConfigError(f"{source}: 'reduced.epochs' must be positive, got {list(epochs)}")
    optimizers = _list("reduced", "optimizers",
                       d.get("optimizers", ["sgd", "adam", "adamax", "rmsprop"]), "str", source)
    for opt in optimizers:
        if opt not in OPTIMIZERS:
            raise ConfigError(f"{source}: 'reduced.optimizers': unknown optimizer {opt!r}; "
                              f"known: {', '.join(OPTIMIZERS)}")
    fractions = _list("reduced", "data_fractions", d.get("data_fractions", [0.1, 0.5]),
                      "float", source)
    if any(not 0 < f <= 1 for f in fractions):
        raise ConfigError(f"{source}: 'reduced.data_fractions' must be in (0, 1], "
                          f"got {list(fractions)}")
    widths = _list("reduced", "widths", d.get("widths", [reference.width]), "int", source)
    if min(widths) < 1:
        raise ConfigError(f"{source}: 'reduced.widths' must be positive, got {list(widths)}")
    extra_raw = d.get("extra") or []
    if not isinstance(extra_raw, list):
        raise ConfigError(f"{source}: 'reduced.extra' must be a list of budget overrides")
    extra = []
    for i, item in enumerate(extra_raw):
        _budget(f"reduced.extra[{i}]", item, source, reference)  # validates keys and values
        extra.append(dict(item))

    p = _check_keys("proxies", top.get("proxies"), {"names", "batch_size", "vote"}, source)
    names = _list("proxies", "names", p.get("names", list(ALL_PROXIES)), "str", source) \
        if p.get("names", None) != [] else ()
    for n in names:
        if n not in ALL_PROXIES:
            raise ConfigError(f"{source}: 'proxies.names': unknown proxy {n!r}; known: "
                              f"{', '.join(ALL_PROXIES)}")
    batch = _typed("proxies", "batch_size", p.get("batch_size", 64), "int", source)
    if batch < 2:
        raise ConfigError(f"{source}: 'proxies.batch_size' must be >= 2, got {batch}")
    vote = _list("proxies", "vote", p.get("vote", ["synflow", "jacob_cov", "snip"]), "str", source)
    for n in vote:
        if n not in names:
            raise ConfigError(f"{source}: 'proxies.vote': {n!r} is not in proxies.names")

    s = _check_keys("analysis", top.get("analysis"), {"bootstrap", "confidence", "top_fraction"},
                    source)
    n_boot = _typed("analysis", "bootstrap", s.get("bootstrap", 1000), "int", source)
    conf = _typed("analysis", "confidence", s.get("confidence", 0.95), "float", source)
    top_fraction = _typed("analysis", "top_fraction", s.get("top_fraction", 0.1), "float", source)
    if n_boot < 100 or not 0 < conf < 1 or not 0 < top_fraction <= 1:
        raise ConfigError(f"{source}: 'analysis' needs bootstrap >= 100, confidence in (0, 1) "
                          "and top_fraction in (0, 1]")
    return FidelityConfig(
        name=base.name, seed=base.seed, data=base.data, space=base.space, count=count,
        source=arch_source, mutations=mutations, seed_genome=seed_genome, reference=reference,
        reference_seeds=seeds, epochs=tuple(sorted(set(epochs))), optimizers=optimizers,
        data_fractions=fractions, widths=widths, extra=tuple(extra), proxies=names,
        proxy_batch=batch, vote=vote, bootstrap=n_boot, confidence=conf,
        top_fraction=top_fraction, run=dataclasses.replace(base.run, keep_best=0),
    )


def load_fidelity_config(name_or_path: str) -> FidelityConfig:
    """A fidelity study config from a YAML file, or a shipped study preset by name
    (``available_study_presets()``: fidelity-cpu, fidelity-full, fidelity-reduced)."""
    path = Path(name_or_path)
    if name_or_path.endswith((".yaml", ".yml")) or path.exists():
        if not path.is_file():
            raise ConfigError(f"config file {name_or_path} not found")
        return fidelity_config_from_dict(load_yaml(path.read_text(), str(path)), str(path))
    known = available_study_presets()
    if name_or_path not in known:
        raise ConfigError(f"unknown study preset {name_or_path!r}; known: {', '.join(known)}")
    text = (resources.files("nasforge.studies") / "presets" / f"{name_or_path}.yaml").read_text()
    return fidelity_config_from_dict(load_yaml(text, f"study preset {name_or_path}"),
                                     f"study preset {name_or_path}")


def available_study_presets() -> list[str]:
    """Names of the study presets shipped in ``nasforge/studies/presets``."""
    folder = resources.files("nasforge.studies") / "presets"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


# ======================================================================================= plan
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


# ================================================================================== execution
class FixedListStrategy(Strategy):
    """Asks a fixed list of candidates in order (then wraps around: the runner reuses finished
    ones); its state is the position, so a resumed study continues where it stopped."""

    name = "fixed-list"

    def __init__(self, space: SearchSpace, budget: Budget, problem: Problem, seed: int,
                 candidates: Sequence[Candidate]) -> None:
        super().__init__(space, budget, problem, seed)
        if not candidates:
            raise ConfigError("fixed-list strategy needs at least one candidate")
        self.candidates = list(candidates)
        self.position = 0

    def ask(self) -> Candidate:
        """The next candidate of the list."""
        c = self.candidates[self.position % len(self.candidates)]
        self.position += 1
        return c

    def tell(self, observation: Observation) -> None:
        """Nothing to learn."""
        return None

    def state_dict(self) -> dict[str, Any]:
        """The position in the list."""
        return {"position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the position."""
        self.position = int(state.get("position", 0))


def _init_seed(study_seed: int, gkey: str, seed_index: int) -> int:
    return model_seed(study_seed, gkey, f"fidelity-init-{seed_index}") % (2**31)


def fidelity_task_maker(plan: Plan) -> Callable[[EvalTask, Budget], EvalTask]:
    """The fidelity study's kind of work on the ordinary runner: each task gets the fixed data
    subset, the initialisation shared per reference seed, and the proxies (on the seed-0
    reference only); ``evaluate_fidelity_task`` evaluates it."""
    cfg = plan.config

    def prepare(task: EvalTask, budget: Budget) -> EvalTask:
        extra = {
            **task.extra,
            "subset_seed": cfg.seed,
            "init_seed": _init_seed(cfg.seed, task_genome_key(task), budget.seed),
            "proxies": list(cfg.proxies) if budget == plan.references[0] else [],
            "proxy_batch": cfg.proxy_batch,
        }
        return dataclasses.replace(task, checkpoint_path=None, extra=extra)

    def task_genome_key(task: EvalTask) -> str:
        return genome_key(plan.space, plan.space.genome_from_dict(task.genome))

    return prepare


def evaluate_fidelity_task(task: EvalTask) -> dict[str, Any]:
    """Worker side of a fidelity trial: proxies (if asked) on the untrained network, then
    training on the study's fixed data subset from the shared initialisation; failures become
    a failed result dict, never an exception."""
    import traceback

    from nasforge.execution.tasks import load_splits, worker_name

    started = time.time()
    result: dict[str, Any] = {"trial_number": task.trial_number, "worker": worker_name(),
                              "started_at": started, "attempt": task.attempt}
    try:
        import torch

        from nasforge.evaluation.metrics import Normalizer, count_flops
        from nasforge.evaluation.proxies import compute_proxies
        from nasforge.evaluation.trainer import set_determinism, train
        from nasforge.spaces import get_space

        extra = task.extra
        space = get_space(task.space_name, **task.space_settings)
        genome = space.genome_from_dict(task.genome)
        budget = Budget.from_dict(task.budget)
        splits = load_splits(task.data)
        init_seed = int(extra.get("init_seed", task.model_seed % (2**31)))
        set_determinism(init_seed)
        model = space.build(genome, splits.input_shape, splits.num_classes, budget.width)
        proxies: dict[str, Any] = {}
        if extra.get("proxies"):
            gen = torch.Generator().manual_seed(int(extra.get("subset_seed", 0)))
            n = min(int(extra.get("proxy_batch", 64)), len(splits.train_y))
            idx = torch.randperm(len(splits.train_y), generator=gen)[:n]
            x = Normalizer(splits.mean, splits.std, "cpu")(splits.train_x[idx])
            y = splits.train_y[idx]
            scores = compute_proxies(model, x, y, extra["proxies"])
            proxies = {k: v.to_dict() for k, v in scores.items()}
            set_determinism(init_seed)  # proxies must not shift the training's random stream
        if budget.data_fraction < 1.0:
            splits = splits.subset_train(budget.data_fraction, int(extra.get("subset_seed", 0)))
        flops = count_flops(model, splits.input_shape)
        outcome = train(model, splits, budget.replace(data_fraction=1.0, seed=init_seed))
        out = outcome.to_dict()
        out["flops"] = flops
        out["proxies"] = proxies
        result.update(status=outcome.status, error=outcome.reason, val_acc=outcome.val_acc,
                      params=outcome.params, flops=flops, curve=out.pop("curve"), metrics=out)
    except Exception as exc:  # a failed trial, never a dead study
        result.update(status="failed", error=f"{type(exc).__name__}: {exc}",
                      stderr=traceback.format_exc(limit=20))
    result["finished_at"] = time.time()
    return result


def _search_config(cfg: FidelityConfig, genomes: list[dict[str, Any]]) -> SearchConfig:
    """The runner's view of the study; the whole fidelity identity (and the architectures)
    travel in the strategy settings, so resuming with another study config is refused."""
    return SearchConfig(
        name=cfg.name, seed=cfg.seed, data=cfg.data, space=cfg.space,
        strategy=ComponentConfig("fixed-list", {"fidelity": cfg.identity(), "genomes": genomes}),
        budget=cfg.reference, run=cfg.run,
    )


def run_fidelity(
    cfg: FidelityConfig,
    storage_path: str | Path,
    *,
    resume: bool = False,
    force: bool = False,
    reporter: Reporter | None = None,
    executor: Any = None,
) -> RunSummary:
    """Run (or resume) the study's trials into ``storage_path``.

    A new study generates the architectures from ``cfg.seed``; a resumed one reads them back
    from the study file, so nothing depends on re-generating them identically.
    """
    from nasforge.api import open_study
    from nasforge.execution.executors import make_executor
    from nasforge.execution.isolation import IsolatedEvaluate

    path = Path(storage_path)
    genomes: list[dict[str, Any]] | None = None
    if resume and path.exists():
        with StudyStorage.open(path) as st:
            settings = st.study()["config"]["strategy"]["settings"]
            genomes = settings.get("genomes")
    plan = make_plan(cfg, genomes=genomes)
    gdicts = [plan.space.genome_to_dict(g) for g in plan.genomes]
    search_cfg = _search_config(cfg, gdicts)
    run_cfg = dataclasses.replace(cfg.run, max_evals=len(plan.candidates), keep_best=0)
    search_cfg = dataclasses.replace(search_cfg, run=run_cfg)
    storage = open_study(path, search_cfg, resume=resume, force=force)
    strategy = FixedListStrategy(plan.space, cfg.reference, plan.problem, cfg.seed,
                                 plan.candidates)
    state = storage.strategy_state()
    if state is not None:
        strategy.load_state_dict(state)
    own = executor is None
    executor = executor or make_executor(run_cfg)
    try:
        runner = Runner(
            config=search_cfg, storage=storage, space=plan.space, strategy=strategy,
            executor=executor, reporter=reporter or Reporter(enabled=False),
            evaluate=IsolatedEvaluate(run_cfg.eval_timeout, run_cfg.memory_limit_mb,
                                      evaluate=evaluate_fidelity_task),
            prepare_task=fidelity_task_maker(plan),
        )
        return runner.run()
    finally:
        if own:
            executor.shutdown(wait=True, cancel_futures=True)
        storage.close()


# =================================================================================== analysis
@dataclass
class RankMetrics:
    """Agreement of one ranking with the reference over ``n`` architectures."""

    n: int
    tau_b: float
    tau_lo: float
    tau_hi: float
    rho: float
    rho_lo: float
    rho_hi: float
    top_overlap: float
    tau_b_best_half: float = float("nan")


def _tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall tau-b (``scipy.stats.kendalltau``, variant 'b'); nan when a side is constant."""
    import warnings

    from scipy.stats import kendalltau

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(kendalltau(x, y, variant="b").statistic)


def _rho(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rho (``scipy.stats.spearmanr``); nan when a side is constant."""
    import warnings

    from scipy.stats import spearmanr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(spearmanr(x, y).statistic)


def top_overlap(reference: Sequence[float], other: Sequence[float], fraction: float) -> float:
    """Share of the reference's top ``ceil(fraction * n)`` that is also in ``other``'s top
    (higher is better; ties broken by position)."""
    n = len(reference)
    k = max(1, math.ceil(fraction * n))
    top_r = set(sorted(range(n), key=lambda i: -reference[i])[:k])
    top_o = set(sorted(range(n), key=lambda i: -other[i])[:k])
    return len(top_r & top_o) / k


def best_half_tau(reference: Sequence[float], other: Sequence[float],
                  half_by: Sequence[float] | None = None) -> float:
    """Kendall tau-b over the architectures in the reference's best half (the ``ceil(n/2)``
    highest references, ties broken by position): how well ``other`` orders the networks a
    search has to choose between; nan below 3 architectures. ``half_by``: pick the half by
    these scores instead (the noise ceiling: seed 0 against seed 1 on the half chosen by
    the mean of the seeds, the same architectures as every other row)."""
    n = len(reference)
    order = reference if half_by is None else half_by
    best = sorted(range(n), key=lambda i: -order[i])[:math.ceil(n / 2)]
    if len(best) < 3:
        return float("nan")
    return _tau([reference[i] for i in best], [other[i] for i in best])


def bootstrap_ci(x: Sequence[float], y: Sequence[float], statistic: str, *,
                 resamples: int = 1000, confidence: float = 0.95,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval (``scipy.stats.bootstrap``, paired resampling of
    architectures) of Kendall tau-b (``"tau_b"``) or Spearman rho (``"rho"``); resamples
    where the statistic is undefined (all-tied) are dropped by using nan-aware percentiles."""
    import warnings

    import numpy as np
    from scipy.stats import bootstrap

    def fn(a: Any, b: Any) -> float:
        return _tau(a, b) if statistic == "tau_b" else _rho(a, b)

    if len(x) < 3:
        return float("nan"), float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = bootstrap((np.asarray(x, float), np.asarray(y, float)), fn, paired=True,
                        vectorized=False, n_resamples=resamples,
                        confidence_level=confidence, method="percentile",
                        rng=np.random.default_rng(seed))
    dist = res.bootstrap_distribution
    dist = dist[np.isfinite(dist)]
    if dist.size == 0:
        return float("nan"), float("nan")
    alpha = (1 - confidence) / 2
    return float(np.quantile(dist, alpha)), float(np.quantile(dist, 1 - alpha))


def rank_metrics(reference: Sequence[float], other: Sequence[float], *, resamples: int = 1000,
                 confidence: float = 0.95, top_fraction: float = 0.1,
                 seed: int = 0, half_by: Sequence[float] | None = None) -> RankMetrics:
    """Kendall tau-b and Spearman rho of ``other`` against ``reference`` (scipy.stats), their
    bootstrap intervals, the top-``top_fraction`` overlap and tau-b over the best half."""
    tau_lo, tau_hi = bootstrap_ci(reference, other, "tau_b", resamples=resamples,
                                  confidence=confidence, seed=seed)
    rho_lo, rho_hi = bootstrap_ci(reference, other, "rho", resamples=resamples,
                                  confidence=confidence, seed=seed)
    return RankMetrics(len(reference), _tau(reference, other), tau_lo, tau_hi,
                       _rho(reference, other), rho_lo, rho_hi,
                       top_overlap(reference, other, top_fraction),
                       best_half_tau(reference, other, half_by))


@dataclass
class Row:
    """One line of the table: a reduced budget, a proxy, or the noise ceiling."""

    kind: str  # "noise ceiling" | "grid" | "extra" | "proxy"
    label: str
    cost: float
    metrics: RankMetrics | None
    note: str = ""
    values: dict[str, float] = field(default_factory=dict)
    series: str = ""  # budgets that differ only in epochs share one, e.g. "adam 10% w16"


@dataclass
class FidelityResults:
    """The analysed study: reference accuracies, every row, and what the runs covered."""

    name: str
    architectures: list[str]
    descriptions: list[str]
    reference: dict[str, float]
    reference_seeds: list[dict[str, float]]
    rows: list[Row]
    reference_seconds: float
    trials_ok: int
    trials_failed: int
    trials_planned: int
    config: dict[str, Any]


def _records(storage: StudyStorage) -> dict[tuple[str, str], Any]:
    return {(t.genome_key, t.budget_key): t for t in storage.trials("ok")}


def analyse(storage_path: str | Path) -> FidelityResults:
    """Read a fidelity study database and compute every table row (partial studies give the
    rows their finished trials allow)."""
    from nasforge.evaluation.proxies import rank_vote

    with StudyStorage.open(storage_path) as storage:
        study = storage.study()
        settings = study["config"]["strategy"]["settings"]
        if "fidelity" not in settings:
            raise ConfigError(f"{storage_path} is not a fidelity study")
        raw = dict(settings["fidelity"])
        raw["run"] = dict(study["config"].get("run", {}))
        cfg = fidelity_config_from_dict(raw, str(storage_path))
        plan = make_plan(cfg, problem=Problem((1, 1, 1), 2), genomes=settings["genomes"])
        recs = _records(storage)
        failed = storage.count("failed")
    space = plan.space
    keys = [genome_key(space, g) for g in plan.genomes]
    descs = [space.describe(g) for g in plan.genomes]

    def run_of(k: str, b: Budget) -> Any:
        return recs.get((k, budget_key(b.to_dict())))

    seeds: list[dict[str, float]] = []
    for b in plan.references:
        seeds.append({k: float(r.val_acc) for k in keys if (r := run_of(k, b)) is not None})
    common = [k for k in keys if all(k in s for s in seeds)]
    reference = {k: sum(s[k] for s in seeds) / len(seeds) for k in common}
    ref_seconds = sum(sum(e["seconds"] for e in run_of(k, plan.references[0]).curve)
                      for k in common)
    opts = dict(resamples=cfg.bootstrap, confidence=cfg.confidence,
                top_fraction=cfg.top_fraction, seed=cfg.seed)
    rows: list[Row] = []

    def row(kind: str, label: str, values: dict[str, float], cost: float, note: str = "",
            series: str = "") -> None:
        ks = [k for k in common if k in values and math.isfinite(values[k])]
        m = None
        if len(ks) >= 3:
            m = rank_metrics([reference[k] for k in ks], [values[k] for k in ks], **opts)
        rows.append(Row(kind, label, cost, m, note, values, series))

    if len(seeds) >= 2 and common:
        ks = [k for k in common]
        m = rank_metrics([seeds[0][k] for k in ks], [seeds[1][k] for k in ks], **opts,
                         half_by=[reference[k] for k in ks])
        rows.append(Row("noise ceiling", "reference seed 0 vs seed 1", 1.0, m,
                        "tau-b between two seeds of the reference budget", seeds[1]))
    for rb in plan.reduced:
        values: dict[str, float] = {}
        seconds = 0.0
        ref_part = 0.0  # the reference's seconds on the same architectures
        for k in common:
            r = run_of(k, rb.run)
            if r is not None and len(r.curve) >= rb.epoch:
                values[k] = float(r.curve[rb.epoch - 1]["val_acc"])
                seconds += sum(e["seconds"] for e in r.curve[:rb.epoch])
                ref_part += sum(e["seconds"] for e in run_of(k, plan.references[0]).curve)
        note = ("read from the reference seed-0 curve" if rb.run == plan.references[0]
                else (f"epoch {rb.epoch} of a {rb.run.epochs}-epoch run"
                      if rb.epoch != rb.run.epochs else ""))
        if len(values) < len(common):
            note = (note + "; " if note else "") + f"{len(values)}/{len(common)} finished"
        row(rb.kind, rb.label, values, seconds / ref_part if ref_part else float("nan"), note,
            series=f"{rb.optimizer} {rb.data_fraction:.0%} w{rb.width}")
    proxy_values: dict[str, dict[str, float]] = {}
    proxy_seconds: dict[str, float] = {}
    missing: dict[str, list[str]] = {}
    for k in common:
        r = run_of(k, plan.references[0])
        for name, score in (r.metrics.get("proxies") or {}).items():
            proxy_seconds[name] = proxy_seconds.get(name, 0.0) + float(score.get("seconds", 0))
            if score.get("value") is not None:
                proxy_values.setdefault(name, {})[k] = float(score["value"])
            else:
                missing.setdefault(name, []).append(str(score.get("reason")))
    for name in cfg.proxies:
        vals = proxy_values.get(name, {})
        note = ""
        if missing.get(name):
            reasons = sorted(set(missing[name]))
            note = f"missing for {len(missing[name])}: {reasons[0]}" + (
                f" (+{len(reasons) - 1} other reasons)" if len(reasons) > 1 else "")
        row("proxy", name, vals, proxy_seconds.get(name, 0.0) / ref_seconds
            if ref_seconds else float("nan"), note)
    if cfg.vote and common:
        columns = {n: [proxy_values.get(n, {}).get(k) for k in common] for n in cfg.vote}
        votes = rank_vote(columns, cfg.vote)
        vals = {k: v for k, v in zip(common, votes) if v is not None}
        cost = sum(proxy_seconds.get(n, 0.0) for n in cfg.vote)
        row("proxy", "vote(" + ", ".join(cfg.vote) + ")", vals,
            cost / ref_seconds if ref_seconds else float("nan"), "mean rank of the members")
    return FidelityResults(
        name=cfg.name, architectures=keys, descriptions=descs, reference=reference,
        reference_seeds=seeds, rows=rows, reference_seconds=ref_seconds,
        trials_ok=len(recs), trials_failed=failed, trials_planned=len(plan.candidates),
        config=cfg.to_dict(),
    )


# ===================================================================================== output
_COLUMNS = ["kind", "budget_or_proxy", "n", "tau_b", "tau_b_lo", "tau_b_hi", "spearman_rho",
            "rho_lo", "rho_hi", "top_overlap", "relative_cost", "note", "tau_b_best_half"]


def _row_cells(r: Row) -> list[Any]:
    m = r.metrics
    if m is None:
        return [r.kind, r.label, 0, "", "", "", "", "", "", "", _num(r.cost), r.note, ""]
    return [r.kind, r.label, m.n, _num(m.tau_b), _num(m.tau_lo), _num(m.tau_hi), _num(m.rho),
            _num(m.rho_lo), _num(m.rho_hi), _num(m.top_overlap), _num(r.cost), r.note,
            _num(m.tau_b_best_half)]


def _num(v: float) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4g}"


def summary_lines(res: FidelityResults, threshold: float = 0.7) -> list[str]:
    """The headline findings: cheapest budget reaching ``threshold`` tau-b (or the best) among
    the budgets finished for every architecture, the noise ceiling, and which proxies beat
    parameter count."""
    lines = []
    complete = len(res.reference)
    budgets = [r for r in res.rows if r.kind in ("grid", "extra") and r.metrics is not None
               and r.metrics.n == complete]  # a partly finished budget is not ranked here
    reached = sorted((r for r in budgets if r.metrics.tau_b >= threshold), key=lambda r: r.cost)
    if reached:
        r = reached[0]
        lines.append(f"Cheapest reduced budget with tau-b >= {threshold}: **{r.label}** "
                     f"(tau-b {r.metrics.tau_b:.3f} [{r.metrics.tau_lo:.2f}, "
                     f"{r.metrics.tau_hi:.2f}], cost {r.cost:.3f} of the reference).")
    elif budgets:
        r = max(budgets, key=lambda r: r.metrics.tau_b)
        lines.append(f"No reduced budget reaches tau-b {threshold}; the best is **{r.label}** "
                     f"(tau-b {r.metrics.tau_b:.3f} [{r.metrics.tau_lo:.2f}, "
                     f"{r.metrics.tau_hi:.2f}], cost {r.cost:.3f}).")
    noise = next((r for r in res.rows if r.kind == "noise ceiling"), None)
    if noise is not None and noise.metrics is not None:
        lines.append(f"Noise ceiling (reference seed 0 vs seed 1): tau-b "
                     f"{noise.metrics.tau_b:.3f} [{noise.metrics.tau_lo:.2f}, "
                     f"{noise.metrics.tau_hi:.2f}], rho {noise.metrics.rho:.3f}.")
    proxies = {r.label: r for r in res.rows if r.kind == "proxy" and r.metrics is not None}
    base = proxies.get("params")
    if base is not None:
        better = [n for n, r in proxies.items()
                  if n not in ("params", "flops") and r.metrics.tau_b > base.metrics.tau_b]
        clear = [n for n in better if proxies[n].metrics.tau_lo > base.metrics.tau_b]
        lines.append(
            f"Parameter count: tau-b {base.metrics.tau_b:.3f}. Proxies above it: "
            f"{', '.join(better) if better else 'none'}"
            + (f" (lower CI bound above it: {', '.join(clear) or 'none'})" if better else "")
            + ".")
    lines += _best_half_summary(res, budgets, proxies, threshold)
    return lines


def _best_half_summary(res: FidelityResults, budgets: list[Row], proxies: dict[str, Row],
                       threshold: float) -> list[str]:
    """The same findings over the reference's best half of the architectures."""
    half = math.ceil(len(res.reference) / 2)
    if half < 3:
        return []
    parts = []
    noise = next((r for r in res.rows if r.kind == "noise ceiling" and r.metrics), None)
    if noise is not None:
        parts.append(f"noise ceiling {noise.metrics.tau_b_best_half:.3f}")
    scored = [r for r in budgets if not math.isnan(r.metrics.tau_b_best_half)]
    reached = sorted((r for r in scored if r.metrics.tau_b_best_half >= threshold),
                     key=lambda r: r.cost)
    if reached:
        parts.append(f"cheapest budget with tau-b >= {threshold}: {reached[0].label} "
                     f"({reached[0].metrics.tau_b_best_half:.3f}, cost {reached[0].cost:.3f})")
    elif scored:
        top = max(scored, key=lambda r: r.metrics.tau_b_best_half)
        parts.append(f"no budget reaches {threshold}, the best is {top.label} "
                     f"({top.metrics.tau_b_best_half:.3f}, cost {top.cost:.3f})")
    base = proxies.get("params")
    if base is not None and not math.isnan(base.metrics.tau_b_best_half):
        better = [n for n, r in proxies.items() if n not in ("params", "flops")
                  and r.metrics.tau_b_best_half > base.metrics.tau_b_best_half]
        parts.append(f"parameter count {base.metrics.tau_b_best_half:.3f}, proxies above it: "
                     f"{', '.join(better) if better else 'none'}")
    return [f"Among the best half by reference ({half} architectures, tau-b): "
            + "; ".join(parts) + "."] if parts else []


def write_outputs(res: FidelityResults, out_dir: str | Path) -> list[Path]:
    """Write ``fidelity.csv``, ``fidelity.md``, ``architectures.csv`` and the two plots into
    ``out_dir``; return the paths written."""
    import csv

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with open(out / "fidelity.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(_COLUMNS)
        for r in res.rows:
            w.writerow(_row_cells(r))
    written.append(out / "fidelity.csv")

    budget_rows = [r for r in res.rows if r.kind in ("grid", "extra")]
    with open(out / "architectures.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        proxies = [r for r in res.rows if r.kind == "proxy"]
        w.writerow(["genome_key", "description", "reference_mean"]
                   + [f"reference_seed{i}" for i in range(len(res.reference_seeds))]
                   + [r.label for r in budget_rows] + [f"proxy:{r.label}" for r in proxies])
        for k, d in zip(res.architectures, res.descriptions):
            w.writerow([k, d, _num(res.reference.get(k, float("nan")))]
                       + [_num(s.get(k, float("nan"))) for s in res.reference_seeds]
                       + [_num(r.values.get(k, float("nan"))) for r in budget_rows + proxies])
    written.append(out / "architectures.csv")

    top_pct = f"{res.config.get('analysis', {}).get('top_fraction', 0.1):.0%}"
    header = "| " + " | ".join(["kind", "budget / proxy", "n", "tau-b [CI]", "rho [CI]",
                                f"top-{top_pct} overlap", "tau-b, best half", "rel. cost",
                                "note"]) + " |"
    lines = [f"# Fidelity study `{res.name}`", "",
             f"{len(res.reference)} architectures with every reference seed finished; trials: "
             f"{res.trials_ok} ok, {res.trials_failed} failed, {res.trials_planned} planned. "
             f"One reference seed costs {res.reference_seconds:.1f} s for all architectures "
             "(relative costs below are measured wall-clock against it).",
             "", *[f"- {s}" for s in summary_lines(res)], "", header,
             "|" + "---|" * 9]
    for r in res.rows:
        m = r.metrics
        if m is None:
            lines.append(f"| {r.kind} | {r.label} | 0 | | | | | {_num(r.cost)} | {r.note} |")
            continue
        lines.append(
            f"| {r.kind} | {r.label} | {m.n} | {m.tau_b:.3f} [{m.tau_lo:.2f}, {m.tau_hi:.2f}] | "
            f"{m.rho:.3f} [{m.rho_lo:.2f}, {m.rho_hi:.2f}] | {m.top_overlap:.2f} | "
            f"{_num(m.tau_b_best_half)} | {_num(r.cost)} | {r.note} |")
    (out / "fidelity.md").write_text("\n".join(lines) + "\n")
    written.append(out / "fidelity.md")
    written += _plots(res, out)
    return written


def _plots(res: FidelityResults, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    fig, (ax, zoom) = plt.subplots(1, 2, figsize=(13, 5.5), width_ratios=(1, 1.2))
    markers = {"grid": "o", "extra": "s", "proxy": "^"}
    for kind, colour in (("grid", "tab:blue"), ("extra", "tab:green"), ("proxy", "tab:red")):
        rows = [r for r in res.rows if r.kind == kind and r.metrics is not None and r.cost > 0]
        if not rows:
            continue
        ax.errorbar([r.cost for r in rows], [r.metrics.tau_b for r in rows],
                    yerr=[[max(0.0, r.metrics.tau_b - r.metrics.tau_lo) for r in rows],
                          [max(0.0, r.metrics.tau_hi - r.metrics.tau_b) for r in rows]],
                    fmt=markers[kind], color=colour, label=kind, alpha=0.8, capsize=2)
        if kind == "proxy":  # budgets crowd together: the right panel names them
            for r in rows:
                ax.annotate(r.label, (r.cost, r.metrics.tau_b), fontsize=6, alpha=0.7,
                            xytext=(3, 2), textcoords="offset points")
    # right: the budgets only, one line per (optimizer, data fraction, width) through its epochs
    series: dict[str, list[Row]] = {}
    for r in res.rows:
        if r.kind in ("grid", "extra") and r.metrics is not None and r.cost > 0:
            series.setdefault(r.series or r.label, []).append(r)
    colours = plt.get_cmap("tab10").colors
    optimizers = sorted({name.split()[0] for name in series})
    for name, rows in sorted(series.items()):
        rows.sort(key=lambda r: r.cost)
        colour = colours[optimizers.index(name.split()[0]) % len(colours)]
        style = "-" if "10%" in name or len(rows) == 1 else "--"
        zoom.plot([r.cost for r in rows], [r.metrics.tau_b for r in rows], style, marker="o",
                  color=colour, label=name, alpha=0.85, markersize=4)
        for r in rows:
            epochs = r.label.split()[1] if len(r.label.split()) > 1 else r.label
            zoom.annotate(epochs, (r.cost, r.metrics.tau_b), fontsize=6, alpha=0.7,
                          xytext=(2, 2), textcoords="offset points")
    noise = next((r for r in res.rows if r.kind == "noise ceiling" and r.metrics), None)
    for a in (ax, zoom):
        if noise is not None:
            a.axhline(noise.metrics.tau_b, color="grey", ls="--", label="noise ceiling")
        a.axhline(0.7, color="black", ls=":", label="tau-b 0.7 (published)")
        a.set_xscale("log")
        a.set_xlabel("cost relative to one reference run (wall-clock, log scale)")
    ax.set_ylabel("Kendall tau-b vs reference")
    ax.set_title("all budgets and proxies (bars: bootstrap CI)", fontsize=9)
    zoom.set_title("reduced budgets, labelled by epochs (CIs in fidelity.md)", fontsize=9)
    ax.legend(fontsize=7)
    zoom.legend(fontsize=6, ncol=2, loc="lower right")
    fig.suptitle(f"{res.name}: rank agreement against cost")
    fig.tight_layout()
    fig.savefig(out / "rank_vs_cost.png", dpi=110)
    plt.close(fig)
    written.append(out / "rank_vs_cost.png")

    budget_rows = [r for r in res.rows if r.kind in ("grid", "extra") and r.metrics is not None]
    if budget_rows:
        cols = 4
        nrows = math.ceil(len(budget_rows) / cols)
        fig, axes = plt.subplots(nrows, cols, figsize=(3 * cols, 2.6 * nrows), squeeze=False)
        for ax, r in zip(axes.flat, budget_rows):
            ks = [k for k in res.reference if k in r.values]
            ax.scatter([res.reference[k] for k in ks], [r.values[k] for k in ks], s=8)
            ax.set_title(f"{r.label}\ntau-b {r.metrics.tau_b:.2f}", fontsize=7)
            ax.tick_params(labelsize=6)
        for ax in list(axes.flat)[len(budget_rows):]:
            ax.axis("off")
        fig.supxlabel("reference validation accuracy (mean of seeds)", fontsize=8)
        fig.supylabel("reduced-budget validation accuracy", fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "reduced_vs_reference.png", dpi=90)
        plt.close(fig)
        written.append(out / "reduced_vs_reference.png")
    return written


def config_hash(cfg: FidelityConfig) -> str:
    """A short stable hash of a study's identity (for file names)."""
    return hashlib.sha256(json.dumps(cfg.identity(), sort_keys=True).encode()).hexdigest()[:10]
