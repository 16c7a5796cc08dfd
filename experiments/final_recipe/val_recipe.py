"""A preset's final recipe, varied, on the VALIDATION split (train on the 54k training split,
measure on the 6k validation split; never the test set): for choosing final-training settings.

    PYTHONPATH=src python experiments/final_recipe/val_recipe.py PRESET GENOME.json THREADS \
        [key=value ...]

``key=value`` overrides the preset's ``final.budget`` (values are JSON: ``epochs=30``,
``schedule="cosine"``). Prints the validation accuracy, and beside it the accuracy with the
prediction averaged over the image and its horizontal mirror (flip test-time augmentation).
"""
import json
import sys
import time

import torch

from nasforge.api import data_dict
from nasforge.config import load_config
from nasforge.data.task_splits import load_splits
from nasforge.evaluation import set_determinism, train
from nasforge.evaluation.metrics import Normalizer
from nasforge.spaces import chosen_network_space

preset, genome_path, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
overrides = {k: json.loads(v) for k, v in (a.split("=", 1) for a in sys.argv[4:])}
torch.set_num_threads(threads)
config = load_config(preset)
splits = load_splits(data_dict(config))
space = chosen_network_space(config.space.name, dict(config.space.settings))  # no max_params
genome = space.genome_from_dict(json.loads(open(genome_path).read()))
budget = config.final.budget.replace(**{"threads": threads, "validate_every": "last",
                                       "precision": "fp32", "channels_last": True,
                                       "seed": 1, "tta": None, **overrides})
# tta None: the plain column is single view (a preset's ``tta: flip`` made both columns the
# flip-averaged figure in session 11's first runs, experiments/quick/session11)
set_determinism(1)
model = space.build(genome, splits.input_shape, splits.num_classes, budget.width)
began = time.time()
result = train(model, splits, budget)
seconds = time.time() - began
model.eval()
norm = Normalizer(splits.mean, splits.std, "cpu")
correct = 0
with torch.no_grad():
    for start in range(0, len(splits.val_y), 1000):
        x = norm(splits.val_x[start:start + 1000]).contiguous(memory_format=torch.channels_last)
        p = model(x).float().softmax(1) + model(torch.flip(x, dims=[3])).float().softmax(1)
        correct += int((p.argmax(1) == splits.val_y[start:start + 1000]).sum())
print(f"{preset} {' '.join(sys.argv[4:]) or '(preset recipe)'}: val acc {result.val_acc:.4f}  "
      f"flip-TTA {correct / len(splits.val_y):.4f}  params {result.params}  {seconds:.0f}s",
      flush=True)
