"""ms a training step (batch 128, Adam, fp32, contiguous and channels-last) of genomes at
widths, in one process; AVX2-only kernels through the environment:

    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 PYTHONPATH=src \
        python experiments/quick/session12/steptime.py THREADS GENOME.json:INDEX:W1,W2 ...
"""
import json, statistics, sys, torch
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))
from speed_options import QUICK_SPACE
from nasforge.data import load_fashion_mnist, split_validation
from nasforge.evaluation import Budget, set_determinism
from nasforge.evaluation.metrics import Normalizer, count_flops
from nasforge.evaluation.speed import SpeedSetting, measure_training_step
from nasforge.evaluation.trainer import _make_optimizer
from nasforge.spaces import get_space
torch.set_num_threads(int(sys.argv[1]))
data = load_fashion_mnist(download=False)
splits = split_validation(data, 0.1, seed=0)
xb = Normalizer(splits.mean, splits.std, "cpu")(splits.train_x[:128]); yb = splits.train_y[:128]
space = get_space("global", **QUICK_SPACE)
for arg in sys.argv[2:]:
    path, idx, width = arg.split(":")
    d = json.loads(open(path).read())
    if isinstance(d, list): d = d[int(idx)]
    genome = space.genome_from_dict(d)
    for w in [int(x) for x in width.split(",")]:
        set_determinism(0)
        model = space.build(genome, splits.input_shape, splits.num_classes, w)
        fl = count_flops(model, splits.input_shape)
        budget = Budget(batch_size=128, width=w)
        step = measure_training_step(model, xb, yb, lambda m: _make_optimizer(m, budget), torch.device("cpu"))
        out = []
        for cl in (False, True):
            s = SpeedSetting("fp32", cl)
            step(s); step(s)
            out.append(1000 * statistics.median(step(s) for _ in range(7)))
        params = sum(p.numel() for p in model.parameters())
        print(f"{path.split('/')[-1]}[{idx}] w{w}: {params:,}p {fl/1e6:.1f}MF  contig {out[0]:.1f} ms  cl {out[1]:.1f} ms  epoch(422 steps) {min(out)*422/1000:.0f}s", flush=True)
