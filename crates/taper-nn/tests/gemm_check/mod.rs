//! The check of the f32 GEMM funnel (`kernels::gemm`) shared by `blas.rs` (the
//! backend the machine chooses) and `gemm_crate.rs` (OpenBLAS turned off), so CI
//! covers both paths for large products on a machine that has OpenBLAS.

use taper_nn::kernels::{blas, gemm, MatRef};

fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        })
        .collect()
}

/// `a` as an `rows x cols` matrix stored row-major, or as its transpose.
fn view(data: &[f32], cols: usize, rows: usize, transposed: bool) -> MatRef<'_, f32> {
    if transposed {
        MatRef::transposed(data, rows)
    } else {
        MatRef::rows(data, cols)
    }
}

/// Checks `kernels::gemm` on the backend the process loaded (see the callers).
pub fn gemm_matches_f64_on_every_layout_and_is_thread_count_independent() {
    println!("f32 GEMM: {}", blas::backend());
    // Shapes above and below the BLAS threshold, with tiles that do not divide them.
    for &(m, n, k) in &[(300, 700, 65), (129, 513, 384), (7, 5, 3), (1, 600, 100)] {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            for accumulate in [false, true] {
                let a = values(m * k, (m + 3 * k) as u64);
                let b = values(k * n, (n + 7 * k) as u64);
                let dst_rs = n + 3;
                let start = values(m * dst_rs, 5);
                // Stored forms: `a` is m x k, or k x m read transposed.
                let av = view(&a, k, m, ta);
                let bv = view(&b, n, k, tb);
                let at = |i: usize, p: usize| av.data[i * av.rs + p * av.cs] as f64;
                let bt = |p: usize, j: usize| bv.data[p * bv.rs + j * bv.cs] as f64;
                let mut runs = Vec::new();
                for threads in [1, 2] {
                    let mut dst = start.clone();
                    gemm(&mut dst, dst_rs, av, bv, (m, n, k), accumulate, threads);
                    runs.push(dst);
                }
                assert!(
                    runs[0]
                        .iter()
                        .zip(&runs[1])
                        .all(|(x, y)| x.to_bits() == y.to_bits()),
                    "({m},{n},{k}) ta={ta} tb={tb}: 1 and 2 threads differ"
                );
                let dst = &runs[0];
                for i in 0..m {
                    for j in 0..n {
                        let want = (0..k).map(|p| at(i, p) * bt(p, j)).sum::<f64>()
                            + if accumulate {
                                start[i * dst_rs + j] as f64
                            } else {
                                0.0
                            };
                        let got = dst[i * dst_rs + j] as f64;
                        assert!(
                            (got - want).abs() <= 1e-5 * (k as f64).sqrt() + 1e-5 * want.abs(),
                            "({m},{n},{k}) ta={ta} tb={tb} acc={accumulate} [{i},{j}]: {got} vs {want}"
                        );
                    }
                    // The padding between destination rows is never written.
                    for j in n..dst_rs {
                        assert_eq!(dst[i * dst_rs + j], start[i * dst_rs + j]);
                    }
                }
            }
        }
    }
}
