#!/usr/bin/env bash
# Time to quality of `translate`'s defaults (issue 22, item 7): test BLEU after 1, 2, 3, 5
# and 10 epochs of one run, extended with --resume (the constant schedule makes each
# stretch the start of the longer run), with the training seconds summed from the run's
# metrics.jsonl. Its peer is bench/seq2seq_tutorial.py on the split `--export` writes.
#
#   bench/translate_curve.sh [DATA_DIR] [OUT_DIR] [EXTRA translate FLAGS...]
#   bench/.venv/bin/python bench/seq2seq_tutorial.py OUT_DIR/ids --threads 2
#
# Prints one line per point: epochs, training seconds, test BLEU greedy and beam 5.
set -euo pipefail
data="${1:-../shared/data}"
out="${2:-bench/out/translate-curve}"
shift $(( $# > 2 ? 2 : $# ))
bin="${CARGO_TARGET_DIR:-target}/release/examples/translate"
[ -x "$bin" ] || { echo "missing $bin: run make vendor && cargo build --release --example translate" >&2; exit 1; }
pin=""
command -v taskset > /dev/null && pin="taskset -c 0-1"
rm -rf "$out"
mkdir -p "$out"
for e in 1 2 3 5 10; do
  if [ "$e" = 1 ]; then run=(--out "$out/run" --export "$out/ids"); else run=(--resume "$out/run"); fi
  $pin "$bin" --prefixes --threads 2 --data "$data" --heatmaps 0 --epochs "$e" "${run[@]}" "$@" \
    2> "$out/e$e.log" | tail -n 1 > "$out/e$e.json"
  python3 - "$out" "$e" <<'PY'
import json, sys
out, e = sys.argv[1], sys.argv[2]
j = json.load(open(f"{out}/e{e}.json"))
secs = sum(json.loads(l).get("train_seconds", 0.0) for l in open(f"{out}/run/metrics.jsonl") if '"epoch"' in l)
print(json.dumps({"epochs": int(e), "train_seconds": round(secs, 1), "test_bleu_greedy": round(j["test_bleu_greedy"], 2),
                  "test_bleu_beam": round(j["test_bleu"], 2), "valid_perplexity": round(j["valid_perplexity"], 3)}))
PY
done
