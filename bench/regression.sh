#!/usr/bin/env bash
# Times Taper's exact regression solvers against scikit-learn on the same fits
# (median seconds per fit, features standardised beforehand, 2 threads) and
# prints a ratio table. Usage: [THREADS=2] bench/regression.sh [REPEATS]   (default 50)
# Taper's exact solvers are single-threaded; THREADS caps scikit-learn's OpenMP/BLAS
# pools. On a busy machine OpenMP's spinning threads can slow scikit-learn's logistic
# fits many times over, so compare THREADS=1 too before reading much into a ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
# The release examples, where cargo puts them (CARGO_TARGET_DIR when set).
examples="${CARGO_TARGET_DIR:-target}/release/examples"
repeats="${1:-50}"
threads="${THREADS:-2}"
export OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads MKL_NUM_THREADS=$threads RAYON_NUM_THREADS=$threads
python="${PYTHON:-bench/.venv/bin/python}"

bash tools/patch_candle.sh >&2
cargo build --release --quiet --example regression_bench
taper_json="$("$examples"/regression_bench --repeats "$repeats" | tail -n 1)"
sklearn_json="$("$python" bench/regression_vs_sklearn.py --repeats "$repeats" | tail -n 1)"
echo "$taper_json"
echo "$sklearn_json"

"$python" - "$taper_json" "$sklearn_json" <<'PY'
import json, sys
taper, sk = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"\n| fit | Taper (ms) | {sk['impl']} (ms) | Taper / scikit-learn |")
print("|---|---|---|---|")
for key, value in taper.items():
    if key in ("impl", "repeats") or key not in sk:
        continue
    print(f"| {key} | {value * 1e3:.3f} | {sk[key] * 1e3:.3f} | {value / sk[key]:.2f} |")
for key in sorted(set(sk) - set(taper) - {"threads"}):
    print(f"| {key} (scikit-learn only) | | {sk[key] * 1e3:.3f} | |")
PY
