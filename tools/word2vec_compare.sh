#!/usr/bin/env bash
# Taper's native word2vec beside gensim's, same corpus and settings, alternating
# runs so that both see the same machine load. Prints a summary table (median
# words/s, mean ± sd of WordSim Spearman over the seeds) and keeps every run's
# JSON line in $OUT (default runs/word2vec-compare/results.jsonl).
#
#   tools/word2vec_compare.sh [ARCH...]        # default: sg cbow; seeds 1 2 3
#   SEEDS="1 2 3 4 5" THREADS=2 tools/word2vec_compare.sh sg
set -euo pipefail
cd "$(dirname "$0")/.."
# The release examples, where cargo puts them (CARGO_TARGET_DIR when set).
examples="${CARGO_TARGET_DIR:-target}/release/examples"
ARCHS=("${@:-sg}")
[ $# -eq 0 ] && ARCHS=(sg cbow)
SEEDS=${SEEDS:-"1 2 3"}
THREADS=${THREADS:-2}
OUT=${OUT:-runs/word2vec-compare}
PY=${PY:-bench/.venv/bin/python}
mkdir -p "$OUT"
RES="$OUT/results.jsonl"
: > "$RES"
bash tools/patch_candle.sh >&2
cargo build --release --example word2vec >&2
for arch in "${ARCHS[@]}"; do
  for seed in $SEEDS; do
    "$examples"/word2vec --arch "$arch" --seed "$seed" --threads "$THREADS" \
      --out "$OUT/taper-$arch-$seed" 2>/dev/null | tail -n 1 \
      | sed 's/^{/{"tool":"taper",/' >> "$RES"
    "$PY" bench/word2vec_gensim.py --arch "$arch" --seed "$seed" --workers "$THREADS" \
      2>/dev/null | tail -n 1 | sed 's/^{/{"tool":"gensim",/' >> "$RES"
  done
done
"$PY" - "$RES" <<'EOF'
import json, statistics as st, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print(f"{'tool':8} {'arch':5} {'runs':>4} {'words/s (median)':>17} {'WordSim (mean ± sd)':>20}")
for arch in sorted({r["arch"] for r in rows}):
    for tool in ("taper", "gensim"):
        rs = [r for r in rows if r["tool"] == tool and r["arch"] == arch]
        if not rs:
            continue
        wps = st.median(r["words_per_second"] for r in rs)
        ws = [r["wordsim_spearman"] for r in rs]
        sd = st.stdev(ws) if len(ws) > 1 else 0.0
        print(f"{tool:8} {arch:5} {len(rs):>4} {wps:>17.0f} {st.mean(ws):>13.4f} ± {sd:.4f}")
EOF
