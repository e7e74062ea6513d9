#!/usr/bin/env bash
# After remake.sh: round 26's selection and probes on the remade files (one thread each, two at a time), the
# probe with flip-spread samples on the remade LDSeg (round 23's question on a model that played no part in it),
# then, on the idle machine, the shipped glas and the remade LDSeg timed one after the other (2 threads),
# and the quick benchmark of the shipped glas before the swap.
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"; . .venv/bin/activate
cases=$(for i in $(seq 71 85) 8 9; do printf "train_%s " $i; done)
ev() { OMP_NUM_THREADS=1 ldseg evaluate "$1" ../shared/data/glas/train --cases $cases --samples 10 --progress none -o runs/r26/val/$2 > runs/r26/val/$2.txt 2>&1; }
probe() { OMP_NUM_THREADS=1 python scripts/recipe_probe.py runs/r26/glas-$1.safetensors ../shared/data/glas/train --samples 10 $3 \
    --json runs/r26/glas-$2.probe.json > runs/r26/glas-$2.probe.txt 2>&1; }
mkdir -p runs/r26/val runs/r26/timing
ev runs/r26/glas-ldseg.safetensors new-ldseg & ev runs/r26/glas-resunet.safetensors new-resunet & wait
probe ldseg ldseg & probe resunet resunet & wait
probe ldseg ldseg-flips --flips & probe resunet resunet-flips --flips & wait
git show HEAD:Resources/Models/glas.safetensors > runs/r26/glas-shipped-r9.safetensors
for m in glas-shipped-r9 glas-ldseg; do
  OMP_NUM_THREADS=2 ldseg evaluate runs/r26/$m.safetensors ../shared/data/glas/train --cases $cases --samples 10 --progress none \
    -o runs/r26/timing/$m > runs/r26/timing/$m.txt 2>&1
done
python benchmarks/run_benchmarks.py --quick --configs "glas (shipped)" --no-large-inputs --json runs/r26/benchmarks-quick-before.json \
  > runs/r26/benchmarks-quick-before.txt 2>&1
date > runs/r26/measured
