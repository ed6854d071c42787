#!/usr/bin/env bash
# Prepares vendor/candle-core: candle-core 0.11.1 from crates.io (checksum checked) with the
# backward-pass change of tools/patch_candle.py, which Cargo.toml's [patch.crates-io] points
# at (issue 22, item 5: first gradients stored without a zero fill and an add). Every make
# target that runs cargo calls this first, and so does .ci/run; on a fresh clone, run it once
# before calling cargo yourself. Nothing of candle's is committed: the folder is ignored and
# rebuilt here from the published crate. Quick when the folder is already up to date.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=0.11.1
SHA256=d11c8be87cfbaef9ebb62fb3f850d1fc8e00cc1d11d393fdbe55a4d5c2cdb325
DEST=vendor/candle-core
want="candle-core $VERSION, $(sha256sum tools/patch_candle.py | cut -d' ' -f1)"
if [ -f "$DEST/.taper-patch" ] && [ "$(cat "$DEST/.taper-patch")" = "$want" ]; then
    exit 0
fi
mkdir -p vendor
tmp="$(mktemp -d vendor/.candle-core.XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
crate=""
for f in "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/"candle-core-$VERSION.crate"; do
    if [ -f "$f" ]; then crate="$f"; break; fi
done
if [ -z "$crate" ]; then
    url="https://static.crates.io/crates/candle-core/candle-core-$VERSION.crate"
    crate="$tmp/candle-core-$VERSION.crate"
    if command -v curl >/dev/null; then
        curl -fsSL --retry 3 -o "$crate" "$url"
    else
        python3 -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])' "$url" "$crate"
    fi || { echo "patch_candle: could not download $url (crates.io unreachable?)" >&2; exit 1; }
fi
if ! echo "$SHA256  $crate" | sha256sum -c --status -; then
    echo "patch_candle: $crate is not candle-core $VERSION as published (sha256 differs)" >&2
    exit 1
fi
tar xzf "$crate" -C "$tmp"
python3 tools/patch_candle.py "$tmp/candle-core-$VERSION"
echo "$want" > "$tmp/candle-core-$VERSION/.taper-patch"
# Swap in whole, so an interrupted run never leaves a half-written folder in place.
rm -rf "$DEST.old"
if [ -d "$DEST" ]; then mv "$DEST" "$DEST.old"; fi
mv "$tmp/candle-core-$VERSION" "$DEST"
rm -rf "$DEST.old"
echo "patch_candle: $DEST ready (candle-core $VERSION, gradient accumulation patched)"
