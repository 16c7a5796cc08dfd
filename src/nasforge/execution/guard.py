"""The ``if __name__ == "__main__":`` guard of scripts that run a search.

Local workers are started with the ``spawn`` method, which imports the main script in every
new worker. A script that runs a search at its top level, without the guard, therefore starts
the search again in each worker as it starts; the workers die and every evaluation is lost.
Two checks say so in one line: in the worker (a search started while the process is still
bootstrapping) and in the driver (a pool none of whose workers got past start-up, run from
a script).
"""

from __future__ import annotations

import multiprocessing
import sys
from pathlib import Path

from nasforge.errors import ConfigError


def _script() -> str | None:
    """The file of the ``__main__`` module when it is a user's script (not nasforge's own
    command line, not an interactive session), else None."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or not path:
        return None
    spec = getattr(main, "__spec__", None)
    if spec is not None and str(getattr(spec, "name", "")).startswith("nasforge"):
        return None  # python -m nasforge
    entry = getattr(main, "main", None)
    if str(getattr(entry, "__module__", "")).startswith("nasforge."):
        return None  # the `nasforge` console script
    return str(Path(path).name)


def guard_message(script: str | None = None) -> str:
    """The one line that explains a missing guard in ``script``."""
    where = f"{script} starts" if script else "the main script starts"
    return (f"the worker processes died while starting: {where} the search when it is "
            "imported, and each new worker imports it (start method spawn); put the code that "
            "runs the search under `if __name__ == \"__main__\":`")


def check_not_bootstrapping() -> None:
    """Raise ConfigError in a worker that is still importing the main script: a search
    started there comes from a script without the guard."""
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        # the script is still being run as __mp_main__ here: name it by the command line
        raise ConfigError(guard_message(_script() or Path(sys.argv[0]).name or None))


def broken_pool_hint(workers_started: int) -> ConfigError | None:
    """The error to raise instead of restarting a broken local pool when the likely cause is
    a missing guard: none of its ``workers_started`` workers got past start-up (importing the
    main script) and the driver runs from a user's script (the local pool always spawns its
    workers). None otherwise: a worker killed later is replaced by a fresh pool."""
    if workers_started > 0:
        return None
    script = _script()
    return ConfigError(guard_message(script)) if script else None
