"""Random genomes of every cell space build, count their parameters exactly, and train a step
on every input size.

For each registered space with ``"cell"`` among its capabilities or in its name, or named
``darts`` or ``nb201``: ``--n`` genomes (a third sampled, a third a sample mutated 1-5 times,
a third a crossover of two samples, as far as the space supports them), each validated,
built at ``--width`` for 10 classes on 1x8x8, 1x28x28, 3x32x32 and 3x17x23, run forward and
backward in training mode on a batch of ``--batch`` (a tuple output, e.g. logits and
auxiliary logits, sums the losses), and its parameter count compared with ``count_params``.
Prints per space: built, rejected (by reason), crashed and count mismatches (both must be 0),
and the time; exits 1 on any crash or mismatch.

Default settings per space are tiny (darts: 3 cells, auxiliary head on, drop-path 0.1; nb201:
one cell a stage);
``--settings NAME='{"key": value}'`` overrides them.

    PYTHONPATH=src nice -n 19 python benchmarks/cell_spaces.py [--n 2000] [--spaces darts]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from collections import Counter
from typing import Any

import torch
import torch.nn.functional as F

from nasforge.spaces import available_spaces, genome_key, get_space
from nasforge.spaces.base import SearchSpace

SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32), (3, 17, 23)]
CLASSES = 10
KNOWN_CELL_SPACES = ("darts", "nb201")
DEFAULT_SETTINGS: dict[str, dict[str, Any]] = {
    "darts": {"cells": 3, "auxiliary": True, "drop_path": 0.1},
    "nb201": {"cells": 1},
}


def cell_spaces() -> list[str]:
    """Registered spaces that are cell spaces (by capability, name or the known list)."""
    out = []
    for name in available_spaces():
        caps = get_space(name, **DEFAULT_SETTINGS.get(name, {})).capabilities
        if "cell" in caps or "cell" in name or name in KNOWN_CELL_SPACES:
            out.append(name)
    return out


def make_genomes(space: SearchSpace, rng: random.Random, count: int) -> list[Any]:
    """Sampled, mutated (1-5 times) and crossed genomes, a third each where supported."""
    caps = space.capabilities
    out = []
    for i in range(count):
        genome = space.sample(rng)
        if i % 3 == 1 and "mutate" in caps:
            for _ in range(rng.randint(1, 5)):
                genome = space.mutate(genome, rng)
        elif i % 3 == 2 and "crossover" in caps:
            genome = space.crossover(genome, space.sample(rng), rng)
        out.append(genome)
    return out


def reason_kind(text: str) -> str:
    """A message without its numbers, to group them."""
    return re.sub(r"\d[\d,]*", "#", text)[:70]


def run_space(name: str, settings: dict[str, Any], args: argparse.Namespace) -> bool:
    """Benchmark one space; True when nothing crashed and every count matched."""
    space = get_space(name, **settings)
    rng = random.Random(args.seed)
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    genomes = make_genomes(space, rng, args.n)
    made_s = time.perf_counter() - start
    stats: Counter[str] = Counter()
    rejected: Counter[str] = Counter()
    crashes: Counter[str] = Counter()
    step_s = 0.0
    validate_for = getattr(space, "validate_for", None)
    for genome in genomes:
        for shape in SHAPES:
            stats["tried"] += 1
            try:
                reasons = (
                    validate_for(genome, shape, CLASSES, args.width)
                    if validate_for is not None
                    else space.validate(genome)
                )
                if reasons:
                    rejected[reason_kind(reasons[0])] += 1
                    continue
                t0 = time.perf_counter()
                model = space.build(genome, shape, CLASSES, args.width)
                model.train()
                x = torch.randn(args.batch, *shape)
                y = torch.randint(0, CLASSES, (args.batch,))
                out = model(x)
                outs = out if isinstance(out, tuple) else (out,)
                loss = sum(F.cross_entropy(o, y) for o in outs)
                loss.backward()
                step_s += time.perf_counter() - t0
                if any(o.shape != (args.batch, CLASSES) for o in outs):
                    crashes[f"output shape {[tuple(o.shape) for o in outs]}"] += 1
                    continue
                built = sum(p.numel() for p in model.parameters() if p.requires_grad)
                counted = space.count_params(genome, shape, CLASSES, args.width)
                if built != counted:
                    stats["count mismatch"] += 1
                    if stats["count mismatch"] <= 3:
                        print(
                            f"  MISMATCH {shape}: built {built} counted {counted}: "
                            f"{space.describe(genome)}"
                        )
                stats["built"] += 1
            except Exception as exc:  # the benchmark's purpose: report any crash, keep going
                crashes[f"{type(exc).__name__}: {reason_kind(str(exc))}"] += 1
    total_s = time.perf_counter() - start
    keys = len({genome_key(space, g) for g in genomes})
    print(
        f"{name} {json.dumps(space.settings(), sort_keys=True)} width={args.width}: "
        f"{len(genomes)} genomes ({keys} distinct canonical) x {len(SHAPES)} shapes = "
        f"{stats['tried']} builds; "
        f"built+stepped {stats['built']}, rejected {sum(rejected.values())}, "
        f"crashed {sum(crashes.values())}, count mismatches {stats['count mismatch']}"
    )
    for reason, n in rejected.most_common(5):
        print(f"  rejected {n}: {reason}")
    for reason, n in crashes.most_common(5):
        print(f"  CRASH {n}: {reason}")
    per = 1000 * step_s / max(stats["built"], 1)
    print(
        f"  time {total_s:.1f} s (genomes {made_s:.2f} s; build+forward+backward {step_s:.1f} s, "
        f"{per:.1f} ms each, batch {args.batch}, {torch.get_num_threads()} thread(s))"
    )
    return not crashes and stats["count mismatch"] == 0


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 when nothing crashed and all counts matched."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="genomes per space")
    parser.add_argument("--spaces", nargs="*", default=None, help="default: every cell space")
    parser.add_argument("--width", type=int, default=4, help="channel width C")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--settings", action="append", default=[], metavar="NAME=JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    overrides: dict[str, dict[str, Any]] = {}
    for item in args.settings:
        name, _, text = item.partition("=")
        overrides[name] = json.loads(text)
    names = args.spaces if args.spaces else cell_spaces()
    print(f"cell spaces: {', '.join(names)}; shapes {SHAPES}; {CLASSES} classes")
    ok = True
    for name in names:
        ok &= run_space(name, overrides.get(name, DEFAULT_SETTINGS.get(name, {})), args)
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
