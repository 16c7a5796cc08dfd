"""REMNet-128 training step time on one GPU, and the data-parallel (NCCL) path with 1 rank.

Sized for 1-2 minutes on one H200. REMNet-128 is ``experiments/remnet/remnet_genome.json`` at
width 128 with the ``remnet-final`` preset's space settings (REMNet merge and head) and final
budget (Adamax, lr 0.002, weight decay 1e-5, batch 128, flip+erase, precision and channels-last
``auto``), trained on Fashion-MNIST (``$NASFORGE_DATA_DIR``) for ``--steps`` optimizer steps:

1. **One GPU through nasforge's trainer** (``nasforge.evaluation.trainer.train``, one epoch cut
   to ``--steps`` steps, then one validation pass): images/s of the training steps and the mean
   step time in ms, with the speed options the trainer chose.
2. **The same through the data-parallel path with one rank** (``nasforge.execution.data_parallel
   .launch`` -> a fresh process -> NCCL process group -> ``nasforge.evaluation.ddp``): the same
   figures, the backend used, and the start-up of the launch. This shows the NCCL path works
   end to end; its cost against (1) is DistributedDataParallel's gradient all-reduce with a
   group of one.
3. **Two ranks on this machine**: refused when it shows one GPU (NCCL refuses two ranks on one
   GPU; nasforge says so before NCCL starts). A lent machine has one GPU, so the multi-rank NCCL
   path cannot be run there; only gloo on CPU runs 2+ ranks here (``tests/test_data_parallel.py``).

``--dry-run`` runs the same code on the CPU (gloo instead of NCCL, 4 steps at width 16, the
synthetic stand-in if Fashion-MNIST is missing) in under a minute. Prints one JSON line per part
and the summary last.

    python experiments/gpu/remnet128_step.py [--steps 400] [--dry-run]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
GENOME = REPO / "experiments" / "remnet" / "remnet_genome.json"


def _setup(width: int, steps: int, dry: bool) -> tuple[Any, Any, Any, Any]:
    """(space, genome, splits, budget) of the measured training."""
    from nasforge.cli import _read_genome
    from nasforge.config import load_config
    from nasforge.data import split_validation, synthetic_dataset
    from nasforge.errors import DataError
    from nasforge.execution.tasks import load_splits
    from nasforge.spaces import get_space

    preset = load_config("remnet-final")
    space = get_space(preset.space.name, **preset.space.settings)
    genome = _read_genome(space, str(GENOME))
    try:
        splits = load_splits(preset.data.task_dict())
    except (DataError, OSError) as exc:
        if not dry:
            raise
        print(f"(dry run: Fashion-MNIST not found ({exc}); synthetic 1x28x28 stand-in)")
        data = synthetic_dataset(n_train=2048, n_test=256, num_classes=10, shape=(1, 28, 28))
        splits = split_validation(data, 0.1, 0)
    budget = preset.final.budget.replace(width=width, epochs=1, max_steps=steps)
    if dry:  # the dry run checks the code, not the speeds: no measuring, a short validation
        budget = budget.replace(precision="fp32", channels_last=False)
        splits = dataclasses.replace(splits, val_x=splits.val_x[:512], val_y=splits.val_y[:512])
    return space, genome, splits, budget


def _figures(result: Any, budget: Any, steps: int) -> dict[str, Any]:
    ips = float(result.images_per_second)
    return {"status": result.status, "reason": result.reason, "steps": steps,
            "images_per_second": round(ips, 1),
            "step_ms": round(1000.0 * budget.batch_size / ips, 2) if ips > 0 else None,
            "val_acc_after": result.val_acc, "params": result.params,
            "speed": (result.speed or {}).get("setting"),
            "train_seconds": round(result.train_seconds, 1)}


def one_gpu(width: int, steps: int, dry: bool) -> dict[str, Any]:
    """Part 1: the one-process trainer on cuda:0 (or the CPU in a dry run)."""
    import torch

    from nasforge.evaluation.trainer import set_determinism, train

    space, genome, splits, budget = _setup(width, steps, dry)
    device = "cpu" if dry else "cuda:0"
    set_determinism(0)
    model = space.build(genome, splits.input_shape, splits.num_classes, width)
    from nasforge.evaluation.metrics import count_flops

    count_flops(model, splits.input_shape)  # materialise lazy layers, as the evaluation does
    result = train(model, splits, budget, device=device)
    out = {"part": "one GPU, nasforge trainer" if not dry else "dry run: CPU trainer",
           "device": torch.cuda.get_device_name(0) if not dry else "cpu",
           **_figures(result, budget, steps)}
    return out


def ddp_rank(ctx: Any, width: int, steps: int, dry: bool) -> dict[str, Any]:
    """Part 2, inside each rank: the data-parallel trainer (NCCL on GPU, gloo on CPU)."""
    import torch.distributed as dist

    from nasforge.evaluation.ddp import train_data_parallel
    from nasforge.evaluation.metrics import count_flops
    from nasforge.evaluation.trainer import set_determinism

    space, genome, splits, budget = _setup(width, steps, dry)
    set_determinism(0)
    model = space.build(genome, splits.input_shape, splits.num_classes, width)
    count_flops(model, splits.input_shape)
    if ctx.device.startswith("cuda"):
        from torch import nn

        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    result = train_data_parallel(model, splits, budget, device=ctx.device,
                                 slow_group=ctx.slow_group)
    return {"backend": dist.get_backend(), "world": ctx.world, "device": ctx.device,
            **_figures(result, budget, steps)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps (400; dry 4)")
    parser.add_argument("--width", type=int, default=None, help="channels (128; dry 16)")
    parser.add_argument("--dry-run", action="store_true", help="the same code on the CPU, small")
    args = parser.parse_args()
    dry = args.dry_run
    steps = args.steps or (4 if dry else 400)
    width = args.width or (16 if dry else 128)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), str(REPO / "src"),
                                                    env.get("PYTHONPATH")) if p)
    if dry:
        env["NASFORGE_DEVICE"] = "cpu"
        os.environ["NASFORGE_DEVICE"] = "cpu"
    else:
        import torch

        if not torch.cuda.is_available():
            print("no CUDA device: run with --dry-run on a machine without a GPU")
            return 2
    sys.path.insert(0, str(REPO / "src"))
    from nasforge.execution.data_parallel import first_failure, launch

    part1 = one_gpu(width, steps, dry)
    print(json.dumps(part1), flush=True)

    started = time.perf_counter()
    import torch

    ends = launch("remnet128_step:ddp_rank", (width, steps, dry), 1, env=env,
                  threads=torch.get_num_threads())  # the threads part 1 had
    launch_seconds = time.perf_counter() - started
    failure = first_failure(ends, 20)
    part2 = {"part": "data-parallel path, 1 rank", "launch_seconds": round(launch_seconds, 1),
             **(ends[0].value if failure is None else {"status": "failed", "reason": failure})}
    print(json.dumps(part2), flush=True)

    if dry:
        part3 = {"part": "2 ranks", "note": "dry run: 2 gloo ranks on CPU are run by "
                 "tests/test_data_parallel.py; on the GPU machine this part tries 2 NCCL ranks"}
    else:
        import torch

        gpus = torch.cuda.device_count()
        ends = launch("nasforge.execution.data_parallel:ping", (), 2, env=env)
        failure = first_failure(ends, 20)
        part3 = {"part": "2 NCCL ranks", "gpus": gpus,
                 "result": "ran" if failure is None else f"refused: {failure}"}
    print(json.dumps(part3), flush=True)

    print("== summary")
    print(f"REMNet-128 genome at width {width}, batch 128, {steps} steps, "
          f"{'CPU dry run' if dry else part1['device']}")
    print(f"  one process (trainer):        {part1['step_ms']} ms/step, "
          f"{part1['images_per_second']} images/s, options {part1['speed']}")
    if part2.get("status") == "ok":
        print(f"  DDP, 1 rank ({part2['backend']}):  {part2['step_ms']} ms/step, "
              f"{part2['images_per_second']} images/s (launch incl. start-up "
              f"{part2['launch_seconds']} s)")
    else:
        print(f"  DDP, 1 rank: {part2.get('reason')}")
    print("  2 ranks: " + (part3.get("result") or part3.get("note", "")))
    print("  a one-GPU machine cannot run NCCL with 2 ranks (NCCL refuses two ranks on one "
          "GPU); the multi-rank path is tested with gloo on CPU")
    return 0 if part1["status"] == "ok" and part2.get("status") == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
