#!/usr/bin/env bash
# make bench: Taper beside its peers (PyTorch, torchvision, scikit-learn, gensim) on
# the same cases, threads and data; prints a table and writes docs/BENCHMARKS.md.
# Usage: bench/run.sh [--threads N] [--rounds R] [--quick]   (--quick skips the MNIST epoch)
# The training-step cases, the matmul, CNN inference and preprocessing run paired: for
# each case both processes start, pinned to the same CPUs, and take turns in R blocks
# (default 15) of a few steps each (the first turn alternating by case); a block's ratio
# is Taper's block over the peer's block that follows or precedes it, and the report
# gives each case's median ratio over blocks and its interquartile range, and each
# side's CPU time and instruction count (perf stat) where perf is available.
set -u
cd "$(dirname "$0")/.."
# The release examples, where cargo puts them (CARGO_TARGET_DIR when set).
examples="${CARGO_TARGET_DIR:-target}/release/examples"
threads=2
rounds=15
mnist=1
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) threads="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --quick) mnist=0; shift ;;
    *) echo "unknown option $1"; exit 2 ;;
  esac
done
export RAYON_NUM_THREADS="$threads" OMP_NUM_THREADS="$threads" MKL_NUM_THREADS="$threads" OPENBLAS_NUM_THREADS="$threads"
# PyTorch keeps OpenMP's default (threads spin briefly between parallel regions): the
# sides never run at the same time, and OMP_WAIT_POLICY=PASSIVE made PyTorch's MLP step
# 2.8x slower here (4.73 against 1.66 ms), which is not what its users run.
# Both sides on the same CPUs, where taskset exists.
pin=""
command -v taskset >/dev/null && pin="taskset -c 0-$((threads - 1))"
# Whole-process CPU time and instructions, where perf can count them.
measure() { # measure NAME COMMAND...: stdout's last line to $out/NAME.json, counters to $out/NAME.perf
  local name="$1"; shift
  if command -v perf >/dev/null && perf stat -x, -e task-clock true >/dev/null 2>&1; then
    $pin perf stat -x, -e task-clock,instructions -o "$out/$name.perf" "$@" | tail -n 1 > "$out/$name.json"
  else
    $pin "$@" | tail -n 1 > "$out/$name.json"
  fi
}
out=bench/out
mkdir -p "$out"
rm -f "$out"/*.json "$out"/*.perf

bash tools/install_blas.sh
bash tools/patch_candle.sh && cargo build --release --examples || exit 1

data_root="${TAPER_DATA:-}"
[ -z "$data_root" ] && for d in ../shared/data data; do [ -d "$d/mnist" ] && data_root="$d" && break; done
mnist_flag=""
if [ "$mnist" = 1 ] && [ -n "$data_root" ]; then mnist_flag="--mnist"; fi

echo "== Taper: MNIST epoch and inference cases (one run)"
"$examples"/bench_steps --threads "$threads" $mnist_flag ${data_root:+--data "$data_root"} | tail -n 1 > "$out/taper.json" || echo '{"error": "taper bench failed"}' > "$out/taper.json"
[ -x "$examples"/regression_bench ] && "$examples"/regression_bench --repeats 30 2>/dev/null | tail -n 1 > "$out/taper_regression.json"

venv=bench/.venv
if [ ! -x "$venv/bin/python" ]; then
  echo "== creating $venv from PyPI (bench/requirements.txt)"
  python3 -m venv "$venv" && "$venv/bin/pip" install -q -r bench/requirements.txt || echo "peers could not be installed: reporting Taper's figures only"
fi
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import torch" 2>/dev/null; then
  echo "== PyTorch: MNIST epoch and inference cases (one run)"
  "$venv/bin/python" bench/torch_peer.py --threads "$threads" ${mnist_flag:+--mnist "$data_root/mnist"} | tail -n 1 > "$out/torch.json"
  sweep="1,8,32,128,512"
  lens="8,16,64,128"
  # Paired blocks: a slow spell of this shared host lasts seconds and moved one side's
  # step time up to 2x between whole-process rounds (docs/BENCHMARKS.md, tenth run), so
  # the two sides take turns within a case, block by block, and each block's ratio
  # compares neighbours in time. A side works only while it holds the turn (bench_steps
  # and torch_peer.py --baton, through two named pipes); `timeout` ends a pair whose
  # other side died. Block b of each case goes to NAME.rB.CASE.json, and
  # bench/merge_rounds.py joins a block's cases for bench/report.py.
  # Inference and preprocessing keep their own repetition counts as the block size.
  cases="mlp lenet cnn_bn dcgan seq2seq transformer sweep infer preprocess"
  echo "== training steps, matmul, inference, preprocessing: $rounds paired blocks per case"
  i=0
  for c in $cases; do
    only="--only $c"; reps=6; steps="--steps-only"
    [ "$c" = sweep ] && only="--only sweep --batch-sweep $sweep --len-sweep $lens" && reps=3
    case "$c" in infer|preprocess) steps="" ;; esac
    pipes="$out/turn.$c"
    rm -f "$pipes.taper" "$pipes.torch" && mkfifo "$pipes.taper" "$pipes.torch" || exit 1
    measure "taper.rall.$c" timeout 1800 "$examples"/bench_steps --threads "$threads" --reps $reps $only \
      --blocks "$rounds" --baton "$pipes.taper,$pipes.torch" --rounds-out "$out/taper.r{r}.$c.json" &
    measure "torch.rall.$c" timeout 1800 "$venv/bin/python" bench/torch_peer.py --threads "$threads" --reps $reps $steps $only \
      --blocks "$rounds" --baton "$pipes.torch,$pipes.taper" --rounds-out "$out/torch.r{r}.$c.json" &
    # The first turn: Taper's on even cases, PyTorch's on odd ones.
    # (The write waits until that side has opened its pipe; `timeout` if it never does.)
    first="$pipes.taper"; [ $((i % 2)) = 1 ] && first="$pipes.torch"
    timeout 120 bash -c 'printf B > "$1"' _ "$first"
    wait
    rm -f "$pipes.taper" "$pipes.torch"
    echo "   $c done"
    i=$((i + 1))
  done
  for r in $(seq 1 "$rounds"); do
    python3 bench/merge_rounds.py "$out" taper "$r" $cases
    python3 bench/merge_rounds.py "$out" torch "$r" $cases
  done
  python3 bench/merge_rounds.py "$out" taper all $cases
  python3 bench/merge_rounds.py "$out" torch all $cases
else
  echo "PyTorch is not installed in $venv: no peer figures for the neural-network cases"
fi
if [ -x "$venv/bin/python" ] && [ -f bench/regression_vs_sklearn.py ] && "$venv/bin/python" -c "import sklearn" 2>/dev/null; then
  echo "== scikit-learn"
  "$venv/bin/python" bench/regression_vs_sklearn.py --repeats 30 2>/dev/null | tail -n 1 > "$out/sklearn.json"
fi
if [ -x "$examples"/word2vec ] && [ -n "$data_root" ] && [ -f "$data_root/text/ptb.train.txt" ]; then
  echo "== word2vec"
  "$examples"/word2vec --threads "$threads" --data "$data_root" --out "$out/w2v-run" 2>/dev/null | tail -n 1 > "$out/taper_word2vec.json"
  if [ -x "$venv/bin/python" ] && [ -f bench/word2vec_gensim.py ] && "$venv/bin/python" -c "import gensim" 2>/dev/null; then
    "$venv/bin/python" bench/word2vec_gensim.py --workers "$threads" --data "$data_root" 2>/dev/null | tail -n 1 > "$out/gensim.json"
  fi
fi
model_root="${TAPER_MODELS:-}"
[ -z "$model_root" ] && for d in ../shared/models models; do [ -f "$d/all-MiniLM-L6-v2/config.json" ] && model_root="$d" && break; done
if [ -n "$model_root" ] && [ -n "$data_root" ] && [ -f "$data_root/translation/eng-fra.txt" ]; then
  echo "== sentence encoder (all-MiniLM-L6-v2, Tatoeba sentences, batch 32)"
  limit_flag=""; [ "$mnist" = 0 ] && limit_flag="--limit 10000"
  "$examples"/bench_encoder --threads "$threads" --batch-size 32 --model "$model_root/all-MiniLM-L6-v2" --data "$data_root" $limit_flag | tail -n 1 > "$out/taper_encoder.json"
  if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import sentence_transformers" 2>/dev/null; then
    HF_HUB_OFFLINE=1 "$venv/bin/python" bench/sentence_peer.py --threads "$threads" --batch-size 32 --model "$model_root/all-MiniLM-L6-v2" --corpus "$data_root/translation/eng-fra.txt" $limit_flag | tail -n 1 > "$out/sentence.json"
  fi
else
  echo "sentence encoder: all-MiniLM-L6-v2 (make models) or eng-fra.txt (make data) not found, skipped"
fi
if [ -n "$data_root" ] && [ -f "$data_root/translation/eng-fra.txt" ]; then
  # The same trained model decoded by both sides: Taper's `translate --resume` of a
  # finished run decodes its test split again, and bench/decode_peer.py loads the
  # run's weights into PyTorch modules with an incremental (cached) decoder.
  echo "== Transformer decoding (eng-fra 'i am / he is' subset, one-epoch model, greedy and beam 5)"
  trf="$out/transformer-run"
  "$examples"/translate --prefixes --model transformer --layers 3 --batch-size 64 --schedule cosine --warmup 8 --epochs 1 --threads "$threads" --data "$data_root" --out "$trf" --overwrite > /dev/null 2>&1
  for r in 1 2 3; do
    taper_dec() { $pin "$examples"/translate --prefixes --model transformer --layers 3 --batch-size 64 --schedule cosine --warmup 8 --epochs 1 --threads "$threads" --data "$data_root" --resume "$trf" --export "$out/transformer-ids" 2>/dev/null | tail -n 1 > "$out/taper_decode.r$r.json"; }
    peer_dec() { [ -x "$venv/bin/python" ] && $pin "$venv/bin/python" bench/decode_peer.py "$trf" "$out/transformer-ids" --threads "$threads" --compare "$trf" 2>/dev/null | tail -n 1 > "$out/decode.r$r.json"; }
    if [ $((r % 2)) = 1 ]; then taper_dec; peer_dec; else peer_dec; taper_dec; fi
  done
fi
echo "== exact search against corpus size (random 384-d vectors, 10k-1M)"
"$examples"/bench_search --threads "$threads" | tail -n 1 > "$out/taper_search.json"
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import sentence_transformers" 2>/dev/null; then
  "$venv/bin/python" bench/search_peer.py --threads "$threads" | tail -n 1 > "$out/search.json"
fi
echo "== f32 GEMM on the models' products (1 thread and $threads; OpenBLAS where the default, then the gemm crate)"
measure taper_gemm "$examples"/bench_gemm --threads "$threads"
TAPER_BLAS=off measure taper_gemm_crate "$examples"/bench_gemm --threads "$threads"
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import torch" 2>/dev/null; then
  measure torch_gemm "$venv/bin/python" bench/gemm_peer.py --threads "$threads"
fi
python3 bench/report.py "$out" docs/BENCHMARKS.md --threads "$threads"
