#!/usr/bin/env bash
# Issue 16, part 5: everything a session lent a CUDA GPU checks, as one prepared run (device
# time is short: each step has a time limit, the whole run a deadline, and every step's output
# lands in OUT_DIR/session.log as it goes).
#
#   bash experiments/gpu_session.sh OUT_DIR [NAME]
#
# From the repository root, with budgetsearch's dependencies importable (on a lent machine that
# has no package index: the wheels carried in .whl/, see experiments/README.md, "GPU").
#   1. profiles the GPU: 'budgetsearch profile --name NAME --runtime cuda' (float32 and float16,
#      the default fit set plus 3x128x128 and 3x224x224 inputs) -> hw_profiles/NAME[-fp16].yaml
#      and NAME.csv, copied to OUT_DIR;
#   2. 'budgetsearch devices' (the GPU pair checked, the CPU profiles not checked there);
#   3. the latency benchmark on both GPU profiles, foreign networks at 3x64x64 and 3x224x224;
#   4. a Ray Tune search on the GPU: 'budgetsearch run --engine ray --gpus-per-trial 0.5' on a
#      two-class image folder made here, priced by the new profile;
#   5. the gpu-marked tests; 6. the zoo (and a few timm networks) on the GPU pair.
set -u -o pipefail
OUT=${1:?usage: gpu_session.sh OUT_DIR [NAME]}
NAME=${2:-gpu-h200}
DEADLINE_S=${DEADLINE_S:-530}
# QUICK=1: a smoke run of this script (a small fit set, one round, six benchmark families)
if [[ ${QUICK:-0} == 1 ]]; then
    SMALL_PROFILE=(--fit 18 --holdout 9 --rounds 1) SMALL_BENCH=(--quick --rounds 1)
else
    SMALL_PROFILE=() SMALL_BENCH=(--rounds 5)
fi
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
export BUDGETSEARCH_STATE_DIR=/tmp/budgetsearch-state
mkdir -p "$OUT"
LOG=$OUT/session.log
start=$(date +%s)

step() {  # step NAME LIMIT_S COMMAND...: runs it within its limit and the run's deadline
    local name=$1 limit=$2 left
    shift 2
    if [[ -n ${STEPS:-} && " $STEPS " != *" $name "* ]]; then
        return 0  # STEPS="ray-search zoo": only those steps
    fi
    left=$((DEADLINE_S - ($(date +%s) - start)))
    ((left < limit)) && limit=$left
    if ((limit < 10)); then
        echo "== $name: skipped, the run's deadline is near" | tee -a "$LOG"
        return 0
    fi
    echo "== $name ($(($(date +%s) - start)) s in, limit ${limit} s): $*" | tee -a "$LOG"
    timeout "$limit" "$@" >"$OUT/step.log" 2>&1
    local rc=$?
    cat "$OUT/step.log" >>"$LOG"
    echo "-- $name: exit $rc after $(($(date +%s) - start)) s" | tee -a "$LOG"
    grep -v '^\s*$' "$OUT/step.log" | tail -n "${TAIL:-12}"
    rm -f "$OUT/step.log"
}

{
    date -u
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem,utilization.gpu \
        --format=csv 2>&1
    $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
torch.cuda.get_device_name(0), 'cudnn', torch.backends.cudnn.version())"
    nproc
    head -1 /proc/loadavg
} 2>&1 | tee -a "$LOG"

step profile 300 $PY -m budgetsearch profile --name "$NAME" --runtime cuda --input-size 128 \
    --input-size 224 --force --no-progress "${SMALL_PROFILE[@]}"
cp hw_profiles/"$NAME".yaml hw_profiles/"$NAME"-fp16.yaml hw_profiles/"$NAME".csv "$OUT"/ \
    2>/dev/null
TAIL=30 step devices 60 $PY -m budgetsearch devices
TAIL=40 step benchmark 240 $PY experiments/latency_accuracy.py --profiles "$NAME" \
    "$NAME"-fp16 --input-size 64 --input-size 224 "${SMALL_BENCH[@]}" --out "$OUT"
$PY experiments/make_image_folder.py /tmp/stripes >>"$LOG" 2>&1
step ray-search 180 $PY -m budgetsearch run --engine ray --gpus-per-trial 0.5 \
    --max-concurrent 2 --cpus-per-trial 2 --device "$NAME" --target-latency 50% \
    --dataset /tmp/stripes --trials 6 --timeout 2m --out /tmp/ray-run --force --no-progress
grep -h '"device"' /tmp/ray-run/trials/*/report.json 2>/dev/null | sort | uniq -c | tee -a "$LOG"
step gpu-tests 120 $PY -m pytest -q -m gpu -p no:cacheprovider tests/cost/test_gpu_profiles.py
TAIL=30 step zoo 150 $PY experiments/zoo_latency.py --profiles "$NAME" "$NAME"-fp16 \
    --timm resnet50d efficientnet_b0 convnext_nano regnety_016
echo "done after $(($(date +%s) - start)) s" | tee -a "$LOG"
