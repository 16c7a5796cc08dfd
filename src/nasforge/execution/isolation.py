"""Run each evaluation in a child process of its worker, so a crash costs one evaluation.

The worker process (a pool process, an MPI rank or a Dask worker) forks one child per
evaluation (``os.fork``, so it works inside daemonic Dask workers and MPI ranks alike). The
child inherits the data the worker already loaded (copy-on-write: start-up is cheap),
optionally gets an address-space limit, writes its stderr to a file and sends its result back
through a pipe. When the child ends, every byte it held returns to the system. The parent turns
whatever happened into a result dict:

- a result sent back: as is (ok, or failed with the trainer's reason, e.g. NaN loss);
- an exception in the child: failed with its text; out-of-memory is recognised and named;
- killed by SIGKILL/SIGTERM/SIGINT from outside: failed with ``retry: True`` (the runner
  retries it once);
- any other signal (a segfault, say): failed with the signal name, not retried;
- past the timeout: killed by us, failed with reason "timeout", not retried.
"""

from __future__ import annotations

import functools
import os
import pickle
import resource
import select
import signal
import tempfile
import time
import traceback
from typing import Any, Callable

from nasforge.execution.tasks import EvalTask, evaluate_task, load_splits, worker_name

RETRYABLE_SIGNALS = {signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
_STDERR_TAIL = 4000
_OOM_MARKERS = ("out of memory", "can't allocate memory", "cannot allocate memory",
                "memoryerror", "std::bad_alloc", "outofmemoryerror")


def is_out_of_memory(text: str) -> bool:
    """Whether an error text says an allocation failed."""
    low = text.lower()
    return any(marker in low for marker in _OOM_MARKERS)


def _vm_size_bytes() -> int:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _child(
    evaluate: Callable[[EvalTask], dict[str, Any]],
    task: EvalTask,
    write_fd: int,
    stderr_path: str,
    memory_limit_bytes: int | None,
) -> None:
    """Body of the forked child; never returns."""
    code = 0
    try:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        fd = os.open(stderr_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(fd, 2)
        os.close(fd)
        try:
            threads = int(os.environ.get("NASFORGE_EVAL_THREADS", "0"))
            if threads > 0:
                import torch

                torch.set_num_threads(threads)
            if memory_limit_bytes:
                limit = _vm_size_bytes() + memory_limit_bytes
                resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            result = evaluate(task)
            error = str(result.get("error") or "") + str(result.get("stderr") or "")
            if result.get("status") == "failed" and is_out_of_memory(error):
                result["error"] = f"out-of-memory: {result.get('error')}"
        except BaseException as exc:  # noqa: BLE001 - everything becomes a failed result
            text = f"{type(exc).__name__}: {exc}"
            result = {
                "status": "failed",
                "error": f"out-of-memory: {text}" if is_out_of_memory(text) else text,
                "stderr": traceback.format_exc(limit=20),
            }
        payload = pickle.dumps(result)
        view = memoryview(payload)
        while view:
            written = os.write(write_fd, view)
            view = view[written:]
    except BaseException:  # noqa: BLE001
        code = 1
    finally:
        os._exit(code)


@functools.lru_cache(maxsize=1)
def warm_up() -> bool:
    """Import and exercise, once per worker, what every evaluation needs, so that forked
    children start warm. Runs single-threaded (see ``bind_worker``)."""
    import torch

    from nasforge.evaluation import metrics, trainer  # noqa: F401
    from nasforge.spaces import get_space  # noqa: F401

    if torch.get_num_threads() != 1:
        return False  # never start an OpenMP pool in a process that forks
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2),
                                torch.nn.Flatten(), torch.nn.LazyLinear(2))
    model(torch.zeros(2, 1, 6, 6))
    metrics.count_flops(model, (1, 6, 6))
    return True


def _read_tail(path: str) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - _STDERR_TAIL))
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return ""


def run_isolated(
    task: EvalTask,
    *,
    timeout: float | None = None,
    memory_limit_mb: int | None = None,
    evaluate: Callable[[EvalTask], dict[str, Any]] = evaluate_task,
) -> dict[str, Any]:
    """Evaluate ``task`` in a forked child; never raises for anything the child does."""
    started = time.time()
    warm_up()
    if evaluate is evaluate_task:
        try:
            load_splits(task.data)  # loaded once per worker; children inherit it
        except Exception:  # the child reports the data error itself
            pass
    read_fd, write_fd = os.pipe()
    fd, stderr_path = tempfile.mkstemp(prefix="nasforge-eval-", suffix=".stderr")
    os.close(fd)
    limit = memory_limit_mb * 1024 * 1024 if memory_limit_mb else None
    pid = os.fork()
    if pid == 0:  # child
        os.close(read_fd)
        _child(evaluate, task, write_fd, stderr_path, limit)
    os.close(write_fd)
    chunks: list[bytes] = []
    timed_out = False
    deadline = None if timeout is None else started + timeout
    try:
        while True:
            wait_for = 1.0 if deadline is None else max(0.0, min(1.0, deadline - time.time()))
            ready, _, _ = select.select([read_fd], [], [], wait_for)
            if ready:
                chunk = os.read(read_fd, 1 << 16)
                if not chunk:
                    break  # EOF: the child closed the pipe (finished or died)
                chunks.append(chunk)
                continue
            if deadline is not None and time.time() >= deadline:
                timed_out = True
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                break
        _, status = os.waitpid(pid, 0)
        stderr_tail = _read_tail(stderr_path)
    finally:
        os.close(read_fd)
        try:
            os.remove(stderr_path)
        except OSError:
            pass
    base = {"trial_number": task.trial_number, "worker": worker_name(), "started_at": started,
            "attempt": task.attempt, "child_pid": pid}
    if timed_out:
        return {**base, "status": "failed", "error": f"timeout after {timeout:g}s",
                "stderr": stderr_tail, "finished_at": time.time()}
    result: dict[str, Any] | None = None
    if chunks:
        try:
            result = pickle.loads(b"".join(chunks))
        except Exception:
            result = None
    if result is None:
        if os.WIFSIGNALED(status):
            sig = signal.Signals(os.WTERMSIG(status))
            retry = sig in RETRYABLE_SIGNALS
            reason = f"evaluation process killed by {sig.name}"
            if sig == signal.SIGKILL and is_out_of_memory(stderr_tail):
                reason, retry = "out-of-memory (killed by SIGKILL)", False
            return {**base, "status": "failed", "error": reason, "retry": retry,
                    "stderr": stderr_tail, "finished_at": time.time()}
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else status
        return {**base, "status": "failed",
                "error": f"evaluation process exited with code {code} without a result",
                "stderr": stderr_tail, "finished_at": time.time()}
    if result.get("status") != "ok" and not result.get("stderr"):
        result["stderr"] = stderr_tail
    result["worker"] = base["worker"]
    result["child_pid"] = pid
    result.setdefault("started_at", started)
    result.setdefault("finished_at", time.time())
    return result


class IsolatedEvaluate:
    """A picklable callable that evaluates a task in a child process with limits."""

    def __init__(self, timeout: float | None = None, memory_limit_mb: int | None = None,
                 evaluate: Callable[[EvalTask], dict[str, Any]] = evaluate_task) -> None:
        self.timeout = timeout
        self.memory_limit_mb = memory_limit_mb
        self.evaluate = evaluate

    def __call__(self, task: EvalTask) -> dict[str, Any]:
        return run_isolated(task, timeout=self.timeout, memory_limit_mb=self.memory_limit_mb,
                            evaluate=self.evaluate)
