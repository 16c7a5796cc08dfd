"""Data-parallel training on this machine: does every launch exit cleanly, and how does it scale?

1. ``--launches`` (default 20) launches in a row of 2 gloo ranks that join, all-reduce one
   number and leave (``nasforge.execution.data_parallel.launch``); an *abort* is a rank that
   exits non-zero, is killed, or prints "abort"/"terminate called". Prints the count and the
   launch times.
2. Throughput of the same training with 1 and with 2 ranks (``nasforge.evaluation.ddp``, the
   code path of ``nasforge train --nproc N``): the baseline CNN (``nasforge.models.baseline``,
   width ``--width``) on ``--images`` synthetic 1x28x28 images, global batch ``--batch``, Adam,
   fp32, ``--epochs`` epochs; images/s of the training steps (evaluation and start-up
   excluded), best of ``--repeats`` runs each. The 1- and 2-rank runs get the same
   ``--threads`` CPU threads in all (1 rank: all of them; 2 ranks: half each), so the comparison
   is at equal cores; a third run, 1 rank with half the threads, is the per-process reference
   (on an oversubscribed machine a multi-threaded process loses far more to waiting threads
   than two single-threaded ones).

Scaling efficiency = images/s with 2 ranks / (2 x images/s with 1 rank), printed last. On a
machine whose cores are shared with other work the figures are noisy: say so when quoting them.

    PYTHONPATH=src python benchmarks/data_parallel.py [--launches 20] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = str(Path(__file__).resolve().parent)


def throughput(ctx: Any, width: int, images: int, batch: int, epochs: int) -> dict[str, Any]:
    """Run inside each rank: train the baseline CNN data-parallel, return images/s."""
    import torch

    from nasforge.data import split_validation, synthetic_dataset
    from nasforge.evaluation import Budget, set_determinism
    from nasforge.evaluation.ddp import train_data_parallel
    from nasforge.models.baseline import baseline_cnn

    data = synthetic_dataset(n_train=images + 512, n_test=256, num_classes=10,
                             shape=(1, 28, 28), seed=0)
    splits = split_validation(data, 512 / (images + 512), 0)
    set_determinism(0)
    model = baseline_cnn(splits.input_shape, splits.num_classes, width=width)
    budget = Budget(epochs=epochs, batch_size=batch, optimizer="adam", lr=1e-3,
                    precision="fp32", channels_last=False, threads=torch.get_num_threads())
    result = train_data_parallel(model, splits, budget, device=ctx.device,
                                 slow_group=ctx.slow_group)
    return {"status": result.status, "images_per_second": result.images_per_second,
            "threads": torch.get_num_threads()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--launches", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of all ranks together")
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--images", type=int, default=4096)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    from nasforge.execution.data_parallel import first_failure, launch

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (HERE, os.environ.get("PYTHONPATH")) if p)}
    print(f"machine: {os.cpu_count()} logical CPUs, load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}; python {sys.version.split()[0]}")
    aborts, seconds = 0, []
    for i in range(args.launches):
        started = time.perf_counter()
        ends = launch("nasforge.execution.data_parallel:ping", (), 2, env=env)
        seconds.append(time.perf_counter() - started)
        for end in ends:
            low = end.output.lower()
            if (end.code != 0 or end.killed or "abort" in low or "terminate called" in low):
                aborts += 1
                print(f"launch {i + 1} rank {end.rank}: code {end.code} killed {end.killed}: "
                      f"{end.output[-300:]}")
    if seconds:
        print(f"{args.launches} launches of 2 ranks: {aborts} abort(s); seconds per launch: "
              f"median {statistics.median(seconds):.1f}, min {min(seconds):.1f}, "
              f"max {max(seconds):.1f}")

    rates: dict[tuple[int, int], float] = {}
    # (ranks, threads of all ranks together): 1 rank with all threads and 2 ranks sharing them
    # (equal cores), and 1 rank with one rank's share (the per-process reference)
    for nproc, threads in ((1, args.threads), (1, max(1, args.threads // 2)), (2, args.threads)):
        best = 0.0
        for _ in range(args.repeats):
            ends = launch("data_parallel:throughput",
                          (args.width, args.images, args.batch, args.epochs), nproc,
                          threads=threads, env=env)
            reason = first_failure(ends, 20)
            if reason is not None:
                print(f"{nproc} rank(s): failed: {reason}")
                return 1
            best = max(best, float(ends[0].value["images_per_second"]))
        rates[(nproc, threads)] = best
        print(f"{nproc} rank(s) x {ends[0].value['threads']} thread(s): {best:,.0f} images/s "
              f"(baseline CNN width {args.width}, global batch {args.batch}, best of "
              f"{args.repeats})")
    one, half, two = (rates[(1, args.threads)], rates[(1, max(1, args.threads // 2))],
                      rates[(2, args.threads)])
    print(f"2 ranks vs 1 rank with one rank's threads: speed-up {two / half:.2f}x "
          f"(efficiency {two / (2 * half):.2f})")
    print(f"scaling efficiency (2 ranks vs 1, same {args.threads} thread(s) in all): "
          f"{two / (2 * one):.2f} (speed-up {two / one:.2f}x)")
    return 0 if aborts == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
