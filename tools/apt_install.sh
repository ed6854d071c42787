#!/usr/bin/env bash
# Installs one Debian package with apt-get where this machine allows it (root, apt-get
# present), refreshing the package lists once if the first try fails. Exits 0 when the
# package was installed, 1 (after saying why on stderr) when it could not be: the callers
# (install_blas.sh, install_chromium.sh) go on without it.
# Usage: apt_install.sh PACKAGE "what happens without it"
set -euo pipefail
pkg="$1"
without="$2"
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "$pkg is not installed and apt-get is not usable here: $without" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
quiet_install() { apt-get install -y -q --no-install-recommends "$pkg" >/dev/null 2>&1; }
if quiet_install || { apt-get update -q >/dev/null 2>&1 && quiet_install; }; then
    exit 0
fi
echo "apt-get could not install $pkg: $without" >&2
exit 1
