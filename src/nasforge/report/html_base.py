"""The building blocks of the HTML reports (``nasforge.report.html``): the inline style sheet,
value formatting (accuracies, counts, durations, times), escaped tables, cards, sections and
the page frame, and small summaries of trials shared with the dashboard."""

from __future__ import annotations

import base64
import datetime as _dt
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nasforge.report import plots
from nasforge.storage import TrialRecord

_CSS = """
:root { --fg:#1d2330; --muted:#5f6b7a; --line:#dde3ea; --accent:#3b6fb6; --bad:#c0392b; }
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", Arial, sans-serif;
       color: var(--fg); margin: 0; background: #f6f8fa; line-height: 1.45; font-size: 14px; }
header { background: #1d2330; color: #fff; padding: 18px 28px; }
header h1 { margin: 0 0 4px 0; font-size: 22px; }
header .sub { color: #c4ccd8; font-size: 13px; }
nav { background: #fff; border-bottom: 1px solid var(--line); padding: 8px 28px; position: sticky;
      top: 0; z-index: 1; }
nav a { margin-right: 14px; color: var(--accent); text-decoration: none; font-size: 13px; }
main { padding: 8px 28px 40px 28px; max-width: 1280px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 14px 18px;
          margin: 16px 0; }
section h2 { margin: 0 0 10px 0; font-size: 18px; }
h3 { font-size: 15px; margin: 14px 0 6px 0; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 14px 0 4px 0; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 8px 14px;
        min-width: 130px; }
.card .v { font-size: 19px; font-weight: 600; }
.card .k { color: var(--muted); font-size: 12px; }
.grid2 { display: grid; grid-template-columns: repeat(auto-fit, minmax(440px, 1fr)); gap: 12px;
         align-items: start; }
img { max-width: 100%; height: auto; display: block; }
table { border-collapse: collapse; font-size: 13px; margin: 6px 0; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 10px 4px 0; text-align: left;
         vertical-align: top; }
th { color: var(--muted); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: #f3f5f7; border: 1px solid var(--line); border-radius: 4px; padding: 8px;
      overflow-x: auto; font-size: 12px; white-space: pre-wrap; word-break: break-word; }
.muted { color: var(--muted); }
.bad { color: var(--bad); }
.arch { border: 1px solid var(--line); border-radius: 6px; padding: 10px 14px; margin: 12px 0; }
.arch h3 { margin-top: 0; }
.arch .row { display: grid; grid-template-columns: minmax(200px, 300px) minmax(240px, 1fr)
             minmax(300px, 460px); gap: 14px; align-items: start; }
.arch .drawing img { max-height: 560px; width: auto; margin: 0 auto; }
.desc { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12px;
        word-break: break-word; }
details summary { cursor: pointer; color: var(--accent); margin: 6px 0; }
.err { max-width: 680px; word-break: break-word; }
"""

# ------------------------------------------------------------------ formatting
def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def fmt_acc(value: float | None) -> str:
    """An accuracy with 4 decimals, or a dash."""
    return f"{value:.4f}" if value is not None else "–"


def fmt_count(value: float | None) -> str:
    """A count with SI suffixes (12.3k, 4.5M, 1.2G), or a dash."""
    if value is None:
        return "–"
    v = float(value)
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:.3g}{suffix}"
    return f"{v:.0f}"


def fmt_seconds(value: float | None) -> str:
    """A duration as s, min or h, or a dash."""
    if value is None:
        return "–"
    if value >= 3 * 3600:
        return f"{value / 3600:.1f} h"
    if value >= 120:
        return f"{value / 60:.1f} min"
    return f"{value:.1f} s"


def fmt_time(ts: float | None) -> str:
    """A unix time as UTC ISO text."""
    if not ts:
        return "–"
    return _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def img_tag(png: bytes, alt: str) -> str:
    """An <img> with the PNG inlined as a base64 data URI."""
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{_e(alt)}">'


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]],
           numeric: Sequence[int] = ()) -> str:
    """A table; cells are escaped unless they are ``_Raw``."""
    head = "".join(f'<th class="num">{_e(h)}</th>' if i in numeric else f"<th>{_e(h)}</th>"
                   for i, h in enumerate(headers))
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            text = cell.html if isinstance(cell, _Raw) else _e(cell)
            cls = ' class="num"' if i in numeric else ""
            cells.append(f"<td{cls}>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


@dataclass
class _Raw:
    """Already-escaped HTML for a table cell."""

    html: str


def _kv_table(items: Sequence[tuple[str, Any]]) -> str:
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in items)
    return f"<table>{rows}</table>"


def _page(title: str, subtitle: str, cards: str, nav: Sequence[tuple[str, str]], body: str) -> str:
    links = "".join(f'<a href="#{_e(i)}">{_e(label)}</a>' for i, label in nav)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>{_e(title)}</h1><div class=\"sub\">{subtitle}</div></header>"
        f"<nav>{links}</nav><main>{cards}{body}</main></body></html>\n"
    )


def _section(section_id: str, title: str, content: str) -> str:
    return f'<section id="{_e(section_id)}"><h2>{_e(title)}</h2>{content}</section>'


def _cards(items: Sequence[tuple[str, str]]) -> str:
    return '<div class="cards">' + "".join(
        f'<div class="card"><div class="v">{_e(v)}</div><div class="k">{_e(k)}</div></div>'
        for k, v in items) + "</div>"


def _budget_text(budget: dict[str, Any]) -> str:
    keys = ("epochs", "width", "data_fraction", "batch_size", "optimizer", "lr", "schedule",
            "augment", "precision", "max_steps")
    return ", ".join(f"{k}={budget[k]}" for k in keys if budget.get(k) is not None)


def _curve_labels(budget: Any) -> tuple[str, str]:
    """The accuracy and training-loss labels of a trial's learning curve: a flip-averaged
    accuracy and a label-smoothed training loss are named as such."""
    budget = budget if isinstance(budget, dict) else {}
    acc = "val acc (flip-averaged)" if budget.get("tta") == "flip" else "val acc"
    smoothing = budget.get("label_smoothing")
    loss = (f"train loss (label smoothing {float(smoothing):g})"
            if isinstance(smoothing, (int, float)) and smoothing else "train loss")
    return acc, loss


def _short_budget(budget: dict[str, Any]) -> str:
    text = f"{budget.get('epochs')} ep, width {budget.get('width')}, {budget.get('optimizer')}"
    if budget.get("data_fraction") not in (None, 1.0):
        text += f", {budget['data_fraction']:g} of data"
    if budget.get("label_smoothing"):
        text += f", label smoothing {budget['label_smoothing']:g}"
    if budget.get("tta") == "flip":
        text += ", flip-averaged test"
    return text


def _wall_span(trials: Sequence[TrialRecord]) -> float | None:
    start = plots.study_start(trials)
    ends = [t.finished_at for t in trials if t.finished_at]
    if start is None or not ends:
        return None
    return max(ends) - start


def _error_head(text: str | None) -> str:
    line = (text or "unknown error").strip().splitlines()
    head = line[0] if line else "unknown error"
    return head if len(head) <= 240 else head[:237] + "..."


def failure_reason(error: str | None) -> str:
    """A failure's kind for grouping: the text before the first colon, numbers masked
    ("RuntimeError", "timeout", "nan loss at epoch # step #")."""
    head = _error_head(error).split(":")[0].strip() or "unknown error"
    return re.sub(r"\d+(\.\d+)?", "#", head)[:80]


def _busy_fraction(trials: Sequence[TrialRecord], workers: int | None) -> float | None:
    stats = plots.worker_stats(trials)
    if not stats or stats[0].span_seconds <= 0:
        return None
    n = max(workers or 0, len(stats))
    return sum(s.busy_seconds for s in stats) / (stats[0].span_seconds * n)


