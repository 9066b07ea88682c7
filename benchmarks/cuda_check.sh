#!/usr/bin/env bash
# CUDA paths on a GPU machine, in one go (CI has no GPU; run this by hand where one is available).
#
#   bash benchmarks/cuda_check.sh [OUT_DIR]
#
# 1. the whole test suite with the default device `auto` (= cuda): fit(), checkpoints, resume,
#    evaluation, 16-mixed with its gradient scaler (skipped on CPU) all run on the GPU;
# 2. the README's main command on cuda, fp32 and 16-mixed / bf16-mixed, with the per-β table;
# 3. gate / none training-step time of the conv models on the GPU at the paper's width
#    (the paper reports +4.2 % for its ResNet on a GPU).
# Logs go to OUT_DIR (default: cuda_check/).
set -u -o pipefail
OUT_DIR=${1:-cuda_check}
mkdir -p "$OUT_DIR"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
$PY - <<'EOF' 2>&1 | tee "$OUT_DIR/device.txt"
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "device", torch.cuda.get_device_name(0))
EOF
workers=$($PY -c "import xdist" 2>/dev/null && echo "-n 8" || echo "")
timeout 240 $PY -m pytest -q -p no:cacheprovider $workers tests 2>&1 | tee "$OUT_DIR/pytest.log" | tail -25
for precision in 32 16-mixed bf16-mixed; do  # defaults in fp32; a shorter run for the mixed precisions
  steps=$([ "$precision" = 32 ] && echo 1800 || echo 600)
  rm -rf "/tmp/cuda_run_$precision"
  timeout 100 $PY -m mrvae.cli run --out "/tmp/cuda_run_$precision" --train.device cuda --train.precision "$precision" \
    --train.steps "$steps" > "$OUT_DIR/run_$precision.log" 2>&1
  echo "mrvae run --train.precision $precision --train.steps $steps: exit $?"; tail -15 "$OUT_DIR/run_$precision.log"
done
timeout 120 $PY benchmarks/conv_step_overhead.py --device cuda --width 1 --repeats 100 --out "$OUT_DIR" \
  --tag _cuda_w1 --profile-steps 5 2>&1 | tail -30
# issue 17 (d): gated / plain through Trainer.train_step at batch 128, eager and compiled, on the GPU
timeout 300 $PY benchmarks/gate_overhead.py --device cuda --archs resnet conv mlp --batch-size 128 --repeats 50 \
  --variants compiled compiled-none --json "$OUT_DIR/gate_overhead_cuda.json" 2>&1 | grep -v Warning | tail -20
