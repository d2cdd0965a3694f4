#!/bin/sh
# Regenerates the parity fixtures of snl-models/tests with the repository's PyTorch reference
# (PyTorch 2.15 + safetensors). Run from this directory:  sh make_fixtures.sh
set -e
REF=${REF:-../../../snl-bench/scripts/torch_ref.py}
python3 "$REF" fixture resnet18_w4_pixel   --arch resnet18 --width 4 --batch 4 --seed 0 --granularity pixel
python3 "$REF" fixture resnet18_w4_channel --arch resnet18 --width 4 --batch 4 --seed 1 --granularity channel --stem-relu
python3 "$REF" fixture wrn_10_1_pixel      --arch wrn --depth 10 --k 1 --batch 4 --seed 2 --granularity pixel --image 16
python3 "$REF" fixture wrn_10_1_channel    --arch wrn --depth 10 --k 1 --batch 4 --seed 3 --granularity channel --final-relu
python3 "$REF" fixture resnet18_w4_img16_stem --arch resnet18 --width 4 --batch 3 --seed 4 --image 16 --classes 7 --stem-relu
python3 make_pth.py
