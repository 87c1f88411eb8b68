#!/usr/bin/env bash
# The device checks in one go, for a machine with NVIDIA GPUs: the `gpu` tests, then the GPU benchmarks
# (bf16 tokens/s, peak memory and MFU of a GPT-Neo-1.3B-shaped model built from its config, ZeRO-2 and ZeRO-3;
# evaluation items/s in bf16).
# usage: tests/gpu/run_gpu_checks.sh [OUT_DIR]        (writes OUT_DIR/gpu_tests.log and OUT_DIR/bench_*.json)
set -uo pipefail
out=${1:-out/gpu}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$out/gpus.txt"
python -m pytest -q -m gpu tests/gpu -p no:cacheprovider 2>&1 | tee "$out/gpu_tests.log"
for stage in 2 3; do
  python -m e2wm.cli bench train --model shape:gpt-neo-1.3b --precision bf16 --zero-stage "$stage" \
      --rows 160 --steps 4 --global-batch 16 --micro-batch 4 2>&1 | tail -4 | tee "$out/bench_train_z$stage.txt"
done
python -m e2wm.cli bench fisher --model shape:gpt-neo-1.3b --precision bf16 --samples 32 --seq 512 \
    --micro-batch 8 2>&1 | tail -5 | tee "$out/bench_fisher.txt"
# evaluation: items/s of batched multiple choice and generation (4 beams) against item by item, bf16
python -m e2wm.cli bench eval --model shape:gpt-neo-1.3b --precision bf16 --items 16 --gen-items 16 \
    --new-tokens 64 2>&1 | tail -6 | tee "$out/bench_eval.txt"
