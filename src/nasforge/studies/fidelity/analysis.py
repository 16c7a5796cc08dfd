"""Analysing a fidelity study: every table row (rank agreement and cost) and the headlines."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nasforge.errors import ConfigError
from nasforge.evaluation.budget import Budget
from nasforge.evaluation.ranking import RankMetrics, rank_metrics
from nasforge.spaces.base import genome_key
from nasforge.storage.sqlite import StudyStorage, budget_key
from nasforge.strategies.base import Problem
from nasforge.studies.fidelity.config import fidelity_config_from_dict
from nasforge.studies.fidelity.plan import make_plan


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
