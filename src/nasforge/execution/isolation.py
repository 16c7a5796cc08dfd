"""Run each evaluation in a child process of its worker, so a crash costs one evaluation.

The worker process (a pool process, an MPI rank or a Dask worker) forks one child per
evaluation (``os.fork``, so it works inside daemonic Dask workers and MPI ranks alike). The
child inherits the data the worker already loaded (copy-on-write: start-up is cheap),
optionally gets an address-space limit, writes its stderr to a file and sends its result back
through a pipe. When the child ends, every byte it held returns to the system. The parent turns
whatever happened into an :class:`~nasforge.execution.results.EvalResult`:

- a result sent back: as is (ok, or failed with the trainer's reason, e.g. NaN loss);
- an exception in the child: failed with its text; out-of-memory is recognised and named;
- killed by SIGKILL/SIGTERM/SIGINT from outside: failed with ``retry: True`` (the runner
  retries it once);
- killed by the kernel's OOM killer (its cgroup's ``oom_kill`` count rose): failed,
  out-of-memory, not retried;
- any other signal (a segfault, say): failed with the signal name, not retried;
- past the timeout: killed by us, failed with reason "timeout", not retried.

The child runs in its own process group (a terminal's Ctrl-C goes to the runner, which lets
running evaluations finish within its grace period) and dies with its worker
(``PR_SET_PDEATHSIG``), so no evaluation outlives the pool that started it. Its result is
length-prefixed: the worker returns as soon as the whole result is in and reaps the exiting
child at its next evaluation (tearing down a torch process's address space takes as long as
forking it). The end of a child is its exit (a pidfd), never the pipe's EOF, which a child
forked meanwhile by another thread could hold open; forks are serialised by a lock.
"""

from __future__ import annotations

import ctypes
import faulthandler
import functools
import io
import os
import pickle
import resource
import select
import signal
import sys
import tempfile
import threading
import time
import traceback
from typing import Any, Callable

from nasforge.execution.results import EvalResult
from nasforge.execution.tasks import EvalTask, evaluate_task, worker_name

RETRYABLE_SIGNALS = {signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
_STDERR_TAIL = 4000
_OOM_MARKERS = ("out of memory", "can't allocate memory", "cannot allocate memory",
                "memoryerror", "std::bad_alloc", "outofmemoryerror")
_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15
EVAL_PROCESS_NAME = "nasforge-eval"  # an evaluation child's process name (Linux ``comm``)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


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


@functools.lru_cache(maxsize=1)
def _libc() -> Any:
    """The C library (for ``prctl`` and ``mallopt``); loaded in the worker, before any fork:
    a forked child of a threaded process must not go looking for it (``find_library`` runs
    a subprocess)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl  # noqa: B018 - Linux only
        return libc
    except (OSError, AttributeError):
        return None


def _oom_kills() -> int | None:
    """The kernel OOM killer's kill count in this process's memory cgroup (None if unknown)."""
    try:
        with open("/proc/self/cgroup") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    candidates = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # cgroup v2
            candidates.append(f"/sys/fs/cgroup{path}/memory.events")
        elif "memory" in controllers.split(","):  # cgroup v1 (kernel >= 4.13)
            candidates.append(f"/sys/fs/cgroup/memory{path}/memory.oom_control")
    candidates += ["/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control"]
    for path in candidates:
        try:
            with open(path) as fh:
                for line in fh:
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
        except (OSError, ValueError):
            continue
    return None


def die_with_parent() -> None:
    """Have the kernel kill this process when the thread that started it ends (Linux; a no-op
    elsewhere): pool workers of a driver that was killed do not linger as orphans."""
    parent = os.getppid()
    libc = _libc()
    if libc is None:
        return
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def _child_setup(parent_pid: int) -> None:
    """Process-level settings of a fresh evaluation child."""
    # Own process group: a terminal's Ctrl-C reaches the runner (which lets running
    # evaluations finish) but not the evaluation; a timeout kills the whole group.
    os.setpgid(0, 0)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:  # a crashing evaluation leaves a failed trial, not a core file of its whole heap
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ValueError, OSError):
        pass
    libc = _libc()
    if libc is not None:
        # named, so a stop can cut evaluations without killing their workers
        # (nasforge.execution.stops.kill_evaluations)
        libc.prctl(_PR_SET_NAME, EVAL_PROCESS_NAME.encode(), 0, 0, 0)
        # die with the worker that forked us (a dead or terminated worker leaves no orphans)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:
            os._exit(1)
        # Fixed malloc thresholds. Dask's nanny sets MALLOC_TRIM_THRESHOLD_=65536 in its
        # workers, which turns off glibc's adaptive mmap threshold: every tensor then comes
        # from a fresh mmap and training spends as long in page faults as in compute (2x
        # slower, measured). Large fixed thresholds behave like the adaptive default; the
        # child exits after one evaluation, so nothing is held for long.
        try:
            libc.mallopt(_M_MMAP_THRESHOLD, 32 * 1024 * 1024)
            libc.mallopt(_M_TRIM_THRESHOLD, 64 * 1024 * 1024)
        except AttributeError:  # not glibc
            pass


def _child(
    evaluate: Callable[[EvalTask], EvalResult],
    task: EvalTask,
    write_fd: int,
    stderr_path: str,
    memory_limit_bytes: int | None,
    parent_pid: int,
) -> None:
    """Body of the forked child; never returns."""
    code = 0
    try:
        _child_setup(parent_pid)
        fd = os.open(stderr_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(fd, 2)
        os.close(fd)
        # Python-level stderr too (a test runner may have replaced sys.stderr), and the
        # traceback of a crash (segfault, abort) goes to the captured stderr
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), write_through=True)
        faulthandler.enable(file=sys.stderr)
        faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True)
        try:
            threads = int(os.environ.get("NASFORGE_EVAL_THREADS", "0"))
            if threads > 0:
                import torch

                torch.set_num_threads(threads)
            if memory_limit_bytes:
                limit = _vm_size_bytes() + memory_limit_bytes
                resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            result = evaluate(task)
            if not isinstance(result, EvalResult):
                raise TypeError(f"an evaluate function must return an EvalResult, not "
                                f"{type(result).__name__}")
            error = str(result.error or "") + str(result.stderr or "")
            if (result.status == "failed" and is_out_of_memory(error)
                    and not str(result.error or "").startswith("out-of-memory")):
                result.error = f"out-of-memory: {result.error}"
        except BaseException as exc:  # noqa: BLE001 - everything becomes a failed result
            text = f"{type(exc).__name__}: {exc}"
            result = EvalResult.failure(
                f"out-of-memory: {text}" if is_out_of_memory(text) else text,
                stderr=traceback.format_exc(limit=20))
        try:
            payload = pickle.dumps(result)
        except Exception as exc:  # noqa: BLE001 - e.g. a lambda in the result
            payload = pickle.dumps(EvalResult.failure(
                f"the evaluation's result cannot be sent back ({type(exc).__name__}: {exc})"))
        view = memoryview(len(payload).to_bytes(8, "big") + payload)
        while view:
            written = os.write(write_fd, view)
            view = view[written:]
    except BaseException:  # noqa: BLE001
        code = 1
    finally:
        os._exit(code)


def _single_threaded() -> None:
    """Keep the calling thread of a worker at one OpenMP thread before it touches torch.

    OpenMP settings are per thread: Dask runs tasks in pool threads that ``bind_worker`` (run
    on the event loop) never saw. Loading data with two threads would start an OpenMP pool in
    the worker, and a child forked from such a process hangs in its first parallel region.
    """
    import torch

    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)


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


_FORK_LOCK = threading.Lock()
_PIPE_FDS: set[int] = set()  # read ends of the result pipes of this process's running children


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def _pidfd_open(pid: int) -> int | None:
    """A file descriptor that becomes readable when ``pid`` exits (Linux >= 5.3)."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


_UNREAPED: list[int] = []  # children whose result came back, reaped later (their exit is slow)


def _reap_finished() -> None:
    """Reap the children that sent their result and have exited since (never blocks)."""
    for pid in list(_UNREAPED):
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done = pid
        if done == pid:
            _UNREAPED.remove(pid)


def _complete(chunks: list[bytes]) -> bool:
    """Whether ``chunks`` hold a whole length-prefixed result."""
    size = sum(len(c) for c in chunks)
    if size < 8:
        return False
    head = b"".join(chunks)[:8] if len(chunks[0]) < 8 else chunks[0][:8]
    return size >= 8 + int.from_bytes(head, "big")


def _drain(fd: int, chunks: list[bytes]) -> bool:
    """Read what the non-blocking ``fd`` holds into ``chunks``; True at end of file."""
    while True:
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            return False
        if not chunk:
            return True
        chunks.append(chunk)


def _kill_group(pid: int) -> None:
    for kill in (os.killpg, os.kill):
        try:
            kill(pid, signal.SIGKILL)
            return
        except (ProcessLookupError, PermissionError):
            continue


def run_isolated(
    task: EvalTask,
    *,
    timeout: float | None = None,
    memory_limit_mb: int | None = None,
    evaluate: Callable[[EvalTask], EvalResult] = evaluate_task,
) -> EvalResult:
    """Evaluate ``task`` in a forked child; never raises for anything the child does.

    ``timeout`` counts from the fork (the worker's one-off warm-up and data load are not the
    evaluation's); ``memory_limit_mb`` caps the child's address space above what it inherits.
    The worker loads ``task.data`` once, before forking, for ``evaluate_task`` and for any
    ``evaluate`` with a true ``loads_data`` attribute, so children share it copy-on-write.
    """
    started = time.time()
    with _FORK_LOCK:
        _reap_finished()
    _single_threaded()
    warm_up()
    if evaluate is evaluate_task or getattr(evaluate, "loads_data", False):
        from nasforge.data.task_splits import load_splits

        try:
            load_splits(task.data)  # loaded once per worker; children inherit it
        except Exception:  # the child reports the data error itself
            pass
    fd, stderr_path = tempfile.mkstemp(prefix="nasforge-eval-", suffix=".stderr")
    os.close(fd)
    limit = memory_limit_mb * 1024 * 1024 if memory_limit_mb else None
    oom_before = _oom_kills()
    _libc()
    parent = os.getpid()
    with _FORK_LOCK:  # several threads may fork at once (a thread-pool executor, say)
        read_fd, write_fd = os.pipe()
        forked_at = time.time()
        pid = os.fork()
        if pid == 0:  # child
            for other in _PIPE_FDS:  # other evaluations' pipe ends (EOF is theirs)
                _close_quietly(other)
            os.close(read_fd)
            _child(evaluate, task, write_fd, stderr_path, limit, parent)
        os.close(write_fd)
        _PIPE_FDS.add(read_fd)
    try:
        os.setpgid(pid, pid)  # also done by the child: whichever runs first
    except OSError:
        pass
    pidfd = _pidfd_open(pid)
    chunks: list[bytes] = []
    timed_out = False
    reaped = False
    status = 0
    deadline = None if timeout is None else forked_at + timeout
    try:
        os.set_blocking(read_fd, False)
        while True:
            # The result is read as it comes; the child's end is its exit (pidfd, else a short
            # poll), not the pipe's EOF, which a child forked meanwhile by another thread of
            # this process could hold off.
            wait_for = 1.0 if deadline is None else max(0.0, min(1.0, deadline - time.time()))
            if pidfd is None:
                wait_for = min(wait_for, 0.05)
            watch = [read_fd] if pidfd is None else [read_fd, pidfd]
            ready, _, _ = select.select(watch, [], [], wait_for)
            eof = read_fd in ready and _drain(read_fd, chunks)
            if chunks and _complete(chunks):
                # The whole result is here: return now and reap the child later; tearing
                # down its address space takes as long as the fork did.
                with _FORK_LOCK:
                    _UNREAPED.append(pid)
                reaped = True
                break
            if eof or pidfd is None or pidfd in ready:
                done, status = os.waitpid(pid, 0 if eof else os.WNOHANG)
                if done == pid:
                    reaped = True
                    _drain(read_fd, chunks)
                    break
            if deadline is not None and time.time() >= deadline:
                timed_out = True
                try:  # where it was stuck goes into its stderr, then it is killed
                    os.kill(pid, signal.SIGUSR1)
                    time.sleep(0.2)
                except ProcessLookupError:
                    pass
                _kill_group(pid)
                _, status = os.waitpid(pid, 0)
                reaped = True
                break
        stderr_tail = _read_tail(stderr_path)
    finally:
        if not reaped:  # interrupted while waiting (the worker is being stopped): no orphans
            _kill_group(pid)
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        with _FORK_LOCK:
            _PIPE_FDS.discard(read_fd)
            os.close(read_fd)
        if pidfd is not None:
            os.close(pidfd)
        try:
            os.remove(stderr_path)
        except OSError:
            pass
    base = {"trial_number": task.trial_number, "worker": worker_name(), "started_at": started,
            "attempt": task.attempt, "child_pid": pid}
    if timed_out:
        return EvalResult.failure(f"timeout after {timeout:g}s", stderr=stderr_tail, **base)
    result: EvalResult | None = None
    if chunks and _complete(chunks):
        try:
            result = pickle.loads(b"".join(chunks)[8:])
        except Exception:
            result = None
        if not isinstance(result, EvalResult):
            result = None
    if result is None:
        if os.WIFSIGNALED(status):
            sig = signal.Signals(os.WTERMSIG(status))
            retry = sig in RETRYABLE_SIGNALS
            reason = f"evaluation process killed by {sig.name}"
            if sig == signal.SIGKILL:
                oom_after = _oom_kills()
                if oom_before is not None and oom_after is not None and oom_after > oom_before:
                    reason, retry = "out-of-memory (killed by the kernel OOM killer)", False
                elif is_out_of_memory(stderr_tail):
                    reason, retry = "out-of-memory (killed by SIGKILL)", False
            return EvalResult.failure(reason, stderr=stderr_tail, retry=retry, **base)
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else status
        return EvalResult.failure(f"evaluation process exited with code {code} without a "
                                  "result", stderr=stderr_tail, **base)
    if result.status != "ok" and not result.stderr:
        result.stderr = stderr_tail
    result.worker = base["worker"]
    result.child_pid = pid
    if result.trial_number is None:
        result.trial_number, result.attempt = task.trial_number, task.attempt
    if result.started_at is None:
        result.started_at = started
    if result.finished_at is None:
        result.finished_at = time.time()
    return result


class IsolatedEvaluate:
    """A picklable callable that evaluates a task in a child process with limits."""

    def __init__(self, timeout: float | None = None, memory_limit_mb: int | None = None,
                 evaluate: Callable[[EvalTask], EvalResult] = evaluate_task) -> None:
        self.timeout = timeout
        self.memory_limit_mb = memory_limit_mb
        self.evaluate = evaluate

    def __call__(self, task: EvalTask) -> EvalResult:
        return run_isolated(task, timeout=self.timeout, memory_limit_mb=self.memory_limit_mb,
                            evaluate=self.evaluate)
