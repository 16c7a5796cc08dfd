"""How many random networks of quick's space fall inside its FLOPs window at the search width.

    PYTHONPATH=src python experiments/quick/session12/window_share.py
"""
import random, torch, time
from nasforge.config import load_config
from nasforge.spaces import chosen_network_space
from nasforge.evaluation.metrics import count_flops
cfg = load_config("quick")
space = chosen_network_space(cfg.space.name, dict(cfg.space.settings))
rng = random.Random(0)
inside = 0; n = 200; t0=time.time()
fl=[]
for i in range(n):
    g = space.sample(rng)
    m = space.build(g, (1, 28, 28), 10, 16)
    f = count_flops(m, (1, 28, 28)); fl.append(f)
    inside += 1.5e6 <= f <= 3.5e6
print(f"{inside}/{n} random samples inside [1.5, 3.5] MFLOPs at w16; {1000*(time.time()-t0)/n:.1f} ms each to build+count")
import statistics; fl.sort(); print("quartiles MF", [round(fl[int(q*n)]/1e6,2) for q in (0.1,0.25,0.5,0.75,0.9)])
