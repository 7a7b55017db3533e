#!/usr/bin/env bash
# Run every fuzz target (or those named) for FUZZ_SECONDS each, one after another, one process,
# and print each one's executions, run time and findings. Called by `make fuzz`.
#
#   FUZZ_SECONDS  seconds per target (default 300)
#   FUZZ_LOGS     where each target's libFuzzer log goes (default fuzz/logs, not committed)
#   FUZZ_FLAGS    extra cargo-fuzz build flags (default: no sanitizer; the crate has no unsafe
#                 code outside the wasm build, and overflow checks and debug assertions stay on)
#
# A target's corpus grows in fuzz/corpus/<target> (not committed), seeded from
# fuzz/regressions/<target>; a crash lands in fuzz/artifacts/<target>/. Put a fixed crash's
# input in fuzz/regressions/<target>/: `make test` replays them (tests/fuzz_replay.rs).
set -uo pipefail
cd "$(dirname "$0")"
SECONDS_EACH=${FUZZ_SECONDS:-300}
LOGS=${FUZZ_LOGS:-logs}
read -r -a FLAGS <<<"${FUZZ_FLAGS:---sanitizer none}"
mkdir -p "$LOGS"
LOGS=$(cd "$LOGS" && pwd)

if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo +nightly fuzz list)
fi

cargo +nightly fuzz build "${FLAGS[@]}" || exit 1

status=0
summary=()
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  before=$(find "artifacts/$t" -type f | wc -l)
  log="$LOGS/$t.log"
  echo "== $t: ${SECONDS_EACH}s (log: $log)"
  start=$(date +%s)
  # -jobs=1 runs the fuzzer in one child whose output goes to fuzz-0.log in the working
  # directory; it is moved to the target's log afterwards.
  (cd "$LOGS" && rm -f fuzz-0.log &&
    cargo +nightly fuzz run --fuzz-dir "$OLDPWD" "${FLAGS[@]}" "$t" \
      "$OLDPWD/corpus/$t" "$OLDPWD/regressions/$t" -- \
      -max_total_time="$SECONDS_EACH" -jobs=1 -workers=1 -print_final_stats=1 \
      -dict="$OLDPWD/json.dict" -timeout=10 -rss_limit_mb=2048 \
      -artifact_prefix="$OLDPWD/artifacts/$t/" >"$log.driver" 2>&1
    cat fuzz-0.log >>"$log" 2>/dev/null; rm -f fuzz-0.log)
  took=$(($(date +%s) - start))
  runs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*$')
  [ -n "$runs" ] || runs=$(grep -o '^#[0-9]*' "$log" | tail -1 | tr -d '#')
  after=$(find "artifacts/$t" -type f | wc -l)
  found=$((after - before))
  [ "$found" -eq 0 ] || status=1
  line="$t: ${runs:-0} executions in ${took}s, $found new finding(s)"
  if [ "$found" -gt 0 ]; then
    line="$line: $(find "artifacts/$t" -type f -newermt "@$start" | tr '\n' ' ')"
    grep -m1 -E "panicked at|ERROR: libFuzzer" "$log" | sed 's/^/    /'
  fi
  echo "$line"
  summary+=("$line")
done

echo
echo "== fuzz summary (${SECONDS_EACH}s per target)"
printf '%s\n' "${summary[@]}"
exit $status
