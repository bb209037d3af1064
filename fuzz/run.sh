#!/usr/bin/env bash
# Run every fuzz target (or those named) for SECONDS each, JOBS at a time, and print totals.
#
#   bash fuzz/run.sh 600                 # every target, 10 minutes each
#   bash fuzz/run.sh 60 checkpoint npy   # two targets, a minute each
#
# Needs nightly and cargo-fuzz (`cargo install cargo-fuzz`). New inputs go to fuzz/work/<target>
# (not committed); the committed seeds in fuzz/corpus/<target> are read, never written. A crash
# leaves its input in fuzz/artifacts/<target>: fix it, then add the input to the seeds and to a
# regression test. Not part of .ci/run.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:?usage: run.sh SECONDS [TARGET...]}
shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(checkpoint config location npy pickle policy)
jobs=${JOBS:-$(nproc)}
# No sanitizer by default: our `unsafe` is writes into uninitialised buffers (positional
# reads, transposes, casts), the transpose's blocks writing
# disjoint strips of one buffer, and the F16C cast and AVX 8x8 transposes, each with its
# SAFETY argument, and ASan makes burn's build and every run several times slower. SANITIZER=address to check the dependencies' unsafe code too.
sanitizer=${SANITIZER:-none}
for t in "${targets[@]}"; do cargo +nightly fuzz build --sanitizer "$sanitizer" "$t"; done
mkdir -p logs
running=0
for t in "${targets[@]}"; do
  mkdir -p "work/$t" "artifacts/$t"
  cargo +nightly fuzz run --sanitizer "$sanitizer" "$t" "work/$t" "corpus/$t" -- \
    -max_total_time="$seconds" -rss_limit_mb=4096 -malloc_limit_mb=4096 -timeout=20 \
    -print_final_stats=1 > "logs/$t.log" 2>&1 &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then wait -n || true; running=$((running - 1)); fi
done
wait || true
printf '%-12s %12s %10s %8s %s\n' target runs seconds crashes corpus
for t in "${targets[@]}"; do
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "logs/$t.log" | grep -o '[0-9]*$' | tail -1)
  time=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "logs/$t.log" | grep -o '[0-9]*$' | tail -1)
  crashes=$(find "artifacts/$t" -type f | wc -l)
  corpus=$(find "work/$t" -type f | wc -l)
  printf '%-12s %12s %10s %8s %s\n' "$t" "${runs:-?}" "$seconds" "$crashes" "$corpus (exec/s ${time:-?})"
done
