#!/usr/bin/env bash
# Installs headless Chromium (Debian's `chromium`) when it is missing: the browser test
# of the run reports (tests/report_browser.rs) renders report.html in it. Never fatal:
# without a browser that test says it skipped the browser checks. Called by .ci/run and
# by `make test`.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
    echo "install_chromium: found $(command -v chromium)"
    exit 0
fi
if bash "$(dirname "$0")/apt_install.sh" chromium "the report browser test will skip its browser checks"; then
    echo "install_chromium: installed $(command -v chromium)"
fi
