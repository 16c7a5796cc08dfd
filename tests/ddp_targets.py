"""Functions run inside data-parallel ranks by tests/test_data_parallel.py (imported by name in
fresh processes, so they live in a module of their own)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from nasforge.data import DataSplits
from nasforge.evaluation.budget import Budget


def tiny_splits(n: int = 160, seed: int = 0) -> DataSplits:
    """A small random 1x8x8 set with 4 classes (uint8 images, as the trainers expect)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n + 64, 1, 8, 8), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 4, (n + 64,), generator=g)
    return DataSplits("tiny", x[:n], y[:n], x[n:n + 32], y[n:n + 32], x[n + 32:], y[n + 32:],
                      4, (0.5,), (0.25,))


def tiny_net(batch_norm: bool, seed: int = 0) -> nn.Module:
    """conv -> (BN) -> ReLU -> flatten -> linear; no dropout."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Conv2d(1, 4, 3, padding=1)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(4))
    layers += [nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 4)]
    return nn.Sequential(*layers)


def budget() -> Budget:
    """10 steps an epoch at a global batch of 16 over 160 images, 2 epochs: 20 SGD steps."""
    return Budget(epochs=2, batch_size=16, optimizer="sgd", lr=0.05, momentum=0.9,
                  precision="fp32", channels_last=False, threads=1, seed=3)


def train_ranks(ctx: Any, batch_norm: bool) -> dict[str, Any]:
    """Train the tiny net data-parallel; every rank returns its parameters and buffers."""
    from nasforge.evaluation.ddp import train_data_parallel

    model = tiny_net(batch_norm)
    result = train_data_parallel(model, tiny_splits(), budget(), device=ctx.device,
                                 slow_group=ctx.slow_group)
    return {"status": result.status, "rank": ctx.rank, "val_acc": result.val_acc,
            "params": {k: v.detach().clone() for k, v in model.named_parameters()},
            "buffers": {k: v.detach().clone() for k, v in model.named_buffers()},
            "steps": len(result.curve)}


def hello(ctx: Any) -> dict[str, Any]:
    """Join, all-reduce one number, return it."""
    import torch.distributed as dist

    t = torch.tensor([float(ctx.rank + 1)])
    dist.all_reduce(t)
    return {"status": "ok", "sum": float(t.item()), "world": ctx.world}


def train_with_state(ctx: Any, state_path: str) -> dict[str, Any]:
    """Like ``train_ranks`` (no batch norm) with a per-epoch state file to resume from."""
    from nasforge.evaluation.ddp import train_data_parallel

    model = tiny_net(False)
    result = train_data_parallel(model, tiny_splits(), budget(), device=ctx.device,
                                 slow_group=ctx.slow_group, epoch_state=state_path)
    return {"status": result.status, "error": result.reason,
            "params": {k: v.detach().clone() for k, v in model.named_parameters()},
            "epochs": [r.epoch for r in result.curve]}


def bn_sync(ctx: Any) -> dict[str, Any]:
    """Each rank updates its batch-norm statistics on its own data, then rank 0's are
    broadcast; returns every rank's statistics before and after."""
    import torch.distributed as dist

    from nasforge.evaluation.ddp import sync_buffers

    model = tiny_net(True)
    model.train()
    g = torch.Generator().manual_seed(100 + ctx.rank)
    model(torch.randn(8, 1, 8, 8, generator=g) * (1 + ctx.rank))
    before = [None] * ctx.world
    dist.all_gather_object(before, {k: v.clone() for k, v in model.named_buffers()})
    sync_buffers(model)
    return {"status": "ok", "before": before,
            "after": {k: v.clone() for k, v in model.named_buffers()}}
