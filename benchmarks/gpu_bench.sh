#!/usr/bin/env bash
# One GPU run behind the GPU numbers in docs/results and the GPU-trained entries of
# weights/manifest.json (H100/H200 class):
#   1. speed on the seed's sizes (benchmarks/perf.py --seed-sizes --device cuda, batch 1/16/64), and
#      on the shipped pneumonia pack: the seed loop vs preset fast in float32 and with its bf16 loop
#      ("auto": bf16 on a CUDA device with bf16, a stop confirmed in float32), at batch 16 and 64,
#   2. the phantom pack (classifier, oracle, autoencoder) and the pneumonia autoencoder, trained with
#      the same commands as `make weights` plus --device cuda,
#   3. the benchmark matrix on 200 phantoms and on the pneumonia test split, and a sweep of
#      early-stopping settings on the pneumonia pack (candidates for preset "fast").
# Each step has a time limit; results are packed into $OUT every 30 s (benchmarks/gpu_lib.sh:
# results.tgz, weights.tar with the manifest and the weights the run wrote, log.txt), so a cut-off
# run still returns what it finished. Usage, from the repo root, with PNEUMONIA the pneumonia data
# folder (images + labels.csv, e.g. the Kermany pediatric pneumonia set resized to 224 px):
#   OUT=gpu-out PNEUMONIA=/path/to/kermany-pneumonia-224 bash benchmarks/gpu_bench.sh
# On a GPU machine that receives only the repository: stage the files the run reads with
# `python benchmarks/device_data.py --data /path/to/kermany-pneumonia-224 --limit 1000`, send
# .devdata (and wheels of packages the machine cannot download: captum, pydantic, pydantic-core,
# annotated-types, typing-inspection) with the repository, install them and the repo there with
# `pip install --no-deps --no-build-isolation -e .`, then run this with
# PNEUMONIA=.devdata/kermany-pneumonia-224 XCF="python3 -m xcf.cli"; delete .devdata afterwards.
# SMALL=1 runs the same steps at toy sizes on the CPU (to check the script itself); PARTS picks the
# groups to run (default "perf train bench"). Weights trained on the remote machine exist only
# there: bench them in the same run as the training, or copy weights.tar back first. Trainings run
# side by side share the GPU (each is 2-3x slower than alone).
set -u
OUT=${OUT:-gpu-out}
PN=${PNEUMONIA:-}   # the pneumonia data folder (images + labels.csv); every group reads it
DEV=${DEVICE:-cuda}
mkdir -p "$OUT/r"
export XCF_WEIGHTS_DIR=$PWD/weights PYTHONUNBUFFERED=1 TQDM_DISABLE=1
LOG=$OUT/log.txt
XCF=${XCF:-xcf}
PY=${PY:-python3}
NARROW='{"widths": [16, 32, 64, 128, 128]}'

if [ "${SMALL:-0}" = 1 ]; then
  PH_CLS=300; PH_OR=300; PH_AE=200; E_CLS=1; E_OR=1; E_AE=1; PN_LIMIT=40; E_PN=1
  BENCH_N="--n 4 --steps 5"; PN_N="--n 4 --steps 5"; PERF="--n 1 --steps 3 --gpu-steps 3 --gpu-batches 1 2"
  PERF_PN="--n 4 --steps 3"
  SWEEP_N=4; SWEEP_STEPS=5
else
  PH_CLS=12000; PH_OR=3000; PH_AE=3000; E_CLS=3; E_OR=5; E_AE=5; PN_LIMIT=1000; E_PN=20
  BENCH_N="--n 200"; PN_N=""; PERF="--n 2 --gpu-steps 100"; SWEEP_N=64; SWEEP_STEPS=200
  PERF_PN="--n 64"
fi

PARTS=${PARTS:-perf train bench}
case " $PARTS " in *" perf "*|*" train "*|*" bench "*)
  [ -n "$PN" ] || { echo "set PNEUMONIA to the pneumonia data folder (images + labels.csv)" >&2; exit 2; };;
esac
T0=$(date +%s)
. "$(dirname "$0")/gpu_lib.sh"
start_packer

# 1. speed on the seed's sizes, alone on the GPU
has perf && step perf-seed-sizes 150 $PY benchmarks/perf.py --seed-sizes $PERF --device "$DEV" --batch-size 4 \
  --out "$OUT/r/perf-seed-sizes.md"
has perf && step perf-pneumonia 200 $PY benchmarks/perf.py --pack pneumonia --data "$PN" $PERF_PN --device "$DEV" \
  --gpu-batches --variants "seed-loop,fast+autocast_bf16=false,fast,fast+batch_size=64" \
  --out "$OUT/r/perf-pneumonia.md"

# 2. training (the commands of `make weights`, on the GPU): the phantom classifier then its
#    autoencoder, beside them the oracles and the pneumonia autoencoder (the manifest is locked per
#    update; the pneumonia classifier is trained on the CPU, it needs the whole train split)
if has train; then
(
  step train-phantom-cls 300 $XCF train classifier --data phantom:$PH_CLS --out weights --name phantom-small-cnn \
    --epochs $E_CLS --seed 0 --device "$DEV" --pack phantom --role classifier
  step train-phantom-ae 300 $XCF train autoencoder --arch segnet-ae --arch-args "$NARROW" --data phantom:$PH_AE \
    --out weights --name phantom-segnet-ae --classifier phantom-small-cnn --epochs $E_AE --seed 0 \
    --device "$DEV" --pack phantom --role latent
) &
step train-phantom-oracle 300 $XCF train classifier --arch mobilenet-v3-small --data phantom:$PH_OR:7 --out weights \
  --name phantom-mobilenet-oracle --epochs $E_OR --seed 1 --device "$DEV" --pack phantom --role oracle &
step train-pneumonia-oracle 300 $XCF train classifier --arch mobilenet-v3-small --data "$PN" --labels pneumonia \
  --limit $PN_LIMIT --out weights --name pneumonia-mobilenet-oracle --epochs $E_PN --seed 0 --device "$DEV" \
  --pack pneumonia --role oracle &
step train-pneumonia-ae 300 $XCF train autoencoder --arch segnet-ae --arch-args "$NARROW" --data "$PN" --labels pneumonia \
  --limit $PN_LIMIT --out weights --name pneumonia-segnet-ae --classifier pneumonia-small-cnn --epochs $E_PN \
  --seed 0 --device "$DEV" --pack pneumonia --role latent &
wait
fi

# 3. benchmarks on the packs in weights/
has bench || { finish; exit 0; }
step bench-phantom 300 $XCF bench counterfactuals $BENCH_N --device "$DEV" --batch-size 100 \
  --out "$OUT/r/bench-phantom" &
step bench-pneumonia 300 $XCF bench counterfactuals --data "$PN" --split test --target pneumonia --pack pneumonia \
  $PN_N --device "$DEV" --batch-size 100 --out "$OUT/r/bench-pneumonia" &
step sweep-fast 300 $PY benchmarks/perf.py --pack pneumonia --data "$PN" --n $SWEEP_N --steps $SWEEP_STEPS \
  --device "$DEV" --batch-size 64 --in-process --gpu-batches \
  --variants "xcf-default,early-stop,early-stop+lr=1.0,fast,fast+lr=0.3,fast+lr=1.0+lr_schedule=cosine,fast+classification_loss=logit,local,local+lr=0.3,fast+region_thresholds=null+mask_threshold=0.2" \
  --out "$OUT/r/sweep-fast.md" &
wait
finish
