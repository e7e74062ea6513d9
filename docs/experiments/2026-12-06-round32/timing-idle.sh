#!/usr/bin/env bash
# Round 32, condition (e): idle time per case, N = 10, the 33 validation cases, whole pipeline, 2 threads,
# one model after the other, alternating twice. preissue = the hippocampus model shipped when issue 10 was
# filed (git 8263aa5^), shipped = round 8's (shipped until round 32), candidate = round 32's finer latent.
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"; . .venv/bin/activate
out=docs/experiments/2026-12-06-round32/timing-idle; mkdir -p $out /tmp/r32t
git show 8263aa5^:Resources/Models/hippocampus.safetensors > /tmp/r32t/preissue.safetensors
git show 8263aa5:Resources/Models/hippocampus.safetensors > /tmp/r32t/shipped.safetensors
cp docs/experiments/2026-12-06-round32/hippocampus-r32-ldseg.safetensors /tmp/r32t/candidate.safetensors
cases=$(ls ../shared/data/hippocampus/images | sort | sed -n '134,166p' | sed 's/.nii.gz//')
for rep in 1 2; do
  for m in preissue shipped candidate; do
    OMP_NUM_THREADS=2 ldseg evaluate /tmp/r32t/$m.safetensors ../shared/data/hippocampus --cases $cases --samples 10 \
      --progress none -o /tmp/r32t/$m-$rep > $out/$m-$rep.txt 2>&1
    echo "$m rep $rep: $(grep '^seconds' $out/$m-$rep.txt)" | tee -a $out/README.txt
  done
done
