"""Summarise a one-shot study: the supernet trial's cell and history, the final test accuracy
and the NAS-Bench-201 table's CIFAR-10 accuracy of the same cell (a second opinion).

Usage: ``python experiments/darts/summarize.py STUDY.db [STUDY.db ...]``
"""

from __future__ import annotations

import sys

from nasforge.storage.sqlite import StudyStorage


def main(paths: list[str]) -> int:
    """Print one block per study; exit status 0."""
    from nasforge.spaces.nb201 import parse_nb201

    try:
        from nasforge.benchmarks.nb201_table import load_table

        table = load_table()
    except Exception as exc:  # noqa: BLE001 - the table is optional
        table, why = None, f"{type(exc).__name__}: {exc}"
    for path in paths:
        with StudyStorage.open(path) as store:
            study = store.study()
            trials = store.trials()
            finals = store.final_runs()
        print(f"== {path}: strategy {study['config']['strategy']['name']}")
        for t in trials:
            if t.kind != "supernet":
                continue
            m = t.metrics
            if t.status != "ok":
                print(f"trial {t.number} {t.status}: {t.error}")
                continue
            print(f"trial {t.number}: supernet search {m['search_seconds']:.0f}s, "
                  f"{len(m['skips_per_epoch'])} epoch(s), stopped early: {m['stopped_early']}")
            print(f"  epoch seconds: {m['epoch_seconds']}")
            print(f"  supernet acc per epoch (architecture half): "
                  f"{[round(c['val_acc'], 4) for c in t.curve]}")
            print(f"  skip connections per epoch: {m['skips_per_epoch']}")
            for e, cell in enumerate(m["cell_per_epoch"], 1):
                print(f"  epoch {e} cell: {cell}")
            last = m["alpha_history"][-1]["cell"]
            ops = m["operations"]
            print("  final softmax(alpha) per edge (" + ", ".join(ops) + "):")
            for row in last:
                print("    " + "  ".join(f"{p:.4f}" for p in row))
            print(f"  cell: {m['cell']}")
            if table is not None:
                print(f"  NAS-Bench-201 table, CIFAR-10 test acc of this cell: "
                      f"{table.lookup(parse_nb201(m['cell'])):.2f}% (table best "
                      f"{table.best():.2f}%)")
            else:
                print(f"  NAS-Bench-201 table not available ({why})")
        for f in finals:
            print(f"final run: trial {f.trial_number} seed {f.seed} width {f.budget.get('width')}"
                  f" epochs {f.budget.get('epochs')}: test acc {f.test_acc} ({f.status})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
