"""Self-contained static HTML reports of one study (``render_report``) or of several
(``render_compare``).

The output is one file: inline CSS, PNG images inlined as ``data:`` URIs, no scripts and no
reference to any network resource, so it opens anywhere, offline.
"""

from __future__ import annotations

import html
import json
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nasforge.report import plots
from nasforge.report.draw import DotFinder, draw_genome, find_dot, genome_text, input_shape_hint
from nasforge.report.html_base import (  # noqa: F401 - importable from here as before
    _budget_text,
    _busy_fraction,
    _cards,
    _curve_labels,
    _e,
    _error_head,
    _kv_table,
    _page,
    _Raw,
    _section,
    _short_budget,
    _table,
    _wall_span,
    failure_reason,
    fmt_acc,
    fmt_count,
    fmt_seconds,
    fmt_time,
    img_tag,
)
from nasforge.storage import FinalRunRecord, StudyStorage, TrialRecord
from nasforge.storage.records import single_view_acc

SECTION_IDS: tuple[str, ...] = (
    "config", "progress", "distribution", "tradeoffs", "workers", "failures", "top", "final",
)
"""The id of each section of a study report, in order."""

COMPARE_SECTION_IDS: tuple[str, ...] = ("curves", "table")


# ------------------------------------------------------------------ data
@dataclass
class StudySnapshot:
    """Everything a report reads from one study file."""

    path: Path
    study: dict[str, Any]
    trials: list[TrialRecord]
    finals: list[FinalRunRecord]

    @property
    def config(self) -> dict[str, Any]:
        """The stored SearchConfig as a dict."""
        return dict(self.study.get("config") or {})

    @property
    def ok(self) -> list[TrialRecord]:
        """Ok trials with a validation accuracy."""
        return plots.ok_trials(self.trials)

    def best(self, k: int) -> list[TrialRecord]:
        """The k best ok trials (highest val accuracy, earliest first on ties)."""
        return sorted(self.ok, key=lambda t: (-(t.val_acc or 0.0), t.number))[:k]


def load_snapshot(path: str | Path) -> StudySnapshot:
    """Read the study row, trials and final runs of a study file."""
    with StudyStorage.open(path) as storage:
        return StudySnapshot(Path(path), storage.study(), storage.trials(), storage.final_runs())


def _space_of(config: dict[str, Any]) -> Any | None:
    """The study's search space, or None when it cannot be instantiated here."""
    try:
        from nasforge.study import space_of_config

        return space_of_config(config)
    except Exception:  # noqa: BLE001 - a report still renders without drawings
        return None


# ------------------------------------------------------------------ study report
def _config_section(snap: StudySnapshot) -> str:
    cfg = snap.config
    space = cfg.get("space") or {}
    strategy = cfg.get("strategy") or {}
    run = cfg.get("run") or {}
    data = cfg.get("data") or {}
    items: list[tuple[str, Any]] = [
        ("study", snap.study.get("name")),
        ("file", str(snap.path)),
        ("created", fmt_time(snap.study.get("created_at"))),
        ("seed", cfg.get("seed")),
        ("data", f"{data.get('dataset')} (validation fraction {data.get('val_fraction')}, "
                 f"split seed {data.get('split_seed')})"),
        ("space", f"{space.get('name')} {json.dumps(space.get('settings') or {}, sort_keys=True)}"),
        ("strategy", f"{strategy.get('name')} "
                     f"{json.dumps(strategy.get('settings') or {}, sort_keys=True)}"),
        ("search budget", _budget_text(cfg.get("budget") or {})),
        ("run", f"max_evals={run.get('max_evals')}, workers={run.get('workers')}, "
                f"executor={run.get('executor')}, keep_best={run.get('keep_best')}"),
    ]
    final = cfg.get("final")
    if final:
        items.append(("final training", f"top {final.get('top')}, {final.get('seeds')} seed(s); "
                                        f"{_budget_text(final.get('budget') or {})}"))
    prov = snap.study.get("provenance") or {}
    prov_items = [(k, prov[k]) for k in sorted(prov)]
    full = html.escape(json.dumps(cfg, indent=2, sort_keys=True))
    return _section("config", "Configuration and provenance", (
        '<div class="grid2"><div><h3>Configuration</h3>' + _kv_table(items) + "</div>"
        "<div><h3>Provenance</h3>" + (_kv_table(prov_items) if prov_items else
                                       '<p class="muted">none recorded</p>') + "</div></div>"
        f"<details><summary>full configuration (JSON)</summary><pre>{full}</pre></details>"
    ))


def _progress_section(snap: StudySnapshot) -> str:
    return _section("progress", "Best-so-far accuracy", (
        '<div class="grid2">'
        f"<div>{img_tag(plots.plot_best_by_trial(snap.trials), 'best so far by trial')}</div>"
        f"<div>{img_tag(plots.plot_best_by_time(snap.trials), 'best so far over time')}</div>"
        "</div>"
    ))


def _distribution_section(snap: StudySnapshot) -> str:
    accs = [float(t.val_acc) for t in snap.ok if t.val_acc is not None]
    text = ""
    if accs:
        q = statistics.quantiles(accs, n=4) if len(accs) > 1 else [accs[0]] * 3
        text = (f'<p class="muted">{len(accs)} ok trials: min {min(accs):.4f}, quartiles '
                f"{q[0]:.4f} / {q[1]:.4f} / {q[2]:.4f}, max {max(accs):.4f}</p>")
    best = snap.best(10)
    table = ""
    if best:
        rows = []
        for t in best:
            seconds = (t.finished_at - t.started_at) if t.started_at and t.finished_at else None
            rows.append((t.number, fmt_acc(t.val_acc), f"{t.params:,}" if t.params is not None else "–",
                         fmt_count(t.flops), fmt_seconds(seconds)))
        table = ("<h3>Best 10 trials</h3>"
                 + _table(["trial", "val acc", "params", "FLOPs", "time"], rows, numeric=(0, 1, 2, 3, 4)))
    return _section("distribution", "Distribution of trial accuracies", (
        text + '<div class="grid2"><div>'
        + img_tag(plots.plot_accuracy_histogram(snap.trials), "accuracy histogram")
        + f"</div><div>{table}</div></div>"
    ))


def _tradeoff_section(snap: StudySnapshot) -> str:
    ok = [t for t in snap.ok if t.params is not None]
    front_html = ""
    if ok:
        front = plots.pareto_front([float(t.params or 0) for t in ok], [float(t.val_acc or 0) for t in ok])
        rows = [(ok[i].number, fmt_acc(ok[i].val_acc), f"{ok[i].params:,}", fmt_count(ok[i].flops))
                for i in front]
        front_html = ("<h3>Pareto front by parameters (fewest parameters for the accuracy)</h3>"
                      + _table(["trial", "val acc", "params", "FLOPs"], rows, numeric=(0, 1, 2, 3)))
    return _section("tradeoffs", "Accuracy against size and compute", (
        '<div class="grid2">'
        f"<div>{img_tag(plots.plot_accuracy_vs_cost(snap.trials, 'params'), 'accuracy vs parameters')}</div>"
        f"<div>{img_tag(plots.plot_accuracy_vs_cost(snap.trials, 'flops'), 'accuracy vs FLOPs')}</div>"
        "</div>" + front_html + _front_growth(snap)
    ))


def _front_growth(snap: StudySnapshot) -> str:
    """A two-objective study's front as it grew and its hypervolume (report/front.py)."""
    from nasforge.report.front import front_growth_html

    return front_growth_html(snap, _space_of(snap.config))


def _workers_section(snap: StudySnapshot) -> str:
    workers = (snap.config.get("run") or {}).get("workers")
    stats = plots.worker_stats(snap.trials)
    busy = _busy_fraction(snap.trials, workers)
    parts = []
    if busy is not None:
        parts.append(
            f"<p>Workers were busy <b>{busy:.0%}</b> of the run "
            f"({max(workers or 0, len(stats))} worker(s) over {fmt_seconds(stats[0].span_seconds)} "
            "from the first start to the last end). Gaps in a lane are idle time.</p>")
    parts.append(img_tag(plots.plot_worker_timeline(snap.trials, workers), "worker timeline"))
    if stats:
        rows = [(s.worker, s.trials, s.failed, fmt_seconds(s.busy_seconds), f"{s.busy_fraction:.0%}")
                for s in stats]
        parts.append(_table(["worker", "trials", "failed", "busy", "busy share"], rows,
                            numeric=(1, 2, 3, 4)))
    running = [t for t in snap.trials if t.status == "running"]
    if running:
        parts.append(f'<p class="muted">{len(running)} trial(s) still marked running '
                     f"(in progress, or the search was interrupted; --resume re-queues them): "
                     f"{', '.join(str(t.number) for t in running)}.</p>")
    return _section("workers", "Worker timeline", "".join(parts))


def _failures_section(snap: StudySnapshot) -> str:
    failed = [t for t in snap.trials if t.status == "failed"]
    if not failed:
        return _section("failures", "Failures", "<p>No trial failed.</p>")
    counts = Counter(failure_reason(t.error) for t in failed)
    summary = _table(["reason", "trials"], counts.most_common(), numeric=(1,))
    rows = []
    for t in failed:
        detail = _e(_error_head(t.error))
        if t.stderr:
            tail = "\n".join(t.stderr.strip().splitlines()[-12:])
            detail += f"<details><summary>stderr</summary><pre>{_e(tail)}</pre></details>"
        seconds = (t.finished_at - t.started_at) if t.started_at and t.finished_at else None
        rows.append((t.number, t.worker or "–", t.attempts, fmt_seconds(seconds),
                     _Raw(f'<div class="err">{detail}</div>')))
    table = _table(["trial", "worker", "attempts", "after", "error"], rows, numeric=(0, 2))
    return _section("failures", "Failures", (
        f"<p>{len(failed)} of {len(snap.trials)} trials failed.</p>"
        "<h3>By reason</h3>" + summary + "<h3>Failed trials</h3>"
        + table))


def _top_section(snap: StudySnapshot, top: int, find: DotFinder) -> str:
    best = snap.best(top)
    if not best:
        return _section("top", "Top architectures", "<p>No successful trial yet.</p>")
    cfg = snap.config
    space = _space_of(cfg)
    shape = input_shape_hint(cfg.get("data") or {})
    finals_by_key: dict[str, list[FinalRunRecord]] = {}
    for f in snap.finals:
        finals_by_key.setdefault(f.genome_key, []).append(f)
    cards = []
    dot_missing = False
    for rank, t in enumerate(best, start=1):
        width = t.budget.get("width", (cfg.get("budget") or {}).get("width"))
        drawing_html: str
        desc = ""
        if space is not None:
            try:
                genome = space.genome_from_dict(t.genome)
                desc = genome_text(space, genome, width)
                drawing = draw_genome(space, genome, "png", width, shape, find_dot=find)
                if drawing.graphviz:
                    drawing_html = img_tag(drawing.data, f"architecture of trial {t.number}")
                else:
                    dot_missing = True
                    text = drawing.text.replace("; ", ";\n")
                    drawing_html = f'<pre class="genome">{_e(text)}</pre>'
            except Exception as exc:  # noqa: BLE001 - one bad genome does not sink the report
                drawing_html = f'<p class="bad">cannot draw: {_e(exc)}</p>'
                if desc:
                    drawing_html += f'<pre class="genome">{_e(desc)}</pre>'
        else:
            drawing_html = f"<pre>{_e(json.dumps(t.genome, indent=1))}</pre>"
        m = t.metrics
        items: list[tuple[str, Any]] = [
            ("validation accuracy", fmt_acc(t.val_acc)),
            ("best epoch val acc", fmt_acc(m.get("best_val_acc"))),
            ("parameters", f"{t.params:,}" if t.params is not None else "–"),
            ("FLOPs / image", fmt_count(t.flops)),
            ("epochs run", m.get("epochs_run", "–")),
            ("train time", fmt_seconds(m.get("train_seconds"))),
            ("images / s", f"{m['images_per_second']:.0f}" if m.get("images_per_second") else "–"),
            ("budget", _short_budget(t.budget)),
            ("worker", t.worker or "–"),
        ]
        finals = [f for f in finals_by_key.get(t.genome_key, []) if f.test_acc is not None]
        if finals:
            accs = [float(f.test_acc) for f in finals if f.test_acc is not None]
            spread = f" ± {statistics.stdev(accs):.4f}" if len(accs) > 1 else ""
            items.insert(1, ("final test accuracy", f"{statistics.fmean(accs):.4f}{spread} "
                                                     f"({len(accs)} seed(s))"))
        curve = img_tag(plots.plot_learning_curve(t.curve, f"trial {t.number}",
                                                  *_curve_labels(t.budget)),
                        f"learning curve of trial {t.number}")
        cards.append(
            f'<div class="arch" id="top-{rank}"><h3>#{rank}: trial {t.number}, val acc '
            f"{fmt_acc(t.val_acc)}</h3>"
            f'<p class="desc">{_e(desc)}</p>'
            f'<div class="row"><div class="drawing">{drawing_html}</div>'
            f"<div>{_kv_table(items)}</div><div>{curve}</div></div></div>"
        )
    note = ('<p class="muted">Graphviz <code>dot</code> was not found: architectures are shown '
            "in their text form (apt-get install graphviz for drawings).</p>" if dot_missing else "")
    return _section("top", f"Top {len(best)} architectures", note + "".join(cards))


def _final_section(snap: StudySnapshot) -> str:
    finals = snap.finals
    if not finals:
        return _section("final", "Final training", (
            "<p>No final training recorded. Run <code>nasforge train STUDY.db --best</code> "
            "to train the best genome on the whole training set and measure test accuracy.</p>"))
    groups: dict[str, list[FinalRunRecord]] = {}
    for f in finals:
        groups.setdefault(f.genome_key, []).append(f)
    space = _space_of(snap.config)
    summary_rows = []
    for key, runs in groups.items():
        accs = [float(f.test_acc) for f in runs if f.status == "ok" and f.test_acc is not None]
        width = runs[0].budget.get("width")
        desc = "–"
        if space is not None:
            try:
                desc = genome_text(space, space.genome_from_dict(runs[0].genome), width)
            except Exception:  # noqa: BLE001
                desc = "–"
        mean = f"{statistics.fmean(accs):.4f}" if accs else "–"
        std = f"{statistics.stdev(accs):.4f}" if len(accs) > 1 else "–"
        summary_rows.append((runs[0].trial_number if runs[0].trial_number is not None else "file",
                             width, f"{len(accs)} / {len(runs)}", mean, std,
                             f"{runs[0].params:,}" if runs[0].params else "–", _Raw(f'<span class="desc">{_e(desc)}</span>')))
    run_rows = []
    for f in finals:
        single = single_view_acc(f.metrics)
        run_rows.append((f.trial_number if f.trial_number is not None else "file", f.seed,
                         _short_budget(f.budget), f.status, fmt_acc(f.test_acc)
                         + (f" (single view {fmt_acc(single)})" if single is not None else ""),
                         fmt_seconds(f.metrics.get("train_seconds")),
                         _error_head(f.metrics.get("error")) if f.status != "ok" else ""))
    return _section("final", "Final training", (
        "<p>Each genome retrained on the whole training set (train + validation) and measured "
        "once on the test set (budgets marked flip-averaged predict from each image and its "
        "mirror together; the runs table gives the single-view accuracy beside it).</p>"
        + _table(["trial", "width", "ok seeds", "test acc (mean)", "std", "params", "network"],
                 summary_rows, numeric=(1, 3, 4, 5))
        + '<div class="grid2"><div>'
        + _table(["trial", "seed", "budget", "status", "test acc", "time", "error"], run_rows,
                 numeric=(1, 4, 5))
        + f"</div><div>{img_tag(plots.plot_final_curves(finals), 'final training curves')}</div></div>"
    ))


def _all_trials(snap: StudySnapshot) -> str:
    if not snap.trials:
        return ""
    rows = []
    for t in snap.trials:
        seconds = (t.finished_at - t.started_at) if t.started_at and t.finished_at else None
        rows.append((t.number, t.status, fmt_acc(t.val_acc),
                     f"{t.params:,}" if t.params is not None else "–", fmt_count(t.flops),
                     fmt_seconds(seconds), t.worker or "–"))
    return ("<details><summary>all trials</summary>"
            + _table(["trial", "status", "val acc", "params", "FLOPs", "time", "worker"], rows,
                     numeric=(0, 2, 3, 4, 5)) + "</details>")


def _rungs_section(snap: StudySnapshot) -> str:
    """Rungs and brackets of a multi-fidelity study (``report/rungs.py``); "" otherwise."""
    from nasforge.report.rungs import rungs_section

    return rungs_section(snap.path) if snap.path.is_file() else ""


def render_report(snap: StudySnapshot, top: int = 5, find_dot: DotFinder = find_dot) -> str:
    """The HTML text of a study report (sections: ``SECTION_IDS``)."""
    trials = snap.trials
    n_ok = len(snap.ok)
    n_failed = sum(1 for t in trials if t.status == "failed")
    n_running = sum(1 for t in trials if t.status == "running")
    best = snap.best(1)
    final_accs = [f.test_acc for f in snap.finals if f.status == "ok" and f.test_acc is not None]
    workers = (snap.config.get("run") or {}).get("workers")
    busy = _busy_fraction(trials, workers)
    cards = _cards([
        ("trials", str(len(trials))),
        ("ok / failed / running", f"{n_ok} / {n_failed} / {n_running}"),
        ("best val accuracy", fmt_acc(best[0].val_acc) if best else "–"),
        ("best trial", f"#{best[0].number}" if best else "–"),
        ("best final test acc", fmt_acc(max(final_accs)) if final_accs else "–"),
        ("wall time", fmt_seconds(_wall_span(trials))),
        ("workers busy", f"{busy:.0%}" if busy is not None else "–"),
    ])
    cfg = snap.config
    subtitle = _e(
        f"{(cfg.get('space') or {}).get('name')} space · {(cfg.get('strategy') or {}).get('name')} · "
        f"{(cfg.get('data') or {}).get('dataset')} · {snap.path.name} · created "
        f"{fmt_time(snap.study.get('created_at'))}")
    body = "".join([
        _config_section(snap),
        _progress_section(snap),
        _distribution_section(snap),
        _tradeoff_section(snap),
        _workers_section(snap),
        _failures_section(snap),
        _top_section(snap, top, find_dot),
        _rungs_section(snap),
        _final_section(snap),
        _all_trials(snap),
    ])
    nav = [("config", "Config"), ("progress", "Progress"), ("distribution", "Distribution"),
           ("tradeoffs", "Size vs accuracy"), ("workers", "Workers"), ("failures", "Failures"),
           ("top", "Top architectures"), ("final", "Final training")]
    if '<section id="rungs">' in body:
        nav.insert(-1, ("rungs", "Rungs"))
    return _page(f"nasforge study: {snap.study.get('name')}", subtitle, cards, nav, body)


def write_report(study_path: str | Path, out: str | Path, top: int = 5,
                 find_dot: DotFinder = find_dot) -> Path:
    """Write the HTML report of a study to ``out``."""
    snap = load_snapshot(study_path)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_report(snap, top, find_dot), encoding="utf-8")
    return out


# ------------------------------------------------------------------ comparison
def _final_summary(finals: Sequence[FinalRunRecord]) -> tuple[float | None, int]:
    """The best per-genome mean final test accuracy and its seed count."""
    groups: dict[str, list[float]] = {}
    for f in finals:
        if f.status == "ok" and f.test_acc is not None:
            groups.setdefault(f.genome_key, []).append(float(f.test_acc))
    if not groups:
        return None, 0
    accs = max(groups.values(), key=statistics.fmean)
    return statistics.fmean(accs), len(accs)


def render_compare(snaps: Sequence[StudySnapshot]) -> str:
    """The HTML text comparing several studies: best-so-far curves grouped by strategy (mean
    and spread across studies of one strategy) and a table of their results."""
    names = [s.study.get("name") for s in snaps]
    by_trial: list[plots.CurveSeries] = []
    by_time: list[plots.CurveSeries] = []
    rows = []
    for snap in snaps:
        cfg = snap.config
        strategy = (cfg.get("strategy") or {}).get("name", "?")
        label = str(snap.study.get("name"))
        if names.count(label) > 1:
            label = f"{label} ({snap.path.stem})"
        xs, ys = plots.best_so_far_by_number(snap.trials)
        pts = [(float(x), float(y)) for x, y in zip(xs, ys) if y is not None]
        by_trial.append(plots.CurveSeries(label, strategy, [p[0] for p in pts], [p[1] for p in pts]))
        tx, ty = plots.best_so_far_by_time(snap.trials)
        tpts = [(float(x), float(y)) for x, y in zip(tx, ty) if y is not None]
        by_time.append(plots.CurveSeries(label, strategy, [p[0] for p in tpts], [p[1] for p in tpts]))
        best = snap.best(1)
        final_acc, seeds = _final_summary(snap.finals)
        n_failed = sum(1 for t in snap.trials if t.status == "failed")
        rows.append((label, strategy, cfg.get("seed"), len(snap.trials), n_failed,
                     _short_budget(cfg.get("budget") or {}),
                     fmt_acc(best[0].val_acc) if best else "–",
                     f"{final_acc:.4f} ({seeds} seed{'s' if seeds != 1 else ''})" if final_acc is not None else "–",
                     fmt_seconds(_wall_span(snap.trials))))
    curves = (
        img_tag(plots.plot_compare(by_trial, "trial number", "Best-so-far validation accuracy by trial"),
                "best so far by trial")
        + img_tag(plots.plot_compare(by_time, "wall time", "Best-so-far validation accuracy over wall time",
                                     time_axis=True), "best so far over time"))
    groups = Counter(str((s.config.get("strategy") or {}).get("name", "?")) for s in snaps)
    note = ('<p class="muted">Curves are grouped by strategy; a strategy with several studies '
            "(e.g. seeds) shows their mean, a light min-max band and a darker ±std band. "
            + ", ".join(f"{k}: {v} stud{'ies' if v != 1 else 'y'}" for k, v in sorted(groups.items()))
            + ".</p>")
    body = (_section("curves", "Best-so-far accuracy", note + curves)
            + _section("table", "Studies", _table(
                ["study", "strategy", "seed", "trials", "failed", "budget", "best val acc",
                 "final test acc", "wall time"], rows, numeric=(2, 3, 4, 6, 7, 8))))
    subtitle = _e(f"{len(snaps)} studies: " + ", ".join(str(s.path.name) for s in snaps))
    return _page("nasforge comparison", subtitle, "", [("curves", "Curves"), ("table", "Table")], body)


def write_compare(study_paths: Sequence[str | Path], out: str | Path) -> Path:
    """Write the comparison report of several studies to ``out``."""
    snaps = [load_snapshot(p) for p in study_paths]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_compare(snaps), encoding="utf-8")
    return out
