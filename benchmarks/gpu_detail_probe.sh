#!/usr/bin/env bash
# A short GPU run (~4 minutes) on how the scale of the detail a latent model passes around z
# (detail_sigma) affects the methods: it trains the narrow segnet-ae with detail_sigma 1 and 1.5
# (the shipped recipe otherwise, against the classifier in weights/) and runs seed, global,
# preset-fast and preset-local on the first 100 test phantoms with each, in a copy of weights/
# whose `phantom` pack names that autoencoder.
#   DEADLINE=230 XCF="python3 -m xcf.cli" OUT=$OUT bash benchmarks/gpu_detail_probe.sh
# SMALL=1 runs the same steps at toy sizes on the CPU.
set -u
OUT=${OUT:-gpu-out}
DEV=${DEVICE:-cuda}
XCF=${XCF:-xcf}
PY=${PY:-python3}
DEADLINE=${DEADLINE:-230}
PARTS=probe
mkdir -p "$OUT/r"
export XCF_WEIGHTS_DIR=$PWD/weights PYTHONUNBUFFERED=1 TQDM_DISABLE=1 OMP_NUM_THREADS=2
LOG=$OUT/log.txt
T0=$(date +%s)
if [ "${SMALL:-0}" = 1 ]; then N_AE=100; E_AE=1; BENCH="--n 2 --steps 3 --batch-size 2"
else N_AE=3000; E_AE=5; BENCH="--n 100 --batch-size 100"; fi
. "$(dirname "$0")/gpu_lib.sh"
start_packer
for v in 10:1 15:1.5; do
  step "train-d${v%%:*}" 130 $XCF train autoencoder --arch segnet-ae \
    --arch-args "{\"widths\": [16, 32, 64, 128, 128], \"detail_sigma\": ${v#*:}}" --data "phantom:$N_AE" \
    --classifier phantom-small-cnn --out weights --name "phantom-segnet-ae-d${v%%:*}" --epochs "$E_AE" --seed 0 \
    --device "$DEV" --consistency-weight 0.02 --feature-weight 0.01 &
done
wait
for v in 10 15; do
  (
    W=$(mktemp -d); cp weights/*.safetensors weights/manifest.json "$W"/
    $PY -c "import json,sys; p=sys.argv[1]+'/manifest.json'; m=json.load(open(p)); m['packs']['phantom']['latent']='phantom-segnet-ae-d$v'; json.dump(m, open(p, 'w'))" "$W"
    export XCF_WEIGHTS_DIR=$W
    step "bench-d$v" "$(left)" $XCF bench counterfactuals $BENCH --device "$DEV" --threads 2 \
      --methods seed,global,preset-fast,preset-local --out "$OUT/r/bench-d$v"
  ) &
done
wait
finish
