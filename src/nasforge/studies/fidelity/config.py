"""The fidelity study's configuration: ``FidelityConfig``, its parsing and the shipped presets."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
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
from nasforge.errors import ConfigError
from nasforge.evaluation.budget import OPTIMIZERS, Budget

ALL_PROXIES: tuple[str, ...] = (
    "synflow", "snip", "grad_norm", "naswot", "jacob_cov", "fisher", "params", "flops",
)
ARCH_SOURCES: tuple[str, ...] = ("mutate", "sample")


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


def _search_config(cfg: FidelityConfig, genomes: list[dict[str, Any]]) -> SearchConfig:
    """The runner's view of the study; the whole fidelity identity (and the architectures)
    travel in the strategy settings, so resuming with another study config is refused."""
    return SearchConfig(
        name=cfg.name, seed=cfg.seed, data=cfg.data, space=cfg.space,
        strategy=ComponentConfig("fixed-list", {"fidelity": cfg.identity(), "genomes": genomes}),
        budget=cfg.reference, run=cfg.run,
    )


def config_hash(cfg: FidelityConfig) -> str:
    """A short stable hash of a study's identity (for file names)."""
    return hashlib.sha256(json.dumps(cfg.identity(), sort_keys=True).encode()).hexdigest()[:10]
