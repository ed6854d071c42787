//! The f32 GEMM funnel (`kernels::gemm`), which sends large products to OpenBLAS
//! where it is loaded: values against an f64 product on every operand layout, with
//! and without accumulation, into a strided destination, and bit-identical results
//! on one and two threads.

mod gemm_check;

#[test]
fn gemm_matches_f64_on_every_layout_and_is_thread_count_independent() {
    gemm_check::gemm_matches_f64_on_every_layout_and_is_thread_count_independent();
}
