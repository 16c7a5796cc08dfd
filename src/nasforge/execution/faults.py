"""Named fault points for tests and ``benchmarks/faults.py``: sleep or die at a chosen moment.

``NASFORGE_FAULTS`` holds comma-separated rules ``POINT[:KEY]=ACTION``; a process that reaches
``fault_point(POINT, KEY)`` runs ACTION when POINT matches and KEY is absent from the rule or
equal to the key given (a trial number, ``trial.attempt``, an epoch). Actions:

- ``sleep:S``: sleep S seconds (slows a phase so a test can interrupt it);
- ``kill``: SIGKILL this process (a driver, a worker or an evaluation child dies here);
- ``kill-parent``: SIGKILL this process's parent (from an evaluation child: its worker);
- ``kill-group``: SIGKILL the process group of this process's session leader (from an
  evaluation child: the driver and its workers, as a node that is lost).

Points: ``trial-added`` (driver, after a trial's row is written and before it is submitted;
key: trial number), ``store-finish`` (driver, inside the transaction that stores a finished
trial, before it commits; key: trial number), ``eval-start`` (evaluation child; key
``trial.attempt``), ``final-epoch`` (final-run child after each epoch; key: epoch).
Without the variable a fault point costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal
import time

FAULTS_ENV = "NASFORGE_FAULTS"


def fault_point(point: str, key: object = None) -> None:
    """Run the action ``$NASFORGE_FAULTS`` sets for ``point`` (and ``key``), if any."""
    spec = os.environ.get(FAULTS_ENV)
    if not spec:
        return
    for rule in spec.split(","):
        where, _, action = rule.strip().partition("=")
        name, _, wanted = where.partition(":")
        if name != point or (wanted and wanted != str(key)):
            continue
        if action.startswith("sleep:"):
            time.sleep(float(action[len("sleep:"):]))
        elif action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif action == "kill-parent":
            os.kill(os.getppid(), signal.SIGKILL)
        elif action == "kill-group":
            os.killpg(os.getsid(0), signal.SIGKILL)
