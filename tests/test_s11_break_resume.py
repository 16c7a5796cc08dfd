"""Adversarial checks (session 11): a final run cut by Ctrl-C keeps its ``interrupted`` row
(the attempts' history) and ``--resume`` trains the seed in a new row; ``nasforge best`` then
must not go on saying "--resume trains it" of that seed."""

from __future__ import annotations

from typing import Any

from nasforge.cli import main
from nasforge.storage import StudyStorage
from tests.test_export import trained_study  # noqa: F401


def _cut(storage: StudyStorage, seed: int) -> dict[str, Any]:
    """Store one final run of trial 1, seed ``seed``, cut by Ctrl-C; the run's fields."""
    trial = storage.trial(1)
    run = dict(trial_number=1, genome_key=trial.genome_key, genome=trial.genome,
               budget={"epochs": 3, "width": 4})
    storage.start_final_run(**run, seed=seed)
    storage.add_final_run(**run, seed=seed, status="interrupted", val_acc=None, test_acc=None,
                          params=None, metrics={"error": "interrupted (Ctrl-C)"},
                          checkpoint=None)
    return run


def test_best_does_not_ask_for_a_resume_of_a_seed_trained_since(
        trained_study: dict[str, Any], capsys) -> None:  # noqa: F811
    study = trained_study["study"]
    with StudyStorage.open(study, write=True) as storage:
        run = [_cut(storage, seed) for seed in (0, 1)][0]  # both cut by Ctrl-C
        storage.start_final_run(**run, seed=0)  # the resume trained seed 0 again
        storage.add_final_run(**run, seed=0, status="ok", val_acc=None, test_acc=0.9,
                              params=10, metrics={}, checkpoint=None)
    try:
        assert main(["best", str(study)]) == 0
        lines = [ln.strip() for ln in capsys.readouterr().out.splitlines() if " seed " in ln]
        assert lines == [
            "trial 1 seed 0 width 4: interrupted (Ctrl-C; trained again since)",
            "trial 1 seed 1 width 4: interrupted (Ctrl-C; --resume trains it)",
            "trial 1 seed 0 width 4: test acc 0.9000",
        ]
    finally:
        import sqlite3

        with sqlite3.connect(study) as conn:  # leave the module's study as it was
            conn.execute("DELETE FROM final_runs")


def test_only_the_latest_of_two_cut_tries_asks_for_a_resume(
        trained_study: dict[str, Any], capsys) -> None:  # noqa: F811
    study = trained_study["study"]
    with StudyStorage.open(study, write=True) as storage:
        for _ in range(2):  # seed 0 cut by Ctrl-C, resumed, and cut again
            _cut(storage, 0)
    try:
        main(["best", str(study)])
        lines = [ln.strip() for ln in capsys.readouterr().out.splitlines() if " seed " in ln]
        assert lines == [
            "trial 1 seed 0 width 4: interrupted (Ctrl-C; tried again since, and cut again)",
            "trial 1 seed 0 width 4: interrupted (Ctrl-C; --resume trains it)",
        ]
    finally:
        import sqlite3

        with sqlite3.connect(study) as conn:  # leave the module's study as it was
            conn.execute("DELETE FROM final_runs")
