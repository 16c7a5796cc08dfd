"""10,000 fuzzed genome files over every registered space: built and run, or refused in one
line; 0 crashes (see nasforge.spaces.fuzz for what is fuzzed and how each case is judged).

Shapes 1-3 x 8-64 x 8-64, 2-100 classes, widths 4-32 (cell spaces 2-8, with 1 nb201 cell a
stage and 3 darts cells); capped at 20 minutes. Prints the tally by space, the first crashes,
and last ``fuzz: N cases, B built, R rejected, C crashes``; exits 1 on any crash.

    PYTHONPATH=src python benchmarks/genome_fuzz.py [--n 10000] [--seed 0] [--out FILE]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from nasforge.spaces.fuzz import fuzz


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--minutes", type=float, default=20.0, help="time cap")
    parser.add_argument("--out", default="experiments/faults/genome_fuzz.txt")
    args = parser.parse_args(argv)
    started = time.time()
    tally = fuzz(args.n, seed=args.seed, time_limit=args.minutes * 60)
    seconds = time.time() - started
    lines = [f"{name}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
             for name, counts in sorted(tally.by_space.items())]
    lines += [f"crash: {c.space} {c.kind}: {c.detail[:300]}" for c in tally.crashes]
    total = sum(tally.counts.values())
    lines.append(f"{seconds:.0f}s, seed {args.seed}")
    lines.append(f"fuzz: {total} cases, {tally.counts.get('built', 0)} built, "
                 f"{tally.counts.get('rejected', 0)} rejected, "
                 f"{tally.counts.get('crash', 0)} crashes")
    print("\n".join(lines))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    return 1 if tally.counts.get("crash", 0) else 0


if __name__ == "__main__":
    sys.exit(main())
