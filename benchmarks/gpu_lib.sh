# Shared by benchmarks/gpu_bench.sh and benchmarks/gpu_retrain.sh (sourced, not run): the step
# runner, the part filter and the packing of results into $OUT, from where they are fetched.
# The sourcing script sets OUT, LOG, PARTS, T0 (and DEADLINE, for `left`) first.
# Everything a run makes goes into $OUT as at most three files (a remote GPU machine may return
# only a few files):
#   results.tgz  every step's log and output folder ($OUT/r);
#   weights.tar  weights/manifest.json and every weights/*.safetensors written during the run;
#   log.txt      one line per step start and end, with its exit status.
# A background packer repeats the packing every 30 s, so a run cut off by a time limit still
# returns what it had.

left() {  # seconds to the sourcing script's DEADLINE (from T0), at least 5: a step's time limit
  local l=$(( DEADLINE - ($(date +%s) - T0) )); [ $l -lt 5 ] && l=5; echo $l
}

has() { case " $PARTS " in *" $1 "*) return 0;; esac; return 1; }  # has PART: is PART in $PARTS

STAMP=$(mktemp)  # weights newer than this were written by the run

pack_results() {
  tar czf "$OUT/results.tgz.$BASHPID" -C "$OUT" r 2>/dev/null && mv -f "$OUT/results.tgz.$BASHPID" "$OUT/results.tgz"
  local new=() f
  for f in weights/*.safetensors; do [ "$f" -nt "$STAMP" ] && new+=("$(basename "$f")"); done
  tar cf "$OUT/weights.tar.$BASHPID" -C weights manifest.json "${new[@]}" 2>/dev/null \
    && mv -f "$OUT/weights.tar.$BASHPID" "$OUT/weights.tar"
  return 0
}

step() {  # step NAME SECONDS COMMAND...: run COMMAND under a time limit, its output in $OUT/r/NAME.log
  local name=$1 limit=$2 rc; shift 2
  echo "== $name start +$(( $(date +%s) - T0 ))s limit ${limit}s" >> "$LOG"
  timeout "$limit" "$@" > "$OUT/r/$name.log" 2>&1
  rc=$?
  echo "== $name rc=$rc end +$(( $(date +%s) - T0 ))s" >> "$LOG"
  return $rc
}

start_packer() {  # pack every 30 s from now on; log the GPU's name
  mkdir -p "$OUT/r"
  echo "== run $(date +%T) $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null)" > "$LOG"
  ( exec >/dev/null 2>&1; while sleep 30; do pack_results; done ) &  # holds no output pipe open
  PACKER=$!
  disown "$PACKER"  # so that a bare `wait` waits for the steps only, not for the never-ending
                    # packer (a run that finished early would hold on until its time limit)
  sleep 1  # weights written from now on are newer than $STAMP
}

finish() {  # stop the packer, pack once more, print the log
  echo "== done +$(( $(date +%s) - T0 ))s" >> "$LOG"
  kill "$PACKER" 2>/dev/null
  pack_results
  cat "$LOG"
}
