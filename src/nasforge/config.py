"""Search configuration: YAML files and presets, validated on load.

The checks of single keys and values (types, durations, budgets) live in
:mod:`nasforge.config_values`.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import yaml

from nasforge.config_values import (  # noqa: F401 - parse_duration re-exported
    _budget,
    _check_keys,
    _duration,
    _typed,
    parse_duration,
)
from nasforge.errors import ConfigError
from nasforge.evaluation.budget import Budget

EXECUTORS: tuple[str, ...] = ("local", "mpi", "dask")


@dataclass(frozen=True)
class DataConfig:
    """Which data set, where it lives and how validation is split off."""

    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    val_fraction: float = 0.1
    split_seed: int = 0
    normalize: tuple[tuple[float, ...], tuple[float, ...]] | None = None

    def task_dict(self) -> dict[str, Any]:
        """The plain dict evaluation workers receive (they load the data themselves)."""
        return {
            "dataset": self.dataset,
            "data_dir": self.data_dir,
            "val_fraction": self.val_fraction,
            "split_seed": self.split_seed,
            "normalize": [list(self.normalize[0]), list(self.normalize[1])]
            if self.normalize else None,
        }


def parse_shape(text: str, flag: str = "--input") -> tuple[int, int, int]:
    """An image shape written as CxHxW (e.g. 1x28x28)."""
    try:
        parts = tuple(int(p) for p in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"{flag} must look like 1x28x28, got {text!r}") from None
    if len(parts) != 3 or min(parts) < 1:
        raise ConfigError(f"{flag} must look like 1x28x28, got {text!r}")
    return parts  # type: ignore[return-value]


@dataclass(frozen=True)
class ComponentConfig:
    """A registered component (space or strategy) by name, with its settings."""

    name: str
    settings: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunConfig:
    """How a search runs; may change freely on resume."""

    max_evals: int = 20
    time_limit: float | None = None
    target_accuracy: float | None = None
    workers: int = 1
    executor: str = "local"
    scheduler: str | None = None
    devices: tuple[int, ...] | None = None
    keep_best: int = 3
    eval_timeout: float | None = None
    memory_limit_mb: int | None = None
    grace_period: float = 30.0
    #: ``train`` (train every trial) or ``tabular:nb201`` (answer from the NAS-Bench-201 table
    #: in the driver's process; a benchmark run, see ``nasforge.execution.tabular``)
    evaluator: str = "train"
    #: stop running trials early from their live intermediate values: None, ``median`` or
    #: ``halving`` (``nasforge.execution.pruners``); a mapping gives settings
    pruner: Any = None
    #: devices (GPUs; on CPU, processes sharing the worker's cores) that train one trial
    #: data-parallel (``nasforge.execution.data_parallel``); 1 = one process per trial
    devices_per_trial: int = 1
    #: the search's own time budget in seconds (``90m`` etc. in a file): after it no new trial
    #: starts and the running ones finish (unlike ``time_limit``, which cuts them); counted over
    #: every run of the study (``--resume`` searches only what is left)
    search_seconds: float | None = None
    #: constraints on ``params`` and ``flops`` kept by the strategy before training (True: a
    #: candidate that breaks one is never proposed), or only after it (False: it trains and
    #: is marked infeasible, as before session 12)
    constraints_first: bool = True


@dataclass(frozen=True)
class FinalConfig:
    """Final training of the best genomes on the full training set, reported on the test set."""

    top: int = 1
    seeds: int = 1
    budget: Budget = field(default_factory=Budget)
    #: cap on the final step's estimated seconds; a larger estimate cuts epochs to fit
    max_seconds: float | None = None
    #: the whole command (search and final) should end within this many seconds of its start:
    #: the final step is capped at what is left (cutting epochs, as ``max_seconds``)
    total_seconds: float | None = None
    #: which trials get final training: ``best`` (by the first objective) or ``front`` (the
    #: Pareto front's members, best first by the first objective); see ``nasforge.objectives``
    pick: str = "best"
    #: final runs trained at once (None: ``run.workers``); on a 2-core CPU, 3 seeds train
    #: sooner one after another on both cores (``workers: 1``) than 2 + 1 on one core each
    workers: int | None = None
    #: with a cap, narrow the final networks first (same genome, width down to this, a
    #: multiple of 8) and cut epochs only below it; None (or at least ``budget.width``): a cap
    #: cuts epochs only
    min_width: int | None = None
    #: with a cap and ``min_width``: cut epochs first, down to this many, and narrow the
    #: networks only when even these do not fit at full width (a short budget trains a narrower
    #: network for more epochs: at the width found the epochs grow back to fill the cap, up to
    #: ``budget.epochs``); at or above ``budget.epochs``: narrow first, as None
    min_epochs: int | None = None
    #: with a cap, an estimate under it grows the epochs up to this (the time the command was
    #: given is used; see ``execution.final_plan``); None: epochs are never grown
    max_epochs: int | None = None


CONFIG_KINDS: tuple[str, ...] = ("search", "final-training")
"""Values of a config's ``kind``."""


@dataclass(frozen=True)
class SearchConfig:
    """Everything that defines a search: the study identity plus how it runs."""

    name: str = "search"
    #: strategy choices and network initialisation; a search repeats trial by trial with one
    #: worker only (with more, proposals depend on which evaluation ends first)
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    space: ComponentConfig = field(default_factory=lambda: ComponentConfig("global"))
    strategy: ComponentConfig = field(default_factory=lambda: ComponentConfig("evolution"))
    budget: Budget = field(default_factory=Budget)
    run: RunConfig = field(default_factory=RunConfig)
    final: FinalConfig | None = None
    prefilter: str | None = None
    #: ``nasforge.objectives``: () means the one objective val_acc (max)
    objectives: tuple[Any, ...] = ()
    constraints: tuple[Any, ...] = ()
    #: what the config is for: ``search`` (a search, then its final step) or
    #: ``final-training`` (only the ``final`` section is used, by ``nasforge train --preset``)
    kind: str = "search"

    def identity(self) -> dict[str, Any]:
        """The settings that define the study; changing them on resume is refused."""
        data = dataclasses.asdict(self.data)
        data.pop("data_dir")
        return {
            "data": data,
            "space": {"name": self.space.name, "settings": dict(self.space.settings)},
            "strategy": {"name": self.strategy.name, "settings": dict(self.strategy.settings)},
            "budget": self.budget.to_dict(),
            "seed": self.seed,
            "prefilter": self.prefilter,
            # only when not the default, so studies from before the fields keep their hash
            **({"objectives": [o.to_dict() for o in self.objectives]} if self.objectives else {}),
            **({"constraints": [str(c) for c in self.constraints]} if self.constraints else {}),
            **({"evaluator": self.run.evaluator} if self.run.evaluator != "train" else {}),
        }

    def identity_hash(self) -> str:
        """A stable hash of ``identity()``."""
        text = json.dumps(self.identity(), sort_keys=True, default=list)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-ready form that ``config_from_dict`` reads back."""
        out: dict[str, Any] = {
            "name": self.name,
            "seed": self.seed,
            "data": _plain(dataclasses.asdict(self.data)),
            "space": {"name": self.space.name, "settings": _plain(dict(self.space.settings))},
            "strategy": {
                "name": self.strategy.name,
                "settings": _plain(dict(self.strategy.settings)),
            },
            "budget": self.budget.to_dict(),
            "run": _plain(dataclasses.asdict(self.run)),
            "prefilter": self.prefilter,
        }
        if self.objectives:
            out["objectives"] = [o.to_dict() for o in self.objectives]
        if self.constraints:
            out["constraints"] = [str(c) for c in self.constraints]
        if self.kind != "search":
            out["kind"] = self.kind
        if self.final is not None:
            out["final"] = {
                "top": self.final.top,
                "seeds": self.final.seeds,
                "budget": self.final.budget.to_dict(),
            }
            for key in ("max_seconds", "total_seconds", "workers", "min_width", "min_epochs",
                        "max_epochs"):
                if getattr(self.final, key) is not None:
                    out["final"][key] = getattr(self.final, key)
            if self.final.pick != "best":
                out["final"]["pick"] = self.final.pick
        return out


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def config_from_dict(raw: Mapping[str, Any], source: str = "<config>") -> SearchConfig:
    """Validate a mapping into a ``SearchConfig``; errors name the key and the source."""
    top = _check_keys(
        "", raw, {"name", "seed", "data", "space", "strategy", "budget", "run", "final", "prefilter",
                  "objectives", "constraints", "kind"}, source
    )
    kind = _typed("config", "kind", top.get("kind", "search"), "str", source)
    if kind not in CONFIG_KINDS:
        raise ConfigError(f"{source}: 'kind' must be one of {', '.join(CONFIG_KINDS)}, got {kind!r}")
    name = _typed("config", "name", top.get("name", "search"), "str", source)
    seed = _typed("config", "seed", top.get("seed", 0), "int", source)

    d = _check_keys("data", top.get("data"), {f.name for f in dataclasses.fields(DataConfig)}, source)
    normalize = d.get("normalize")
    if normalize is not None:
        if (
            not isinstance(normalize, (list, tuple))
            or len(normalize) != 2
            or not all(isinstance(p, (list, tuple)) and p for p in normalize)
        ):
            raise ConfigError(f"{source}: 'data.normalize' must be [[means...], [stds...]]")
        normalize = (tuple(float(v) for v in normalize[0]), tuple(float(v) for v in normalize[1]))
    data = DataConfig(
        dataset=_typed("data", "dataset", d.get("dataset", "fashion-mnist"), "str", source),
        data_dir=_typed("data", "data_dir", d.get("data_dir"), "str", source, optional=True),
        val_fraction=_typed("data", "val_fraction", d.get("val_fraction", 0.1), "float", source),
        split_seed=_typed("data", "split_seed", d.get("split_seed", 0), "int", source),
        normalize=normalize,
    )
    if not 0.0 < data.val_fraction < 1.0:
        raise ConfigError(f"{source}: 'data.val_fraction' must be in (0, 1), got {data.val_fraction}")

    def component(section: str, default: str) -> ComponentConfig:
        c = _check_keys(section, top.get(section), {"name", "settings"}, source)
        settings = c.get("settings") or {}
        if not isinstance(settings, Mapping):
            raise ConfigError(f"{source}: '{section}.settings' must be a mapping")
        return ComponentConfig(
            _typed(section, "name", c.get("name", default), "str", source), dict(settings)
        )

    space = component("space", "global")
    strategy = component("strategy", "evolution")
    budget = _budget("budget", top.get("budget"), source)

    r = _check_keys("run", top.get("run"), {f.name for f in dataclasses.fields(RunConfig)}, source)
    devices = r.get("devices")
    if devices is not None:
        if isinstance(devices, str):
            devices = [int(x) for x in devices.split(",") if x.strip()]
        if not isinstance(devices, (list, tuple)) or not all(isinstance(x, int) for x in devices):
            raise ConfigError(f"{source}: 'run.devices' must be a list of GPU indices")
        devices = tuple(devices)
    run = RunConfig(
        max_evals=_typed("run", "max_evals", r.get("max_evals", 20), "int", source),
        time_limit=_duration("run", "time_limit", r.get("time_limit"), source),
        target_accuracy=_typed(
            "run", "target_accuracy", r.get("target_accuracy"), "float", source, optional=True
        ),
        workers=_typed("run", "workers", r.get("workers", 1), "int", source),
        executor=_typed("run", "executor", r.get("executor", "local"), "str", source),
        scheduler=_typed("run", "scheduler", r.get("scheduler"), "str", source, optional=True),
        devices=devices,
        keep_best=_typed("run", "keep_best", r.get("keep_best", 3), "int", source),
        eval_timeout=_typed(
            "run", "eval_timeout", r.get("eval_timeout"), "float", source, optional=True
        ),
        memory_limit_mb=_typed(
            "run", "memory_limit_mb", r.get("memory_limit_mb"), "int", source, optional=True
        ),
        grace_period=_typed("run", "grace_period", r.get("grace_period", 30.0), "float", source),
        evaluator=_typed("run", "evaluator", r.get("evaluator", "train"), "str", source),
        pruner=r.get("pruner"),
        devices_per_trial=_typed("run", "devices_per_trial", r.get("devices_per_trial", 1), "int",
                                 source),
        search_seconds=_duration("run", "search_seconds", r.get("search_seconds"), source),
        constraints_first=_typed("run", "constraints_first", r.get("constraints_first", True),
                                 "bool", source),
    )
    if run.devices_per_trial < 1:
        raise ConfigError(f"{source}: 'run.devices_per_trial' must be >= 1, "
                          f"got {run.devices_per_trial}")
    from nasforge.execution.pruners import make_pruner

    try:
        make_pruner(run.pruner)
    except ConfigError as exc:
        raise ConfigError(f"{source}: 'run.pruner': {exc}") from None
    if run.max_evals < 1:
        raise ConfigError(f"{source}: 'run.max_evals' must be >= 1, got {run.max_evals}")
    if run.workers < 1:
        raise ConfigError(f"{source}: 'run.workers' must be >= 1, got {run.workers}")
    if run.executor not in EXECUTORS:
        raise ConfigError(
            f"{source}: unknown executor {run.executor!r}; known: {', '.join(EXECUTORS)}"
        )
    for limit in ("time_limit", "eval_timeout", "memory_limit_mb", "search_seconds"):
        value = getattr(run, limit)
        if value is not None and value <= 0:
            raise ConfigError(f"{source}: 'run.{limit}' must be positive (or unset), got {value}")
    if run.keep_best < 0 or run.grace_period < 0:
        raise ConfigError(f"{source}: 'run.keep_best' and 'run.grace_period' must be >= 0")
    if run.target_accuracy is not None and not 0 < run.target_accuracy <= 1:
        raise ConfigError(f"{source}: 'run.target_accuracy' must be in (0, 1], "
                          f"got {run.target_accuracy}")

    final = None
    if top.get("final") is not None:
        f = _check_keys("final", top["final"],
                        {"top", "seeds", "budget", "max_seconds", "total_seconds", "pick",
                         "workers", "min_width", "min_epochs", "max_epochs"},
                        source)
        if f.get("pick", "best") not in ("best", "front"):
            raise ConfigError(f"{source}: 'final.pick' must be best or front, got {f['pick']!r}")
        final = FinalConfig(
            top=_typed("final", "top", f.get("top", 1), "int", source),
            seeds=_typed("final", "seeds", f.get("seeds", 1), "int", source),
            budget=_budget("final.budget", f.get("budget"), source),
            max_seconds=_duration("final", "max_seconds", f.get("max_seconds"), source),
            total_seconds=_duration("final", "total_seconds", f.get("total_seconds"), source),
            pick=f.get("pick", "best"),
            workers=(None if f.get("workers") is None
                     else _typed("final", "workers", f.get("workers"), "int", source)),
            min_width=(None if f.get("min_width") is None
                       else _typed("final", "min_width", f.get("min_width"), "int", source)),
            min_epochs=(None if f.get("min_epochs") is None
                        else _typed("final", "min_epochs", f.get("min_epochs"), "int", source)),
            max_epochs=(None if f.get("max_epochs") is None
                        else _typed("final", "max_epochs", f.get("max_epochs"), "int", source)),
        )
        if final.top < 1 or final.seeds < 1:
            raise ConfigError(f"{source}: 'final.top' and 'final.seeds' must be >= 1")
        if final.workers is not None and final.workers < 1:
            raise ConfigError(f"{source}: 'final.workers' must be >= 1, got {final.workers}")
        if final.min_width is not None and final.min_width < 1:  # >= the width: not narrowed
            raise ConfigError(f"{source}: 'final.min_width' must be >= 1, got {final.min_width}")
        # above the final epochs it is allowed (a cap then narrows before cutting any epoch):
        # ``--set final.budget.epochs=3`` on quick (min_epochs 6) must still parse
        if final.min_epochs is not None and final.min_epochs < 1:
            raise ConfigError(f"{source}: 'final.min_epochs' must be at least 1, "
                              f"got {final.min_epochs}")
        if final.min_epochs is not None and final.min_width is None:
            raise ConfigError(f"{source}: 'final.min_epochs' says when a cap narrows the "
                              "networks: set 'final.min_width' as well")
        if final.max_epochs is not None and final.max_epochs < final.budget.epochs:
            raise ConfigError(f"{source}: 'final.max_epochs' must be at least the final "
                              f"epochs ({final.budget.epochs}), got {final.max_epochs}")
        uncapped = final.max_seconds is None and final.total_seconds is None
        for key, what in (("max_epochs", "grows the epochs up to a cap"),
                          ("min_epochs", "says how a cap cuts"),
                          ("min_width", "narrows the networks under a cap")):
            if getattr(final, key) is not None and uncapped:
                raise ConfigError(f"{source}: 'final.{key}' {what}: set 'final.max_seconds' "
                                  "or 'final.total_seconds' as well")
    prefilter = top.get("prefilter")
    if prefilter is not None:
        from nasforge.evaluation.prefilter_spec import parse_prefilter

        prefilter = str(parse_prefilter(prefilter, f"{source}: prefilter"))
    from nasforge.execution.tabular import check_evaluator

    try:
        check_evaluator(run.evaluator, space.name)
    except ConfigError as exc:
        raise ConfigError(f"{source}: 'run.evaluator': {exc}") from None
    from nasforge.objectives import parse_constraints, parse_objectives

    objectives = parse_objectives(top.get("objectives"), source)
    constraints = parse_constraints(top.get("constraints"), source)
    return SearchConfig(
        name=name, seed=seed, data=data, space=space, strategy=strategy, budget=budget,
        run=run, final=final, prefilter=prefilter, objectives=objectives,
        constraints=constraints, kind=kind,
    )


def available_presets() -> list[str]:
    """Names of the presets shipped in the package."""
    folder = resources.files("nasforge") / "presets"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def preset_text(name: str) -> str:
    """The YAML text of a shipped preset; an unknown name lists the known ones."""
    if name not in available_presets():
        raise ConfigError(f"unknown preset {name!r}; known: {', '.join(available_presets())}")
    return (resources.files("nasforge") / "presets" / f"{name}.yaml").read_text()


def load_yaml(text: str, source: str) -> dict[str, Any]:
    """Parse YAML into a mapping; a syntax error names the source."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {str(exc).splitlines()[0]}") from None
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: top level must be a mapping")
    return dict(raw)


def load_config(name_or_path: str) -> SearchConfig:
    """A preset by name or a YAML file by path, validated."""
    path = Path(name_or_path)
    if name_or_path.endswith((".yaml", ".yml")) or path.exists():
        if not path.is_file():
            raise ConfigError(f"config file {name_or_path} not found")
        try:
            text = path.read_text()
        except UnicodeDecodeError as exc:  # a binary file given as the config
            raise ConfigError(f"{path}: not a YAML text file (not UTF-8: byte {exc.start})") from None
        return config_from_dict(load_yaml(text, str(path)), str(path))
    text = preset_text(name_or_path)
    return config_from_dict(load_yaml(text, f"preset {name_or_path}"), f"preset {name_or_path}")


def apply_overrides(config: SearchConfig, overrides: list[str]) -> SearchConfig:
    """Apply ``key.sub=value`` overrides (values parsed as YAML scalars) and re-validate."""
    raw = copy.deepcopy(config.to_dict())
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, value_text = item.split("=", 1)
        parts = [p for p in key.strip().split(".") if p]
        if not parts:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        try:
            value = yaml.safe_load(value_text) if value_text.strip() else None
        except yaml.YAMLError as exc:
            problem = str(getattr(exc, "problem", None) or "not valid YAML")
            raise ConfigError(f"--set {key.strip()}: value {value_text!r} is not valid YAML "
                              f"({problem})") from None
        node: Any = raw
        for part in parts[:-1]:
            if node.get(part) is None:
                node[part] = {}
            node = node[part]
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: {part} is not a section")
        node[parts[-1]] = value
    return config_from_dict(raw, "--set")
