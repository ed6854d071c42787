//! Batched matrix products `(G, M, K) x (G, K, N) -> (G, M, N)` through
//! [`super::gemm`], for attention's score and context products; products under
//! [`MIN_WORK`] multiply-adds (short sequences, one query a decoding step) in
//! plain vectorised loops instead.
//!
//! candle's CPU `matmul` runs them on the `gemm` crate, whose AVX2 kernels reach about
//! a third of OpenBLAS's rate on AVX-512 CPUs; the Transformer step's ratio to PyTorch
//! grew with the sequence length (1.11 at 32, 1.44 at 128: docs/BENCHMARKS.md) as
//! these products' share grew. Here each of the `G` products is one
//! [`super::gemm`] call (OpenBLAS where loaded), the `G` of them spread over rayon's
//! threads; either operand may be read transposed in place, so the backward pass
//! needs no copies. Every product is computed the same way whatever the thread
//! count, so results are bit-identical on one thread or many.

use super::blas::MIN_WORK;
use super::{gemm, simd, MatRef};
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor, WithDType};
use rayon::prelude::*;

/// `op(a) · op(b)` per batch entry, `op` a transpose where the flag says so: `a` is
/// `(G, M, K)` (or `(G, K, M)` with `ta`), `b` `(G, K, N)` (or `(G, N, K)` with
/// `tb`), both contiguous.
#[derive(Debug, Clone, Copy)]
struct Bmm {
    ta: bool,
    tb: bool,
}

/// `(G, M, K, N)` of a product, or an error naming the mismatch.
fn dims(op: Bmm, a: &Layout, b: &Layout) -> Result<(usize, usize, usize, usize)> {
    let (&[ga, a1, a2], &[gb, b1, b2]) = (a.dims(), b.dims()) else {
        candle_core::bail!(
            "bmm: operands {:?} and {:?} must be 3-D",
            a.dims(),
            b.dims()
        );
    };
    let (m, k) = if op.ta { (a2, a1) } else { (a1, a2) };
    let (kb, n) = if op.tb { (b2, b1) } else { (b1, b2) };
    if ga != gb || k != kb {
        candle_core::bail!(
            "bmm: {:?} and {:?} do not multiply (transposed: {}, {})",
            a.dims(),
            b.dims(),
            op.ta,
            op.tb
        );
    }
    Ok((ga, m, k, n))
}

/// `a · b` as eight independent partial sums (the loop vectorises, and a wider
/// vector does not reorder it: the same bits on every [`simd`] level).
#[inline(always)]
fn dot<T: WithDType>(a: &[T], b: &[T]) -> T {
    let mut acc = [T::zero(); 8];
    let (la, lb) = (a.chunks_exact(8), b.chunks_exact(8));
    let mut s = T::zero();
    for (x, y) in la.remainder().iter().zip(lb.remainder()) {
        s += *x * *y;
    }
    for (x, y) in la.zip(lb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    acc.into_iter().fold(s, |s, v| s + v)
}

/// One product too small for a GEMM call to pay off, `dst (m, n) = op(a) · op(b)`
/// (`dst` zero on entry), in loops the compiler vectorises over the contiguous
/// dimension: rows of `b` scaled and added when `b` is stored `(k, n)`, dot
/// products of rows when it is stored `(n, k)`.
#[inline(always)]
fn small_product<T: WithDType>(
    dst: &mut [T],
    a: &[T],
    b: &[T],
    op: Bmm,
    (m, k, n): (usize, usize, usize),
) {
    let a_at = |i: usize, kk: usize| if op.ta { a[kk * m + i] } else { a[i * k + kk] };
    if !op.tb {
        for (i, row) in dst.chunks_exact_mut(n).enumerate() {
            for (kk, br) in b.chunks_exact(n).enumerate() {
                let s = a_at(i, kk);
                for (d, &v) in row.iter_mut().zip(br) {
                    *d += s * v;
                }
            }
        }
    } else if !op.ta {
        for (row, ar) in dst.chunks_exact_mut(n).zip(a.chunks_exact(k)) {
            for (d, br) in row.iter_mut().zip(b.chunks_exact(k)) {
                *d = dot(ar, br);
            }
        }
    } else {
        for (i, row) in dst.chunks_exact_mut(n).enumerate() {
            for (d, br) in row.iter_mut().zip(b.chunks_exact(k)) {
                let mut s = T::zero();
                for (kk, &v) in br.iter().enumerate() {
                    s += a_at(i, kk) * v;
                }
                *d = s;
            }
        }
    }
}

fn forward<T: WithDType>(
    op: Bmm,
    a: &[T],
    b: &[T],
    (g, m, k, n): (usize, usize, usize, usize),
) -> Vec<T> {
    let mut out = vec![T::zero(); g * m * n];
    if m * n == 0 {
        return out;
    }
    let work = m * n * k;
    if work < MIN_WORK {
        // Attention over short sequences, and decoding's one query a step: a GEMM
        // call's set-up costs more than such a product (candle's batched matmul
        // made them one after another, each through the `gemm` crate). Each rayon
        // task takes products worth about one GEMM's minimum of work.
        out.par_chunks_mut(m * n)
            .with_min_len((MIN_WORK / work.max(1)).max(1))
            .enumerate()
            .for_each(|(i, dst)| {
                let ai = &a[i * m * k..(i + 1) * m * k];
                let bi = &b[i * k * n..(i + 1) * k * n];
                simd::dispatch(
                    #[inline(always)]
                    || small_product(dst, ai, bi, op, (m, k, n)),
                )
            });
        return out;
    }
    // A stored row-major matrix of `cols` columns, read as its transpose when `t`.
    let mat = |data, cols, t: bool| {
        if t {
            MatRef::transposed(data, cols)
        } else {
            MatRef::rows(data, cols)
        }
    };
    out.par_chunks_mut(m * n).enumerate().for_each(|(i, dst)| {
        let ai = &a[i * m * k..(i + 1) * m * k];
        let bi = &b[i * k * n..(i + 1) * k * n];
        // op(a) is m x k: stored k x m (m columns) when transposed, else k columns.
        let am = if op.ta {
            mat(ai, m, true)
        } else {
            mat(ai, k, false)
        };
        let bm = if op.tb {
            mat(bi, k, true)
        } else {
            mat(bi, n, false)
        };
        gemm(dst, n, am, bm, (m, n, k), false, 1);
    });
    out
}

impl CustomOp2 for Bmm {
    fn name(&self) -> &'static str {
        "taper-bmm"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let d = dims(*self, l1, l2)?;
        let out = crate::float_dispatch!(
            "bmm",
            s1.dtype(),
            [(a, s1, l1), (b, s2, l2)],
            forward(*self, a, b, d)
        );
        Ok((out, Shape::from((d.0, d.1, d.3))))
    }
    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = g.contiguous()?;
        // C = op_a(A)·op_b(B): dop_a(A) = G·op_b(B)ᵀ and dop_b(B) = op_a(A)ᵀ·G, each
        // written back in its operand's stored layout.
        let da = if !a.track_op() {
            None
        } else if self.ta {
            Some(b.apply_op2_no_bwd(
                &g,
                &Bmm {
                    ta: self.tb,
                    tb: true,
                },
            )?)
        } else {
            Some(g.apply_op2_no_bwd(
                b,
                &Bmm {
                    ta: false,
                    tb: !self.tb,
                },
            )?)
        };
        let db = if !b.track_op() {
            None
        } else if self.tb {
            Some(g.apply_op2_no_bwd(
                a,
                &Bmm {
                    ta: true,
                    tb: self.ta,
                },
            )?)
        } else {
            Some(a.apply_op2_no_bwd(
                &g,
                &Bmm {
                    ta: !self.ta,
                    tb: false,
                },
            )?)
        };
        Ok((da, db))
    }
}

/// `a (..., M, K) · b (..., K, N)` over matching leading dimensions (no
/// broadcasting), with a gradient: the CPU f32/f64 path of attention's products.
/// Other devices and dtypes use candle's `matmul`.
///
/// # Errors
/// Operands of fewer than 3 dimensions, different leading dimensions, or inner
/// dimensions that do not match.
pub fn bmm(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    batched(a, b, false)
}

/// `a (..., M, K) · b (..., N, K)ᵀ`: [`bmm`] with `b` read transposed in place,
/// for attention scores `q · kᵀ` over keys stored a position per row (which a
/// decoding cache appends to without moving the earlier rows).
///
/// # Errors
/// As [`bmm`].
pub fn bmm_t(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    batched(a, b, true)
}

fn batched(a: &Tensor, b: &Tensor, tb: bool) -> Result<Tensor> {
    let (ra, rb) = (a.rank(), b.rank());
    if ra < 3 || ra != rb || a.dims()[..ra - 2] != b.dims()[..rb - 2] {
        candle_core::bail!(
            "bmm: {:?} and {:?} need the same leading dimensions",
            a.dims(),
            b.dims()
        );
    }
    if !super::norm::fusable(a) {
        return if tb {
            a.matmul(&b.transpose(rb - 2, rb - 1)?)
        } else {
            a.matmul(b)
        };
    }
    let lead = &a.dims()[..ra - 2];
    let g: usize = lead.iter().product();
    let (m, k) = (a.dims()[ra - 2], a.dims()[ra - 1]);
    let (b1, b2) = (b.dims()[rb - 2], b.dims()[rb - 1]);
    let n = if tb { b1 } else { b2 };
    let a3 = a.contiguous()?.reshape((g, m, k))?;
    let b3 = b.contiguous()?.reshape((g, b1, b2))?;
    let out = a3.apply_op2(&b3, Bmm { ta: false, tb })?;
    let mut shape = lead.to_vec();
    shape.extend([m, n]);
    out.reshape(shape)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    fn max_diff(x: Result<Tensor>, y: Result<Tensor>) -> f32 {
        (x.unwrap() - y.unwrap())
            .and_then(|d| d.abs()?.max_all()?.to_scalar())
            .unwrap()
    }

    #[test]
    fn equals_candle_matmul_and_refuses_mismatches() {
        let dev = Device::Cpu;
        // Products of at least blas::MIN_WORK multiply-adds, so they take this path.
        let a = Tensor::randn(0f32, 1.0, (2, 3, 40, 70), &dev).unwrap();
        let b = Tensor::randn(0f32, 1.0, (2, 3, 70, 36), &dev).unwrap();
        let d = max_diff(bmm(&a, &b), a.matmul(&b));
        // Sums of 70 products of values about 1 in f32, rounded in another order
        // than candle's: agree to a few units of the last place of values near 10.
        assert!(d < 1e-4, "{d}");
        // Products too small for a GEMM call: the plain loops, equal too.
        for (m, k, n) in [(1, 64, 13), (5, 9, 3), (2, 17, 1)] {
            let a = Tensor::randn(0f32, 1.0, (3, 4, m, k), &dev).unwrap();
            let b = Tensor::randn(0f32, 1.0, (3, 4, k, n), &dev).unwrap();
            let d = max_diff(bmm(&a, &b), a.matmul(&b));
            assert!(d < 1e-4, "{m}x{k}x{n}: {d}");
        }
        let a64 = a.to_dtype(DType::F64).unwrap();
        let bt = b.to_dtype(DType::F64).unwrap().transpose(2, 3).unwrap();
        // A transposed view is made contiguous first.
        let r = bmm(&a64, &bt.transpose(2, 3).unwrap()).unwrap();
        assert_eq!(r.dims(), &[2, 3, 40, 36]);
        // b read transposed: the same as multiplying by its transpose.
        let bt = b.transpose(2, 3).unwrap().contiguous().unwrap();
        let d = max_diff(bmm_t(&a, &bt), a.matmul(&b));
        assert!(d < 1e-4, "{d}");
        assert!(bmm(&a, &a).is_err());
        assert!(bmm(&a.narrow(0, 0, 1).unwrap(), &b).is_err());
    }
}
