"""How much slower is ``nasforge.evaluation.train`` than a minimal hand-written training loop?

Both train the same baseline CNN (same initial weights) for the same number of optimizer steps
with the same optimizer, batch size and data, in one process with a fixed thread count; the two
are alternated for several rounds (order swapped each round) so that drift in machine load
hits both. The trainer is timed as a whole ``train()`` call (setup, FLOP count, per-batch
normalisation, NaN checks and a validation pass over a small held-out set included); the hand
loop runs over pre-normalised in-memory float tensors and is timed over its steps only.

Prints the median throughput (training images per second) of each and, last,
``trainer/hand-loop throughput ratio: X``.

    PYTHONPATH=src python benchmarks/trainer_overhead.py [--steps 150] [--rounds 6]

Other processes on the same cores distort it badly (oversubscribed OpenMP threads); run it
on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import torch
from torch import nn

from nasforge.data import DataSplits, load_fashion_mnist, normalize, split_validation, synthetic_dataset
from nasforge.errors import DataError
from nasforge.evaluation import Budget, baseline_cnn, set_determinism, train


def load_splits(val_images: int) -> DataSplits:
    """Fashion-MNIST if it can be loaded, else a synthetic 28x28 stand-in; a small validation part."""
    try:
        ds = load_fashion_mnist(download=False)
    except DataError:
        ds = synthetic_dataset(n_train=20000, n_test=500, num_classes=10, shape=(1, 28, 28))
    splits = split_validation(ds, 0.1, seed=0)
    return dataclasses.replace(splits, val_x=splits.val_x[:val_images], val_y=splits.val_y[:val_images])


def run_trainer(splits: DataSplits, budget: Budget, width: int) -> float:
    """Images per second of one whole ``train`` call."""
    set_determinism(budget.seed)
    model = baseline_cnn(splits.input_shape, splits.num_classes, width)
    start = time.perf_counter()
    result = train(model, splits, budget)
    seconds = time.perf_counter() - start
    if result.status != "ok":
        raise RuntimeError(f"trainer run failed: {result.reason}")
    return budget.max_steps * budget.batch_size / seconds  # type: ignore[operator]


def run_hand_loop(x: torch.Tensor, y: torch.Tensor, splits: DataSplits, budget: Budget,
                  width: int) -> float:
    """Images per second of a minimal loop over pre-normalised tensors."""
    set_determinism(budget.seed)
    model = baseline_cnn(splits.input_shape, splits.num_classes, width)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=budget.learning_rate)
    gen = torch.Generator().manual_seed(budget.seed)
    perm = torch.randperm(len(y), generator=gen)
    bs = budget.batch_size
    steps = budget.max_steps or 0
    start = time.perf_counter()
    for step in range(steps):
        idx = perm[step * bs:(step + 1) * bs]
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        loss.backward()
        optimizer.step()
    seconds = time.perf_counter() - start
    return steps * bs / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--val-images", type=int, default=512)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    splits = load_splits(args.val_images)
    budget = Budget(epochs=1, batch_size=args.batch_size, optimizer="adam",
                    max_steps=args.steps, width=args.width)
    x = normalize(splits.train_x, splits.mean, splits.std)
    y = splits.train_y
    print(f"data: {splits.name}, {len(y)} training images {tuple(x.shape[1:])}; "
          f"{args.steps} steps of batch {args.batch_size}, adam, {args.threads} thread(s), "
          f"baseline_cnn width {args.width}, {args.rounds} rounds")

    # warm-up (oneDNN primitive caches, allocator) for both paths, untimed
    warm = budget.replace(max_steps=min(10, args.steps))
    run_trainer(splits, warm, args.width)
    run_hand_loop(x, y, splits, warm, args.width)

    trainer_ips: list[float] = []
    hand_ips: list[float] = []
    for r in range(args.rounds):
        order = ("trainer", "hand") if r % 2 == 0 else ("hand", "trainer")
        for which in order:
            if which == "trainer":
                trainer_ips.append(run_trainer(splits, budget, args.width))
            else:
                hand_ips.append(run_hand_loop(x, y, splits, budget, args.width))
        print(f"round {r + 1}: trainer {trainer_ips[-1]:8.1f} img/s   hand loop {hand_ips[-1]:8.1f} img/s")

    t_med, h_med = statistics.median(trainer_ips), statistics.median(hand_ips)
    paired = statistics.median(t / h for t, h in zip(trainer_ips, hand_ips))
    best = max(trainer_ips) / max(hand_ips)
    print(f"median of per-round ratios: {paired:.3f}; ratio of best rounds: {best:.3f} "
          f"(other load on the machine slows rounds at random; compare these)")
    print(f"nasforge.train median throughput: {t_med:.1f} images/s")
    print(f"hand loop median throughput: {h_med:.1f} images/s")
    print(f"trainer/hand-loop throughput ratio: {t_med / h_med:.3f}")


if __name__ == "__main__":
    main()
