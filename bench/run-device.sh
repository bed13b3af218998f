#!/usr/bin/env bash
# One call on a lent GPU: the fine-tune benchmark of one model, one process per setting (an OOM or a
# time-out loses that setting only), each setting started only while enough of the call's time is
# left. Writes per-setting JSON and one log under $OUT (at most 8 files come back).
#
#   bash bench/run-device.sh 11b|90b|extra|fast|fast2|exact*|mfu|90b12 [seconds of budget, default 560]
#
# Needs torchtune 0.6.1 + torchao 0.11.0 and their import-time deps as wheels in .whl/ (the
# device has no registry); see bench/README.md.
set -uo pipefail
MODEL=$1
BUDGET=${2:-560}
START=$(date +%s)
OUT=${OUT:-/tmp/bench-out}; mkdir -p "$OUT"
LOG="$OUT/$MODEL.log"
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl >>"$LOG" 2>&1 || exit 1
fi
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
BENCH="python3 images/trainer/bench_finetune.py"
{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv; python3 -c 'import torch; print(torch.__version__, torch.cuda.get_device_name())'; } >>"$LOG" 2>&1

left() { echo $(( BUDGET - ($(date +%s) - START) )); }
run() {  # run NAME MIN_SECONDS ARGS...: one process, killed when the call's budget ends
    local name=$1 need=$2; shift 2
    local l; l=$(left)
    if [ "$l" -lt "$need" ]; then echo "== $name skipped: ${l}s left, needs ${need}s" | tee -a "$LOG"; return; fi
    echo "== $name (${l}s left): $*" >>"$LOG"
    local t0; t0=$(date +%s)
    local file="$OUT/$MODEL-$name.json"; [ "$MODEL" = extra ] && file="$OUT/$name.json"
    case $MODEL in fast*|exact*|mfu) file="$OUT/11b-$MODEL-$name.json";; 90b12*) file="$OUT/90b-$MODEL-$name.json";; esac
    # RUN_ENV: inductor knobs for this setting only (the JSON records them as inductor_env)
    timeout -k 5 $(( l - 8 )) env ${RUN_ENV:-} $BENCH "$@" --json-out "$file" >>"$LOG" 2>&1
    echo "== $name rc=$? in $(( $(date +%s) - t0 ))s" | tee -a "$LOG"
}

case $MODEL in
11b)
    C=bench/configs/lora-11b.yaml
    run blog 60 --config $C --settings blog:m16
    run best-m4 150 --config $C --settings best:m4 --no-flops
    run best-m4-g 100 --config $C --settings best:m4:g --no-flops
    run best-m2 120 --config $C --settings best:m2 --no-flops
    run best-m8 120 --config $C --settings best:m8 --no-flops
    ;;
90b)
    C=bench/configs/qlora-90b.yaml
    # 90B steps are 25-40 s: 3 timed steps, not 12, to fit a call
    run blog 200 --config $C --settings blog:m2 --steps 3 --flop-samples 2
    run nf4-compile-m2 200 --config $C --settings no_ac_compile:m2 --steps 3 --no-flops
    run no-ac-m2 150 --config $C --settings no_ac:m2 --steps 3 --no-flops
    ;;
fast)  # 11B with the recipe's default sampler against the blog's exact setting (unbucketed, as the blog):
        # the shipped best:m4 at text bucket 128 (what the recipe now runs), micro-batch 1 (pads nothing),
        # and best:m4 with pinned, non-blocking copies (the recipe's pageable copies drain the GPU's queue
        # before every micro-batch); profiles say how busy the GPU is and with what
    C=bench/configs/lora-11b.yaml
    run blog 60 --config $C --settings blog:m16
    run best-m4-tb128 130 --config $C --settings best:m4 --text-bucket 128 --no-flops --profile
    run best-m1 140 --config $C --settings best:m1 --text-bucket 1 --no-flops --profile
    run best-m4-tb128-pin 80 --config $C --settings best:m4 --text-bucket 128 --no-flops --profile --pin-memory
    ;;
fast2)  # the second look: unbucketed text at micro-batch 4 and 2, micro-batch 1 at 128, the blog again
    C=bench/configs/lora-11b.yaml
    run blog 60 --config $C --settings blog:m16 --no-flops
    run best-m4-tb1 140 --config $C --settings best:m4 --text-bucket 1 --no-flops --profile
    run best-m2-tb1 120 --config $C --settings best:m2 --text-bucket 1 --no-flops
    run best-m1-tb128 100 --config $C --settings best:m1 --text-bucket 128 --no-flops
    ;;
exact)  # the exact-tiles encoder (each image's real tiles only, the recipe's sampler) against the
        # shipped best:m4 and the blog's exact setting, then pinned copies on top, then m8
    C=bench/configs/lora-11b.yaml
    run blog 60 --config $C --settings blog:m16
    run best-m4 130 --config $C --settings best:m4 --text-bucket 128 --no-flops
    run best-m4-x 130 --config $C --settings best:m4:x --text-bucket 128 --no-flops --profile
    run best-m4-x-pin 90 --config $C --settings best:m4:x --text-bucket 128 --no-flops --pin-memory
    run best-m8-x 90 --config $C --settings best:m8:x --text-bucket 128 --no-flops
    ;;
exact2)  # the exact-tiles encoder at other micro-batches and a finer text bucket (pinned copies)
    C=bench/configs/lora-11b.yaml
    run blog 60 --config $C --settings blog:m16
    run best-m8-x-pin 120 --config $C --settings best:m8:x --text-bucket 128 --no-flops --pin-memory
    run best-m4-x-pin-tb64 110 --config $C --settings best:m4:x --text-bucket 64 --no-flops --pin-memory
    run best-m4-x-tb64 80 --config $C --settings best:m4:x --text-bucket 64 --no-flops
    run best-m2-x-pin 80 --config $C --settings best:m2:x --text-bucket 128 --no-flops --pin-memory
    ;;
exact3)  # static graphs per shape class (automatic dynamic shapes off) against the shipped best:m4:x
    C=bench/configs/lora-11b.yaml
    run blog 60 --config $C --settings blog:m16
    run best-m4-x-static 150 --config $C --settings best:m4:x --text-bucket 128 --no-flops --static-shapes
    run best-m4-x 70 --config $C --settings best:m4:x --text-bucket 128 --no-flops
    ;;
mfu)  # what is left between 39 % and 40 % MFU: pinned copies as the baseline, with a profile; Triton kernels tuned by coordinate descent; static graphs per shape class
    C=bench/configs/lora-11b.yaml
    run blog 60 --config $C --settings blog:m16
    run best-m4-x-pin 90 --config $C --settings best:m4:x --text-bucket 128 --no-flops --pin-memory --profile
    RUN_ENV=TORCHINDUCTOR_COORDINATE_DESCENT_TUNING=1 run best-m4-x-pin-cdt 120 --config $C --settings best:m4:x --text-bucket 128 --no-flops --pin-memory
    run best-m4-x-pin-static 240 --config $C --settings best:m4:x --text-bucket 128 --no-flops --pin-memory --static-shapes
    ;;
90b12)  # the 90B at 12 timed steps (a blog step is 37 s: the blog's setting fills one call)
    C=bench/configs/qlora-90b.yaml
    run blog 480 --config $C --settings blog:m2 --steps 12 --flop-samples 2
    ;;
90b12c)  # the shipped 90B setting at 12 timed steps
    C=bench/configs/qlora-90b.yaml
    run compile-m2 300 --config $C --settings compile:m2 --steps 12 --no-flops
    ;;
extra)  # the second look: 90B compile with checkpointing (NF4 + compile without it ran out of memory), 11B m8, static shapes
    run 90b-compile-m2 230 --config bench/configs/qlora-90b.yaml --settings compile:m2 --steps 3 --no-flops
    run 11b-best-m8 120 --config bench/configs/lora-11b.yaml --settings best:m8 --no-flops
    run 11b-best-m4-static 120 --config bench/configs/lora-11b.yaml --settings best:m4 --no-flops --static-shapes
    ;;
esac
tail -n 30 "$LOG" | grep -E "^(==|setting|blog|best|no_ac|compile)" || true
