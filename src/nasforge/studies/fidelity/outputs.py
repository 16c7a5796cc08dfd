"""A fidelity study's files: ``fidelity.csv``, ``fidelity.md``, ``architectures.csv`` and plots."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from nasforge.studies.fidelity.analysis import FidelityResults, Row, summary_lines

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
