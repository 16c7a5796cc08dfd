#!/bin/bash
# shortened REMNet-32 final training, 2 processes then 1, same speed options
export OMP_NUM_THREADS=1 PYTHONPATH=$(cd "$(dirname "$0")/../.." && pwd)/src
G=$(cd "$(dirname "$0")/../.." && pwd)/experiments/remnet/remnet_genome.json
for n in 2 1; do
  echo "== nproc $n, $(date -u +%H:%M:%S), load $(cut -d' ' -f1-3 /proc/loadavg)"
  start=$(date +%s.%N)
  nice -n 19 python3 -m nasforge train $G --preset remnet-final --width 32 --epochs 2 \
      --data-fraction 0.1 --precision fp32 --channels-last off --threads 1 --seeds 1 \
      --nproc $n --storage "${TMPDIR:-/tmp}/remnet32_short/n$n.db" 2>&1 | grep -v FutureWarning | grep -v "ddp = Dist"
  end=$(date +%s.%N)
  echo "== nproc $n wall seconds: $(echo "$end - $start" | bc)"
done
