"""How often the global space makes genomes that build and train, and how fast.

Generates ``--n`` genomes as an evolution would (a population of valid genomes; each new one
is a fresh sample (20%), a member mutated 1-10 times (60%) or a crossover of two members
(20%); valid ones join the population, so lineages grow towards ``--max-nodes``), over
both heads, every named merge policy and two problems ((1, 28, 28)/10, (3, 32, 32)/7). Each is
validated; each valid one is built at ``--width``, run forward and backward on a batch of 2,
and its parameter count checked against ``count_params``. Prints built / rejected (by reason)
/ crashed (must be 0) and timing; exits 1 on any crash.

    PYTHONPATH=src python benchmarks/space_validity.py [--n 10000] [--width 8] [--seed 0]
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import time
from collections import Counter, deque

import torch
import torch.nn.functional as F

from nasforge.spaces import MERGE_POLICIES, GlobalSpace

PROBLEMS = [((1, 28, 28), 10), ((3, 32, 32), 7)]
HEADS = ["gap", "remnet"]


def reason_kind(reason: str) -> str:
    """A reason without its numbers, to group rejections."""
    for limit in ("over max_nodes", "over max_params"):
        if limit in reason:
            return limit
    return re.sub(r"\d[\d,]*", "#", reason)[:60]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 when nothing crashed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="genomes to generate")
    parser.add_argument("--width", type=int, default=8, help="channel width C")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-nodes", type=int, default=16)
    parser.add_argument("--population", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    configs = [
        (GlobalSpace(max_nodes=args.max_nodes, head=head, merge_policy=policy), shape, classes)
        for head in HEADS
        for policy in sorted(MERGE_POLICIES)
        for shape, classes in PROBLEMS
    ]
    populations = [deque(maxlen=args.population) for _ in configs]
    made: Counter[str] = Counter()
    rejected: Counter[str] = Counter()
    crashes: Counter[str] = Counter()
    built = 0
    nodes_total = 0
    t_gen = t_val = t_run = 0.0
    started = time.perf_counter()
    for i in range(args.n):
        k = i % len(configs)
        space, shape, classes = configs[k]
        population = populations[k]
        try:
            t0 = time.perf_counter()
            draw = rng.random()
            if len(population) < 2 or draw < 0.2:
                genome, how = space.sample(rng), "sample"
            elif draw < 0.8:
                genome, how = rng.choice(population), "mutate"
                for _ in range(rng.randint(1, 10)):
                    genome = space.mutate(genome, rng)
            else:
                genome = space.crossover(rng.choice(population), rng.choice(population), rng)
                how = "crossover"
            made[how] += 1
            t1 = time.perf_counter()
            reasons = space.validate_for(genome, shape, classes, args.width)
            t2 = time.perf_counter()
            t_gen += t1 - t0
            t_val += t2 - t1
            if reasons:
                for kind in sorted({reason_kind(r) for r in reasons}):
                    rejected[kind] += 1
                rejected["(genomes)"] += 1
                continue
            population.append(genome)
            model = space.build(genome, shape, classes, args.width)
            params = sum(p.numel() for p in model.parameters())
            expected = space.count_params(genome, shape, classes, args.width)
            if params != expected:
                raise AssertionError(f"count_params {expected} != built {params}")
            logits = model(torch.randn(2, *shape))
            if logits.shape != (2, classes):
                raise AssertionError(f"logits shape {tuple(logits.shape)}")
            F.cross_entropy(logits, torch.tensor([0, classes - 1])).backward()
            t_run += time.perf_counter() - t2
            built += 1
            nodes_total += len(genome.canonical().nodes)
        except Exception as exc:  # counted and reported: the benchmark's point
            crashes[f"{type(exc).__name__}: {exc}"[:120]] += 1
    total = time.perf_counter() - started
    n = args.n
    n_rej = rejected.pop("(genomes)", 0)
    n_crash = sum(crashes.values())
    print(
        f"space_validity: n={n} width={args.width} seed={args.seed} max_nodes={args.max_nodes} "
        f"heads={','.join(HEADS)} policies={len(MERGE_POLICIES)} problems=1x28x28/10,3x32x32/7"
    )
    print(
        f"generated: {n} ({', '.join(f'{k} {v}' for k, v in sorted(made.items()))}); "
        f"{1000 * t_gen / n:.2f} ms/genome"
    )
    print(
        f"built: {built} ({100 * built / n:.2f}%), forward+backward ok, count_params == numel; "
        f"mean active nodes {nodes_total / max(built, 1):.1f}"
    )
    by_reason = ", ".join(f"{k} {v}" for k, v in rejected.most_common()) or "-"
    print(f"rejected: {n_rej} ({100 * n_rej / n:.2f}%): {by_reason}")
    print(f"crashed: {n_crash}" + "".join(f"\n  {v}x {k}" for k, v in crashes.most_common(10)))
    print(
        f"timing: total {total:.1f}s; validate {1000 * t_val / n:.2f} ms/genome; "
        f"build+forward+backward {1000 * t_run / max(built, 1):.2f} ms/built genome"
    )
    return 1 if n_crash else 0


if __name__ == "__main__":
    sys.exit(main())
