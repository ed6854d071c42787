//! A linear layer `y = x·Wᵀ + b` as one custom op on the CPU.
//!
//! Composed of candle ops it was a matmul, a transpose and a broadcast add: three
//! graph nodes, each given a zero-filled gradient buffer and an add by candle's
//! backward, the weight gradient added through a transposed (strided) view, and
//! the bias gradient a strided reduction over the batch. Here the forward is one
//! matrix product started from the bias, and the backward is at most two products
//! and a column sum, each computed only for an input that needs it.

use super::conv::{gemm, MatRef};
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

fn forward<T: WithDType>(
    x: &[T],
    w: &[T],
    b: Option<&[T]>,
    (m, k, n): (usize, usize, usize),
) -> Vec<T> {
    let mut out = vec![T::zero(); m * n];
    if let Some(b) = b {
        for row in out.chunks_mut(n.max(1)) {
            row.copy_from_slice(b);
        }
    }
    gemm(
        &mut out,
        n,
        MatRef::rows(x, k),
        MatRef::transposed(w, k),
        (m, n, k),
        b.is_some(),
        threads(),
    );
    out
}

fn check(x: &Layout, w: &Layout) -> Result<(usize, usize, usize)> {
    let (m, k) = dims2(x, "input")?;
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
        Ok((out, Shape::from((d.0, d.2))))
    }
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = g.contiguous()?;
        Ok((
            if x.track_op() {
                Some(g.apply_op2_no_bwd(w, &GradInput)?)
            } else {
                None
            },
            if w.track_op() {
                Some(g.apply_op2_no_bwd(x, &GradWeight)?)
            } else {
                None
            },
        ))
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
        Ok((out, Shape::from((d.0, d.2))))
    }
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = g.contiguous()?;
        Ok((
            if x.track_op() {
                Some(g.apply_op2_no_bwd(w, &GradInput)?)
            } else {
                None
            },
            if w.track_op() {
                Some(g.apply_op2_no_bwd(x, &GradWeight)?)
            } else {
                None
            },
            if b.track_op() {
                Some(g.apply_op1_no_bwd(&ColumnSums)?.reshape(b.shape())?)
            } else {
                None
            },
        ))
    }
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
        let (m, n) = dims2(l1, "gradient")?;
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
                let mut out = vec![WithDType::from_f64(0.0); m * k];
                gemm(
                    &mut out,
                    k,
                    MatRef::rows(g, n),
                    MatRef::rows(w, k),
                    (m, k, n),
                    false,
                    threads(),
                );
                out
            });
        Ok((out, Shape::from((m, k))))
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
        let (m, n) = dims2(l1, "gradient")?;
        let (xm, k) = dims2(l2, "input")?;
        if xm != m {
            candle_core::bail!(
                "linear backward: gradient {:?} and input {:?}",
                l1.dims(),
                l2.dims()
            );
        }
        let out =
            crate::float_dispatch!("linear backward", s1.dtype(), [(g, s1, l1), (x, s2, l2)], {
                let mut out = vec![WithDType::from_f64(0.0); n * k];
                gemm(
                    &mut out,
                    k,
                    MatRef::transposed(g, n),
                    MatRef::rows(x, k),
                    (n, k, m),
                    false,
                    threads(),
                );
                out
            });
        Ok((out, Shape::from((n, k))))
    }
}

fn column_sums<T: WithDType>(g: &[T], n: usize) -> Vec<T> {
    let mut acc = vec![0f64; n];
    for row in g.chunks(n.max(1)) {
        for (a, v) in acc.iter_mut().zip(row) {
            *a += v.to_f64();
        }
    }
    acc.into_iter().map(T::from_f64).collect()
}

impl CustomOp1 for ColumnSums {
    fn name(&self) -> &'static str {
        "taper-linear-grad-bias"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (_, n) = dims2(l, "gradient")?;
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
    let rows = x.elem_count() / inp.max(1);
    let x2 = x.reshape((rows, inp))?;
    let y = if x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64) && inp > 0 {
        let (x2, w) = (x2.contiguous()?, weight.contiguous()?);
        match bias {
            Some(b) => x2.apply_op3(&w, &b.contiguous()?, MatmulTBias)?,
            None => x2.apply_op2(&w, MatmulT)?,
        }
    } else {
        let y = x2.matmul(&weight.t()?)?;
        match bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        }
    };
    let mut out = dims.to_vec();
    if let Some(l) = out.last_mut() {
        *l = out_f;
    }
    y.reshape(out)
}
