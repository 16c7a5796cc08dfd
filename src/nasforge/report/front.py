"""The report's "front as it grew" section of a two-objective study (NSGA-II's trade-off).

Left: every counted trial in the scaled objectives of :mod:`nasforge.hypervolume` (1 -
accuracy against normalised log10 size), with the first front of the first 25%, 50%, 75% and
all trials drawn as staircases, light to dark. Right: the hypervolume against the number of
trials, its reference point stated. Studies with one objective, or with three or more (the
hypervolume here is 2-D only), get no section.
"""

from __future__ import annotations

from typing import Any

from nasforge.hypervolume import StudyHypervolume, space_param_range, study_hypervolume
from nasforge.report import plots

GROWTH_FRACTIONS = (0.25, 0.5, 0.75, 1.0)
_KNOWN_PROBLEMS: dict[str, tuple[tuple[int, int, int], int]] = {
    "fashion-mnist": ((1, 28, 28), 10),
}
"""Input shape and classes of data sets known without loading them (for the space's
parameter range); other studies use the observed range."""


def _problem(config: dict[str, Any]) -> tuple[tuple[int, int, int], int] | None:
    if str((config.get("run") or {}).get("evaluator", "")).startswith("tabular:"):
        from nasforge.execution.tabular import TABLE_PROBLEM

        return TABLE_PROBLEM
    return _KNOWN_PROBLEMS.get(str((config.get("data") or {}).get("dataset")))


def snapshot_hypervolume(snap: Any, space: Any | None) -> tuple[StudyHypervolume | None, Any]:
    """The study's scaled hypervolume (None where it has none) and its objectives."""
    from nasforge.objectives import parse_constraints, parse_objectives

    config = snap.config
    try:
        objectives = parse_objectives(config.get("objectives"))
        constraints = parse_constraints(config.get("constraints"))
    except Exception:  # noqa: BLE001 - a report still renders without this section
        return None, ()
    if len(objectives) < 2:
        return None, objectives
    param_range: tuple[float | None, float | None] = (None, None)
    problem = _problem(config)
    width = (config.get("budget") or {}).get("width")
    if space is not None and problem is not None and isinstance(width, int):
        param_range = space_param_range(space, problem[0], problem[1], width)
    return study_hypervolume(snap.trials, objectives, constraints, param_range), objectives


def plot_front_growth(hv: StudyHypervolume, labels: tuple[str, str]) -> bytes:
    """PNG: the fronts at ``GROWTH_FRACTIONS`` of the trials and the hypervolume curve."""
    fig = plots.new_figure((9.0, 3.6))
    left, right = fig.subplots(1, 2)
    xs = [p[0] for p in hv.points]
    ys = [p[1] for p in hv.points]
    left.scatter(xs, ys, s=10, color=plots.RUN_COLOUR, alpha=0.5, label="trial")
    shades = ("#f6c48a", "#f0a04b", "#e07b00", "#8a4a00")
    for (count, front), colour in zip(hv.fronts_at(GROWTH_FRACTIONS), shades):
        pts = sorted((xs[i], ys[i]) for i in front)
        left.step([p[0] for p in pts], [p[1] for p in pts], where="post", color=colour, lw=1.6,
                  label=f"front of first {count}")
        left.scatter([p[0] for p in pts], [p[1] for p in pts], s=22, color=colour,
                     edgecolor="black", lw=0.4, zorder=3)
    left.set_xlabel(labels[0] + " (lower is better)")
    left.set_ylabel(labels[1] + " (lower is better)")
    left.set_title("Front as it grew")
    left.grid(alpha=0.3)
    left.legend(fontsize=7, loc="upper right")
    growth = hv.growth()
    right.plot([c for c, _ in growth], [v for _, v in growth], color=plots.OK_COLOUR, lw=1.6)
    right.set_xlabel("trials")
    right.set_ylabel("hypervolume")
    right.set_title(f"Hypervolume (reference {hv.reference})")
    right.grid(alpha=0.3)
    return plots.png_bytes(fig)


def front_growth_html(snap: Any, space: Any | None) -> str:
    """The HTML of the section's content ('' for a study it does not apply to)."""
    from html import escape

    from nasforge.hypervolume import scaled_name
    from nasforge.report.html import img_tag

    hv, objectives = snapshot_hypervolume(snap, space)
    if len(objectives) > 2:
        return ("<h3>Front as it grew</h3><p class=\"muted\">hypervolume is 2-D only; this "
                f"study has {len(objectives)} objectives</p>")
    if hv is None:
        return ""
    labels = (scaled_name(objectives[0]), scaled_name(objectives[1]))
    return ("<h3>Front as it grew</h3>"
            + img_tag(plot_front_growth(hv, labels), "front as it grew")
            + f"<p>{escape(hv.line(objectives))}</p>")


__all__ = ["GROWTH_FRACTIONS", "front_growth_html", "plot_front_growth",
           "snapshot_hypervolume"]
