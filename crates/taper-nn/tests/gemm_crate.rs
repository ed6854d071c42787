//! The same GEMM checks as `blas.rs` with OpenBLAS turned off (`TAPER_BLAS=off`,
//! read once per process, so this file is its own test binary): every product on
//! the `gemm` crate, whose AVX-512 kernels (`x86-v4`) run on AVX-512 machines and
//! its AVX2 ones elsewhere.

mod gemm_check;

use taper_nn::kernels::blas;

#[test]
fn the_gemm_crate_matches_f64_on_every_layout_and_is_thread_count_independent() {
    // Before the first product: the backend is chosen once, at the first call.
    // This binary has this one test, so no other thread reads the environment.
    std::env::set_var("TAPER_BLAS", "off");
    assert_eq!(blas::backend(), "gemm crate");
    gemm_check::gemm_matches_f64_on_every_layout_and_is_thread_count_independent();
}
