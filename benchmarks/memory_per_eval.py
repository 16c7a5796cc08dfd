"""Does memory stay flat over many evaluations, and what does starting one evaluation cost?

1. Memory: ``--evals`` (default 50) evaluations of a fixed ~1M-parameter CNN (3 conv layers of
   64-128 channels and a 4608->160 linear layer: 961k parameters on 1-channel input, 10
   classes), each a short training (``--steps`` 2 optimizer steps at batch ``--batch`` 16, then
   validation on 256 held-out images), through the real runner, storage and one local worker
   slot; every evaluation runs in a child the worker forks. After each finished trial the
   resident set size (``VmRSS`` in ``/proc/<pid>/status``) of the runner process and of the
   worker process (the ``host:pid`` in the trial's ``worker`` field) is read. Printed: both at
   the 5th and at the last evaluation and the growth in between (the target is < 100 MB each).

2. Start-up cost per evaluation, measured inside the same warm worker: a fork of the worker
   whose child does nothing (fork, exit, result through the pipe, reap), and a fork whose child
   builds the network and runs one forward pass; against a cold start: a fresh ``python``
   process that imports torch and nasforge, loads the data set's splits, builds the network and
   runs one forward pass (what a spawn-per-evaluation design would pay each time).

    PYTHONPATH=src python benchmarks/memory_per_eval.py [--evals 50] [--dataset fashion-mnist]

The data set is Fashion-MNIST when it can be loaded, else the synthetic one (``--dataset``).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from nasforge.execution.results import EvalResult
from nasforge.api import Search
from nasforge.config import RunConfig, config_from_dict
from nasforge.execution.executors import make_executor
from nasforge.execution.isolation import IsolatedEvaluate, run_isolated
from nasforge.execution.runner import Reporter, Runner
from nasforge.execution.tasks import EvalTask


def fixed_net(in_channels: int, classes: int) -> Any:
    """A fixed CNN of about 1M parameters that fits any input size."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(in_channels, 64, 3, stride=2, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
        nn.Conv2d(64, 128, 3, padding=1), nn.BatchNorm2d(128), nn.ReLU(),
        nn.Conv2d(128, 128, 3, padding=1), nn.BatchNorm2d(128), nn.ReLU(),
        nn.AdaptiveAvgPool2d(6), nn.Flatten(), nn.Linear(128 * 36, 160), nn.ReLU(),
        nn.Linear(160, classes),
    )


class FixedNetEvaluate:
    """Trains ``fixed_net`` for a few steps with the real trainer (the genome is ignored)."""

    loads_data = True  # the worker loads the splits once; children inherit them

    def __init__(self, steps: int = 2, batch_size: int = 16, val_images: int = 256) -> None:
        self.steps = steps
        self.batch_size = batch_size
        self.val_images = val_images

    def __call__(self, task: EvalTask) -> EvalResult:
        from nasforge.evaluation.budget import Budget
        from nasforge.evaluation.trainer import set_determinism, train
        from nasforge.execution.tasks import load_splits

        splits = load_splits(task.data)
        splits = dataclasses.replace(splits, val_x=splits.val_x[:self.val_images],
                                     val_y=splits.val_y[:self.val_images])
        set_determinism(task.model_seed)
        model = fixed_net(int(splits.input_shape[0]), int(splits.num_classes))
        outcome = train(model, splits, Budget(epochs=1, batch_size=self.batch_size,
                                              max_steps=self.steps, seed=task.model_seed % 2**31))
        out = outcome.to_dict()
        return EvalResult(status=outcome.status, error=outcome.reason, val_acc=outcome.val_acc,
                          params=outcome.params, curve=out.pop("curve"), metrics=out)


def rss_mb(pid: int | str = "self") -> float:
    """Resident set size of a process in MB (``VmRSS``)."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


class RssReporter(Reporter):
    """Reads the runner's and the worker's RSS after every finished trial."""

    def __init__(self) -> None:
        super().__init__(enabled=False)
        self.samples: list[tuple[int, float, float, str]] = []

    def trial(self, record: Any, text: str, done: int, total: int) -> None:
        pid = (record.worker or "").rsplit(":", 1)[-1]
        worker = rss_mb(pid) if pid.isdigit() and Path(f"/proc/{pid}").exists() else float("nan")
        self.samples.append((done, rss_mb(), worker, record.worker or ""))


def study_config(evals: int, dataset: str) -> Any:
    data: dict[str, Any] = {"dataset": dataset, "val_fraction": 0.1 if dataset != "synthetic" else 0.2}
    return config_from_dict({
        "name": "memory", "seed": 0, "data": data,
        "space": {"name": "global", "settings": {"max_nodes": 6, "head": "gap"}},
        "strategy": {"name": "random", "settings": {}},
        "budget": {"epochs": 1, "width": 4, "batch_size": 16, "max_steps": 2},
        "run": {"max_evals": evals, "workers": 1, "keep_best": 0},
    }, "memory")


def _startup_in_worker(data: dict[str, Any], repeats: int) -> dict[str, Any]:
    """Runs in the worker: fork costs of an empty child and of a child that builds + forwards."""
    import torch

    from nasforge.execution.tasks import load_splits

    splits = load_splits(data)
    shape = tuple(int(d) for d in splits.input_shape)
    classes = int(splits.num_classes)

    def forward(task: EvalTask) -> EvalResult:
        model = fixed_net(shape[0], classes)
        with torch.no_grad():
            model(torch.zeros(16, *shape))
        return EvalResult(status="ok")

    def noop(task: EvalTask) -> EvalResult:
        return EvalResult(status="ok")

    task = EvalTask(0, "global", {}, {}, {}, data, 0)
    times: dict[str, list[float]] = {"noop": [], "forward": []}
    for _ in range(repeats):
        for name, fn in (("noop", noop), ("forward", forward)):
            started = time.perf_counter()
            run_isolated(task, evaluate=fn)
            times[name].append(time.perf_counter() - started)
    return {k: statistics.median(v) for k, v in times.items()} | {"pid": os.getpid()}


_COLD = """
import time, torch
torch.set_num_threads(1)
from nasforge.execution.tasks import load_splits
sys_path_bench = {bench!r}
import sys; sys.path.insert(0, sys_path_bench)
from memory_per_eval import fixed_net
splits = load_splits({data!r})
shape = tuple(int(d) for d in splits.input_shape)
model = fixed_net(shape[0], int(splits.num_classes))
with torch.no_grad():
    model(torch.zeros(16, *shape))
"""


def cold_start_seconds(data: dict[str, Any], repeats: int = 3) -> float:
    """Median wall time of a fresh Python process doing what a warm child inherits."""
    code = _COLD.format(bench=str(Path(__file__).resolve().parent), data=data)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ,
                                                                        "OMP_NUM_THREADS": "1"})
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure(evals: int = 50, storage_dir: str | Path | None = None, dataset: str = "fashion-mnist",
            steps: int = 2, batch_size: int = 16, startup: bool = False) -> dict[str, Any]:
    """Run the memory measurement (and, with ``startup``, the start-up cost); returns figures."""
    folder = Path(storage_dir or tempfile.mkdtemp(prefix="nasforge-mem-"))
    cfg = study_config(evals, dataset)
    search = Search(cfg, folder / "memory.db")
    reporter = RssReporter()
    executor = make_executor(RunConfig(workers=1, executor="local"))
    report: dict[str, Any] = {"dataset": dataset}
    try:
        runner = Runner(config=cfg, storage=search.storage, space=search.space,
                        strategy=search.strategy, executor=executor, reporter=reporter,
                        evaluate=IsolatedEvaluate(evaluate=FixedNetEvaluate(steps, batch_size)))
        started = time.time()
        summary = runner.run()
        report["wall_seconds"] = time.time() - started
        trials = search.storage.trials()
        if startup:
            data = runner._data_dict()
            report.update(executor.submit(_startup_in_worker, data, 5).result())
            report["cold_seconds"] = cold_start_seconds(data)
    finally:
        executor.shutdown(wait=True)
        search.close()
    samples = reporter.samples
    fifth, last = samples[min(4, len(samples) - 1)], samples[-1]
    report.update(
        finished=summary.finished, ok=summary.ok,
        params=next((t.params for t in trials if t.params), None),
        runner_mb_5th=fifth[1], runner_mb_last=last[1], runner_growth_mb=last[1] - fifth[1],
        worker_mb_5th=fifth[2], worker_mb_last=last[2], worker_growth_mb=last[2] - fifth[2],
        distinct_workers=len({s[3] for s in samples}),
        seconds_per_eval=report["wall_seconds"] / max(1, summary.finished),
        samples=samples,
    )
    return report


def _dataset_available(name: str) -> bool:
    if name == "synthetic":
        return True
    try:
        from nasforge.data import load_dataset

        load_dataset(name)
        return True
    except Exception:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--evals", type=int, default=50)
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    dataset = args.dataset if _dataset_available(args.dataset) else "synthetic"
    r = measure(args.evals, dataset=dataset, steps=args.steps, batch_size=args.batch, startup=True)
    print(f"data set {dataset}; {r['finished']} evaluations ({r['ok']} ok) of a "
          f"{r['params']:,}-parameter CNN ({args.steps} steps at batch {args.batch}) through one "
          f"local worker slot; {r['seconds_per_eval']:.2f} s per evaluation")
    print(f"{'process':<8} {'RSS at 5th (MB)':>16} {'RSS at last (MB)':>17} {'growth (MB)':>12}")
    print(f"{'runner':<8} {r['runner_mb_5th']:>16.1f} {r['runner_mb_last']:>17.1f} "
          f"{r['runner_growth_mb']:>12.1f}")
    print(f"{'worker':<8} {r['worker_mb_5th']:>16.1f} {r['worker_mb_last']:>17.1f} "
          f"{r['worker_growth_mb']:>12.1f}")
    print(f"start-up per evaluation: fork of the warm worker, empty child: {r['noop'] * 1e3:.0f} ms; "
          f"child that builds the net and runs one forward pass: {r['forward'] * 1e3:.0f} ms; "
          f"cold spawn (new python: import torch + nasforge, load {dataset}, build, forward): "
          f"{r['cold_seconds'] * 1e3:.0f} ms")
    ok = r["runner_growth_mb"] < 100 and r["worker_growth_mb"] < 100
    print(f"memory growth 5th->last: runner {r['runner_growth_mb']:+.1f} MB, worker "
          f"{r['worker_growth_mb']:+.1f} MB ({'< 100 MB: ok' if ok else 'OVER 100 MB'})")


if __name__ == "__main__":
    main()
