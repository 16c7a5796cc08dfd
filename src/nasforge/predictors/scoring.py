"""How well each predictor ranks held-out trials of a stored study (``nasforge study predictors``).

For each training-set size n and each of ``repeats`` random splits (the same splits for every
predictor), a predictor is fitted on n of the study's networks and ranks the rest (at most
``max_test`` of them); the score is Kendall's tau-b (``scipy.stats.kendalltau``) and Spearman's
rho between its predicted means and the true values. The parameter-count baseline ranks the
same held-out networks by their parameter count, without training.
"""

from __future__ import annotations

import math
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from nasforge.errors import ConfigError
from nasforge.spaces.base import SearchSpace, genome_key

KNOWN_PROBLEMS: dict[str, tuple[tuple[int, int, int], int]] = {
    "fashion-mnist": ((1, 28, 28), 10),
}
"""Input shape and classes of data sets, for the global space's parameter feature without
loading the data (another data set: that feature is 0)."""


@dataclass
class StudyData:
    """The networks of a study with one target and one parameter count each.

    ``genomes`` [N], ``target`` [N] (validation accuracy as a fraction), ``params`` [N].
    """

    source: str
    note: str
    space: SearchSpace
    genomes: list[Any]
    target: np.ndarray
    params: np.ndarray
    problem: tuple[tuple[int, int, int], int] | None = None
    width: int | None = None


@dataclass
class Score:
    """One predictor at one training-set size: tau-b and rho per split ([repeats])."""

    predictor: str
    size: int
    n_test: int
    tau: list[float] = field(default_factory=list)
    rho: list[float] = field(default_factory=list)
    seconds: float = 0.0


def _fidelity_data(path: Path, storage: Any, settings: dict[str, Any],
                   study: dict[str, Any]) -> StudyData:
    """A fidelity study: its architectures, the target the mean of the reference seeds."""
    from nasforge.storage.sqlite import budget_key
    from nasforge.strategies.base import Problem
    from nasforge.studies.fidelity.config import fidelity_config_from_dict
    from nasforge.studies.fidelity.plan import make_plan

    raw = dict(settings["fidelity"])
    raw["run"] = dict(study["config"].get("run", {}))
    cfg = fidelity_config_from_dict(raw, str(path))
    plan = make_plan(cfg, problem=Problem((1, 1, 1), 2), genomes=settings["genomes"])
    recs = {(t.genome_key, t.budget_key): t for t in storage.trials("ok")}
    genomes, target, params = [], [], []
    for g in plan.genomes:
        k = genome_key(plan.space, g)
        runs = [recs.get((k, budget_key(b.to_dict()))) for b in plan.references]
        if all(r is not None and r.val_acc is not None for r in runs):
            genomes.append(g)
            target.append(sum(float(r.val_acc) for r in runs) / len(runs))
            params.append(float(runs[0].params or 0))
    dataset = study["config"].get("data", {}).get("dataset")
    return StudyData(
        str(path), f"fidelity study: target = mean validation accuracy of the reference budget's "
        f"{len(plan.references)} seeds ({plan.references[0].epochs} epochs, "
        f"{plan.references[0].data_fraction:.0%} of the data)", plan.space, genomes,
        np.array(target), np.array(params), KNOWN_PROBLEMS.get(str(dataset)),
        plan.references[0].width)


def _search_data(path: Path, storage: Any, study: dict[str, Any]) -> StudyData:
    """An ordinary study: its ok trials under its most common budget, repeats averaged."""
    from nasforge.study import space_of_config

    config = study["config"]
    space = space_of_config(config)
    trials = [t for t in storage.trials("ok") if t.val_acc is not None]
    if not trials:
        raise ConfigError(f"{path}: no finished trials with a validation accuracy")
    budget, _ = Counter(t.budget_key for t in trials).most_common(1)[0]
    by_key: dict[str, list[Any]] = defaultdict(list)
    for t in trials:
        if t.budget_key == budget:
            by_key[t.genome_key].append(t)
    genomes = [space.genome_from_dict(ts[0].genome) for ts in by_key.values()]
    target = np.array([np.mean([float(t.val_acc) for t in ts]) for ts in by_key.values()])
    params = np.array([float(ts[0].params or 0) for ts in by_key.values()])
    first = next(iter(by_key.values()))[0]
    evaluator = config.get("run", {}).get("evaluator", "")
    if str(evaluator).startswith("tabular:"):
        from nasforge.execution.tabular import TABLE_PROBLEM

        problem: tuple[tuple[int, int, int], int] | None = (tuple(TABLE_PROBLEM[0]),  # type: ignore
                                                           int(TABLE_PROBLEM[1]))
    else:
        problem = KNOWN_PROBLEMS.get(str(config.get("data", {}).get("dataset")))
    skipped = len(trials) - sum(len(v) for v in by_key.values())
    return StudyData(str(path), f"search study: target = validation accuracy of the ok trials "
                     f"at the most common budget ({len(by_key)} networks"
                     + (f"; {skipped} trials at other budgets left out" if skipped else "")
                     + ")", space, genomes, target, params, problem, first.budget.get("width"))


def load_study_data(path: str | Path) -> StudyData:
    """The networks, targets and parameter counts of the study file ``path``.

    Raises ``ConfigError`` when the file is missing or holds fewer than 5 usable networks."""
    from nasforge.storage.sqlite import StudyStorage

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"study {path} not found")
    with StudyStorage.open(path) as storage:
        study = storage.study()
        settings = study["config"].get("strategy", {}).get("settings", {})
        if "fidelity" in settings:
            data = _fidelity_data(path, storage, settings, study)
        else:
            data = _search_data(path, storage, study)
    if len(data.genomes) < 5:
        raise ConfigError(f"{path}: {len(data.genomes)} usable networks; need at least 5")
    return data


def default_sizes(n: int) -> list[int]:
    """Training-set sizes for N networks: thirds to five sixths of small studies (each in
    [2, N - 3]; none under 5 networks), otherwise 25, 50, 100, 200, 400 (those leaving at
    least 20 held out)."""
    if n < 60:  # each size leaves at least 3 held out (score_predictors' rule)
        return sorted({min(n - 3, max(2, round(n * f))) for f in (1 / 3, 1 / 2, 2 / 3, 5 / 6)}
                      - {n} if n >= 5 else set())
    return [s for s in (25, 50, 100, 200, 400) if s <= n - 20]


def _rank(y: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    from scipy.stats import kendalltau, spearmanr

    if np.ptp(pred) == 0 or np.ptp(y) == 0:
        return float("nan"), float("nan")
    return (float(kendalltau(y, pred, variant="b").statistic),
            float(spearmanr(y, pred).statistic))


def score_predictors(data: StudyData, predictors: Sequence[str], sizes: Sequence[int],
                     repeats: int = 20, seed: int = 0, max_test: int = 500,
                     settings: dict[str, dict[str, Any]] | None = None) -> list[Score]:
    """Scores of ``params`` (the baseline) and each predictor at each size over ``repeats``
    random splits. ``ConfigError`` for a size that leaves fewer than 3 networks held out."""
    from nasforge.predictors import encode_all, encoder_for, make_predictor

    n = len(data.genomes)
    if n < 5:
        raise ConfigError(f"scoring predictors needs at least 5 finished networks (2 to train "
                          f"on, 3 held out); the study has {n}")
    bad = [s for s in sizes if s < 2 or s > n - 3]
    if bad or repeats < 1:
        raise ConfigError(f"training sizes must be in [2, {n - 3}] for {n} networks and "
                          f"repeats >= 1 (got sizes {list(sizes)}, repeats {repeats})")
    shape, classes = data.problem if data.problem else (None, None)
    x = encode_all(encoder_for(data.space, shape, classes, data.width), data.genomes)
    scores: list[Score] = []
    for size in sizes:
        n_test = min(n - size, max_test)
        row = {p: Score(p, size, n_test) for p in ["params", *predictors]}
        for r in range(repeats):
            perm = np.random.default_rng([seed, size, r]).permutation(n)
            train, test = perm[:size], perm[size:size + n_test]
            tau, rho = _rank(data.target[test], data.params[test])
            row["params"].tau.append(tau)
            row["params"].rho.append(rho)
            for name in predictors:
                start = time.perf_counter()
                model = make_predictor(name, seed=r, **(settings or {}).get(name, {}))
                mean, _ = model.fit(x[train], data.target[train]).predict(x[test])
                row[name].seconds += time.perf_counter() - start
                tau, rho = _rank(data.target[test], mean)
                row[name].tau.append(tau)
                row[name].rho.append(rho)
        scores += row.values()
    return scores


def _cell(values: list[float]) -> str:
    v = np.array([x for x in values if math.isfinite(x)])
    if len(v) == 0:
        return "n/a"
    return f"{v.mean():.3f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.3f}"


def table_lines(data: StudyData, scores: list[Score], repeats: int) -> list[str]:
    """The printed report: one table for tau-b, one for Spearman, rows = predictors."""
    sizes = sorted({s.size for s in scores})
    names = list(dict.fromkeys(s.predictor for s in scores))
    get = {(s.predictor, s.size): s for s in scores}
    lines = [f"study {data.source}: {len(data.genomes)} networks; {data.note}",
             f"held out: the rest of the networks (at most {max(s.n_test for s in scores)}); "
             f"mean ± std over {repeats} random splits (the same for every predictor)"]
    for metric, label in (("tau", "Kendall tau-b"), ("rho", "Spearman rho")):
        lines.append("")
        lines.append(f"{label} against training-set size n (held-out count in brackets)")
        head = f"{'predictor':14s}" + "".join(
            f"{f'n={n} ({get[(names[0], n)].n_test})':>18s}" for n in sizes)
        lines.append(head)
        for name in names:
            lines.append(f"{name:14s}" + "".join(
                f"{_cell(getattr(get[(name, n)], metric)):>18s}" for n in sizes))
    lines.append("")
    lines.append("fit+predict seconds per split: " + ", ".join(
        f"{name} " + "/".join(f"{get[(name, n)].seconds / repeats:.2f}" for n in sizes)
        for name in names if name != "params"))
    return lines
