"""Where a training step of REMNet-128 spends its time on one GPU (issue 15: fast on the machine
a user has). Session 6's first GPU run saw about 40 ms a step of 128 images with two trainings
sharing the GPU, far slower than the H200's arithmetic allows; this measures one training alone.

    python3 experiments/gpu/step_profile.py [--dry-run] [--steps 150]

1. ``nasforge``'s trainer (``train``: one epoch capped at ``--steps`` steps) on the published
   REMNet genome at width 128 (``experiments/remnet/remnet_genome.json``, the ``remnet-final``
   settings), for each augmentation (none, flip, flip+erase) and precision (fp32, bf16), with
   channels-last: training images a second (setup and validation excluded).
2. A bare loop of the same model (no augmentation, no loss tracking): the floor.
3. torch.profiler over 20 trainer-like steps with flip+erase in bf16: the 12 operations with
   the most CPU time, and how many host-device copies a step makes.
The figure printed last: the trainer's ms a step against the bare loop's.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU, width 8, 3 steps")
    parser.add_argument("--steps", type=int, default=150)
    args = parser.parse_args()
    import torch

    from nasforge.config import load_config
    from nasforge.data import augment_batch
    from nasforge.evaluation.budget import Budget
    from nasforge.evaluation.metrics import Normalizer
    from nasforge.evaluation.trainer import set_determinism, train
    from nasforge.execution.tasks import final_splits, load_splits
    from nasforge.spaces import chosen_network_space

    cuda = torch.cuda.is_available() and not args.dry_run
    device = torch.device("cuda" if cuda else "cpu")
    steps = 3 if args.dry_run else args.steps
    width = 8 if args.dry_run else 128
    config = load_config("remnet-final")
    splits = final_splits(load_splits(config.data.task_dict()))
    space = chosen_network_space(config.space.name, dict(config.space.settings))
    genome = space.genome_from_dict(json.loads((HERE.parent / "remnet" / "remnet_genome.json").read_text()))

    def model() -> torch.nn.Module:
        set_determinism(0)
        return space.build(genome, splits.input_shape, splits.num_classes, width)

    base = config.final.budget.to_dict()
    base.update(epochs=1, max_steps=steps, width=width, threads=None, seed=0)
    print(f"device {device} ({torch.cuda.get_device_name(0) if cuda else 'cpu'}), torch "
          f"{torch.__version__}, REMNet genome at width {width}, batch {base['batch_size']}, "
          f"{steps} steps a setting")
    rows = []
    for precision in ("fp32", "bf16"):
        for augment in ("none", "flip", "flip+erase"):
            budget = Budget.from_dict({**base, "precision": precision, "channels_last": True,
                                       "augment": augment})
            out = train(model(), splits, budget, device=device)
            ms = 1000.0 * base["batch_size"] / out.images_per_second
            rows.append((precision, augment, out.images_per_second, ms))
            print(f"trainer  {precision:<5} channels-last augment {augment:<10} "
                  f"{out.images_per_second:9,.0f} images/s  {ms:7.2f} ms a step", flush=True)

    # the floor: the same model, batches already on the device, no augmentation
    net = model().to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.Adamax(net.parameters(), lr=2e-3)
    normalize = Normalizer(splits.mean, splits.std, device)
    x = normalize(splits.train_x[:base["batch_size"]].to(device)).contiguous(
        memory_format=torch.channels_last)
    y = splits.train_y[:base["batch_size"]].to(device)
    floor = {}
    for precision in ("fp32", "bf16"):
        for i in range(steps + 10):
            if i == 10:
                if cuda:
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                loss = torch.nn.functional.cross_entropy(net(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if cuda:
            torch.cuda.synchronize()
        floor[precision] = 1000.0 * (time.perf_counter() - t0) / steps
        print(f"bare loop {precision:<5} channels-last, no augmentation: {floor[precision]:7.2f} ms a step",
              flush=True)

    # what a trainer step with flip+erase does, profiled
    from torch.profiler import ProfilerActivity, profile

    gen = torch.Generator().manual_seed(1)
    xs = splits.train_x[:base["batch_size"]].to(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        for _ in range(20):
            xb = augment_batch(normalize(xs), "flip+erase", gen).contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16):
                loss = torch.nn.functional.cross_entropy(net(xb), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if cuda:
            torch.cuda.synchronize()
    print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=12, max_name_column_width=40))
    for word in ("Memcpy HtoD", "Memcpy DtoH", "cudaMemcpy", "Synchronize"):
        count = sum(e.count for e in prof.key_averages() if word in e.key)
        print(f"profiled events naming {word!r}: {count / 20:.1f} a step")
    for precision, augment, ips, ms in rows:
        if augment == "flip+erase":
            print(f"trainer {precision} flip+erase {ms:.2f} ms a step against bare loop "
                  f"{floor[precision]:.2f} ms: ratio {ms / floor[precision]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
