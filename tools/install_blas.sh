#!/usr/bin/env bash
# Installs OpenBLAS (Debian's libopenblas0-pthread) when it is missing. Taper loads it at
# run time for large f32 matrix products (taper_nn::kernels::blas); without it every
# product stays on the `gemm` crate, so nothing fails, it is only slower on AVX-512 CPUs.
# Called by .ci/run and by the Makefile targets that measure or train (bench, demo).
set -euo pipefail
if ldconfig -p 2>/dev/null | grep -q 'libopenblas\.so\.0'; then
    exit 0
fi
# Never fatal: Taper runs on the gemm crate without it.
if bash "$(dirname "$0")/apt_install.sh" libopenblas0-pthread "large products stay on the gemm crate"; then
    echo "install_blas: installed $(ldconfig -p | grep -m1 'libopenblas\.so\.0' | sed 's/.*=> //')"
fi
