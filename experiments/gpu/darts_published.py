"""Cost of DARTS' published search on one GPU: time a step, an epoch and the 50-epoch search.

The published search setting (Liu et al., ICLR 2019, Sec. 3.1.1): DARTS space, a supernet of
8 cells at C=16, batch 64, 32x32 colour images (CIFAR-10: 25,000 images for the weights and
25,000 for the architecture, so 391 steps an epoch), 50 epochs, SGD 0.025 / Adam 3e-4 as in
``nasforge.oneshot``. Input here is synthetic (random 3x32x32 images, 10 classes): the cost
of a step does not depend on the pixel values. No accuracy is measured or claimed.

For each method (first order, second order, GDAS) the script runs ``--warmup`` steps (cuDNN
autotuning, allocator growth), then ``--steps`` timed steps through
``nasforge.oneshot.fit_supernet`` (one architecture step and one weight step each), with
``torch.cuda.synchronize()`` around the clock. It prints the time per step, per epoch (391
steps; the per-epoch evaluation is left out) and the extrapolated 50-epoch search, last.
A method is skipped when the time budget (``--budget-s``, default 420 s) would be passed.

``--dry-run``: the same code on the CPU at a toy size (C=4, 3 cells, batch 8, 16x16, 1 step),
to check the script where no GPU is lent; its figures mean nothing for the GPU.

Published for comparison (DARTS, Table 1, on a GTX 1080Ti): 1.5 GPU-days (first order) and
4 GPU-days (second order) of search cost as the paper counts it.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time

import torch

STEPS_PER_EPOCH = 25_000 // 64 + 1  # 391: half of CIFAR-10's 50,000 training images, batch 64
EPOCHS = 50


def main() -> int:
    """Time the three methods and print the table; exit status 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU, toy size, 1 step")
    parser.add_argument("--steps", type=int, default=40, help="timed steps per method")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps per method")
    parser.add_argument("--budget-s", type=float, default=420.0, help="stop before this")
    args = parser.parse_args()

    from nasforge.oneshot import SupernetSettings, build_supernet, fit_supernet

    if args.dry_run:
        device, width, cells, batch, size = "cpu", 4, 3, 8, 16
        args.steps, args.warmup = 1, 1
    else:
        if not torch.cuda.is_available():
            print("no GPU: run with --dry-run", file=sys.stderr)
            return 1
        device, width, cells, batch, size = "cuda", 16, 8, 64, 32
        torch.backends.cudnn.benchmark = True
    started = time.time()
    gen = torch.Generator().manual_seed(0)
    n = 2 * batch * (args.steps + args.warmup)  # enough for every step's two batches
    x = torch.rand(n, 3, size, size, generator=gen).to(device)
    y = torch.randint(0, 10, (n,), generator=gen).to(device)
    name = torch.cuda.get_device_name(0) if device == "cuda" else platform.processor() or "cpu"
    print(f"device {device} ({name}), torch {torch.__version__}; DARTS space, C={width}, "
          f"{cells} cells, batch {batch}, {size}x{size}, fp32")

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    rows = []
    for label, settings in (("first order", SupernetSettings(cells=cells)),
                            ("second order", SupernetSettings(cells=cells, order=2)),
                            ("GDAS", SupernetSettings(cells=cells, method="gumbel"))):
        if rows and time.time() - started > args.budget_s * 0.6:
            print(f"{label}: skipped (time budget)")
            continue
        torch.manual_seed(0)
        model = build_supernet("darts", (3, size, size), 10, width, cells,
                               method=settings.method).to(device)
        params = sum(p.numel() for p in model.weight_parameters())
        fit_supernet(model, x, y, epochs=1, batch_size=batch, settings=settings, seed=0,
                     max_steps=args.warmup, device=device)
        sync()
        t0 = time.time()
        fit_supernet(model, x, y, epochs=1, batch_size=batch, settings=settings, seed=1,
                     max_steps=args.steps, device=device)
        sync()
        step = (time.time() - t0) / args.steps
        memory = (torch.cuda.max_memory_allocated() / 2**30) if device == "cuda" else None
        rows.append((label, params, step, memory))
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
    print(f"\n{'method':13s} {'params':>9s} {'s/step':>8s} {'s/epoch':>8s} "
          f"{'50 epochs':>10s} {'peak GiB':>8s}")
    for label, params, step, memory in rows:
        epoch = step * STEPS_PER_EPOCH
        total = epoch * EPOCHS
        mem = f"{memory:8.2f}" if memory is not None else f"{'-':>8s}"
        print(f"{label:13s} {params:9,d} {step:8.3f} {epoch:8.1f} {total / 3600:9.2f}h {mem}")
    print(f"\n(steps: {args.warmup} warm-up + {args.steps} timed per method; epoch = "
          f"{STEPS_PER_EPOCH} steps, evaluation left out; wall {time.time() - started:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
