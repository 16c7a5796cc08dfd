"""The published REMNet genome under the remnet-cpu search budget (validation accuracy), 3 seeds."""
import json
from nasforge.config import load_config
from nasforge.execution.tasks import EvalTask, evaluate_task
from nasforge.spaces import get_space, remnet_best_genome
cfg = load_config("remnet-cpu")
space = get_space(cfg.space.name, **cfg.space.settings)
g = space.genome_to_dict(remnet_best_genome())
for seed in range(3):
    task = EvalTask(trial_number=0, space_name=space.name, space_settings=space.settings(), genome=g,
                    budget=cfg.budget.to_dict(), data=cfg.data.task_dict(), model_seed=seed)
    r = evaluate_task(task)
    print(seed, r["status"], r.get("val_acc"), r.get("params"), r.get("error"), flush=True)
