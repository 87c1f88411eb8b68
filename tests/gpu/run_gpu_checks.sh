#!/usr/bin/env bash
# The GPU checks, for one GPU machine that cannot download (torch and transformers of its own, no deepspeed,
# ray, datasets or rouge-score; `python3` only): within 8 minutes on one H200, the paths most likely to break.
#   kit                the wheels of .gpu-kit (tests/gpu/prepare_kit.sh, run where the index is reachable)
#                      installed with pip --target; PYTHONPATH = the repo and that folder
#   env                versions, device, DeepSpeed's accelerator, the wheels' needs met, e2wm importable
#   model              a 13B-layer-shaped Llama (hidden 5120, MLP 13824, 40 heads, 4 layers), bf16, saved
#   load_zero3         from_pretrained under ZeRO-3: partitioned as it loads, weights equal to the file's
#   fisher_bf16_zero3  e2wm fisher --zero-stage 3 --precision bf16 --gradient-checkpointing: tokens/s, MFU,
#                      peak memory in all and across one decoder layer
#   train_gc           e2wm train, ZeRO-3, bf16, gradient checkpointing, EWC-LoRA (with that F), 4 steps,
#                      a checkpoint at step 2 (the deepspeed launcher): tokens/s, MFU, peak memory
#   resume             the same run resumed from step 2: steps 3-4 as before
#   eval               e2wm bench eval on that model: multiple-choice and generation items/s
#   zero3_offload      e2wm train with zero3_offload: DeepSpeed's CPU Adam, JIT-built there
# One GPU: every "multi-rank" path runs at world size 1 (NCCL takes one rank per GPU); the all-gathers and
# reduce-scatters run, but over one rank.
# --dry: the same checks on this CPU (gloo, tiny shapes, ray/datasets/rouge-score hidden as on that machine),
# without the GPU-only figures and limits. Each check prints PASS/FAIL (SKIP: nothing to check here); the exit
# code is 1 when one failed.
#
# usage: tests/gpu/run_gpu_checks.sh OUT_DIR [--dry] [--only CHECK,CHECK...]
#   OUT_DIR gets checks.log (these lines), steps.log (each step's output) and summary.json (every figure);
#   models and runs go to a temporary folder ($E2WM_GPU_WORK to choose it). $E2WM_GPU_KIT: the wheel folder.
set -uo pipefail
usage() { echo "usage: $0 OUT_DIR [--dry] [--only CHECK,CHECK...]" >&2; exit 2; }
[ $# -ge 1 ] && [ "${1#-}" = "$1" ] || usage
out=$1; shift
dry=${E2WM_GPU_DRY:-0}; only=""
while [ $# -gt 0 ]; do
    case $1 in
        --dry) dry=1 ;;
        --only) [ $# -ge 2 ] || usage; only=$2; shift ;;
        *) usage ;;
    esac
    shift
done
root=$(cd "$(dirname "$0")/../.." && pwd)
here=$root/tests/gpu
kit=${E2WM_GPU_KIT:-$root/.gpu-kit}
mkdir -p "$out" && out=$(cd "$out" && pwd) || exit 2
work=${E2WM_GPU_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/e2wm-gpu-checks.XXXXXX")}
res=$work/results
rm -rf "$res" && mkdir -p "$res"
: > "$out/steps.log"
: > "$out/checks.log"
say() { echo "$*" | tee -a "$out/checks.log"; }
port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if [ "$dry" = 1 ]; then
    D=(--dry)
    total=2400 slow=4                           # seconds for everything, and each check's budget x4 (CPU)
    export DS_ACCELERATOR=cpu OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
    export TORCH_EXTENSIONS_DIR=${TORCH_EXTENSIONS_DIR:-${TMPDIR:-/tmp}/e2wm-torch-ext}   # as e2wm's CPU runs
    export PYTHONPATH=$root:$here/gpu_machine${PYTHONPATH:+:$PYTHONPATH}
    samples=8 length=64 fmicro=4 rows_len=128 gbatch=4 micro=2
    bench=(--items 2 --gen-items 2 --new-tokens 4 --words 20)
else
    D=()
    total=470 slow=1                            # 8 minutes, less the summary
    unset DS_ACCELERATOR                        # DeepSpeed finds CUDA
    export TORCH_EXTENSIONS_DIR=$work/torch-ext
    export PYTHONPATH=$root:$work/site${PYTHONPATH:+:$PYTHONPATH}
    samples=32 length=512 fmicro=8 rows_len=800 gbatch=16 micro=8
    bench=(--items 16 --gen-items 16 --new-tokens 32)
fi
deadline=$((SECONDS + total))
names=()

result() {   # NAME STATUS WHY: a result the check itself could not write
    python3 -c 'import json, sys; r = dict(zip(("check", "status", "why"), sys.argv[2:]), figures={})
open(sys.argv[1], "w").write(json.dumps(r))' "$res/$1.json" "$1" "$2" "$3"
}

step() {   # NAME BUDGET_S COMMAND...: the command under `timeout`, within what is left of the total
    local name=$1 budget=$2; shift 2
    if [ -n "$only" ] && [[ ",$only," != *",$name,"* ]]; then return; fi
    names+=("$name")
    local left=$((deadline - SECONDS)) t0=$SECONDS log=$work/$name.log rc status line
    budget=$((budget * slow))
    local t=$((budget < left ? budget : left))
    rm -f "$res/$name.json"
    if [ "$t" -lt 10 ]; then
        result "$name" FAIL "not run: the ${total} s for all checks are spent"
        say "FAIL $name: not run, no time left of ${total} s"
        return
    fi
    timeout -k 15 "$t" "$@" < /dev/null > "$log" 2>&1
    rc=$?
    { echo "===== $name: rc $rc after $((SECONDS - t0)) s (limit $t s): $*"; tail -c 300000 "$log"; } >> "$out/steps.log"
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
        result "$name" FAIL "timed out after $t s"
    elif [ ! -f "$res/$name.json" ]; then
        result "$name" FAIL "exited $rc without a result"
    elif [ $rc -ne 0 ] && grep -q '"status": "PASS"' "$res/$name.json"; then
        result "$name" FAIL "exited $rc after its checks passed"
    fi
    status=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["status"])' "$res/$name.json")
    line=$(grep '^RESULT ' "$log" | tail -1 | sed 's/^RESULT [^:]*: [A-Z]*//; s/^: //; s/^ *| *//')
    say "$status $name ($((SECONDS - t0)) s of $budget s)${line:+: $line}"
    if [ "$status" = FAIL ]; then
        python3 -c 'import json, sys; w = json.load(open(sys.argv[1]))["why"]; w and print("    why:", w)' "$res/$name.json" \
            | tee -a "$out/checks.log"
        grep -v -e '^\[W' -e 'FutureWarning' -e 'return func' "$log" | tail -12 | sed 's/^/    | /' | tee -a "$out/checks.log"
    fi
}

torchrun=(python3 -m torch.distributed.run --nproc_per_node 1 --master_addr 127.0.0.1 --master_port)   # then a port
deepspeed=(python3 -m deepspeed.launcher.runner --num_gpus 1 --master_addr 127.0.0.1 --master_port)

say "e2wm GPU checks$([ "$dry" = 1 ] && echo ' (dry: CPU, tiny shapes, gloo)'): out $out, work $work"
if [ "$dry" = 1 ]; then
    say "one rank: the multi-rank paths (ZeRO-3 gathers, reduce-scatters) run at world size 1"
else
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | sed 's/^/gpu: /' | tee -a "$out/checks.log"
    say "one GPU: the multi-rank paths (ZeRO-3 gathers, reduce-scatters) run at world size 1 (NCCL takes one rank per GPU)"
fi

if [ "$dry" = 1 ]; then
    step kit 60 python3 "$here/gpu_kit.py" install "$kit" "$work/site-for-gpu" "$res" --for-target
else
    step kit 60 python3 "$here/gpu_kit.py" install "$kit" "$work/site" "$res"
fi
step env 60 python3 "$here/gpu_kit.py" env "$res" "${D[@]}" --kit "$kit"
if [ "$dry" != 1 ] && { [ -z "$only" ] || [[ ",$only," == *",zero3_offload,"* ]]; }; then
    # DeepSpeed's CPU Adam JIT-builds on the CPUs while the GPU works; zero3_offload loads it (or waits for it)
    export E2WM_KIT_CPU_ADAM_BUILD=$work/cpu_adam_build.txt
    ( t0=$SECONDS
      timeout -k 10 300 python3 -c 'from deepspeed.ops.op_builder.cpu import CPUAdamBuilder; CPUAdamBuilder().load()' \
          < /dev/null > "$work/cpu_adam_build.log" 2>&1
      echo "rc $? after $((SECONDS - t0)) s" > "$E2WM_KIT_CPU_ADAM_BUILD" ) &
fi
step model 120 python3 "$here/gpu_checks.py" make-model "$res" "$work/model" "${D[@]}"
step load_zero3 120 "${torchrun[@]}" "$(port)" "$here/gpu_checks.py" load-zero3 "$res" "$work/model" "${D[@]}"
step fisher_bf16_zero3 150 "${torchrun[@]}" "$(port)" "$here/gpu_checks.py" fisher "$res" "${D[@]}" -- --model "$work/model" \
    --corpus builtin:pydoc --max-samples $samples --max-length $length --micro-batch $fmicro --zero-stage 3 \
    --precision bf16 --gradient-checkpointing --out "$work/fisher"
reg=(--set regularizer.kind=none)
[ -f "$work/fisher/fisher.safetensors" ] && reg=(--set regularizer.kind=ewc_lora --set "regularizer.fisher=$work/fisher")
train=(--set "data.path=$work/rows.jsonl" --set "data.max_length=$rows_len" --set "model.name_or_path=$work/model"
       --set model.gradient_checkpointing=true --set optim.precision=bf16 --set optim.global_batch_size=$gbatch
       --set optim.micro_batch_size=$micro --set logging.tensorboard=false --set logging.every=1)
step train_gc 180 "${deepspeed[@]}" "$(port)" "$here/gpu_checks.py" train "$res" train_gc 4 "${D[@]}" -- --set "out=$work/train" \
    "${train[@]}" "${reg[@]}" --set deepspeed.config=zero3 --set optim.max_steps=4 --set checkpoint.every=2
[ -f "$work/train/metrics.jsonl" ] && cp "$work/train/metrics.jsonl" "$work/train_first.jsonl"
step resume 150 "${deepspeed[@]}" "$(port)" "$here/gpu_checks.py" train "$res" resume 4 "${D[@]}" \
    --compare "$work/train_first.jsonl" 2 -- --set "out=$work/train" "${train[@]}" "${reg[@]}" --set deepspeed.config=zero3 --set optim.max_steps=4 \
    --set checkpoint.every=2 --resume "$work/train/checkpoints/step-00000002"
step eval 120 python3 "$here/gpu_checks.py" eval "$res" "${D[@]}" -- --model "$work/model" --precision bf16 "${bench[@]}"
step zero3_offload 240 "${deepspeed[@]}" "$(port)" "$here/gpu_checks.py" train "$res" zero3_offload 2 "${D[@]}" -- \
    --set "out=$work/offload" "${train[@]}" --set regularizer.kind=none --set deepspeed.config=zero3_offload \
    --set optim.max_steps=2 --set checkpoint.every=0

if [ -f "$work/cpu_adam_build.log" ]; then
    { echo "===== the CPU Adam JIT build (background)"; tail -c 100000 "$work/cpu_adam_build.log"; } >> "$out/steps.log"
fi
IFS=, ; checks="${names[*]}"; unset IFS
python3 "$here/gpu_checks.py" summary "$res" "$out" "$checks" "${D[@]}" 2>&1 | tee -a "$out/checks.log"
code=${PIPESTATUS[0]}
say "$([ "$code" = 0 ] && echo 'all checks passed' || echo 'some checks FAILED') in $SECONDS s; figures in $out/summary.json"
exit "$code"
