#!/usr/bin/env bash
# Train a pack from scratch with the Makefile's own commands (`make weights-phantom` or
# `make weights-pneumonia`), in a scratch folder, and print each command's wall time and the total.
#
#   bash benchmarks/train_pack_cpu.sh phantom /tmp/pack-phantom
#   bash benchmarks/train_pack_cpu.sh pneumonia /tmp/pack-pneumonia /path/to/kermany-pneumonia-224
#
# The pneumonia pack needs DATA_DIR, a folder of images with labels.csv (e.g. the Kermany pediatric
# pneumonia set resized to 224 px); it is passed to the Makefile as PNEUMONIA.
#
# The scratch folder gets a copy of weights/manifest.json (so that the other packs' entries stay)
# and the new weights; the repository's weights/ is not touched. Copy the pack's files and manifest
# entries back only after checking them (benchmarks/recon_shift.py, xcf bench counterfactuals).
# Nothing else should run meanwhile: the times are this machine's.
set -euo pipefail
USAGE="usage: train_pack_cpu.sh phantom|pneumonia OUT_DIR [DATA_DIR (pneumonia)]"
PACK=${1:?$USAGE}
OUT=${2:?$USAGE}
DATA=${3:-}
[ "$PACK" != pneumonia ] || [ -n "$DATA" ] || { echo "$USAGE" >&2; exit 2; }
[ -z "$DATA" ] || DATA=$(cd "$DATA" && pwd)  # absolute: make runs in OUT
REPO=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$OUT/weights"
cp "$REPO/weights/manifest.json" "$OUT/weights/"
# every command is timed by this wrapper; the manifest records the xcf command itself
cat > "$OUT/timed-xcf" <<WRAP
#!/usr/bin/env bash
t0=\$(date +%s.%N)
"$REPO/.venv/bin/xcf" "\$@"
rc=\$?
echo "== \$(echo "\$(date +%s.%N) - \$t0" | bc) s (rc \$rc): xcf \$*" | tee -a "$OUT/times.txt"
exit \$rc
WRAP
chmod +x "$OUT/timed-xcf"
: > "$OUT/times.txt"
start=$(date +%s)
cd "$OUT"
make -f "$REPO/Makefile" VENV="$REPO/.venv" XCF="$OUT/timed-xcf" ${DATA:+PNEUMONIA="$DATA"} "weights-$PACK"
echo "== total $(( $(date +%s) - start )) s for the $PACK pack" | tee -a "$OUT/times.txt"
