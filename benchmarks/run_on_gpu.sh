#!/usr/bin/env bash
# One lease of a GPU machine, in one command: what has to run there and cannot run on the CPU CI.
#
#   bash benchmarks/run_on_gpu.sh OUT SECONDS
#
# Phase 1, alone on the GPU (timings): bench_real_size.py on CUDA (ViT-base with 1,000 labels,
# BERT-base), the full 1,000-row Jacobian included. Phase 2, in parallel until SECONDS have passed
# since the start: the `gpu` tests, the remaining rows of the equivalence table (several
# processes sharing results/equivalence-mnist-certified), and the final version's MNIST protocol
# with the official code's settings (several processes sharing one folder). Every long run is
# resumable and is stopped by SIGTERM, which keeps finished rows. Writes OUT/env.txt,
# OUT/bench.md, OUT/pytest-gpu.txt, OUT/results.tgz (new rows and logs), and with SIGN=1 (the
# default) OUT/sign-flip-rates.txt and OUT/m7-eigh-cuda-q2.txt (issue 25: how often cuSOLVER's
# eigenvector sign flips along a walk, and the q2 walks with that sign).
#
# The environment can choose: CASES (phase 1's bench cases), SIGN=0 (skip the sign runs),
# LONE_WALK=1 (time one walk of the protocol alone on the GPU, SiMEC and SiMExp, before phase
# 2), TESTS, EQ_PROCS, INTERP_PROCS,
# INTERP_FIRST (options for a first pass of the interpretations protocol, e.g. "--repetitions 1
# --etas 10"; each process then goes on with the full protocol) and INTERP_SEED_ROWS (folders whose
# rows, made elsewhere with the same settings, are copied in first so the GPU skips them; only
# rows made here come back).
#
# Expects the MNIST IDX files in .devcarry/mnist (copied there from ../shared/data/mnist, which
# does not travel) and, optionally, wheels in .devcarry/whl (plotly, for the viewer). Before a
# lease: `mkdir -p .devcarry && cp -r ../shared/data/mnist .devcarry/`, then run the script with
# .devcarry carried (it is git-ignored, so it travels only when named).
set -u
OUT=${1:-/tmp/gpu-out}
BUDGET=${2:-480}
START=$(date +%s)
mkdir -p "$OUT" logs-gpu
elapsed() { echo $(($(date +%s) - START)); }
if ls .devcarry/whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
        .devcarry/whl/*.whl && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
mkdir -p ../shared/data && [ -d ../shared/data/mnist ] || cp -r .devcarry/mnist ../shared/data/
{
    nvidia-smi
    nproc
    python3 -c "import torch, transformers, simec; print('torch', torch.__version__, 'cuda', \
torch.version.cuda, 'transformers', transformers.__version__, torch.cuda.get_device_name())"
} >"$OUT/env.txt" 2>&1
echo "[$(elapsed) s] env done" | tee -a "$OUT/env.txt"

# phase 1: timings, nothing else on the GPU
DEFAULT_CASES="vit-top10-fresh vit-top10-fresh-noleak vit-top10-reuse-leakfresh"
DEFAULT_CASES="$DEFAULT_CASES vit-top5-fresh-noleak vit-row-cost bert128-fresh bert128-reuse"
DEFAULT_CASES="$DEFAULT_CASES bert256-fresh vit-full-fresh"
CASES=${CASES-$DEFAULT_CASES}
{
    for c in $CASES; do
        timeout 60 python3 benchmarks/bench_real_size.py --device cuda --steps 5 --case "$c" \
            | grep -v '^|---' | grep -v '^| case' || echo "| $c | timed out or failed |"
    done
} >"$OUT/bench.md" 2>&1
echo "[$(elapsed) s] phase 1 done" | tee -a "$OUT/env.txt"

# phase 1b: one walk of the protocol's settings alone on the GPU (manifest: elapsed_seconds)
if [ "${LONE_WALK:-0}" = 1 ]; then
    for alg in simec simexp; do
        for steps in 20 220; do
            timeout 60 python3 -m simec explore --model src/simec/assets/vit-mnist \
                --data ../shared/data/mnist --limit 1 --algorithm "$alg" --steps "$steps" \
                --output-metric euclidean-logits --step-rule official-code --eta 10 \
                --metric-blocks token --box embedding-bounds --projection step --seed 0 \
                --device cuda --quiet --out "$OUT/lone-$alg-$steps" >/dev/null 2>&1
            printf '%s %s steps: ' "$alg" "$steps" >>"$OUT/lone-walk.txt"
            grep -o '"elapsed_seconds": [0-9.]*' "$OUT/lone-$alg-$steps/manifest.jsonl" \
                >>"$OUT/lone-walk.txt" 2>&1 || echo failed >>"$OUT/lone-walk.txt"
        done
    done
    echo "[$(elapsed) s] lone walk done" | tee -a "$OUT/env.txt"
fi

# phase 2: correctness and throughput, in parallel
LEFT=$((BUDGET - $(elapsed) - 30))
export OMP_NUM_THREADS=1
if [ "${SIGN:-1}" = 1 ]; then  # issue 25: cuSOLVER's eigenvector sign, its flip rate and M7 q2
    Q2=$(ls results/interpretations-mnist-token/rows | grep 'r0-eta10-q2' | sed 's/.json//' \
        | paste -sd, -)
    timeout $LEFT python3 benchmarks/diag_sign_persistence.py --steps 200 \
        --only 00001-r0-eta10-q2,00004-r0-eta10-q2,00266-r0-eta10-q2,00001-r0-eta10-all \
        >"$OUT/sign-flip-rates.txt" 2>&1 &
    timeout $LEFT python3 benchmarks/diag_m7_temperature.py --temperatures 1 --sign eigh-cuda \
        --rows results/interpretations-mnist-token --only "$Q2" >"$OUT/m7-eigh-cuda-q2.txt" 2>&1 &
fi
if [ "${TESTS:-1}" = 1 ]; then
    timeout $LEFT python3 -m pytest -p no:cacheprovider -m gpu tests/explore/test_gpu.py -q \
        >"$OUT/pytest-gpu.txt" 2>&1 &
fi
INTERP=results/interpretations-mnist-token-protocol-gpu
mkdir -p "$INTERP/rows"
for seed in ${INTERP_SEED_ROWS:-}; do cp -n "$seed"/rows/*.json "$INTERP/rows/"; done
touch logs-gpu/.marker  # what is newer than this was made here
for i in $(seq 1 "${EQ_PROCS:-6}"); do
    timeout $LEFT python3 -m simec experiment equivalence --model src/simec/assets/vit-mnist \
        --data ../shared/data/mnist --pairs 20 --walk-steps 50 --guided-steps 10 --segments 4 \
        --energy-iterations 10 --max-segments 32 --match-steps 300 --device cuda --quiet \
        --out results/equivalence-mnist-certified >"logs-gpu/equivalence-$i.log" 2>&1 &
    sleep 2
done
END=$(($(date +%s) + LEFT))
interpretations() {
    local left=$((END - $(date +%s)))
    [ "$left" -gt 10 ] || return 0
    timeout "$left" python3 -m simec experiment interpretations \
        --model src/simec/assets/vit-mnist --data ../shared/data/mnist --metric-blocks token \
        --step-rule official-code --device cuda --quiet --out "$INTERP" "$@"
}
for i in $(seq 1 "${INTERP_PROCS:-8}"); do
    {
        [ -z "${INTERP_FIRST:-}" ] || interpretations $INTERP_FIRST
        interpretations
    } >"logs-gpu/interpretations-$i.log" 2>&1 &
    sleep 2
done
wait
echo "[$(elapsed) s] phase 2 done" | tee -a "$OUT/env.txt"
nvidia-smi --query-gpu=memory.used,utilization.gpu --format=csv >>"$OUT/env.txt" 2>&1
find results/equivalence-mnist-certified/rows -name '*.json' -newer logs-gpu/.marker \
    >logs-gpu/new-equivalence-rows.txt
find "$INTERP/rows" -name '*.json' -newer logs-gpu/.marker >logs-gpu/new-interpretation-rows.txt
tar czf "$OUT/results.tgz" logs-gpu $(cat logs-gpu/new-interpretation-rows.txt) \
    $(cat logs-gpu/new-equivalence-rows.txt) 2>>"$OUT/env.txt"
echo "[$(elapsed) s] all done" | tee -a "$OUT/env.txt"
