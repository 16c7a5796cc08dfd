"""GPU check of worker isolation: two workers share a GPU, memory goes back, OOM is a trial.

Run by ``check_workers.sh`` (which installs nasforge from the repository first). Through the
real runner, storage, local executor (2 spawned workers) and forked evaluation children:

1. every worker binds to its device before any CUDA call: the worker reports its
   ``CUDA_VISIBLE_DEVICES`` (set by ``bind_worker``) and never creates a CUDA context itself;
   each evaluation child reports ``torch.cuda.current_device()`` and the device name;
2. each evaluation trains a fixed ~1M-parameter CNN on the GPU and holds a 1 GiB ballast
   tensor, so its memory is plain to see; after each evaluation its child has exited, its pid
   is gone from ``nvidia-smi --query-compute-apps`` and, at the end (workers still alive),
   ``nvidia-smi --query-gpu=memory.used`` is back at the baseline: PyTorch's caching allocator
   cannot keep memory past the end of an evaluation;
3. one evaluation allocates more than the whole card: it becomes a failed trial whose reason
   is ``out-of-memory`` (not retried), and the search goes on to its requested count.

``--dry-run`` runs the same logic on the CPU (no GPU, no nvidia-smi; two fake GPU ids in
``CUDA_VISIBLE_DEVICES`` to show the binding; the out-of-memory is a CPU allocation past a
per-evaluation memory limit), so the script can be checked on a machine without a GPU.

Prints a table of the evaluations, the checks, and last ``CHECK PASSED`` or ``CHECK FAILED``
(exit status 0 or 1).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

OOM_TRIAL = 3
BALLAST_BYTES = 1 << 30


# ------------------------------------------------------------------------- nvidia-smi
def smi_memory_used_mb() -> list[int] | None:
    """``memory.used`` of each GPU in MiB, as the driver reports it (None without nvidia-smi)."""
    if not shutil.which("nvidia-smi"):
        return None
    out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                         capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        return None
    return [int(float(x)) for x in out.stdout.split() if x.strip()]


def smi_compute_pids() -> dict[int, int] | None:
    """pid -> used MiB of the processes holding GPU memory (None if the driver cannot say)."""
    if not shutil.which("nvidia-smi"):
        return None
    out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory",
                          "--format=csv,noheader,nounits"], capture_output=True, text=True,
                         timeout=30)
    if out.returncode != 0:
        return None
    apps: dict[int, int] = {}
    for line in out.stdout.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and parts[0].isdigit():
            apps[int(parts[0])] = int(float(parts[1])) if parts[1].replace(".", "").isdigit() else -1
    return apps


def process_gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie waiting to be reaped holds no memory)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("State:"):
                    return "Z" in line.split()[1]
    except OSError:
        return True
    return False


# ------------------------------------------------------------------------ the evaluation
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


class DeviceEvaluate:
    """Trains ``fixed_net`` on the worker's device and reports what the child saw."""

    loads_data = True

    def __init__(self, device: str, steps: int, oom_trial: int) -> None:
        self.device = device
        self.steps = steps
        self.oom_trial = oom_trial

    def __call__(self, task: Any) -> Any:
        import torch

        from nasforge.evaluation.budget import Budget
        from nasforge.evaluation.trainer import train
        from nasforge.execution.tasks import load_splits

        info: dict[str, Any] = {
            "child_pid": os.getpid(), "worker_pid": os.getppid(),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "worker_index": os.environ.get("NASFORGE_WORKER_INDEX"),
            "threads": torch.get_num_threads(),
        }
        ballast = None
        if self.device == "cuda":
            torch.cuda.set_device(0)  # the one GPU this worker sees
            props = torch.cuda.get_device_properties(0)
            info.update(current_device=torch.cuda.current_device(),
                        name=torch.cuda.get_device_name(0), total_mb=props.total_memory >> 20)
            if task.trial_number == self.oom_trial:  # more than the whole card
                torch.empty(int(props.total_memory * 1.5), dtype=torch.uint8, device="cuda")
            ballast = torch.ones(BALLAST_BYTES, dtype=torch.uint8, device="cuda")
        elif task.trial_number == self.oom_trial:  # past the per-evaluation memory limit
            torch.ones(4 << 30, dtype=torch.uint8)
        splits = load_splits(task.data)
        model = fixed_net(int(splits.input_shape[0]), int(splits.num_classes))
        outcome = train(model, splits, Budget(epochs=1, batch_size=128, max_steps=self.steps,
                                              seed=task.model_seed % 2**31), device=self.device)
        if self.device == "cuda":
            torch.cuda.synchronize()
            info["max_allocated_mb"] = torch.cuda.max_memory_allocated() >> 20
            info["reserved_mb"] = torch.cuda.memory_reserved() >> 20
            used = smi_memory_used_mb()
            info["gpu_used_during_mb"] = used[0] if used else None
            apps = smi_compute_pids()
            info["own_mb"] = apps.get(os.getpid()) if apps else None
        del ballast
        info["device"] = str(next(model.parameters()).device)
        from nasforge.execution.results import EvalResult

        return EvalResult(status=outcome.status, error=outcome.reason, val_acc=outcome.val_acc,
                          params=outcome.params, metrics={"check": info})


def _worker_report() -> dict[str, Any]:
    """Runs in a worker (no CUDA call): its binding, and a short sleep so all start."""
    time.sleep(0.5)
    from nasforge.execution.isolation import warm_up

    warm_up()
    return {"pid": os.getpid(), "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "worker_index": os.environ.get("NASFORGE_WORKER_INDEX"),
            "eval_threads": os.environ.get("NASFORGE_EVAL_THREADS"),
            "cuda_initialised": "torch.cuda" in sys.modules and _cuda_initialised()}


def _cuda_initialised() -> bool:
    import torch

    return bool(torch.cuda.is_initialized())


# ------------------------------------------------------------------------------- main
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU only: check the logic")
    parser.add_argument("--evals", type=int, default=6)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--devices", default=None, help="GPU positions to use, e.g. 0,1")
    parser.add_argument("--dataset", default="synthetic", help="synthetic | fashion-mnist")
    args = parser.parse_args()

    if args.dry_run:
        os.environ.setdefault("CUDA_VISIBLE_DEVICES", "0,1")  # fake ids: shows the binding
    import torch

    import nasforge
    from nasforge.api import Search
    from nasforge.config import RunConfig, config_from_dict
    from nasforge.execution.devices import visible_gpus
    from nasforge.execution.executors import make_executor
    from nasforge.execution.isolation import IsolatedEvaluate
    from nasforge.execution.runner import Reporter, Runner
    from nasforge.storage import StudyStorage

    device = "cpu" if args.dry_run else "cuda"
    print(f"python {platform.python_version()}, torch {torch.__version__} (CUDA build "
          f"{torch.version.cuda}), nasforge {nasforge.__version__} from "
          f"{Path(nasforge.__file__).resolve().parent}")
    print(f"mode: {'DRY RUN on the CPU' if args.dry_run else 'GPU'}; visible GPUs (no CUDA call): "
          f"{visible_gpus() or 'none'}; CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')}")
    failures: list[str] = []

    def check(ok: bool, text: str) -> None:
        print(f"  [{'ok' if ok else 'FAIL'}] {text}")
        if not ok:
            failures.append(text)

    if not args.dry_run and not visible_gpus():
        print("no GPU visible (no /dev/nvidia* and no CUDA_VISIBLE_DEVICES); use --dry-run")
        return 1

    devices = tuple(int(x) for x in args.devices.split(",")) if args.devices else None
    folder = Path(tempfile.mkdtemp(prefix="nasforge-gpu-check-"))
    cfg = config_from_dict({
        "name": "gpu-check", "seed": 0,
        "data": {"dataset": args.dataset, "val_fraction": 0.1},
        "space": {"name": "global", "settings": {"max_nodes": 6, "head": "gap"}},
        "strategy": {"name": "random", "settings": {}},
        "budget": {"epochs": 1, "width": 4, "batch_size": 32, "max_steps": 2},
        "run": {"max_evals": args.evals, "workers": 2, "keep_best": 0,
                **({"devices": list(devices)} if devices else {})},
    }, "gpu-check")
    search = Search(cfg, folder / "gpu-check.db")
    # after Search(): the study's provenance asks torch for the device name, which may create
    # a CUDA context in this (driver) process; the workers are spawned, so they do not have it
    baseline = smi_memory_used_mb()
    print(f"driver-reported memory.used before the workers start: {baseline} MiB")
    run_cfg = RunConfig(workers=2, executor="local", devices=devices)
    executor = make_executor(run_cfg)
    after: dict[int, dict[str, Any]] = {}

    class Watch(Reporter):
        """After each trial: wait for its child to exit, then ask the driver."""

        def __init__(self) -> None:
            super().__init__(enabled=False)

        def trial(self, record: Any, text: str, done: int, total: int) -> None:
            info = (record.metrics or {}).get("check", {})
            pid = info.get("child_pid")
            deadline = time.time() + 20
            while pid and not process_gone(pid) and time.time() < deadline:
                time.sleep(0.05)
            apps = smi_compute_pids()
            if not pid:  # a failed evaluation reports no child info
                return
            after[record.number] = {
                "child_gone": process_gone(pid),
                "pid_listed_after": (pid in apps) if (apps is not None and pid) else None,
                "gpu_used_after_mb": (smi_memory_used_mb() or [None])[0],
            }

    started = time.time()
    try:
        print("\nworkers (bound before any CUDA call):")
        futures = [executor.submit(_worker_report) for _ in range(2)]
        workers = {}
        for f in futures:
            w = f.result(timeout=120)
            workers[w["pid"]] = w
            print(f"  worker pid {w['pid']}: index {w['worker_index']}, CUDA_VISIBLE_DEVICES="
                  f"{w['cuda_visible_devices']}, eval threads {w['eval_threads']}, "
                  f"CUDA initialised in the worker: {w['cuda_initialised']}")
        runner = Runner(config=cfg, storage=search.storage, space=search.space,
                        strategy=search.strategy, executor=executor, reporter=Watch(),
                        evaluate=IsolatedEvaluate(
                            timeout=240, memory_limit_mb=1024 if args.dry_run else None,
                            evaluate=DeviceEvaluate(device, args.steps, OOM_TRIAL)))
        summary = runner.run()
        time.sleep(1.0)
        end_used = smi_memory_used_mb()
        end_apps = smi_compute_pids()
        worker_pids_now = {p for p in workers if Path(f"/proc/{p}").exists()}
    finally:
        executor.shutdown(wait=True)
        search.close()
    with StudyStorage.open(folder / "gpu-check.db") as store:
        trials = store.trials()
    wall = time.time() - started

    print(f"\n{'trial':>5} {'status':<7} {'attempts':>8} {'worker':>14} {'child':>7} "
          f"{'CVD':>5} {'device':>7} {'name':<22} {'during MiB':>10} {'after MiB':>9} "
          f"{'gone':>5}  error")
    for t in trials:
        info = (t.metrics or {}).get("check", {})
        a = after.get(t.number, {})
        print(f"{t.number:>5} {t.status:<7} {t.attempts:>8} {str(t.worker):>14} "
              f"{str(info.get('child_pid', '-')):>7} {str(info.get('cuda_visible_devices')):>5} "
              f"{str(info.get('current_device', info.get('device', '-'))):>7} "
              f"{str(info.get('name', '-'))[:22]:<22} {str(info.get('gpu_used_during_mb', '-')):>10} "
              f"{str(a.get('gpu_used_after_mb', '-')):>9} {str(a.get('child_gone', '-')):>5}  "
              f"{(t.error or '')[:70]}")

    print("\nchecks:")
    by_number = {t.number: t for t in trials}
    check(summary.finished == args.evals and len(trials) == args.evals,
          f"the search finished its {args.evals} evaluations ({summary.finished})")
    oom = by_number.get(OOM_TRIAL)
    check(oom is not None and oom.status == "failed" and "out-of-memory" in (oom.error or "")
          and oom.attempts == 1,
          f"trial {OOM_TRIAL} (allocates more than the {'card' if device == 'cuda' else 'limit'}) "
          f"failed as out-of-memory, not retried: {oom.error[:80] if oom and oom.error else oom}")
    ok = [t for t in trials if t.number != OOM_TRIAL]
    check(all(t.status == "ok" for t in ok), "every other evaluation is ok")
    infos = [(t.metrics or {}).get("check", {}) for t in ok]
    used_workers = {i.get("worker_pid") for i in infos}
    check(len(used_workers) == 2, f"both workers evaluated ({len(used_workers)} worker pids)")
    check(all(not w["cuda_initialised"] for w in workers.values()),
          "no worker process initialised CUDA (only its evaluation children do)")
    expected = {str(w["pid"]): w["cuda_visible_devices"] for w in workers.values()}
    check(all(i.get("cuda_visible_devices") == expected.get(str(i.get("worker_pid"))) for i in infos),
          "each child saw its worker's CUDA_VISIBLE_DEVICES")
    check(len(after) == len(ok) and all(a.get("child_gone") for a in after.values()),
          f"every evaluation child had exited when its result was in ({len(after)} checked)")
    if device == "cuda":
        check(all(i.get("current_device") == 0 and i.get("name") for i in infos),
              "each child's GPU is cuda:0 of its own view, with a device name")
        check(all(v in (None, "") or "," not in v for v in expected.values()),
              f"each worker sees exactly one GPU: {sorted(set(expected.values()))}")
        if baseline is not None:
            during = [i.get("gpu_used_during_mb") for i in infos if i.get("gpu_used_during_mb")]
            check(bool(during) and min(during) >= baseline[0] + 900,
                  f"memory.used during an evaluation rose above the baseline {baseline[0]} MiB "
                  f"by the 1 GiB ballast at least (min during {min(during) if during else None})")
            check(end_used is not None and end_used[0] <= baseline[0] + 256,
                  f"memory.used with both workers alive and no evaluation running is back at "
                  f"the baseline: {end_used} vs {baseline} MiB")
        listed = [a.get("pid_listed_after") for a in after.values()]
        if any(v is not None for v in listed):
            check(not any(listed), "no finished child is listed by nvidia-smi --query-compute-apps")
            check(end_apps is not None and not (set(end_apps) & worker_pids_now),
                  "no worker process holds GPU memory at the end")
        else:
            print("  [skip] nvidia-smi lists no compute processes here (PID namespace): per-pid "
                  "checks skipped, memory.used checks stand")
    else:
        print("  [skip] GPU memory checks (dry run)")
        bound = sorted(str(w["cuda_visible_devices"]) for w in workers.values())
        check(bound == ["0", "1"], f"the two workers bound to the two visible ids: {bound}")
    print(f"\nwall time {wall:.1f} s")
    if failures:
        print(f"CHECK FAILED: {len(failures)} check(s) failed")
        return 1
    print("CHECK PASSED")
    return 0


if __name__ == "__main__":
    sys.exit(main())
