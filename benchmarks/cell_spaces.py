"""Random genomes of the cell spaces build and run forward and backward on every input shape.

For each space named (default: every registered cell space among ``nb201`` and ``darts``),
``--genomes`` random genomes (seeded) are built at a minimal width and one cell per stage where
the space has that setting, on 1x8x8, 1x28x28, 3x32x32 and 3x17x23 inputs (batch 2, 10
classes), run forward and backward, and checked: output shape, finite loss, parameter count
equal to ``count_params``. Prints per space and shape the count and time, and last one line.

    python benchmarks/cell_spaces.py [--genomes 2000] [--spaces nb201 darts] [--width 2]
"""

from __future__ import annotations

import argparse
import random
import time

import torch

from nasforge.spaces import available_spaces, get_space

SHAPES: tuple[tuple[int, int, int], ...] = ((1, 8, 8), (1, 28, 28), (3, 32, 32), (3, 17, 23))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genomes", type=int, default=2000)
    parser.add_argument("--spaces", nargs="*", default=None)
    parser.add_argument("--width", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    names = args.spaces or [n for n in ("nb201", "darts") if n in available_spaces()]
    start = time.perf_counter()
    failures: list[str] = []
    total = 0
    for name in names:
        try:
            space = get_space(name, cells=1)
        except Exception:
            space = get_space(name)
        rng = random.Random(0)
        genomes = [space.sample(rng) for _ in range(args.genomes)]
        for shape in SHAPES:
            t0 = time.perf_counter()
            for i, genome in enumerate(genomes):
                try:
                    model = space.build(genome, shape, 10, args.width)
                    out = model(torch.randn(2, *shape))
                    loss = torch.nn.functional.cross_entropy(out, torch.tensor([0, 1]))
                    loss.backward()
                    params = sum(p.numel() for p in model.parameters())
                    if out.shape != (2, 10) or not torch.isfinite(loss):
                        failures.append(f"{name} {shape} genome {i}: output {tuple(out.shape)}")
                    elif params != space.count_params(genome, shape, 10, args.width):
                        failures.append(f"{name} {shape} genome {i}: count_params differs")
                except Exception as exc:  # report, keep going
                    failures.append(f"{name} {shape} genome {i}: {type(exc).__name__}: {exc}")
                total += 1
            print(f"{name:6s} {'x'.join(map(str, shape)):8s} {len(genomes)} genomes in "
                  f"{time.perf_counter() - t0:.1f} s")
    for line in failures[:10]:
        print("FAIL", line)
    print(f"cell spaces {', '.join(names)}: {total - len(failures)}/{total} builds ran forward "
          f"and backward with matching parameter counts in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
