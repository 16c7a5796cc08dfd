"""Params and FLOPs (count_flops: a multiply-add = 2) of global-space genomes at widths 16/32/48
with the quick preset's space settings.  python3 flops.py GENOMES.json (a list or one genome dict)."""
import json, sys
from nasforge.config import load_config
from nasforge.spaces import chosen_network_space
from nasforge.evaluation.metrics import count_flops
config = load_config("quick")
space = chosen_network_space(config.space.name, dict(config.space.settings))
gs = json.load(open(sys.argv[1]))
if isinstance(gs, dict): gs=[gs]
for i, g in enumerate(gs):
    genome = space.genome_from_dict(g)
    row=[]
    for w in (16, 32, 48):
        m = space.build(genome, (1,28,28), 10, w)
        p = sum(x.numel() for x in m.parameters() if x.requires_grad)
        row.append(f"w{w}: {p:,}p {count_flops(m,(1,28,28))/1e6:.1f}MF")
    print(i, " | ".join(row))
