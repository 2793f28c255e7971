#!/usr/bin/env bash
# What CI cannot run, as one command for a machine with one CUDA GPU (no network; under 8
# minutes on one GPU): the CUDA tests (fp16 AMP with a CUDA GradScaler, also through
# Accelerate; bf16; the overflow skip), every shipped config trained on the GPU at its
# shipped length (and under fp16 and bf16 where that applies), kill + resume, FSDP2 on one
# GPU with a sharded save, kill, resume and merge, bitsandbytes' 8-bit optimizers (skipped,
# with the reason, when bitsandbytes does not import) and the wrapper-overhead benchmark on
# the GPU. Each step's output goes to $OUT/<step>.log; a table of the steps is printed, then
# ONE summary line (the last line of output).
#
#   bash scripts/gpu_check.sh                      # on the GPU machine; OUT=/tmp/gpu_check
#   GPU_CHECK_DRY_RUN=1 bash scripts/gpu_check.sh  # anywhere: every step tiny; without CUDA
#                                                  # each GPU-only step is skipped, with why
#
# GPU_CHECK_PYTHON=... names the Python (default: the first of python3, python,
# .venv/bin/python whose torch sees CUDA; in a dry run, else the first that imports
# accelwrap's dependencies). GPU_CHECK_JOBS: trainings run side by side (default 3).
# GPU_CHECK_CONFIGS=a,b trains only those shipped configs (default: every one); the others,
# and their variants, are listed as skipped with the reason.
# Exit status: 0 when no step failed, 1 when one did, 2 when no usable Python was found
# (or no CUDA outside a dry run).
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_check}
DRY=${GPU_CHECK_DRY_RUN:-0}
JOBS=${GPU_CHECK_JOBS:-3}
STEP_TIMEOUT=${GPU_CHECK_STEP_TIMEOUT:-300}   # seconds for any one command
rm -rf "$OUT/status" "$OUT/work"
mkdir -p "$OUT/status" "$OUT/work"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"   # accelwrap from this checkout
export OMP_NUM_THREADS=1
START=$SECONDS

# A Python whose torch sees CUDA: GPU_CHECK_PYTHON, else the first of python3, python,
# .venv/bin/python that has one (in a dry run, else the first that imports accelwrap).
has_cuda() { "$1" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; }
has_deps() { "$1" -c "import accelwrap, accelerate, omegaconf" 2>/dev/null; }
PY=${GPU_CHECK_PYTHON:-}
for candidate in python3 python .venv/bin/python; do
  [ -n "$PY" ] && break
  command -v "$candidate" >/dev/null 2>&1 && has_cuda "$candidate" && PY=$(command -v "$candidate")
done
for candidate in .venv/bin/python python3 python; do
  { [ -n "$PY" ] || [ "$DRY" != 1 ]; } && break
  command -v "$candidate" >/dev/null 2>&1 && has_deps "$candidate" && PY=$(command -v "$candidate")
done
if [ -z "$PY" ]; then
  echo "gpu_check: no Python with a CUDA-enabled torch here (tried python3, python," \
       ".venv/bin/python); GPU_CHECK_DRY_RUN=1 runs the CPU dry run"
  exit 2
fi
RUN=(timeout -k 10 "$STEP_TIMEOUT" "$PY")
QUIET=(default_hooks.logger.progress_bar=false default_hooks.logger.trackers=null)

# --- one Python start for the environment and the plan ---------------------------------
# Line 1: CUDA (0/1), torch, its CUDA, the GPU, accelerate, accelwrap, and (on CUDA) whether
# bitsandbytes imports. Then one line per shipped config: name|variants|dry-run overrides.
# Dry-run lengths are the ones tests/runner/test_configs.py trains every shipped config for
# (read, not imported). Variants: an AmpOptimWrapper config also runs with the other dtype;
# configs named in AMP_ALSO also run as AmpOptimWrapper with fp16 and with bf16.
AMP_ALSO=${GPU_CHECK_AMP_ALSO:-seq_gru_tokens}
PLAN=$("${RUN[@]}" - "$DRY" "$AMP_ALSO" 2>"$OUT/plan.err" <<'EOF'
import ast, sys
from pathlib import Path
import accelerate, torch
import accelwrap
from accelwrap.config import load_config
dry, amp_also = sys.argv[1] == "1", sys.argv[2].split(",")
cuda = torch.cuda.is_available()
bnb = "-"
if cuda:
    try:
        import bitsandbytes  # noqa: F401
        bnb = "ok"
    except Exception as err:  # any import failure is a reason to skip
        bnb = f"{type(err).__name__}: {err}".splitlines()[0]
print("|".join([str(int(cuda)), torch.__version__, str(torch.version.cuda),
                torch.cuda.get_device_name(0) if cuda else "no GPU", accelerate.__version__,
                accelwrap.__version__, bnb.replace("|", "/")]))
tree = ast.parse(Path("tests/runner/test_configs.py").read_text())
shorten = next(ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
               and getattr(node.targets[0], "id", "") == "SHORTEN")
for path in sorted(Path("configs").glob("*.yaml")):
    if path.stem.startswith("_"):
        continue
    wrapper = load_config(path).get("optim_wrapper", {})
    single = "optimizer" in wrapper
    variants = []
    if single and wrapper.get("type") == "AmpOptimWrapper":
        other = "float16" if wrapper.get("dtype") == "bfloat16" else "bfloat16"
        variants = [f"{other}:optim_wrapper.dtype={other}"]
    elif single and path.stem in amp_also:
        variants = [f"{d}:optim_wrapper.type=AmpOptimWrapper,+optim_wrapper.dtype={d}"
                    for d in ("float16", "bfloat16")]
    length = " ".join(shorten.get(path.stem, [])) if dry else ""
    print(f"{path.stem}|{';'.join(variants)}|{length}")
EOF
) || { echo "gpu_check: $PY cannot read the environment and the configs:"
       tail -n 5 "$OUT/plan.err"; exit 2; }
IFS='|' read -r CUDA TORCH TORCH_CUDA DEVICE ACCELERATE ACCELWRAP BNB <<<"$(head -n 1 <<<"$PLAN")"
CONFIGS=$(tail -n +2 <<<"$PLAN")
if [ "$CUDA" = 0 ] && [ "$DRY" != 1 ]; then
  echo "gpu_check: $PY sees no CUDA GPU; GPU_CHECK_DRY_RUN=1 runs the CPU dry run"; exit 2
fi
NO_CUDA="no CUDA GPU, torch $TORCH"
IFS=',' read -ra wanted <<<"${GPU_CHECK_CONFIGS:-}"
for name in "${wanted[@]}"; do
  grep -qx "$name" <(cut -d'|' -f1 <<<"$CONFIGS") ||
    { echo "gpu_check: GPU_CHECK_CONFIGS names $name, not a shipped config:" \
        $(cut -d'|' -f1 <<<"$CONFIGS"); exit 2; }
done

# --- recording: one status file per step, its place taken when the step is started -----
SLOTS=0
new_slot() {  # new_slot NAME: the next status file (sets SLOT), "never finished" until done
  SLOTS=$((SLOTS + 1)); SLOT="$OUT/status/$(printf '%03d' "$SLOTS")_$1"
  printf '%s|FAIL|-|never finished\n' "$1" >"$SLOT"
}
note_of() {  # the last validation metrics, or a pytest summary, of a step's log
  local log="$OUT/$1.log" last
  last=$(grep -a "(val)" "$log" 2>/dev/null | tail -n 1 | sed -E 's/.*\[[0-9/]+\] +//')
  [ -z "$last" ] && last=$(grep -aE '^=* ?[0-9]+ (passed|failed|skipped|error)' "$log" \
                           2>/dev/null | tail -n 1 | tr -d '=')
  printf '%s' "$last" | tr -s ' ' | tr ';|' ',/'
}
run_step() {  # run_step SLOT NAME COMMAND...: run it, log to $OUT/NAME.log, record the result
  local slot=$1 name=$2; shift 2
  local start=$SECONDS status=FAIL
  "$@" >"$OUT/$name.log" 2>&1 && status=pass
  printf '%s|%s|%s|%s\n' "$name" "$status" "$((SECONDS - start))s" "$(note_of "$name")" >"$slot"
}
step() { new_slot "$1"; run_step "$SLOT" "$@"; }   # step NAME COMMAND...
skip() {  # skip NAME REASON
  new_slot "$1"; printf '%s|skip|-|%s\n' "$1" "$(printf '%s' "$2" | tr ';|()' ',/[]')" >"$SLOT"
}
gpu_step() {  # gpu_step NAME COMMAND...: a step that needs CUDA
  if [ "$CUDA" = 1 ]; then step "$@"; else skip "$1" "$NO_CUDA"; fi
}
background() {  # background NAME COMMAND...: a step run beside others, $JOBS at a time
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n 2>/dev/null || sleep 1; done
  new_slot "$1"; run_step "$SLOT" "$@" &
}

# --- the steps ------------------------------------------------------------------------
step environment echo "$PY: torch $TORCH (CUDA $TORCH_CUDA, $DEVICE), accelerate $ACCELERATE," \
  "accelwrap $ACCELWRAP; bitsandbytes: $BNB; shipped configs:" $(cut -d'|' -f1 <<<"$CONFIGS")
mapfile -t CUDA_TESTS < <(find tests -name 'test_*cuda*.py' | sort)
CUDA_TESTS+=(tests/optim/optimizer/test_finite_check.py)  # the fused NaN/inf check on CUDA
gpu_step cuda_tests "${RUN[@]}" -m pytest -q -rs -p no:cacheprovider "${CUDA_TESTS[@]}" \
  -k "not bitsandbytes"

train() {  # train WORK CONFIG [key=value ...]: train, then require a finite last validation
  "${RUN[@]}" scripts/train.py "configs/$2.yaml" --work-dir "$OUT/work/$1" "${QUIET[@]}" \
    "${@:3}" || return 1
  local last; last=$(cat "$OUT/work/$1"/*/*.log | grep -a "(val)" | tail -n 1)
  if [ -z "$last" ] || grep -qiE "\b(nan|inf)\b" <<<"$last"; then
    echo "gpu_check: no finite validation at the end: ${last:-none}"; return 1
  fi
}
SELECTED=${GPU_CHECK_CONFIGS:-}
while IFS='|' read -r name variants length; do
  read -ra short <<<"$length"
  unselected=
  [ -n "$SELECTED" ] && [[ ",$SELECTED," != *",$name,"* ]] &&
    unselected="not in GPU_CHECK_CONFIGS=$SELECTED"
  if [ -n "$unselected" ]; then skip train_"$name" "$unselected"
  else background train_"$name" train "$name" "$name" "${short[@]}"
  fi
  IFS=';' read -ra each <<<"$variants"
  for variant in "${each[@]}"; do
    dtype=${variant%%:*}; IFS=',' read -ra extra <<<"${variant#*:}"
    if [ -n "$unselected" ]; then
      skip "train_${name}_$dtype" "$unselected"
    elif [ "$CUDA" = 1 ]; then
      background "train_${name}_$dtype" train "${name}_$dtype" "$name" "${short[@]}" "${extra[@]}"
    else
      skip "train_${name}_$dtype" "$NO_CUDA"
    fi
  done
done <<<"$CONFIGS"

kill_and_resume() {  # kill_and_resume WORK LAUNCH...: SIGKILL mid-run, then --resume auto
  local work=$1; shift
  local epochs=3 kill=iter:60
  [ "$DRY" = 1 ] && epochs=2 kill=iter:50   # a checkpoint after epoch 1 (45 iterations)
  local args=(scripts/train.py configs/digits_adamw_cosine.yaml --work-dir "$OUT/work/$work"
              "${QUIET[@]}" train_cfg.max_epochs=$epochs)
  if ACCELWRAP_TEST_KILL=$kill "$@" "${args[@]}"; then echo "the run was not killed"; return 1; fi
  echo "killed at $kill; latest checkpoint: $(cat "$OUT/work/$work/checkpoints/latest")"
  "$@" "${args[@]}" --resume auto >"$OUT/work/$work.resumed" 2>&1 || {
    cat "$OUT/work/$work.resumed"; return 1; }
  cat "$OUT/work/$work.resumed"
  grep -q "resumed from" "$OUT/work/$work.resumed"
}
background kill_and_resume kill_and_resume resume "${RUN[@]}"
wait

fsdp_one_gpu() {  # FSDP2, one process: sharded checkpoints, kill + resume, merge the shards
  kill_and_resume fsdp "${RUN[@]}" -m accelerate.commands.launch \
    --config_file launch_configs/fsdp.yaml --num_processes 1 || return 1
  local ckpt; ckpt="$OUT/work/fsdp/checkpoints/$(cat "$OUT/work/fsdp/checkpoints/latest")"
  ls "$ckpt"/pytorch_model_fsdp_0/*.distcp || { echo "no sharded model in $ckpt"; return 1; }
  "${RUN[@]}" -m accelwrap.cli merge-shards "$ckpt" "$OUT/work/fsdp_merged" &&
    [ -f "$OUT/work/fsdp_merged/model.safetensors" ]
}
gpu_step fsdp_one_gpu fsdp_one_gpu

bnb_8bit() {  # the 8-bit optimizer tests, then a training run with AdamW8bit
  "${RUN[@]}" -m pytest -q -rs -p no:cacheprovider "${CUDA_TESTS[@]}" -k bitsandbytes &&
    train bnb_adamw8bit digits_adamw_cosine optim_wrapper.optimizer.type=AdamW8bit \
      train_cfg.max_epochs=$([ "$DRY" = 1 ] && echo 2 || echo 5)
}
if [ "$CUDA" = 0 ]; then skip bnb_8bit "$NO_CUDA"
elif [ "$BNB" != ok ]; then skip bnb_8bit "bitsandbytes does not import: $BNB"
else step bnb_8bit bnb_8bit
fi

BENCH=(--rounds 50)
[ "$DRY" = 1 ] && BENCH=(--rounds 2 --iters 4 --hidden 16 --counts 1 2)
gpu_step bench_wrapper_gpu "${RUN[@]}" benchmarks/bench_optim_wrapper.py --device cuda "${BENCH[@]}"

# --- report: a table, the benchmark's medians, then ONE summary line --------------------
rows=()
for file in "$OUT"/status/*; do rows+=("$(cat "$file")"); done
passed=0 failed=0 skipped=0 parts=()
echo
echo "gpu_check steps ($PY; logs in $OUT):"
for row in "${rows[@]}"; do
  IFS='|' read -r name status secs note <<<"$row"
  printf '  %-34s %-5s %5s  %s\n' "$name" "$status" "$secs" "$note"
  case "$status" in
    pass) passed=$((passed + 1)); parts+=("$name pass $secs") ;;
    skip) skipped=$((skipped + 1)); parts+=("$name skip [$note]") ;;
    *) failed=$((failed + 1)); parts+=("$name FAIL $secs") ;;
  esac
done
if [ -s "$OUT/bench_wrapper_gpu.log" ]; then
  echo; sed -n '/^Median/,/^$/p' "$OUT/bench_wrapper_gpu.log" | sed -n '3,$p'
fi
verdict=PASS; [ "$failed" -gt 0 ] && verdict=FAIL
mode="GPU: $DEVICE"
[ "$CUDA" = 0 ] && mode="no CUDA"
[ "$DRY" = 1 ] && mode="dry run, $mode"
joined=$(printf '%s; ' "${parts[@]}")
echo
echo "gpu_check summary: $verdict $passed passed, $failed failed, $skipped skipped in" \
     "$((SECONDS - START))s ($mode) | ${joined%; }"
[ "$failed" -eq 0 ]
