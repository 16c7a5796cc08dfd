"""Kill a small search 20 times and resume it each time: nothing finished may be lost.

A tiny search on the synthetic set (one worker, so it is deterministic trial by trial) with a
short final training runs first without faults (the reference), then again in a second study
that is SIGKILLed (and once Ctrl-C'd twice) at 20 moments and resumed with ``--resume`` after
each:

- deterministic kill points reached through ``NASFORGE_FAULTS`` (``nasforge.execution.faults``):
  the driver between a trial's row and its submit, the driver inside the store write of a
  finished trial (rolled back), an evaluation child, a pool worker (from its child), the
  driver and its workers from inside an evaluation, during final training (driver and
  workers, and the final run's child alone);
- random moments: the whole process group SIGKILLed 1.5-6 s after a start, and one double
  Ctrl-C at a random moment.

After each kill: every trial that was finished before it must still be stored unchanged, and
no process of the killed command may be alive (orphans). At the end the killed study must equal
the reference trial by trial (same genome, status and validation accuracy) and in its final
runs (same test accuracy), with no trial stored twice. Prints, last:

    kills: 20, lost: 0, duplicated: 0, differing: 0, orphans: 0

    PYTHONPATH=src python benchmarks/faults.py [--out experiments/faults/faults.txt] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from nasforge.storage import StudyStorage

MAX_EVALS = 24
CONFIG = {
    "name": "faults", "seed": 0,
    "data": {"dataset": "synthetic", "val_fraction": 0.2},
    "space": {"name": "global", "settings": {"max_nodes": 6, "head": "gap"}},
    "strategy": {"name": "evolution", "settings": {"population": 6, "sample": 2}},
    "budget": {"epochs": 2, "width": 4, "batch_size": 32, "max_steps": 6, "precision": "fp32",
               "channels_last": False, "threads": 1},
    "run": {"max_evals": MAX_EVALS, "workers": 1, "keep_best": 2, "grace_period": 2},
    "final": {"top": 1, "seeds": 2, "budget": {"epochs": 6, "width": 4, "batch_size": 32,
                                               "max_steps": 20, "precision": "fp32",
                                               "channels_last": False, "threads": 1}},
}
# (label, NASFORGE_FAULTS rules, kills it makes when it fires); "random" = SIGKILL the group
# at a random moment; "ctrl-c" = two Ctrl-C at a random moment
PLAN: list[tuple[str, str, int]] = [
    ("driver: trial row written, not submitted", "trial-added:2=kill", 1),
    ("driver: inside the store write of a finished trial", "store-finish:3=kill", 1),
    ("evaluation child, then driver at a trial row", "eval-start:4.1=kill,trial-added:6=kill", 2),
    ("pool worker, then driver in a store write", "eval-start:7.1=kill-parent,store-finish:8=kill", 2),
    ("random moment", "random", 1),
    ("driver at a trial row", "trial-added:11=kill", 1),
    ("random moment", "random", 1),
    ("driver and workers from inside an evaluation", "eval-start:13.1=kill-group", 1),
    ("driver inside a store write", "store-finish:15=kill", 1),
    ("random moment", "random", 1),
    ("two Ctrl-C at a random moment", "ctrl-c", 1),
    ("random moment", "random", 1),
    ("driver at a trial row", "trial-added:20=kill", 1),
    ("driver and workers during final training", "final-epoch:2=kill-group", 1),
    ("the final run's child", "final-epoch:3=kill", 1),
    ("random moment during final training", "random-late", 1),
    ("random moment", "random", 1),
]


def run_command(args: list[str], cwd: Path, env: dict[str, str], action: str,
                rng: random.Random) -> tuple[int, float | None, int]:
    """Run ``nasforge`` in a session of its own; returns (exit status, when it was killed by
    this function, its session id)."""
    extra = {} if action in ("random", "random-late", "ctrl-c") else {"NASFORGE_FAULTS": action}
    proc = subprocess.Popen([sys.executable, "-m", "nasforge", *args], cwd=cwd,
                            env={**env, **extra}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    killed_at = None
    if action in ("random", "random-late", "ctrl-c"):
        delay = {"random": (1.5, 6.0), "random-late": (8.0, 12.0),
                 "ctrl-c": (6.0, 10.0)}[action]  # Ctrl-C: once the search is running
        delay = rng.uniform(*delay)
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            killed_at = time.time()
            if action == "ctrl-c":
                os.killpg(proc.pid, signal.SIGINT)
                time.sleep(0.3)
                os.killpg(proc.pid, signal.SIGINT)
            else:
                os.killpg(proc.pid, signal.SIGKILL)
    try:
        code = proc.wait(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        code = proc.wait()
    return code, killed_at, proc.pid


def session_alive(sid: int) -> list[str]:
    """Live (non-zombie) processes of session ``sid``."""
    out = subprocess.run(["ps", "-eo", "sid=,stat=,pid=,args="], capture_output=True,
                         text=True).stdout
    return [line.strip() for line in out.splitlines()
            if line.split()[0] == str(sid) and not line.split()[1].startswith("Z")]


def snapshot(db: Path) -> dict[int, tuple[Any, ...]]:
    """Finished trials by number: (genome key, status, val acc, finished at)."""
    if not db.exists():
        return {}
    with StudyStorage.open(db) as store:
        return {t.number: (t.genome_key, t.status, t.val_acc, t.finished_at)
                for t in store.trials() if t.finished}


def finals(db: Path) -> list[tuple[str, int, float | None]]:
    """The ok final runs: (genome key, seed, test acc), sorted."""
    with StudyStorage.open(db) as store:
        return sorted((f.genome_key, f.seed, f.test_acc) for f in store.final_runs()
                      if f.status == "ok")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="experiments/faults/faults.txt")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random kill moments")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    lines: list[str] = []

    def say(text: str) -> None:
        print(text, flush=True)
        lines.append(text)

    work = Path(tempfile.mkdtemp(prefix="nasforge-faults-"))
    (work / "faults.yaml").write_text(yaml.safe_dump(CONFIG))
    src = Path(__file__).resolve().parent.parent / "src"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": f"{src}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    env.pop("NASFORGE_FAULTS", None)
    started = time.time()
    code, _, _ = run_command(["search", "faults.yaml", "--storage", "ref.db", "--quiet"], work,
                             env, "", rng)
    reference = snapshot(work / "ref.db")
    say(f"reference run: exit {code}, {len(reference)} trials, final runs "
        f"{[round(a or 0, 4) for _, _, a in finals(work / 'ref.db')]}, "
        f"{time.time() - started:.0f}s")

    db = work / "k.db"
    kills = lost = orphans = 0
    seen: dict[int, tuple[Any, ...]] = {}
    plan = list(PLAN)
    step = 0
    while kills < 20 and step < 60:
        label, action, count = plan[step] if step < len(plan) else ("random moment", "random", 1)
        step += 1
        cmd = ["search", "faults.yaml", "--storage", "k.db", "--quiet"]
        if db.exists():
            cmd.append("--resume")
        code, killed_at, sid = run_command(cmd, work, env, action, rng)
        fired = code == -signal.SIGKILL or killed_at is not None or (
            action.startswith(("eval-start", "final-epoch")) and code in (0, 1))
        time.sleep(1.0)
        left = len(session_alive(sid))
        now = snapshot(db)
        gone = [n for n, row in seen.items() if now.get(n) != row]
        lost += len(gone)
        seen = now
        made = min(count, 20 - kills) if fired else 0
        kills += made
        orphans += left
        say(f"{step:2d}. {label} [{action}]: exit {code}, kills {made}, finished trials "
            f"{len(now)}, changed {len(gone)}, orphans {left}")

    code, _, _ = run_command(["search", "faults.yaml", "--storage", "k.db", "--resume",
                              "--quiet"], work, env, "", rng)
    final = snapshot(db)
    with StudyStorage.open(db) as store:
        trials = store.trials()
        running = store.count("running")
    keys = [(t.genome_key, tuple(sorted(t.budget.items()))) for t in trials]
    duplicated = len(keys) - len(set(keys)) + max(0, len(trials) - len(reference))
    differing = sum(1 for n, row in reference.items()
                    if n not in final or final[n][:3] != row[:3])
    lost += sum(1 for n in reference if n not in final)
    final_ok = finals(db) == finals(work / "ref.db")
    differing += 0 if final_ok else 1
    attempts = sum(1 for t in trials if t.attempts > 1)
    say(f"last resume: exit {code}; {len(final)} of {len(reference)} trials finished, "
        f"{running} running, {attempts} trial(s) evaluated more than once; final runs "
        f"{'equal' if final_ok else 'DIFFER'}: {[round(a or 0, 4) for _, _, a in finals(db)]}")
    say(f"total {time.time() - started:.0f}s; work folder {work}")
    say(f"kills: {kills}, lost: {lost}, duplicated: {duplicated}, differing: {differing}, "
        f"orphans: {orphans}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    return 0 if (kills == 20 and lost == duplicated == differing == orphans == 0) else 1


if __name__ == "__main__":
    sys.exit(main())
