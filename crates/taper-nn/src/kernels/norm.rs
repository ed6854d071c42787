//! Layer normalisation and softmax over the last dimension as single custom ops
//! on the CPU, each with a one-op backward.
//!
//! Composed of candle ops, a layer norm was eleven graph nodes (two sums, a
//! subtraction, a square, a square root, three broadcasts...) and a softmax five;
//! candle's backward gives each node a zero-filled gradient buffer and an add, so
//! a Transformer step spent more time in that bookkeeping than in its products.

use super::{simd, Real};
use candle_core::backend::BackendStorage;
use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor,
};
use rayon::prelude::*;

fn last_dim(l: &Layout) -> Result<usize> {
    match l.dims().last() {
        Some(&d) if d > 0 => Ok(d),
        _ => candle_core::bail!("normalisation over the last dimension of {:?}", l.dims()),
    }
}

/// Mean and 1/std of one row: two passes, each eight partial sums in the
/// element type over blocks of 256 added in f64 ([`super::vmath::sum_map`]), so
/// they vectorise and give the same bits at every [`simd`] level. (One f64 sum
/// in order, as before, did not vectorise: 6 % of greedy Transformer decoding.)
#[inline(always)]
fn row_stats<T: Real>(x: &[T], eps: f64) -> (f64, f64) {
    let n = x.len() as f64;
    let mean = super::vmath::sum(x) / n;
    let m = T::from_f64(mean);
    let var = super::vmath::sum_map(x, |v| (v - m) * (v - m)) / n;
    (mean, 1.0 / (var + eps).sqrt())
}

/// `(x (..., D), weight (D), bias (D))` → layer norm over the last dimension.
#[derive(Debug, Clone, Copy)]
pub struct LayerNormOp {
    /// Added to the variance.
    pub eps: f64,
}

/// `(x, grad)` plus the weight in the op → `dx`.
#[derive(Debug, Clone)]
struct LayerNormGradInput {
    eps: f64,
    weight: Vec<f64>,
}

/// `(x, grad)` → `(2, D)`: Σ g·x̂ (the weight gradient) and Σ g (the bias gradient).
#[derive(Debug, Clone, Copy)]
struct LayerNormGradParams {
    eps: f64,
}

fn ln_forward<T: Real>(x: &[T], w: &[T], b: &[T], d: usize, eps: f64) -> Vec<T> {
    let mut out = vec![T::zero(); x.len()];
    out.par_chunks_mut(d)
        .zip(x.par_chunks(d))
        .for_each(|(o, r)| {
            simd::dispatch(
                #[inline(always)]
                || {
                    let (mean, rstd) = row_stats(r, eps);
                    let (m, s) = (T::from_f64(mean), T::from_f64(rstd));
                    for (((o, v), w), b) in o.iter_mut().zip(r).zip(w).zip(b) {
                        *o = (*v - m) * s * *w + *b;
                    }
                },
            )
        });
    out
}

fn ln_grad_input<T: Real>(x: &[T], g: &[T], w: &[f64], d: usize, eps: f64) -> Vec<T> {
    let mut out = vec![T::zero(); x.len()];
    out.par_chunks_mut(d)
        .zip(x.par_chunks(d).zip(g.par_chunks(d)))
        .for_each(|(o, (r, gr))| {
            let (mean, rstd) = row_stats(r, eps);
            let n = d as f64;
            // dx = rstd·(ĝ - mean(ĝ) - x̂·mean(ĝ·x̂)) with ĝ = g·w
            let (mut sg, mut sgx) = (0f64, 0f64);
            for ((v, gv), wv) in r.iter().zip(gr).zip(w) {
                let gh = gv.to_f64() * wv;
                sg += gh;
                sgx += gh * (v.to_f64() - mean) * rstd;
            }
            let (mg, mgx) = (sg / n, sgx / n);
            for (((o, v), gv), wv) in o.iter_mut().zip(r).zip(gr).zip(w) {
                let xh = (v.to_f64() - mean) * rstd;
                *o = T::from_f64(rstd * (gv.to_f64() * wv - mg - xh * mgx));
            }
        });
    out
}

/// The weight and bias gradients `(Σ_rows g·x̂, Σ_rows g)`, summed in a fixed
/// order ([`super::ordered_sum`]) so they are the same on any number of threads.
fn ln_grad_params<T: Real>(x: &[T], g: &[T], d: usize, eps: f64) -> Vec<T> {
    let rows = x.len() / d.max(1);
    let sums = super::ordered_sum(
        rows,
        2 * d,
        0f64,
        || (),
        |_, i, acc| {
            let (r, gr) = (&x[i * d..(i + 1) * d], &g[i * d..(i + 1) * d]);
            let (mean, rstd) = row_stats(r, eps);
            let (a, b) = acc.split_at_mut(d);
            for (((a, b), v), gv) in a.iter_mut().zip(b.iter_mut()).zip(r).zip(gr) {
                let gv = gv.to_f64();
                *a += gv * (v.to_f64() - mean) * rstd;
                *b += gv;
            }
        },
    );
    sums.into_iter().map(T::from_f64).collect()
}

impl CustomOp3 for LayerNormOp {
    fn name(&self) -> &'static str {
        "taper-layer-norm"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let d = last_dim(l1)?;
        if l2.shape().elem_count() != d || l3.shape().elem_count() != d {
            candle_core::bail!("layer norm: weight and bias must have {d} values");
        }
        let out = crate::float_dispatch!(
            "layer norm",
            s1.dtype(),
            [(x, s1, l1), (w, s2, l2), (b, s3, l3)],
            ln_forward(x, w, b, d, self.eps)
        );
        Ok((out, l1.shape().clone()))
    }
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let dx = if x.track_op() {
            let weight = w.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
            Some(x.apply_op2_no_bwd(
                &grad,
                &LayerNormGradInput {
                    eps: self.eps,
                    weight,
                },
            )?)
        } else {
            None
        };
        let (dw, db) = if w.track_op() || b.track_op() {
            let p = x.apply_op2_no_bwd(&grad, &LayerNormGradParams { eps: self.eps })?;
            (
                w.track_op().then(|| p.get(0)).transpose()?,
                b.track_op().then(|| p.get(1)).transpose()?,
            )
        } else {
            (None, None)
        };
        Ok((dx, dw, db))
    }
}

impl CustomOp2 for LayerNormGradInput {
    fn name(&self) -> &'static str {
        "taper-layer-norm-grad-input"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let d = last_dim(l1)?;
        if l1.shape() != l2.shape() || self.weight.len() != d {
            candle_core::bail!(
                "layer norm backward: shapes {:?} and {:?}",
                l1.dims(),
                l2.dims()
            );
        }
        let out = crate::float_dispatch!(
            "layer norm backward",
            s1.dtype(),
            [(x, s1, l1), (g, s2, l2)],
            ln_grad_input(x, g, &self.weight, d, self.eps)
        );
        Ok((out, l1.shape().clone()))
    }
}

impl CustomOp2 for LayerNormGradParams {
    fn name(&self) -> &'static str {
        "taper-layer-norm-grad-params"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let d = last_dim(l1)?;
        if l1.shape() != l2.shape() {
            candle_core::bail!(
                "layer norm backward: shapes {:?} and {:?}",
                l1.dims(),
                l2.dims()
            );
        }
        let out = crate::float_dispatch!(
            "layer norm backward",
            s1.dtype(),
            [(x, s1, l1), (g, s2, l2)],
            ln_grad_params(x, g, d, self.eps)
        );
        Ok((out, Shape::from((2, d))))
    }
}

/// Softmax over the last dimension; its backward is [`SoftmaxGrad`].
#[derive(Debug, Clone, Copy)]
pub struct Softmax;

/// `(y, grad)` → `y·(g - Σ g·y)` per row.
#[derive(Debug, Clone, Copy)]
struct SoftmaxGrad;

/// `out` row by row (`d` values each, rows in parallel): `f(out_row, x_row)`,
/// compiled for the CPU's vector width ([`simd::dispatch`]).
#[inline(always)]
fn map_rows<T: Real>(x: &[T], d: usize, f: impl Fn(&mut [T], &[T]) + Sync) -> Vec<T> {
    let mut out = vec![T::zero(); x.len()];
    out.par_chunks_mut(d)
        .zip(x.par_chunks(d))
        .for_each(|(o, r)| {
            simd::dispatch(
                #[inline(always)]
                || f(o, r),
            )
        });
    out
}

/// `o = softmax(r)` for one row: `e^(r - max r)`, each divided by their sum
/// (taken in f64). Shared with the fused attention (`kernels::sdpa`).
#[inline(always)]
pub(crate) fn softmax_row<T: Real>(o: &mut [T], r: &[T]) {
    let max = super::vmath::max(r);
    for (o, &v) in o.iter_mut().zip(r) {
        *o = (v - max).ex();
    }
    let inv = T::from_f64(1.0 / super::vmath::sum(o));
    for v in o.iter_mut() {
        *v *= inv;
    }
}

fn softmax_rows<T: Real>(x: &[T], d: usize) -> Vec<T> {
    map_rows(x, d, softmax_row)
}

fn softmax_grad_rows<T: Real>(y: &[T], g: &[T], d: usize) -> Vec<T> {
    let mut out = vec![T::zero(); y.len()];
    out.par_chunks_mut(d)
        .zip(y.par_chunks(d).zip(g.par_chunks(d)))
        .for_each(|(o, (yr, gr))| {
            let dot = T::from_f64(
                yr.iter()
                    .zip(gr)
                    .map(|(a, b)| a.to_f64() * b.to_f64())
                    .sum(),
            );
            for ((o, y), g) in o.iter_mut().zip(yr).zip(gr) {
                *o = *y * (*g - dot);
            }
        });
    out
}

/// Log-softmax over the last dimension: `x - max - ln Σ e^(x - max)` per row.
#[derive(Debug, Clone, Copy)]
pub struct LogSoftmax;

/// `(y, grad)` → `g - e^y · Σ g` per row.
#[derive(Debug, Clone, Copy)]
struct LogSoftmaxGrad;

fn log_softmax_rows<T: Real>(x: &[T], d: usize) -> Vec<T> {
    map_rows(
        x,
        d,
        #[inline(always)]
        |o, r| {
            let max = super::vmath::max(r);
            let sum = super::vmath::sum_map(r, |v| (v - max).ex());
            let shift = max + T::from_f64(sum.ln());
            for (o, &v) in o.iter_mut().zip(r) {
                *o = v - shift;
            }
        },
    )
}

fn log_softmax_grad_rows<T: Real>(y: &[T], g: &[T], d: usize) -> Vec<T> {
    let mut out = vec![T::zero(); y.len()];
    out.par_chunks_mut(d)
        .zip(y.par_chunks(d).zip(g.par_chunks(d)))
        .for_each(|(o, (yr, gr))| {
            simd::dispatch(
                #[inline(always)]
                || {
                    let total = T::from_f64(super::vmath::sum(gr));
                    for ((o, &y), &g) in o.iter_mut().zip(yr).zip(gr) {
                        *o = g - y.ex() * total;
                    }
                },
            )
        });
    out
}

/// A row-wise op over the last dimension whose backward reads its own output:
/// `$op` runs `$fwd(x, d)` and its gradient `$grad_op` runs `$grad(y, g, d)`.
macro_rules! row_op_with_output_grad {
    ($op:ident, $name:literal, $fwd:ident, $grad_op:ident, $grad:ident) => {
        impl CustomOp1 for $op {
            fn name(&self) -> &'static str {
                concat!("taper-", $name)
            }
            fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
                let d = last_dim(l)?;
                let out = crate::float_dispatch!($name, s.dtype(), [(x, s, l)], $fwd(x, d));
                Ok((out, l.shape().clone()))
            }
            fn bwd(&self, _arg: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
                Ok(Some(res.apply_op2_no_bwd(&grad.contiguous()?, &$grad_op)?))
            }
        }

        impl CustomOp2 for $grad_op {
            fn name(&self) -> &'static str {
                concat!("taper-", $name, "-grad")
            }
            fn cpu_fwd(
                &self,
                s1: &CpuStorage,
                l1: &Layout,
                s2: &CpuStorage,
                l2: &Layout,
            ) -> Result<(CpuStorage, Shape)> {
                let d = last_dim(l1)?;
                if l1.shape() != l2.shape() {
                    candle_core::bail!(
                        "{} backward: shapes {:?} and {:?}",
                        $name,
                        l1.dims(),
                        l2.dims()
                    );
                }
                let out = crate::float_dispatch!(
                    concat!($name, " backward"),
                    s1.dtype(),
                    [(y, s1, l1), (g, s2, l2)],
                    $grad(y, g, d)
                );
                Ok((out, l1.shape().clone()))
            }
        }
    };
}

row_op_with_output_grad!(
    Softmax,
    "softmax",
    softmax_rows,
    SoftmaxGrad,
    softmax_grad_rows
);
row_op_with_output_grad!(
    LogSoftmax,
    "log-softmax",
    log_softmax_rows,
    LogSoftmaxGrad,
    log_softmax_grad_rows
);

/// True when the fused kernels apply: a CPU tensor of f32 or f64.
pub(crate) fn fusable(x: &Tensor) -> bool {
    x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64)
}
