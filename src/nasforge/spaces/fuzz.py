"""Fuzzing genome files against every registered space: load, check, build, run forward.

Each case writes one genome file (``nasforge.spaces.genome_file``) made from a sampled genome
of a registered space that is kept as it is, mutated a few times, corrupted at the JSON level
(keys dropped, values replaced by other types, unknown operations, node ids duplicated or
dangling, numbers huge or negative, the schema changed), corrupted as text (cut short,
characters changed, nested too deep) or as bytes (not UTF-8), and a random problem (input 1-3 x 8-64 x 8-64, 2-100 classes, width 4-32;
cell spaces 2-8). The file is then read as ``space show``/``train``/``--init-from`` read it:
``read_genome_items``, ``genome_from_dict``, ``validate``/``validate_for`` and, when no reason
is given, ``build`` and a forward pass of one image. Every case must end in one of

- ``built``: a network that ran forward and gave logits [1, classes];
- ``rejected``: a ``nasforge.errors.NasforgeError`` (one line for the user) or validation
  reasons;
- ``crash``: anything else (a bug: the user would see a traceback or "internal error").

Used by ``tests/test_genome_fuzz.py`` (a small sample in CI) and ``benchmarks/genome_fuzz.py``
(10,000 cases).
"""

from __future__ import annotations

import copy
import json
import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nasforge.errors import NasforgeError

# small settings so builds stay fast (the contract tests use the same)
FUZZ_SETTINGS: dict[str, dict[str, Any]] = {
    "global": {"max_nodes": 6, "head": "gap"},
    "nb201": {"cells": 1},
    "darts": {"cells": 3},
}
CELL_WIDTHS = (2, 8)
GLOBAL_WIDTHS = (4, 32)
_JUNK: list[Any] = [None, -1, 0, 2**63, 1e308, float("nan"), "", "x" * 300, [], {}, [[1]],
                    {"a": 1}, True, "conv7N", "in", "out", -0.5]


@dataclass
class FuzzCase:
    """One fuzz case's outcome."""

    space: str
    kind: str  # kept | mutated | corrupt-json | corrupt-text
    outcome: str  # built | rejected | crash
    detail: str = ""


@dataclass
class FuzzTally:
    """Counts by outcome, with the first crashes kept for the report."""

    counts: dict[str, int] = field(default_factory=dict)
    by_space: dict[str, dict[str, int]] = field(default_factory=dict)
    crashes: list[FuzzCase] = field(default_factory=list)

    def add(self, case: FuzzCase) -> None:
        """Count ``case``."""
        self.counts[case.outcome] = self.counts.get(case.outcome, 0) + 1
        space = self.by_space.setdefault(case.space, {})
        space[case.outcome] = space.get(case.outcome, 0) + 1
        if case.outcome == "crash" and len(self.crashes) < 20:
            self.crashes.append(case)


def _corrupt_json(value: Any, rng: random.Random, depth: int = 0) -> Any:
    """A copy of ``value`` with one random change somewhere inside it."""
    if isinstance(value, dict) and value and depth < 6 and rng.random() < 0.7:
        key = rng.choice(sorted(value, key=str))
        out = dict(value)
        roll = rng.random()
        if roll < 0.2:
            del out[key]
        elif roll < 0.3:
            out[f"extra_{rng.randrange(99)}"] = rng.choice(_JUNK)
        else:
            out[key] = _corrupt_json(value[key], rng, depth + 1)
        return out
    if isinstance(value, list) and value and depth < 6 and rng.random() < 0.7:
        out_list = list(value)
        roll = rng.random()
        i = rng.randrange(len(out_list))
        if roll < 0.2:
            del out_list[i]
        elif roll < 0.35:
            out_list.append(copy.deepcopy(rng.choice(out_list)))  # a duplicate entry
        elif roll < 0.45:
            rng.shuffle(out_list)
        else:
            out_list[i] = _corrupt_json(out_list[i], rng, depth + 1)
        return out_list
    if isinstance(value, str) and rng.random() < 0.5:
        return rng.choice(["conv7N", "none", "skip_connect", "in", "out", value[::-1],
                           value + "x", ""])
    if isinstance(value, (int, float)) and not isinstance(value, bool) and rng.random() < 0.5:
        return rng.choice([-1, 0, 1, 2, 7, 10**9, -(10**9), 0.5, value + 1])
    return rng.choice(_JUNK)


def _corrupt_text(text: str, rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.4 and text:
        return text[: rng.randrange(len(text))]  # cut short
    if roll < 0.7 and text:
        i = rng.randrange(len(text))
        return text[:i] + rng.choice(["{", "}", "[", "]", ",", '"', "\\", "\x00", "é"]) + text[i + 1:]
    if roll < 0.8:
        return rng.choice(["", "null", "[]", "42", '"genome"', "[null]", "{}", "[[]]"])
    if roll < 0.9:
        return "[" * 100_000 + "]" * 100_000  # nested deeper than the JSON parser recurses
    return text + "\n" + text  # two genomes, one a line


def make_case(space: Any, rng: random.Random) -> tuple[str, bytes]:
    """(kind, file bytes) of one fuzzed genome file for ``space``."""
    genome = space.sample(rng)
    kind = rng.choice(["kept", "mutated", "corrupt-json", "corrupt-json", "corrupt-text",
                       "corrupt-bytes"])
    if kind == "mutated" and "mutate" in space.capabilities:
        for _ in range(rng.randint(1, 10)):
            genome = space.mutate(genome, rng)
    data: Any = space.genome_to_dict(genome)
    if kind == "corrupt-json":
        for _ in range(rng.randint(1, 3)):
            data = _corrupt_json(data, rng)
    text = json.dumps(data, allow_nan=True)
    if kind == "corrupt-text":
        text = _corrupt_text(text, rng)
    raw = text.encode("utf-8")
    if kind == "corrupt-bytes" and raw:  # not UTF-8 any more (a binary file, say)
        i = rng.randrange(len(raw))
        raw = raw[:i] + bytes([rng.choice([0xFF, 0xC3, 0x80, 0xFE])]) + raw[i + 1:]
    return kind, raw


def _problem(space: Any, rng: random.Random) -> tuple[tuple[int, int, int], int, int]:
    shape = (rng.choice([1, 3]), rng.randint(8, 64), rng.randint(8, 64))
    low, high = CELL_WIDTHS if "cell" in space.capabilities or space.name != "global" else GLOBAL_WIDTHS
    return shape, rng.randint(2, 100), rng.randint(low, high)


def run_case(space: Any, kind: str, raw: bytes, rng: random.Random, folder: Path) -> FuzzCase:
    """Read, check, build and run the genome file ``raw``; the outcome, never an exception."""
    import torch

    from nasforge.spaces.genome_file import read_genome_items

    path = folder / "genome.json"
    path.write_bytes(raw)
    shape, classes, width = _problem(space, rng)
    try:
        items = read_genome_items(path)
        built = 0
        for item in items:
            genome = space.genome_from_dict(item)
            validate_for = getattr(space, "validate_for", None)
            reasons = (validate_for(genome, shape, classes, width) if validate_for is not None
                       else space.validate(genome))
            if reasons:
                return FuzzCase(space.name, kind, "rejected", str(reasons[0])[:120])
            model = space.build(genome, shape, classes, width).eval()
            with torch.no_grad():
                out = model(torch.zeros(1, *shape))
            logits = out[0] if isinstance(out, tuple) else out
            if tuple(logits.shape) != (1, classes):
                return FuzzCase(space.name, kind, "crash",
                                f"logits {tuple(logits.shape)} for {classes} classes")
            built += 1
        return FuzzCase(space.name, kind, "built" if built else "rejected",
                        "" if built else "no genome in the file")
    except NasforgeError as exc:
        return FuzzCase(space.name, kind, "rejected", f"{type(exc).__name__}: {exc}"[:160])
    except Exception as exc:  # noqa: BLE001 - what the fuzz looks for
        return FuzzCase(space.name, kind, "crash",
                        f"{type(exc).__name__}: {exc} [{shape}, {classes} classes, width "
                        f"{width}; file {raw[:200]!r}]")


def fuzz(n: int, seed: int = 0, spaces: list[str] | None = None,
         time_limit: float | None = None) -> FuzzTally:
    """Run ``n`` fuzz cases spread evenly over ``spaces`` (default: every registered space),
    seeded; stops early after ``time_limit`` seconds. Returns the tally."""
    import time

    import torch

    from nasforge.spaces import available_spaces, get_space

    torch.set_num_threads(1)
    names = spaces or available_spaces()
    built_spaces = {name: get_space(name, **FUZZ_SETTINGS.get(name, {})) for name in names}
    rng = random.Random(seed)
    tally = FuzzTally()
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="nasforge-fuzz-") as tmp:
        for i in range(n):
            if time_limit is not None and time.time() - started > time_limit:
                break
            space = built_spaces[names[i % len(names)]]
            kind, raw = make_case(space, rng)
            tally.add(run_case(space, kind, raw, rng, Path(tmp)))
    return tally
