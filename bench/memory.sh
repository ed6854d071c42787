#!/usr/bin/env bash
# Resident memory per epoch over a 20-epoch run of the CNN example: the peak must
# stay flat (growth under 5 % after epoch 2). Reads the `memory_mib` field the
# trainer writes to metrics.jsonl.
#   bash bench/memory.sh [EPOCHS] [extra mnist_cnn flags...]
#   e.g. bash bench/memory.sh 20 --dataset mnist --model cnn --augment
set -euo pipefail
cd "$(dirname "$0")/.."
# The release examples, where cargo puts them (CARGO_TARGET_DIR when set).
examples="${CARGO_TARGET_DIR:-target}/release/examples"
epochs=${1:-20}
shift || true
bash tools/patch_candle.sh >&2
cargo build --release --example mnist_cnn >/dev/null
run=$(mktemp -d)
trap 'rm -rf "$run"' EXIT
"$examples"/mnist_cnn --epochs "$epochs" --out "$run" "$@" >/dev/null
python3 - "$run/metrics.jsonl" "$*" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
mem = [(r["epoch"], r["memory_mib"]["rss"], r["memory_mib"]["peak"]) for r in rows]
print(f"mnist_cnn {sys.argv[2]}: {len(mem)} epochs")
print("| epoch | RSS MiB | peak MiB |")
print("|---|---|---|")
for e, rss, peak in mem:
    print(f"| {e + 1} | {rss:.1f} | {peak:.1f} |")
base = [m for m in mem if m[0] == 1]  # the end of epoch 2
if not base:
    sys.exit("need at least 2 epochs")
_, rss2, peak2 = base[0]
_, rss_n, peak_n = mem[-1]
growth = (peak_n - peak2) / peak2 * 100
rss_growth = (rss_n - rss2) / rss2 * 100
print(f"peak growth after epoch 2: {growth:+.2f} % (RSS {rss_growth:+.2f} %)")
sys.exit(0 if growth < 5 else f"peak memory grew {growth:.1f} % after epoch 2 (limit 5 %)")
PY
