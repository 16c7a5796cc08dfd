"""Final training: after a search, from a study (`--best`, `--top K`, `--trial N`) and from a
genome file: whole training set, test accuracy over seeds, checkpoints, stored in the study."""

from __future__ import annotations

import json
from pathlib import Path
import random
import re
from concurrent.futures import Executor, Future

import pytest
import torch
import yaml

from conftest import tiny_config_dict
from nasforge.execution.results import EvalResult
from nasforge.api import train_final
from nasforge.cli import main
from nasforge.config import config_from_dict
from nasforge.evaluation.budget import Budget
from nasforge.evaluation.metrics import evaluate_accuracy
from nasforge.execution.tasks import load_splits
from nasforge.spaces import get_space
from nasforge.storage import StudyStorage

FINAL = {"top": 1, "seeds": 2, "budget": {"epochs": 2, "width": 6, "max_steps": 4, "batch_size": 32}}


@pytest.mark.timeout(240)
def test_search_then_final_training_and_train_command(tmp_path, capsys) -> None:
    raw = tiny_config_dict(run={"max_evals": 4, "workers": 2}, final=FINAL)
    cfg = tmp_path / "f.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    db = tmp_path / "f.db"
    assert main(["search", str(cfg), "--storage", str(db)]) == 0
    out = capsys.readouterr()
    # live progress of each final run, then the mean and spread over the two seeds
    assert re.search(r"final: trial \d+ seed [01]: epoch 2/2, train loss [0-9.]+, test acc", out.err)
    summary = re.search(r"final: trial (\d+): test acc ([0-9.]+) ± ([0-9.]+) over 2 seed\(s\)", out.out)
    assert summary, out.out

    config = config_from_dict(raw, "f")
    space = get_space(config.space.name, **config.space.settings)
    splits = load_splits(config.data.task_dict())
    with StudyStorage.open(db) as store:
        runs = store.final_runs()
        best = store.best(1)[0]
    assert sorted(r.seed for r in runs) == [0, 1]
    # the live progress files are removed once the runs are stored; the weights stay
    final_dir = tmp_path / "f_files" / "final"
    assert sorted(p.suffix for p in final_dir.iterdir()) == [".pt", ".pt"], list(final_dir.iterdir())
    assert all(r.trial_number == best.number == int(summary.group(1)) for r in runs)
    mean = sum(r.test_acc for r in runs) / 2
    assert abs(mean - float(summary.group(2))) < 1e-4
    for run in runs:
        # the stored test accuracy is the checkpoint's accuracy on the test split
        model = space.build(space.genome_from_dict(run.genome), splits.input_shape,
                            splits.num_classes, 6)
        model.load_state_dict(torch.load(run.checkpoint, weights_only=True))
        acc, _ = evaluate_accuracy(model.eval(), splits.test_x, splits.test_y, splits.mean,
                                   splits.std)
        assert acc == pytest.approx(run.test_acc, abs=1e-6)
        assert run.metrics["epochs_run"] == 2

    # a resumed search does not train its stored final runs again; a third seed trains only
    # that seed; --retrain trains a stored run again
    assert main(["search", str(cfg), "--storage", str(db), "--resume"]) == 0
    err = capsys.readouterr().err
    assert len(re.findall(r"final: trial \d+ seed [01]: test acc [0-9.]+ \(stored, not retrained\)",
                          err)) == 2, err
    assert "epoch 1/2" not in err
    assert main(["train", str(db), "--best"]) == 0  # the study's final.seeds (2), both stored
    assert len(re.findall(r"\(stored, not retrained\)", capsys.readouterr().err)) == 2
    assert main(["train", str(db), "--best", "--seeds", "0"]) == 2
    assert "--seeds must be at least 1" in capsys.readouterr().err
    assert main(["train", str(db), "--best", "--seeds", "3"]) == 0
    err = capsys.readouterr().err
    assert "seed 2: epoch 2/2" in err and "seed 0: epoch" not in err and "seed 1: epoch" not in err
    assert main(["train", str(db), "--best", "--seeds", "1", "--retrain"]) == 0
    assert "seed 0: epoch 2/2" in capsys.readouterr().err
    with StudyStorage.open(db) as store:
        assert sorted(r.seed for r in store.final_runs()) == [0, 0, 1, 2]
        retrained = [r for r in store.final_runs() if r.seed == 0]
    assert retrained[0].test_acc == pytest.approx(retrained[1].test_acc, abs=1e-6)  # same seed

    # more final runs of the same study: the top 2 trials, one seed, other flags
    assert main(["train", str(db), "--top", "2", "--seeds", "1", "--epochs", "1", "--width", "4",
                 "--max-steps", "2"]) == 0
    out = capsys.readouterr().out
    assert len(re.findall(r"^trial \d+: test acc [0-9.]+ ± 0\.0000 over 1 seed\(s\)", out, re.M)) == 2
    with StudyStorage.open(db) as store:
        assert len(store.final_runs()) == 6

    # a genome file, into a study file of its own, data and final budget from a config file
    genome_file = tmp_path / "g.json"
    genome_file.write_text(json.dumps(best.genome))
    assert main(["train", str(genome_file), "--preset", str(cfg), "--storage",
                 str(tmp_path / "g.db"), "--epochs", "1", "--seeds", "1"]) == 0
    assert "test acc" in capsys.readouterr().out
    with StudyStorage.open(tmp_path / "g.db") as store:
        (run,) = store.final_runs()
        assert run.trial_number is None and run.status == "ok"
        assert run.budget["epochs"] == 1 and run.budget["width"] == 6  # flags over the config

    # a genome file into an existing study, no preset: the study's own data and final budget,
    # so the best genome's stored seed-0 run (same budget) is found, not trained on other data
    assert main(["train", str(genome_file), "--storage", str(db), "--seeds", "1"]) == 0
    err = capsys.readouterr().err
    assert "2 epoch(s), adam, width 6" in err and "seed 0: test acc" in err
    assert "(stored, not retrained)" in err
    with StudyStorage.open(db) as store:
        assert len(store.final_runs()) == 6


def test_final_progress_files_are_removed_after_an_interrupt(tmp_path) -> None:
    """A Ctrl-C during final training leaves no live progress files beside the weights."""

    class InterruptedExecutor(Executor):
        def submit(self, fn, /, *args, **kwargs):  # the run "ends" with a Ctrl-C
            future: Future = Future()
            if args[0].kind == "probe":  # the cost probe before the runs gets no estimate
                future.set_result(EvalResult.failure("no probe here"))
            else:
                future.set_exception(KeyboardInterrupt())
            return future

    raw = tiny_config_dict()
    config = config_from_dict(raw, "i")
    space = get_space(config.space.name, **config.space.settings)
    genome = space.sample(random.Random(0))
    db = tmp_path / "i.db"
    with StudyStorage.create(db, name="i", config=config.to_dict(), identity={},
                             identity_hash="x", provenance={}) as storage:
        with pytest.raises(KeyboardInterrupt):
            train_final(storage, space, [(None, genome)], Budget(epochs=1, width=4), 2,
                        config.data.task_dict(), InterruptedExecutor())
    final_dir = tmp_path / "i_files" / "final"
    assert final_dir.is_dir() and not list(final_dir.glob("*.progress.jsonl"))


@pytest.mark.timeout(240)
def test_final_step_is_estimated_capped_and_deferred_by_the_time_limit(tmp_path, capsys) -> None:
    """The final step prints its estimate, a cap cuts its epochs (stored, so a resume trains
    the same runs), and a time limit it does not fit leaves it for --resume."""
    final = {"top": 1, "seeds": 1, "max_seconds": 0.01,  # the CLI's smallest cap is 1 s
             "budget": {"epochs": 200, "width": 4, "batch_size": 16}}
    raw = tiny_config_dict(run={"max_evals": 2, "workers": 1}, final=final)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    db = tmp_path / "c.db"
    assert main(["search", str(cfg), "--storage", str(db)]) == 0
    err = capsys.readouterr().err
    assert ("200 epoch(s) at width 4, 1 seed(s) as configured (the plan below fits them to the "
            "time)") in err
    cut = re.search(r"estimated \d+s for 200 epochs exceeds the cap of 1s: training (\d+) "
                    r"epoch\(s\) instead", err)
    assert cut, err
    epochs = int(cut.group(1))
    assert 1 <= epochs < 200
    assert re.search(rf"final: estimated .* for {epochs} epoch\(s\)", err), err
    assert re.search(r"seed 0: test acc [0-9.]+ \(took \d+s, estimated \d+s\)", err), err
    with StudyStorage.open(db) as store:
        (run,) = store.final_runs()
        assert run.budget["epochs"] == epochs and run.metrics["estimated_seconds"] > 0
    assert main(["search", str(cfg), "--storage", str(db), "--resume"]) == 0
    assert "(stored, not retrained)" in capsys.readouterr().err

    # a final step that cannot fit in what is left of --time-limit is left for --resume
    raw2 = tiny_config_dict(run={"max_evals": 1, "workers": 1},
                            final={"top": 1, "seeds": 1,
                                   "budget": {"epochs": 20000, "width": 4, "batch_size": 16}})
    cfg2 = tmp_path / "d.yaml"
    cfg2.write_text(yaml.safe_dump(raw2))
    db2 = tmp_path / "d.db"
    assert main(["search", str(cfg2), "--storage", str(db2), "--time-limit", "1m"]) == 0
    out = capsys.readouterr()
    # said once, with its reason (before: once more on stdout without it)
    assert (out.out + out.err).count("left for --resume") == 1, (out.out, out.err)
    assert "final: left for --resume: the " in out.err and "final: estimated" in out.err
    with StudyStorage.open(db2) as store:
        assert store.final_runs() == [] and store.count("ok") == 1
    # --quiet: the progress output is off, the summary on stdout says it, once
    assert main(["search", str(cfg2), "--storage", str(tmp_path / "q.db"), "--time-limit",
                 "1m", "--quiet"]) == 0
    out = capsys.readouterr()
    assert (out.out + out.err).count("left for --resume") == 1, (out.out, out.err)
    assert "final training left for --resume" in out.out


@pytest.mark.timeout(120)
def test_final_runs_of_two_budgets_keep_their_own_weights(tmp_path) -> None:
    """Two final trainings of one genome that differ only in epochs write two weight files, and
    each stored run points at its own (before: named by genome, width and seed only, the second
    overwrote the first, so export could ship weights under the other run's accuracy)."""
    from concurrent.futures import ThreadPoolExecutor

    raw = tiny_config_dict()
    config = config_from_dict(raw, "w")
    space = get_space(config.space.name, **config.space.settings)
    genome = space.sample(random.Random(1))
    db = tmp_path / "w.db"
    with StudyStorage.create(db, name="w", config=config.to_dict(), identity={},
                             identity_hash="x", provenance={}) as storage, \
            ThreadPoolExecutor(1) as pool:
        for epochs in (1, 2):
            train_final(storage, space, [(None, genome)],
                        Budget(epochs=epochs, width=4, max_steps=2, batch_size=16), 1,
                        config.data.task_dict(), pool)
        runs = storage.final_runs()
    assert [r.budget["epochs"] for r in runs] == [1, 2]
    paths = {r.checkpoint for r in runs}
    assert len(paths) == 2 and all(Path(p).is_file() for p in paths)
