#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60) from seeds the library's
# own writers make, then prints one line per target: executions, seconds, crashes.
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
#   bash tools/fuzz.sh [SECONDS] [TARGET...]
set -uo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-60}
shift || true
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "cargo-fuzz is not installed: run 'cargo install cargo-fuzz' (needs the nightly toolchain)" >&2
  exit 2
fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list)
fi
(cd .. && TAPER_FUZZ_CORPUS="$PWD/fuzz/corpus" cargo test --release --test fuzz_seeds -q) || exit 1
# No sanitizer: the parsers are safe Rust, so what the fuzzer can find is panics,
# hangs and runaway allocations, which libFuzzer reports without one; debug
# assertions (integer overflow) stay on.
cargo +nightly fuzz build -s none "${targets[@]:0:1}" >/dev/null 2>&1 || true
status=0
printf '| target | seconds | executions | exec/s | corpus | result |\n|---|---|---|---|---|---|\n' > summary.md
for t in "${targets[@]}"; do
  log=$(mktemp)
  cargo +nightly fuzz run -s none "$t" -- -max_total_time="$secs" -print_final_stats=1 \
    -rss_limit_mb=2048 -timeout=10 -max_len=65536 >"$log" 2>&1
  rc=$?
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  corpus=$(ls "corpus/$t" | wc -l)
  if [ $rc -eq 0 ]; then result=ok; else result="FAILED (rc $rc, see fuzz/artifacts/$t)"; status=1; tail -30 "$log"; fi
  printf '| %s | %s | %s | %s | %s | %s |\n' "$t" "$secs" "${execs:-?}" "${rate:-?}" "$corpus" "$result" | tee -a summary.md
  rm -f "$log"
done
echo "table written to fuzz/summary.md"
exit $status
