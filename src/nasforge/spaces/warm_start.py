"""``search --init-from``: read warm-start genomes and say how many were used and why not."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from nasforge.errors import ConfigError
from nasforge.evaluation.budget import Budget
from nasforge.spaces.base import SearchSpace, genome_key
from nasforge.storage.sqlite import StudyStorage
from nasforge.strategies import Problem


def load_genome_items(source: str | Path) -> list[Any]:
    """The raw genome mappings of a genome file (see nasforge.spaces.genome_file) or of a study
    database (its ok trials, best first), not yet parsed by a space."""
    path = Path(source)
    if not path.is_file():
        raise ConfigError(f"--init-from: {path} not found")
    if path.suffix == ".json":
        from nasforge.spaces.genome_file import read_genome_items

        return read_genome_items(path)
    with StudyStorage.open(path) as storage:
        return [t.genome for t in storage.best(10**9)]


def sort_warm_start(space: SearchSpace, problem: Problem, budget: Budget, items: list[Any],
                    source: str) -> tuple[list[Any], str]:
    """Parse and check ``--init-from`` genomes for this space, problem (and its constraints)
    and budget: the usable ones (first occurrence of each network) and one line saying how many were read, used and
    skipped, and why (the most common reasons, with counts)."""
    from collections import Counter

    from nasforge.errors import NasforgeError
    from nasforge.strategies.base import genome_reasons

    used: list[Any] = []
    keys: set[str] = set()
    why: Counter[str] = Counter()
    for item in items:
        try:
            genome = space.genome_from_dict(item)
            reasons = genome_reasons(space, genome, problem, budget.width)
        except NasforgeError as exc:
            why[f"unreadable for the {space.name} space ({str(exc).split(': ')[-1][:80]})"] += 1
            continue
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            why[f"unreadable ({type(exc).__name__})"] += 1
            continue
        if reasons:  # grouped without the node id ("node 3: operation ..." -> "operation
            # ...") or a constraint's value ("params 1.2e+05 breaks params <= 1e+05" -> "break
            # params <= 1e+05"); global node ids are hex, e.g. "node 4e2b881cc2:"
            reason = re.sub(r"^node [^\s:]+: ", "", str(reasons[0]))
            why[re.sub(r"^\w+ \S+ breaks ", "break ", reason)[:100]] += 1
            continue
        key = genome_key(space, genome)
        if key in keys:
            why["the same network as an earlier one"] += 1
            continue
        keys.add(key)
        used.append(genome)
    line = (f"--init-from {source}: read {len(items)} genome(s), using {len(used)}, skipped "
            f"{len(items) - len(used)}")
    if why:
        line += ": " + "; ".join(f"{n} {reason}" for reason, n in why.most_common(3))
        if len(why) > 3:
            line += f"; {sum(why.values()) - sum(n for _, n in why.most_common(3))} other"
    return used, line
