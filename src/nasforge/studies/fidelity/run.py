"""Running a fidelity study: its kind of work on the ordinary runner, and ``run_fidelity``."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nasforge.evaluation.budget import Budget
from nasforge.execution.runner import Reporter, Runner, RunSummary
from nasforge.execution.tasks import EvalTask, model_seed
from nasforge.spaces.base import genome_key
from nasforge.storage.sqlite import StudyStorage
from nasforge.strategies.base import get_strategy
from nasforge.studies.fidelity.config import FidelityConfig, _search_config
from nasforge.studies.fidelity.plan import Plan, make_plan


def _init_seed(study_seed: int, gkey: str, seed_index: int) -> int:
    return model_seed(study_seed, gkey, f"fidelity-init-{seed_index}") % (2**31)


def fidelity_task_maker(plan: Plan) -> Callable[[EvalTask, Budget], EvalTask]:
    """The fidelity study's kind of work on the ordinary runner: each task gets the fixed data
    subset, the initialisation shared per reference seed, and the proxies (on the seed-0
    reference only); ``evaluate_fidelity_task`` evaluates it."""
    cfg = plan.config

    def prepare(task: EvalTask, budget: Budget) -> EvalTask:
        extra = {
            **task.extra,
            "subset_seed": cfg.seed,
            "init_seed": _init_seed(cfg.seed, task_genome_key(task), budget.seed),
            "proxies": list(cfg.proxies) if budget == plan.references[0] else [],
            "proxy_batch": cfg.proxy_batch,
        }
        return dataclasses.replace(task, checkpoint_path=None, extra=extra)

    def task_genome_key(task: EvalTask) -> str:
        return genome_key(plan.space, plan.space.genome_from_dict(task.genome))

    return prepare


def evaluate_fidelity_task(task: EvalTask) -> dict[str, Any]:
    """Worker side of a fidelity trial: proxies (if asked) on the untrained network, then
    training on the study's fixed data subset from the shared initialisation; failures become
    a failed result dict, never an exception."""
    import traceback

    from nasforge.execution.tasks import load_splits, worker_name

    started = time.time()
    result: dict[str, Any] = {"trial_number": task.trial_number, "worker": worker_name(),
                              "started_at": started, "attempt": task.attempt}
    try:
        import torch

        from nasforge.evaluation.metrics import Normalizer, count_flops
        from nasforge.evaluation.proxies import compute_proxies
        from nasforge.evaluation.trainer import set_determinism, train
        from nasforge.spaces import get_space

        extra = task.extra
        space = get_space(task.space_name, **task.space_settings)
        genome = space.genome_from_dict(task.genome)
        budget = Budget.from_dict(task.budget)
        splits = load_splits(task.data)
        init_seed = int(extra.get("init_seed", task.model_seed % (2**31)))
        set_determinism(init_seed)
        model = space.build(genome, splits.input_shape, splits.num_classes, budget.width)
        proxies: dict[str, Any] = {}
        if extra.get("proxies"):
            gen = torch.Generator().manual_seed(int(extra.get("subset_seed", 0)))
            n = min(int(extra.get("proxy_batch", 64)), len(splits.train_y))
            idx = torch.randperm(len(splits.train_y), generator=gen)[:n]
            x = Normalizer(splits.mean, splits.std, "cpu")(splits.train_x[idx])
            y = splits.train_y[idx]
            scores = compute_proxies(model, x, y, extra["proxies"])
            proxies = {k: v.to_dict() for k, v in scores.items()}
            set_determinism(init_seed)  # proxies must not shift the training's random stream
        if budget.data_fraction < 1.0:
            splits = splits.subset_train(budget.data_fraction, int(extra.get("subset_seed", 0)))
        flops = count_flops(model, splits.input_shape)
        outcome = train(model, splits, budget.replace(data_fraction=1.0, seed=init_seed))
        out = outcome.to_dict()
        out["flops"] = flops
        out["proxies"] = proxies
        result.update(status=outcome.status, error=outcome.reason, val_acc=outcome.val_acc,
                      params=outcome.params, flops=flops, curve=out.pop("curve"), metrics=out)
    except Exception as exc:  # a failed trial, never a dead study
        result.update(status="failed", error=f"{type(exc).__name__}: {exc}",
                      stderr=traceback.format_exc(limit=20))
    result["finished_at"] = time.time()
    return result


def run_fidelity(
    cfg: FidelityConfig,
    storage_path: str | Path,
    *,
    resume: bool = False,
    force: bool = False,
    reporter: Reporter | None = None,
    executor: Any = None,
) -> RunSummary:
    """Run (or resume) the study's trials into ``storage_path``.

    A new study generates the architectures from ``cfg.seed``; a resumed one reads them back
    from the study file, so nothing depends on re-generating them identically.
    """
    from nasforge.api import open_study
    from nasforge.execution.executors import make_executor
    from nasforge.execution.isolation import IsolatedEvaluate

    path = Path(storage_path)
    genomes: list[dict[str, Any]] | None = None
    if resume and path.exists():
        with StudyStorage.open(path) as st:
            settings = st.study()["config"]["strategy"]["settings"]
            genomes = settings.get("genomes")
    plan = make_plan(cfg, genomes=genomes)
    gdicts = [plan.space.genome_to_dict(g) for g in plan.genomes]
    search_cfg = _search_config(cfg, gdicts)
    run_cfg = dataclasses.replace(cfg.run, max_evals=len(plan.candidates), keep_best=0)
    search_cfg = dataclasses.replace(search_cfg, run=run_cfg)
    # the registered fixed-list strategy, built from the settings the study stores (the
    # study identity and the genomes), exactly as a resumed study rebuilds it
    strategy = get_strategy("fixed-list", plan.space, cfg.reference, plan.problem, cfg.seed,
                            **search_cfg.strategy.settings)
    storage = open_study(path, search_cfg, resume=resume, force=force)
    state = storage.strategy_state()
    if state is not None:
        strategy.load_state_dict(state)
    own = executor is None
    executor = executor or make_executor(run_cfg)
    try:
        runner = Runner(
            config=search_cfg, storage=storage, space=plan.space, strategy=strategy,
            executor=executor, reporter=reporter or Reporter(enabled=False),
            evaluate=IsolatedEvaluate(run_cfg.eval_timeout, run_cfg.memory_limit_mb,
                                      evaluate=evaluate_fidelity_task),
            prepare_task=fidelity_task_maker(plan),
        )
        return runner.run()
    finally:
        if own:
            executor.shutdown(wait=True, cancel_futures=True)
        storage.close()
