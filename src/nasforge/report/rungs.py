"""The report's "Rungs and brackets" section for a multi-fidelity study (hyperband, asha,
bohb): each budget level's results and promotions, and which trial was promoted where.

Read from the study's meta ``multi_fidelity`` (the schedule the search printed) and the stored
strategy state (every rung's members with their trial numbers); a study without them gets no
section.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nasforge.storage.sqlite import StudyStorage

SECTION_ID = "rungs"


def rung_groups(state: dict[str, Any], levels: int) -> list[tuple[str, list[int], list[list[dict[str, Any]]]]]:
    """(label, level of each rung, members of each rung) per bracket of a hyperband/bohb
    state, or one group over all levels for an asha state; empty for other states."""
    groups = []
    for bracket in state.get("brackets") or []:
        s = int(bracket["s"])
        groups.append((f"bracket {bracket['id']} (s={s})",
                       [levels - 1 - s + i for i in range(len(bracket["sizes"]))],
                       bracket["results"]))
    if "levels" in state and not groups:
        groups.append(("asha", list(range(len(state["levels"]))), state["levels"]))
    return groups


def promotions(rungs: list[list[dict[str, Any]]]) -> list[tuple[int, int, int]]:
    """(rung, trial promoted from it, trial at the next rung) for every promotion of one
    group: a member of rung r + 1 came from the promoted member of rung r with its network."""
    out = []
    for r in range(1, len(rungs)):
        sources = {m["key"]: m["number"] for m in rungs[r - 1] if m.get("promoted")}
        for m in rungs[r]:
            if m["key"] in sources:
                out.append((r - 1, sources[m["key"]], m["number"]))
    return out


def _acc(value: float | None) -> str:
    return f"{value:.4f}" if value is not None else "failed"


def rungs_section(path: str | Path) -> str:
    """The section's HTML, or "" for a study that is not multi-fidelity."""
    from nasforge.report.html import _section, _table

    with StudyStorage.open(path) as storage:
        meta = storage.meta_value("multi_fidelity")
        state = storage.strategy_state() or {}
    if not meta:
        return ""
    labels = [level["label"] for level in meta.get("levels", [])]
    groups = rung_groups(state, len(labels))
    per_level: list[list[dict[str, Any]]] = [[] for _ in labels]
    rows = []
    for name, levels, rungs in groups:
        for level, members in zip(levels, rungs):
            per_level[level].extend(members)
        for rung, src, dst in promotions(rungs):
            src_m = next(m for m in rungs[rung] if m["number"] == src)
            dst_m = next(m for m in rungs[rung + 1] if m["number"] == dst)
            rows.append([name, f"{labels[levels[rung]]} -> {labels[levels[rung + 1]]}",
                         f"trial {src} ({_acc(src_m['fitness'])})",
                         f"trial {dst} ({_acc(dst_m['fitness'])})"])
    level_rows = []
    for level, members in enumerate(per_level):
        ok = [m["fitness"] for m in members if m["fitness"] is not None]
        level_rows.append([level, labels[level], len(members), len(ok),
                           sum(1 for m in members if m.get("promoted")),
                           f"{max(ok):.4f}" if ok else "-"])
    head = (f"<p>{meta.get('strategy')}: eta {meta.get('eta')} over {meta.get('axis')}"
            + (f", {meta.get('formula')} bracket formula, starting networks "
               + "/".join(str(n) for n in meta.get("starting", [])) if meta.get("formula")
               else "") + ".</p>")
    brackets = ""
    if state.get("brackets"):
        brackets = "<h3>Brackets</h3>" + _table(
            ["bracket", "s", "planned rung sizes", "results per rung"],
            [[b["id"], b["s"], "/".join(str(n) for n in b["sizes"]),
              "/".join(str(len(r)) for r in b["results"])] for b in state["brackets"]],
            numeric=(0, 1))
    return _section(SECTION_ID, "Rungs and brackets", head + "<h3>Budget levels</h3>" + _table(
        ["level", "budget", "results", "ok", "promoted", "best val acc"], level_rows,
        numeric=(0, 2, 3, 4, 5)) + brackets + "<h3>Promotions</h3>" + (
        _table(["group", "levels", "from", "to"], rows) if rows else "<p>None yet.</p>"))
