"""Width cut against epoch cut for quick's final step, on the VALIDATION split (54k train /
6k validation, never the test set): the session-8/9 pick (trial 34, pick_trial34_genome.json)
trained with quick's final recipe (Adam, cosine, flips, batch 128) in fp32 channels-last.

    PYTHONPATH=src python experiments/quick/session9/width_vs_epochs_val.py WIDTH EPOCHS [THREADS]

Session 9 ran `48 9 1` and `40 12 1` at the same time (one thread each) on the 2-core AMD EPYC
of lscpu.txt; output in width_vs_epochs_val.txt.
"""
import json
import sys
import time
from pathlib import Path

import torch

from nasforge.data import load_fashion_mnist, split_validation
from nasforge.evaluation import Budget, set_determinism, train
from nasforge.spaces import get_space

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2] / "benchmarks"))
from speed_options import QUICK_SPACE  # noqa: E402

width, epochs = int(sys.argv[1]), int(sys.argv[2])
torch.set_num_threads(int(sys.argv[3]) if len(sys.argv) > 3 else 2)
splits = split_validation(load_fashion_mnist(download=False), 0.1, seed=0)
space = get_space("global", **QUICK_SPACE)
genome = space.genome_from_dict(json.loads((HERE / "pick_trial34_genome.json").read_text()))
budget = Budget(epochs=epochs, optimizer="adam", schedule="cosine", augment="flip",
                batch_size=128, width=width, precision="fp32", channels_last=True,
                validate_every="last", seed=1)
set_determinism(1)
model = space.build(genome, splits.input_shape, splits.num_classes, width)
began = time.time()
result = train(model, splits, budget)
print(f"w{width} {epochs}ep: val acc {result.val_acc:.4f}  params {result.params}  "
      f"{time.time() - began:.0f}s", flush=True)
