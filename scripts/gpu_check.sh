#!/usr/bin/env bash
# The checks that need a CUDA GPU, as one short script for a device machine (no network):
# the CUDA-only tests, training the default config and the AMP config on the GPU (bf16 and
# fp16 with a real GradScaler), kill + resume on the GPU, and FSDP through `accelerate
# launch`. Each step's output goes to $OUT/<step>.log; a summary table is printed at the end.
# Exit status: 0 when every step passed, 1 when one failed, 2 when no CUDA torch was found.
#
#   bash scripts/gpu_check.sh            # OUT defaults to /tmp/gpu_check
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"

# A Python whose torch sees CUDA: the machine's own first (a CUDA build), then the repo venv.
# GPU_CHECK_PYTHON=... skips the search (e.g. to try the steps on a CPU machine).
PY=${GPU_CHECK_PYTHON:-}
for candidate in python3 python .venv/bin/python; do
  [ -n "$PY" ] && break
  if command -v "$candidate" >/dev/null 2>&1 &&
     "$candidate" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    PY=$(command -v "$candidate"); break
  fi
done
if [ -z "$PY" ]; then
  echo "gpu_check: no Python with a CUDA-enabled torch here (tried python3, python, .venv/bin/python)"
  exit 2
fi
# accelwrap from this checkout, without touching the network.
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export OMP_NUM_THREADS=1
"$PY" -c "import accelwrap, accelerate, omegaconf" 2>"$OUT/imports.log" || {
  echo "gpu_check: $PY cannot import accelwrap's dependencies (see $OUT/imports.log)"; exit 2; }

results=()
step() {  # step NAME COMMAND...: run it, keep its log, record pass/fail and seconds
  local name=$1; shift
  local start=$SECONDS
  if "$@" >"$OUT/$name.log" 2>&1; then status=pass; else status=FAIL; fi
  results+=("$(printf '%-28s %-5s %4ss' "$name" "$status" "$((SECONDS - start))")")
}

QUIET=(default_hooks.logger.progress_bar=false default_hooks.logger.trackers=null)
TRAIN=("$PY" scripts/train.py)

step environment "$PY" -c "import torch, accelerate, accelwrap; \
print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0)); \
print('accelerate', accelerate.__version__, 'accelwrap', accelwrap.__version__)"
step cuda_tests "$PY" -m pytest -q -rs -p no:cacheprovider tests/optim/optimizer/test_amp_cuda.py
step train_default "${TRAIN[@]}" --config configs/digits_sgd_multistep.yaml \
  --work-dir "$OUT/default" "${QUIET[@]}"
step train_amp_bf16 "${TRAIN[@]}" --config configs/digits_amp_bf16_accum.yaml \
  --work-dir "$OUT/bf16" "${QUIET[@]}"
step train_amp_fp16 "${TRAIN[@]}" --config configs/digits_amp_bf16_accum.yaml \
  --work-dir "$OUT/fp16" "${QUIET[@]}" optim_wrapper.dtype=float16
kill_and_resume() {  # SIGKILL after iteration 60, then --resume auto must resume and finish
  local args=(--config configs/digits_sgd_multistep.yaml --work-dir "$OUT/resume" "${QUIET[@]}"
              train_cfg.max_epochs=3)
  if ACCELWRAP_TEST_KILL=iter:60 "${TRAIN[@]}" "${args[@]}"; then
    echo "the run was not killed"; return 1
  fi
  "${TRAIN[@]}" "${args[@]}" --resume auto 2>&1 | tee "$OUT/resumed.out"
  [ "${PIPESTATUS[0]}" -eq 0 ] && grep -q "resumed from" "$OUT/resumed.out"
}
step kill_and_resume kill_and_resume
step fsdp_one_gpu "$PY" -m accelerate.commands.launch --config_file launch_configs/fsdp.yaml \
  --num_processes 1 scripts/train.py --config configs/digits_adamw_cosine.yaml \
  --work-dir "$OUT/fsdp" "${QUIET[@]}" train_cfg.max_epochs=2

echo
echo "gpu_check summary ($PY; logs in $OUT):"
printf '  %s\n' "${results[@]}"
printf '  %-26s %s\n' cuda_tests "$(tail -n 1 "$OUT/cuda_tests.log")"
for log in "$OUT"/train_*.log; do  # the last validation line of each training run
  last=$(grep "(val)" "$log" 2>/dev/null | tail -n 1 | sed -E 's/.* - INFO - //')
  [ -n "$last" ] && printf '  %-26s %s\n' "$(basename "$log" .log)" "$last"
done
for line in "${results[@]}"; do
  case "$line" in *FAIL*) exit 1 ;; esac
done
exit 0
