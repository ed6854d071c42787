#!/usr/bin/env bash
# Installs OpenBLAS (Debian's libopenblas0-pthread) when it is missing. Taper loads it at
# run time for large f32 matrix products (taper_nn::kernels::blas); without it every
# product stays on the `gemm` crate, so nothing fails, it is only slower on AVX-512 CPUs.
# Called by .ci/run and by the Makefile targets that measure or train (bench, demo).
set -euo pipefail
if ldconfig -p 2>/dev/null | grep -q 'libopenblas\.so\.0'; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "install_blas: OpenBLAS not found and apt-get is not usable here;" \
        "install libopenblas0-pthread (or any libopenblas.so.0) to speed up large products" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -q libopenblas0-pthread >/dev/null 2>&1; then
    if ! { apt-get update -q >/dev/null && apt-get install -y -q libopenblas0-pthread >/dev/null; }; then
        # Never fatal: Taper runs on the gemm crate without it.
        echo "install_blas: apt-get could not install libopenblas0-pthread; large products stay on the gemm crate" >&2
        exit 0
    fi
fi
echo "install_blas: installed $(ldconfig -p | grep -m1 'libopenblas\.so\.0' | sed 's/.*=> //')"
