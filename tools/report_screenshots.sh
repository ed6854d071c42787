#!/usr/bin/env bash
# Screenshots of three run reports for docs/: a classifier, a GAN and a translation.
# Renders the pages `make demo` wrote (runs/demo-*) in headless Chromium, 800x2400 CSS pixels
# drawn at half scale (400x1200 PNGs):
#   make demo && bash tools/report_screenshots.sh [OUT_DIR]   (default docs/)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-docs}"
browser="$(command -v chromium || command -v chromium-browser || true)"
if [ -z "$browser" ]; then
    echo "report_screenshots: chromium not found (bash tools/install_chromium.sh)" >&2
    exit 1
fi
profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
for pair in classifier:demo-mnist_cnn gan:demo-dcgan translation:demo-translate-dates; do
    name="${pair%%:*}"
    page="runs/${pair#*:}/report.html"
    [ -f "$page" ] || { echo "report_screenshots: $page missing (run make demo)" >&2; exit 1; }
    "$browser" --headless --disable-gpu --no-sandbox --no-first-run --hide-scrollbars \
        --user-data-dir="$profile" --virtual-time-budget=3000 --window-size=800,2400 --force-device-scale-factor=0.5 \
        --screenshot="$out/report-$name.png" "file://$PWD/$page" 2>/dev/null
    echo "report_screenshots: $out/report-$name.png ($(stat -c %s "$out/report-$name.png") bytes) from $page"
done
