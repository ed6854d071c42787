#!/usr/bin/env bash
# A CUDA toolkit for *compiling* Taper's `cuda` feature on a machine without one
# (no GPU, no system CUDA): NVIDIA's PyPI wheels in a virtual environment, laid
# out as a CUDA root for candle's build scripts (cudaforge in candle-kernels,
# cudarc's build.rs). Idempotent: a no-op when the pinned set is already there.
#
#   eval "$(bash tools/install_cuda_toolkit.sh)"   # install where missing, export the build env
#   cargo build --release --features cuda ...
#
# Progress goes to stderr; stdout carries only the `export` lines. The venv is
# ${TAPER_CUDA_VENV:-$HOME/.cache/taper-cuda-venv}; its CUDA root is `cuda/` in it:
#   bin/      nvcc, ptxas, cudafe++, fatbinary, nvlink (the nvcc wheel's)
#   nvvm/     cicc and libdevice (nvcc.profile finds them beside bin/)
#   include/  the CUDA headers, CCCL (cuda/std, cub, thrust) and nccl.h
#   lib64/    the shared libraries under the unversioned names `-l` looks for
#   lib64/stubs/libcuda.so  a link-time stand-in for the driver library (below)
#
# Why CUDA 13: the cu12 nvcc wheels carry ptxas only, no `nvcc` driver, cicc or
# cudafe++; the CUDA 13 wheels carry the whole compiler. 13.0 is the oldest CUDA 13
# (driver >= 580 to run what it builds) and is among the versions cudarc 0.19.10
# (candle 0.11.1's) has bindings for; NCCL 2.30 is the newest its `nccl` feature binds.
#
# libcuda.so belongs to the GPU driver, not to the toolkit, and no wheel ships it,
# yet candle links cudarc with `dynamic-linking` (`-lcuda`). The CUDA toolkit solves
# the same problem with lib64/stubs/libcuda.so: a library exporting the driver's
# symbols with no code behind them, named libcuda.so.1 so that a binary linked
# against it loads the real driver at run time. We build that stand-in from the
# function names in cuda.h. It is never on a run-time search path.
set -euo pipefail

VENV="${TAPER_CUDA_VENV:-$HOME/.cache/taper-cuda-venv}"
ROOT="$VENV/cuda"
COMPUTE_CAP="${CUDA_COMPUTE_CAP:-80}"

# One consistent CUDA 13.0 (update 2) set.
PINS=(
    nvidia-cuda-nvcc==13.0.88
    nvidia-cuda-crt==13.0.88
    nvidia-nvvm==13.0.88
    nvidia-cuda-runtime==13.0.96
    nvidia-cuda-nvrtc==13.0.88
    nvidia-cuda-cccl==13.0.85
    nvidia-cublas==13.1.0.3
    nvidia-curand==10.4.0.35
    nvidia-nccl-cu13==2.30.7
)
# Bump when the layout built below changes, so existing venvs are rebuilt.
LAYOUT=1
STAMP="$VENV/.taper-cuda-toolkit"
WANT="layout=$LAYOUT ${PINS[*]}"

print_env() {
    cat <<EOF
export CUDA_ROOT='$ROOT'
export CUDA_PATH='$ROOT'
export CUDA_HOME='$ROOT'
export PATH='$ROOT/bin':"\$PATH"
export LIBRARY_PATH='$ROOT/lib64:$ROOT/lib64/stubs'\${LIBRARY_PATH:+:\$LIBRARY_PATH}
export CUDA_COMPUTE_CAP='$COMPUTE_CAP'
EOF
}

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && [ -x "$ROOT/bin/nvcc" ] \
    && [ -f "$ROOT/lib64/stubs/libcuda.so" ]; then
    print_env
    exit 0
fi

log() { echo "install_cuda_toolkit: $*" >&2; }
command -v python3 >/dev/null || { log "python3 is needed"; exit 1; }
command -v cc >/dev/null || { log "a C compiler (cc) is needed for the libcuda stub"; exit 1; }

rm -f "$STAMP"
if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV"
    python3 -m venv "$VENV" >&2
fi
log "installing ${PINS[*]}"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-cache-dir "${PINS[@]}" >&2

NV="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/nvidia"
CU="$NV/cu13"
[ -x "$CU/bin/nvcc" ] || { log "nvcc missing from $CU/bin"; exit 1; }
[ -f "$NV/nccl/include/nccl.h" ] || { log "nccl.h missing from $NV/nccl"; exit 1; }

log "laying out the CUDA root $ROOT"
rm -rf "$ROOT"
mkdir -p "$ROOT/include" "$ROOT/lib64/stubs"
ln -s "$CU/bin" "$ROOT/bin"
ln -s "$CU/nvvm" "$ROOT/nvvm"
for dir in "$CU/include" "$NV/nccl/include"; do
    for f in "$dir"/*; do
        case "$(basename "$f")" in __init__.py | __pycache__) continue ;; esac
        ln -s "$f" "$ROOT/include/"
    done
done
for dir in "$CU/lib" "$NV/nccl/lib"; do
    for f in "$dir"/*.so.* "$dir"/*.a; do
        [ -e "$f" ] || continue
        name="$(basename "$f")"
        ln -s "$f" "$ROOT/lib64/$name"
        # libcublas.so.13 -> also libcublas.so, the name `-lcublas` looks for.
        case "$name" in
            *.alt.so.*) ;;
            *.so.*) ln -sf "$f" "$ROOT/lib64/${name%%.so.*}.so" ;;
        esac
    done
done

# The driver stub: every cu* function name that cuda.h mentions (the names its
# macros map to, such as cuCtxCreate_v4, included) as a function with no body
# worth calling. Types are CU* and constants CU_*, so lower-case `cu` + capital
# letter selects the functions.
stub_dir="$(mktemp -d)"
trap 'rm -rf "$stub_dir"' EXIT
{
    echo "/* Link-time stand-in for the CUDA driver library; never loaded at run time. */"
    grep -ohE '\bcu[A-Z][A-Za-z0-9_]*\b' "$CU/include/cuda.h" | sort -u \
        | sed 's/.*/void &(void) {}/'
} >"$stub_dir/libcuda_stub.c"
cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$ROOT/lib64/stubs/libcuda.so" "$stub_dir/libcuda_stub.c"

# A last check that the compiler runs (cicc, ptxas and the headers found).
printf '#include <cuda_bf16.h>\n#include <cuda/std/limits>\nextern "C" __global__ void k(float *x) { x[0] = cuda::std::numeric_limits<float>::max(); }\n' >"$stub_dir/check.cu"
"$ROOT/bin/nvcc" --ptx -arch="sm_$COMPUTE_CAP" -o "$stub_dir/check.ptx" "$stub_dir/check.cu" >&2

echo "$WANT" >"$STAMP"
log "ready ($(du -sh "$VENV" | cut -f1) in $VENV)"
print_env
