"""Does the ``auto`` speed choice train as fast as the best fixed setting, and what does it cost?

For each network (the genome `nasforge search quick` picked on an AVX2-only machine, at width
48 with the quick preset's space settings; the published REMNet genome at widths 32 and 128 with
the REMNet head) it times one training step (batch 128, Adam, real Fashion-MNIST images where
installed, else a synthetic 1x28x28 stand-in) in each of the four settings fp32 / bf16 autocast x
contiguous / channels-last (median of ``--steps`` steps after a warm-up), then lets the chooser
(`nasforge.evaluation.trainer.choose_speed`, precision and channels_last ``auto``, the budget of
a 12-epoch final training on 60,000 images) pick one, and reports

    ratio = step time of the auto choice / step time of the best of the four

from the same table, and the measuring overhead (seconds, and as a share of that training).
All in one process and one run; the CPU flags are printed first, the worst ratio last. Timings
on shared machines are noisy: it fails nothing on a time.

    PYTHONPATH=src python benchmarks/speed_options.py [--steps 5] [--threads 2] [--no-bf16]

``--no-bf16`` makes the chooser treat the CPU as one without native bf16 (the four-setting
table still times bf16, to show what it would cost).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time
from pathlib import Path

import torch

from nasforge.data import load_fashion_mnist, split_validation, synthetic_dataset
from nasforge.errors import DataError
from nasforge.evaluation import Budget, set_determinism
from nasforge.evaluation.metrics import Normalizer
from nasforge.evaluation.speed import SpeedSetting, has_native_bf16, measure_training_step
from nasforge.evaluation.trainer import _make_optimizer, choose_speed
from nasforge.spaces import get_space

ROOT = Path(__file__).resolve().parent.parent
QUICK_SPACE = {"operations": ["conv3N_pad", "conv5N_pad", "conv3H_pad", "conv3N", "conv5N",
                              "sep3N", "maxpool2", "avgpool2"],
               "merge_policy": "remnet", "head": "gap", "max_nodes": 8}
REMNET_SPACE = {"merge_policy": "remnet", "head": "remnet"}
CASES = [
    ("quick AVX2 pick", ROOT / "experiments/speed/quick_slow_bf16_genome.json", QUICK_SPACE, 48),
    ("REMNet", ROOT / "experiments/remnet/remnet_genome.json", REMNET_SPACE, 32),
    ("REMNet", ROOT / "experiments/remnet/remnet_genome.json", REMNET_SPACE, 128),
]
FOUR = [SpeedSetting(p, cl) for p in ("fp32", "bf16") for cl in (False, True)]


def cpu_summary() -> str:
    """Model name and the flags that matter here, from lscpu."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "lscpu unavailable"
    model = next((l.split(":", 1)[1].strip() for l in text.splitlines()
                  if l.startswith("Model name")), "?")
    flags = next((l.split(":", 1)[1].split() for l in text.splitlines()
                  if l.startswith("Flags")), [])
    keep = [f for f in flags if f.startswith(("avx", "amx", "fma", "f16c")) or f == "sse4_2"]
    return f"{model}; flags: {' '.join(keep)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-bf16", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"cpu: {cpu_summary()}")
    native = has_native_bf16("cpu") and not args.no_bf16
    print(f"torch {torch.__version__}, {args.threads} threads, native bf16 for the chooser: {native}")
    try:
        data = load_fashion_mnist(download=False)
    except DataError:
        data = synthetic_dataset(n_train=2000, n_test=200, num_classes=10, shape=(1, 28, 28))
    splits = split_validation(data, 0.1, seed=0)
    batch = 128
    device = torch.device("cpu")
    xb = Normalizer(splits.mean, splits.std, device)(splits.train_x[:batch])
    yb = splits.train_y[:batch]
    final_steps = 12 * (60000 // batch)
    ratios = []
    for name, path, settings, width in CASES:
        space = get_space("global", **settings)
        genome = space.genome_from_dict(json.loads(path.read_text()))
        set_determinism(0)
        model = space.build(genome, splits.input_shape, splits.num_classes, width)
        budget = Budget(batch_size=batch, width=width, precision="auto", channels_last="auto")
        step = measure_training_step(model, xb, yb, lambda m: _make_optimizer(m, budget), device)
        table = {}
        for setting in FOUR:
            step(setting)  # warm-up
            table[setting] = statistics.median(step(setting) for _ in range(args.steps))
        began = time.perf_counter()
        choice = choose_speed(model, splits, budget, device, final_steps, bf16_native=native)
        overhead = time.perf_counter() - began
        best = min(table, key=table.get)
        ratio = table[choice.setting] / table[best]
        ratios.append(ratio)
        params = sum(p.numel() for p in model.parameters())
        print(f"\n{name} at width {width} ({params:,} params), ms a step:")
        for setting in FOUR:
            mark = " <- auto" if setting == choice.setting else ""
            print(f"  {setting.label():28s} {1000 * table[setting]:8.1f}{mark}")
        print(f"  auto chose {choice.setting.label()}; best of four {best.label()}; "
              f"ratio {ratio:.3f}; measuring {overhead:.2f}s = "
              f"{100 * overhead / (final_steps * table[choice.setting]):.2f}% of a 12-epoch "
              f"final training ({final_steps} steps)")
    print(f"\nworst auto/best step-time ratio: {max(ratios):.3f}")


if __name__ == "__main__":
    main()
