"""What an open dashboard costs a running search: busy fraction and wall time of the same quick
search without and with ``nasforge dashboard`` serving its study to a polling page.

Each round runs ``nasforge search PRESET --max-evals N --no-final`` into a fresh study in a
temporary folder, first alone, then with a dashboard process watching that folder and a client
that fetches what the page fetches (``/api/studies``, the study's view and its best trial) every
``--poll`` seconds, as an open browser tab does. Busy fraction is the report's: the workers' summed
evaluation time over (workers x the span from the first start to the last end), read from the
study afterwards. Run it on an otherwise idle machine; the rounds alternate so slow drift of the
machine hits both sides.

    PYTHONPATH=src python benchmarks/dashboard_overhead.py --evals 12 --rounds 2

Prints one line per run and, last, ``busy without / with dashboard: X vs Y; wall: A s vs B s``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from nasforge.report.html import _busy_fraction, load_snapshot


def _fetch(url: str) -> object:
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


def poll_like_a_page(base: str, stop: threading.Event, every: float, counter: list[int]) -> None:
    """Fetch the overview, the study view and its best trial every ``every`` seconds."""
    while not stop.wait(every):
        try:
            studies = _fetch(base + "api/studies")["studies"]  # type: ignore[index]
            for s in studies:
                if s.get("summary"):
                    _fetch(base + f"api/study/{s['id']}")
                    if s["summary"]["best_trial"] is not None:
                        _fetch(base + f"api/study/{s['id']}/trial/{s['summary']['best_trial']}")
            counter[0] += 1
        except OSError:
            pass  # the study may not exist yet


def run_search(preset: str, evals: int, folder: Path, tag: str) -> tuple[float, float | None, int]:
    """One quick search; returns (wall seconds, busy fraction, trials finished)."""
    db = folder / f"{tag}.db"
    cmd = [sys.executable, "-m", "nasforge", "search", preset, "--max-evals", str(evals),
           "--no-final", "--storage", str(db), "--quiet"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    snap = load_snapshot(db)
    workers = (snap.config.get("run") or {}).get("workers")
    return wall, _busy_fraction(snap.trials, workers), sum(1 for t in snap.trials if t.finished)


def with_dashboard(preset: str, evals: int, folder: Path, tag: str,
                   poll: float) -> tuple[float, float | None, int, int]:
    """The same search with a dashboard on ``folder`` and a polling client."""
    dash = subprocess.Popen([sys.executable, "-m", "nasforge", "dashboard", str(folder),
                             "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    try:
        assert dash.stdout is not None
        line = dash.stdout.readline()
        base = line.split("serving ", 1)[1].split()[0]
        stop = threading.Event()
        polls = [0]
        poller = threading.Thread(target=poll_like_a_page, args=(base, stop, poll, polls))
        poller.start()
        try:
            wall, busy, done = run_search(preset, evals, folder, tag)
        finally:
            stop.set()
            poller.join()
        return wall, busy, done, polls[0]
    finally:
        dash.terminate()
        dash.wait(timeout=30)


def main() -> None:
    """Run the rounds and print the comparison (figure last)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--evals", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--poll", type=float, default=2.0, help="seconds between the page's fetches")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    without: list[tuple[float, float]] = []
    withd: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory(prefix="dash-overhead-") as tmp:
        for r in range(args.rounds):
            folder = Path(tmp) / f"round{r}"
            folder.mkdir()
            wall, busy, done = run_search(args.preset, args.evals, folder, "alone")
            print(f"round {r} without dashboard: {done} trials, wall {wall:.1f} s, "
                  f"busy {busy or 0:.1%}", flush=True)
            without.append((wall, busy or 0.0))
            wall, busy, done, polls = with_dashboard(args.preset, args.evals, folder, "watched",
                                                     args.poll)
            print(f"round {r} with dashboard:    {done} trials, wall {wall:.1f} s, "
                  f"busy {busy or 0:.1%} ({polls} page polls)", flush=True)
            withd.append((wall, busy or 0.0))
    mean = statistics.fmean
    print(f"busy without / with dashboard: {mean(b for _, b in without):.1%} vs "
          f"{mean(b for _, b in withd):.1%}; wall: {mean(w for w, _ in without):.1f} s vs "
          f"{mean(w for w, _ in withd):.1f} s ({args.preset}, {args.evals} evals, "
          f"{args.rounds} round(s))")


if __name__ == "__main__":
    main()
