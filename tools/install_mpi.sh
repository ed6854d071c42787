#!/usr/bin/env bash
# Installs Open MPI (mpirun, the headers and libmpi) and libclang when missing: the `mpi`
# feature (taper_train::distributed::Mpi, on the rsmpi crate) binds to the system MPI
# with bindgen, which needs libclang, and the data-parallel tests (tests/distributed.rs)
# start their ranks with `mpirun`. Never fatal: without them those tests say they
# skipped and why. Called by .ci/run, `make test`, `make lint` and `make mpi`.
#
#   install_mpi.sh              install what is missing; messages on stderr
#   install_mpi.sh --features   the same, then print the cargo flags that enable
#                               MPI (`--features mpi`) on stdout when it is usable
#   install_mpi.sh --detect     install nothing; print those flags when usable
set -euo pipefail
here="$(dirname "$0")"
mode="${1:-}"
have_mpirun() { command -v mpirun >/dev/null 2>&1; }
have_headers() { [ -n "$(find /usr/lib /usr/include -name mpi.h -print -quit 2>/dev/null)" ]; }
have_libclang() { [ -n "$(find /usr/lib /usr/lib64 \( -name 'libclang.so*' -o -name 'libclang-[0-9]*.so*' \) -print -quit 2>/dev/null)" ]; }
usable() { have_mpirun && have_headers && have_libclang; }
flags() { if usable; then echo "--features mpi"; fi; }
if [ "$mode" = "--detect" ]; then
    flags
    exit 0
fi
missing=""
have_mpirun || missing="$missing openmpi-bin"
have_headers || missing="$missing libopenmpi-dev"
have_libclang || missing="$missing libclang-dev"
if [ -z "$missing" ]; then
    echo "install_mpi: found $(command -v mpirun) ($(mpirun --version 2>/dev/null | head -n1))" >&2
else
    for pkg in $missing; do
        bash "$here/apt_install.sh" "$pkg" "the data-parallel (mpi) tests will skip" || break
    done
    if usable; then echo "install_mpi: installed$missing" >&2; fi
fi
if [ "$mode" = "--features" ]; then
    flags
fi
