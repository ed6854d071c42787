//! A linear layer `y = x·Wᵀ + b` as one custom op on the CPU.
//!
//! Composed of candle ops it was a matmul, a transpose and a broadcast add: three
//! graph nodes, each given a zero-filled gradient buffer and an add by candle's
//! backward, the weight gradient added through a transposed (strided) view, and
//! the bias gradient a strided reduction over the batch. Here the forward is one
//! matrix product started from the bias, and the backward is at most two products
//! and a column sum, each computed only for an input that needs it.

use super::conv::{gemm, gemm_new, MatRef};
use candle_core::backend::BackendStorage;
use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor, WithDType,
};

fn threads() -> usize {
    rayon::current_num_threads()
}

/// `(x (M, K), w (N, K))` → `x·Wᵀ (M, N)`.
#[derive(Debug, Clone, Copy)]
struct MatmulT;

/// `(x (M, K), w (N, K), b (N))` → `x·Wᵀ + b`.
#[derive(Debug, Clone, Copy)]
struct MatmulTBias;

/// `(g (M, N), w (N, K))` → `g·W (M, K)`: the input gradient.
#[derive(Debug, Clone, Copy)]
struct GradInput;

/// `(g (M, N), x (M, K))` → `gᵀ·x (N, K)`: the weight gradient.
#[derive(Debug, Clone, Copy)]
struct GradWeight;

/// `g (M, N)` → its column sums `(N)`: the bias gradient.
#[derive(Debug, Clone, Copy)]
struct ColumnSums;

fn dims2(l: &Layout, what: &str) -> Result<(usize, usize)> {
    match l.dims() {
        [a, b] => Ok((*a, *b)),
        d => candle_core::bail!("linear: {what} must be a matrix, got {d:?}"),
    }
}

/// `(rows, features)` of a tensor of any rank ≥ 1: every leading dimension is a
/// row, so a `(B, T, F)` input needs no reshape (each reshape is a graph node
/// whose backward costs a zero-filled buffer and an add).
fn rows(l: &Layout, what: &str) -> Result<(usize, usize)> {
    match l.dims().last() {
        Some(&f) => Ok((l.shape().elem_count() / f.max(1), f)),
        None => candle_core::bail!("linear: {what} must have at least one dimension"),
    }
}

/// `dims` with the last one replaced by `last`.
fn with_last(dims: &[usize], last: usize) -> Shape {
    let mut d = dims.to_vec();
    if let Some(l) = d.last_mut() {
        *l = last;
    }
    Shape::from(d)
}

/// `x·Wᵀ (+ b)` on host slices: `x (m, k)`, `w (n, k)`, `b (n)` → `(m, n)`, one
/// GEMM on the pool started from the bias. For ops that fuse a projection with
/// what follows it.
pub fn forward<T: WithDType>(
    x: &[T],
    w: &[T],
    b: Option<&[T]>,
    (m, k, n): (usize, usize, usize),
) -> Vec<T> {
    // With a bias, the rows start as copies of it (the product is added), so no
    // zero fill first: it was 2 % of the sentence encoder's time.
    let Some(b) = b else {
        return gemm_new(
            MatRef::rows(x, k),
            MatRef::transposed(w, k),
            (m, n, k),
            threads(),
        );
    };
    let mut out = Vec::with_capacity(m * n);
    for _ in 0..m {
        out.extend_from_slice(b);
    }
    gemm(
        &mut out,
        n,
        MatRef::rows(x, k),
        MatRef::transposed(w, k),
        (m, n, k),
        true,
        threads(),
    );
    out
}

fn check(x: &Layout, w: &Layout) -> Result<(usize, usize, usize)> {
    let (m, k) = rows(x, "input")?;
    let (n, wk) = dims2(w, "weight")?;
    if wk != k {
        candle_core::bail!(
            "linear: input has {k} features, weight {:?} expects {wk}",
            w.dims()
        );
    }
    Ok((m, k, n))
}

impl CustomOp2 for MatmulT {
    fn name(&self) -> &'static str {
        "taper-linear"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let d = check(l1, l2)?;
        let out = crate::float_dispatch!(
            "linear",
            s1.dtype(),
            [(x, s1, l1), (w, s2, l2)],
            forward(x, w, None, d)
        );
        Ok((out, with_last(l1.dims(), d.2)))
    }
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, _) = backward(x, w, g, (x.track_op(), w.track_op(), false))?;
        Ok((dx, dw))
    }
}

impl CustomOp3 for MatmulTBias {
    fn name(&self) -> &'static str {
        "taper-linear-bias"
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
        let d = check(l1, l2)?;
        if l3.shape().elem_count() != d.2 {
            candle_core::bail!("linear: bias {:?} for {} outputs", l3.dims(), d.2);
        }
        let out = crate::float_dispatch!(
            "linear",
            s1.dtype(),
            [(x, s1, l1), (w, s2, l2), (b, s3, l3)],
            forward(x, w, Some(b), d)
        );
        Ok((out, with_last(l1.dims(), d.2)))
    }
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, db) = backward(x, w, g, (x.track_op(), w.track_op(), b.track_op()))?;
        Ok((dx, dw, db.map(|d| d.reshape(b.shape())).transpose()?))
    }
}

/// The gradients of `y = x·Wᵀ + b` for an output gradient `g` (`x` of any rank,
/// `g` with `x`'s rows): `(dx, dW, db)`, each computed only where `need` holds
/// (two GEMMs and a column sum). CPU f32/f64; for ops that fuse a projection.
pub fn backward(
    x: &Tensor,
    w: &Tensor,
    g: &Tensor,
    need: (bool, bool, bool),
) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
    let g = g.contiguous()?;
    let dx = if need.0 {
        Some(g.apply_op2_no_bwd(w, &GradInput)?.reshape(x.shape())?)
    } else {
        None
    };
    let dw = if need.1 {
        Some(g.apply_op2_no_bwd(&x.contiguous()?, &GradWeight)?)
    } else {
        None
    };
    let db = if need.2 {
        Some(g.apply_op1_no_bwd(&ColumnSums)?)
    } else {
        None
    };
    Ok((dx, dw, db))
}

impl CustomOp2 for GradInput {
    fn name(&self) -> &'static str {
        "taper-linear-grad-input"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (m, n) = rows(l1, "gradient")?;
        let (wn, k) = dims2(l2, "weight")?;
        if wn != n {
            candle_core::bail!(
                "linear backward: gradient {:?} and weight {:?}",
                l1.dims(),
                l2.dims()
            );
        }
        let out =
            crate::float_dispatch!("linear backward", s1.dtype(), [(g, s1, l1), (w, s2, l2)], {
                gemm_new(MatRef::rows(g, n), MatRef::rows(w, k), (m, k, n), threads())
            });
        Ok((out, with_last(l1.dims(), k)))
    }
}

impl CustomOp2 for GradWeight {
    fn name(&self) -> &'static str {
        "taper-linear-grad-weight"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (m, n) = rows(l1, "gradient")?;
        let (xm, k) = rows(l2, "input")?;
        if xm != m {
            candle_core::bail!(
                "linear backward: gradient {:?} and input {:?}",
                l1.dims(),
                l2.dims()
            );
        }
        let out =
            crate::float_dispatch!("linear backward", s1.dtype(), [(g, s1, l1), (x, s2, l2)], {
                gemm_new(
                    MatRef::transposed(g, n),
                    MatRef::rows(x, k),
                    (n, k, m),
                    threads(),
                )
            });
        Ok((out, Shape::from((n, k))))
    }
}

fn column_sums<T: WithDType>(g: &[T], n: usize) -> Vec<T> {
    // Blocks of 64 rows summed in T (a loop that vectorises), the blocks in f64.
    let n = n.max(1);
    let mut acc = vec![0f64; n];
    let mut part = vec![T::zero(); n];
    for block in g.chunks(64 * n) {
        part.fill(T::zero());
        for row in block.chunks_exact(n) {
            for (p, &v) in part.iter_mut().zip(row) {
                *p += v;
            }
        }
        for (a, &p) in acc.iter_mut().zip(&part) {
            *a += p.to_f64();
        }
    }
    acc.into_iter().map(T::from_f64).collect()
}

impl CustomOp1 for ColumnSums {
    fn name(&self) -> &'static str {
        "taper-linear-grad-bias"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (_, n) = rows(l, "gradient")?;
        let out = crate::float_dispatch!("linear", s.dtype(), [(g, s, l)], column_sums(g, n));
        Ok((out, Shape::from(n)))
    }
}

/// `x·Wᵀ + b` over the last dimension of `x` (any leading dimensions), with
/// `weight (out, in)` and an optional `bias (out,)`: the fused op above on the
/// CPU in f32/f64, candle's matmul and broadcast add elsewhere.
pub fn linear(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    let dims = x.dims();
    let inp = *dims.last().unwrap_or(&0);
    let (out_f, w_in) = weight.dims2()?;
    if w_in != inp {
        candle_core::bail!(
            "linear: input {:?} has {inp} features, weight {:?} expects {w_in}",
            dims,
            weight.dims()
        );
    }
    if x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64) && inp > 0 {
        // Any rank goes straight in: no reshape nodes around the op.
        let (x, w) = (x.contiguous()?, weight.contiguous()?);
        return match bias {
            Some(b) => x.apply_op3(&w, &b.contiguous()?, MatmulTBias),
            None => x.apply_op2(&w, MatmulT),
        };
    }
    let rows = x.elem_count() / inp.max(1);
    let y = x.reshape((rows, inp))?.matmul(&weight.t()?)?;
    let y = match bias {
        Some(b) => y.broadcast_add(b)?,
        None => y,
    };
    let mut out = dims.to_vec();
    if let Some(l) = out.last_mut() {
        *l = out_f;
    }
    y.reshape(out)
}
