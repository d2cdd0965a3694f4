#!/usr/bin/env bash
# The GPU check: run on a machine with an NVIDIA GPU, its driver, and the CUDA toolkit
# (nvcc on PATH; cuDNN too for `cudnn`). About 10 minutes on a many-core GPU machine, most
# of it the release build: an estimate, not a measurement (on 2 shared cores the debug
# build alone took 85 min, 50 of them candle-kernels' nvcc; see .ci/cuda-build).
#
#   scripts/gpu-check.sh           --features cuda
#   scripts/gpu-check.sh cudnn     --features cudnn (candle's convolutions and
#                                  snl_core::fast::conv2d through cuDNN)
#
# 1. The CUDA tests (snl-core/tests/cuda.rs, snl-models/tests/cuda.rs): every fast op and
#    both networks, forward and backward, on the GPU against the CPU. SNL_REQUIRE_GPU=1
#    makes a missing device a failure instead of a skip.
# 2. `snl --device cuda demo`: train, linearize and finetune end to end on the GPU.
# 3. `throughput --device cuda` (ResNet18 width 64 and WRN-22-8, batch 128).
# 4. `vs_torch --device cuda` where python3 has a CUDA build of torch (skipped otherwise).
#
# Written on a machine without a GPU: it has not been run yet. shellcheck-clean; the build
# it starts is the one .ci/cuda-build proves on a CPU-only machine.
set -euo pipefail
cd "$(dirname "$0")/.."

variant=${1:-cuda}
case $variant in
    cuda | cudnn) ;;
    *)
        echo "usage: scripts/gpu-check.sh [cuda|cudnn]" >&2
        exit 2
        ;;
esac
if ! nvidia-smi -L; then
    echo "gpu-check: nvidia-smi finds no GPU; this check needs one" >&2
    exit 2
fi
command -v nvcc >/dev/null || {
    echo "gpu-check: nvcc is not on PATH (candle's kernels are compiled with it)" >&2
    exit 2
}
# candle-kernels compiles for this compute capability (e.g. 90 for an H100).
cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -n 1 | tr -d '. ')
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-$cap}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target/gpu-$variant}
export SNL_REQUIRE_GPU=1
bin=$CARGO_TARGET_DIR/release
start=$SECONDS
step() { echo "== gpu-check ($((SECONDS - start)) s): $*" >&2; }

step "build (release, --features $variant, compute capability $CUDA_COMPUTE_CAP)"
cargo build --release --locked -p snl-cli -p snl-bench --features "snl-cli/$variant,snl-bench/$variant"

step "CUDA tests"
cargo test --release --locked -p snl-core -p snl-models --features "snl-core/$variant,snl-models/$variant" \
    --test cuda

step "snl --device cuda demo"
demo=$(mktemp -d)
trap 'rm -rf "$demo"' EXIT
"$bin/snl" --device cuda demo --out "$demo/demo"

step "throughput --device cuda"
"$bin/throughput" --device cuda --arch resnet18 --width 64 --batch 128 --runs 5
"$bin/throughput" --device cuda --arch wrn --depth 22 --k 8 --batch 128 --runs 5

if python3 -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    step "vs_torch --device cuda"
    "$bin/vs_torch" --device cuda --arch resnet18 --width 64 --batch 128 --runs 5
else
    step "vs_torch SKIPPED: python3 has no torch with CUDA (pip install torch safetensors)"
fi
step "all passed"
