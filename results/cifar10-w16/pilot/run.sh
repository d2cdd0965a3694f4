#!/usr/bin/env bash
# Issue 15's schedule pilot: lambda0 candidates at the smallest budget (3,225), seed 0,
# kappa 2, warm-up 1, search lr 0.01, at most 10 search epochs (then binarize anyway),
# one finetuning epoch; chosen on val top-1. Baseline: the 30-epoch one (86.85% test, 87.30% val),
# because the study's 80-epoch baseline was still training. Resumable: re-run to continue.
# Usage: run.sh LAMBDA0
set -u
SNL=/work/sweeps/bin/snl-sweep2
BASE=/work/sweeps/cifar10-w16-e30/baseline/best.safetensors
cd "$(dirname "$0")"
l=$1; out=lasso-$l
if [ -f "$out/result.json" ]; then exit 0; fi
if [ -f "$out/config.json" ]; then
  exec "$SNL" --threads 1 linearize --resume "$out" >> "$out.log" 2>&1
fi
exec "$SNL" --seed 0 --threads 1 linearize --model "$BASE" --budget 3225 --selection snl \
  --dataset folder --data-dir /work/shared/data/cifar10-jpeg --batch-size 128 \
  --lasso "$l" --kappa 2 --warmup-epochs 1 --search-lr 0.01 --max-search-epochs 10 --finish-at-cap \
  --finetune-epochs 1 --finetune-lr 0.01 --out "$out" >> "$out.log" 2>&1
