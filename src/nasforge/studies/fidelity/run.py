"""Running a fidelity study: its kind of work (``fidelity``, registered in
``nasforge.execution.kinds``) on the ordinary runner, and ``run_fidelity``."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nasforge.evaluation.budget import Budget
from nasforge.execution.results import EvalResult
from nasforge.execution.runner import Reporter, Runner, RunSummary
from nasforge.execution.tasks import EvalTask, guarded, model_seed
from nasforge.storage.sqlite import StudyStorage
from nasforge.strategies.base import get_strategy
from nasforge.studies.fidelity.config import FidelityConfig, _search_config
from nasforge.studies.fidelity.plan import Plan, make_plan

if TYPE_CHECKING:
    from nasforge.execution.kinds import TaskRequest


def _init_seed(study_seed: int, gkey: str, seed_index: int) -> int:
    return model_seed(study_seed, gkey, f"fidelity-init-{seed_index}") % (2**31)


def fidelity_settings(plan: Plan) -> dict[str, Any]:
    """The study-wide settings of the ``fidelity`` kind for ``plan`` (JSON-able): the proxies
    to score, their batch size, and the budget they are scored under (the seed-0 reference)."""
    return {"proxies": list(plan.config.proxies), "proxy_batch": plan.config.proxy_batch,
            "proxy_budget": plan.references[0].to_dict()}


def make_fidelity_task(request: TaskRequest) -> EvalTask:
    """The ``fidelity`` kind's task: a ``train`` task without kept weights, plus the study's
    fixed data subset seed, the initialisation shared per reference seed (``budget.seed``),
    and the proxies (``request.settings``, :func:`fidelity_settings`; on the seed-0 reference
    only)."""
    from nasforge.execution.kinds import make_train_task

    settings = request.settings
    task = make_train_task(dataclasses.replace(request, checkpoint_path=None))
    on_reference = request.budget.to_dict() == settings.get("proxy_budget")
    extra = {
        **task.extra,
        "subset_seed": request.study_seed,
        "init_seed": _init_seed(request.study_seed, request.genome_key, request.budget.seed),
        "proxies": list(settings.get("proxies") or []) if on_reference else [],
        "proxy_batch": int(settings.get("proxy_batch", 64)),
    }
    return dataclasses.replace(task, kind="fidelity", extra=extra)


def _evaluate(task: EvalTask) -> EvalResult:
    import torch

    from nasforge.data.task_splits import load_splits
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
    metrics = outcome.to_dict()
    metrics["flops"] = flops
    metrics["proxies"] = proxies
    return EvalResult(status=outcome.status, error=outcome.reason, val_acc=outcome.val_acc,
                      params=outcome.params, flops=flops, curve=metrics.pop("curve"),
                      metrics=metrics)


def evaluate_fidelity_task(task: EvalTask) -> EvalResult:
    """The ``fidelity`` kind's evaluate (worker side): proxies (if asked) on the untrained
    network, then training on the study's fixed data subset from the shared initialisation;
    failures become a failed result, never an exception."""
    return guarded(task, _evaluate)


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
            evaluate=IsolatedEvaluate(run_cfg.eval_timeout, run_cfg.memory_limit_mb),
            kind="fidelity", kind_settings=fidelity_settings(plan),
        )
        return runner.run()
    finally:
        if own:
            executor.shutdown(wait=True, cancel_futures=True)
        storage.close()
