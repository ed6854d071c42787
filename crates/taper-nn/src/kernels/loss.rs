//! Fused token losses: log-softmax, label smoothing, the target's negative
//! log-likelihood and the arg-max check in one pass over the logits
//! ([`token_losses`]), and the same fused with the output projection
//! ([`linear_token_losses`]), so the logits never become a graph node.

use super::{cpu_slice as slice, simd, vmath, Real};
use candle_core::backend::BackendStorage;
use candle_core::{
    CpuStorage, CustomOp1, CustomOp3, DType, Device, Layout, Result, Shape, Tensor, D,
};
use rayon::prelude::*;
use std::sync::{Arc, Mutex};

/// Per-token losses of `logits (N, V)` against `targets`: columns
/// `[label-smoothed cross-entropy, negative log-likelihood, 1 if the arg-max is
/// the target]`. The smoothed loss is PyTorch's
/// `cross_entropy(label_smoothing = eps)`: `(1 - eps)·nll + eps·mean_v(-log p_v)`.
#[derive(Debug, Clone)]
struct TokenLosses {
    targets: Vec<u32>,
    eps: f64,
}

#[derive(Debug, Clone)]
struct TokenLossesGrad {
    targets: Vec<u32>,
    eps: f64,
}

fn token_losses_fwd<T: Real>(x: &[T], v: usize, targets: &[u32], eps: f64) -> Vec<T> {
    let mut out = vec![T::zero(); targets.len() * 3];
    out.par_chunks_mut(3)
        .zip(x.par_chunks(v))
        .zip(targets.par_iter())
        .for_each(|((o, row), &t)| {
            simd::dispatch(
                #[inline(always)]
                || {
                    let st = RowStats::of(row, t);
                    let z = vmath::sum_map(row, |a| (a - st.max).ex());
                    st.write_losses(o, z, v, eps);
                },
            )
        });
    out
}

/// What one row of logits contributes to its losses besides `Σ e^{x - max}`.
struct RowStats<T> {
    max: T,
    /// The arg-max (the first maximum) is the target.
    hit: bool,
    sum: f64,
    target_logit: f64,
}

impl<T: Real> RowStats<T> {
    /// Separate vectorising passes over the row.
    #[inline(always)]
    fn of(row: &[T], t: u32) -> Self {
        let max = vmath::max(row);
        let arg = row.iter().position(|&a| a == max).unwrap_or(0);
        Self {
            max,
            hit: arg == t as usize,
            sum: vmath::sum(row),
            target_logit: row[t as usize].to_f64(),
        }
    }

    /// `o = [smoothed loss, nll, hit]` given `z = Σ e^{x - max}` over `v` logits.
    #[inline(always)]
    fn write_losses(&self, o: &mut [T], z: f64, v: usize, eps: f64) {
        let lse = self.max.to_f64() + z.ln();
        let nll = lse - self.target_logit;
        let smooth = lse - self.sum / v as f64;
        o[0] = T::from_f64((1.0 - eps) * nll + eps * smooth);
        o[1] = T::from_f64(nll);
        o[2] = T::from_f64(if self.hit { 1.0 } else { 0.0 });
    }
}

/// One row's logit gradient, in place over `e = e^{x - max}` with `inv_z =
/// 1 / Σ e` (1 for probabilities): for loss weights `(g0, g1)`,
/// `(g0 + g1)·p - g0·eps/V`, minus `g0·(1 - eps) + g1` at the target.
#[inline(always)]
fn logit_grad_row<T: Real>(e: &mut [T], inv_z: f64, (g0, g1): (f64, f64), t: u32, eps: f64) {
    if g0 == 0.0 && g1 == 0.0 {
        e.fill(T::zero());
        return;
    }
    let scale = T::from_f64((g0 + g1) * inv_z);
    let uniform = T::from_f64(g0 * eps / e.len() as f64);
    for v in e.iter_mut() {
        *v = *v * scale - uniform;
    }
    e[t as usize] -= T::from_f64(g0 * (1.0 - eps) + g1);
}

fn token_losses_bwd<T: Real>(x: &[T], g: &[T], v: usize, targets: &[u32], eps: f64) -> Vec<T> {
    let mut out = vec![T::zero(); x.len()];
    out.par_chunks_mut(v)
        .zip(x.par_chunks(v))
        .zip(g.par_chunks(3).zip(targets.par_iter()))
        .for_each(|((d, row), (gr, &t))| {
            let g = (gr[0].to_f64(), gr[1].to_f64());
            if g == (0.0, 0.0) {
                return;
            }
            simd::dispatch(
                #[inline(always)]
                || {
                    let m = vmath::max(row);
                    for (dj, &a) in d.iter_mut().zip(row) {
                        *dj = (a - m).ex();
                    }
                    let z = vmath::sum(d);
                    logit_grad_row(d, 1.0 / z, g, t, eps);
                },
            )
        });
    out
}

impl CustomOp1 for TokenLosses {
    fn name(&self) -> &'static str {
        "taper-token-losses"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, v) = l.shape().dims2()?;
        check_targets(&self.targets, n, v)?;
        let out = match s.dtype() {
            DType::F32 => CpuStorage::F32(token_losses_fwd::<f32>(
                slice(s, l, "token_losses")?,
                v,
                &self.targets,
                self.eps,
            )),
            DType::F64 => CpuStorage::F64(token_losses_fwd::<f64>(
                slice(s, l, "token_losses")?,
                v,
                &self.targets,
                self.eps,
            )),
            d => candle_core::bail!("token_losses: unsupported dtype {d:?}"),
        };
        Ok((out, Shape::from((n, 3))))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let op = TokenLossesGrad {
            targets: self.targets.clone(),
            eps: self.eps,
        };
        Ok(Some(arg.apply_op2_no_bwd(&grad.contiguous()?, &op)?))
    }
}

fn check_targets(targets: &[u32], n: usize, v: usize) -> Result<()> {
    if targets.len() != n {
        candle_core::bail!("token_losses: {} targets for {n} rows", targets.len());
    }
    if let Some(bad) = targets.iter().find(|&&t| t as usize >= v) {
        candle_core::bail!("token_losses: target {bad} outside a vocabulary of {v}");
    }
    Ok(())
}

impl candle_core::CustomOp2 for TokenLossesGrad {
    fn name(&self) -> &'static str {
        "taper-token-losses-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (_, v) = l1.shape().dims2()?;
        let out = match s1.dtype() {
            DType::F32 => CpuStorage::F32(token_losses_bwd::<f32>(
                slice(s1, l1, "token_losses")?,
                slice(s2, l2, "token_losses")?,
                v,
                &self.targets,
                self.eps,
            )),
            DType::F64 => CpuStorage::F64(token_losses_bwd::<f64>(
                slice(s1, l1, "token_losses")?,
                slice(s2, l2, "token_losses")?,
                v,
                &self.targets,
                self.eps,
            )),
            d => candle_core::bail!("token_losses: unsupported dtype {d:?}"),
        };
        Ok((out, l1.shape().clone()))
    }
}

/// Per-token `[smoothed loss, nll, correct]` rows, `(N, 3)`, for `logits (N, V)`
/// and `targets` (host ids, one per row). One fused op on the CPU (its backward
/// is `g·(softmax - (1 - eps)·onehot - eps/V)`), candle ops elsewhere.
pub fn token_losses(logits: &Tensor, targets: &[u32], eps: f64) -> Result<Tensor> {
    let (n, v) = logits.dims2()?;
    check_targets(targets, n, v)?;
    if logits.device().is_cpu() && matches!(logits.dtype(), DType::F32 | DType::F64) {
        logits.contiguous()?.apply_op1(TokenLosses {
            targets: targets.to_vec(),
            eps,
        })
    } else {
        token_losses_reference(logits, targets, eps)
    }
}

/// [`token_losses`] from candle ops.
pub fn token_losses_reference(logits: &Tensor, targets: &[u32], eps: f64) -> Result<Tensor> {
    let n = targets.len();
    let t = Tensor::from_slice(targets, (n, 1), logits.device())?;
    let logp = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let nll = logp.gather(&t, 1)?.neg()?;
    let smooth = logp.mean_keepdim(D::Minus1)?.neg()?;
    let loss = ((&nll * (1.0 - eps))? + (smooth * eps)?)?;
    let correct = logits
        .argmax_keepdim(D::Minus1)?
        .eq(&t)?
        .to_dtype(logits.dtype())?;
    Tensor::cat(&[loss, nll, correct], 1)
}

/// The output projection and [`token_losses`] as one op: `(x (…, H), w (V, H),
/// b (V))` → per-token losses `(rows, 3)`.
///
/// The logits never become a graph node: composed, the `(rows, V)` logits (10-17
/// MB in the benchmark models) got a zero-filled gradient buffer and an add from
/// candle's backward, and the loss's backward recomputed every exponential. Here
/// the forward keeps the softmax probabilities for the backward, which turns
/// them into the logits' gradient in place and runs the projection's two GEMMs.
#[derive(Debug, Clone)]
struct LinearTokenLosses {
    targets: Vec<u32>,
    eps: f64,
    /// Probabilities `(rows, V)` from the forward, taken by the backward.
    probs: Arc<Mutex<Option<CpuStorage>>>,
}

/// `(losses (rows, 3), probabilities (rows, V))`.
fn head_fwd<T: Real>(
    x: &[T],
    w: &[T],
    b: &[T],
    (m, k, n): (usize, usize, usize),
    targets: &[u32],
    eps: f64,
) -> (Vec<T>, Vec<T>) {
    let mut probs = super::linear::forward(x, w, Some(b), (m, k, n));
    let mut out = vec![T::zero(); m * 3];
    out.par_chunks_mut(3)
        .zip(probs.par_chunks_mut(n))
        .zip(targets.par_iter())
        .for_each(|((o, row), &t)| {
            simd::dispatch(
                #[inline(always)]
                || {
                    let st = RowStats::of(row, t);
                    for v in row.iter_mut() {
                        *v = (*v - st.max).ex();
                    }
                    let z = vmath::sum(row);
                    st.write_losses(o, z, n, eps);
                    let inv = T::from_f64(1.0 / z);
                    for v in row.iter_mut() {
                        *v *= inv;
                    }
                },
            )
        });
    (out, probs)
}

/// The logits' gradient, in place over the probabilities ([`logit_grad_row`]).
fn head_logit_grad<T: Real>(p: &mut [T], g: &[T], n: usize, targets: &[u32], eps: f64) {
    p.par_chunks_mut(n)
        .zip(g.par_chunks(3).zip(targets.par_iter()))
        .for_each(|(row, (gr, &t))| {
            simd::dispatch(
                #[inline(always)]
                || logit_grad_row(row, 1.0, (gr[0].to_f64(), gr[1].to_f64()), t, eps),
            )
        });
}

fn head_dims(x: &Layout, w: &Layout, b: &Layout) -> Result<(usize, usize, usize)> {
    let k = *x.dims().last().unwrap_or(&0);
    let m = x.shape().elem_count() / k.max(1);
    match w.dims() {
        [n, wk] if *wk == k && b.dims() == [*n] && k > 0 => Ok((m, k, *n)),
        _ => candle_core::bail!(
            "output head: input {:?}, weight {:?}, bias {:?} do not fit (…, H), (V, H), (V)",
            x.dims(),
            w.dims(),
            b.dims()
        ),
    }
}

impl CustomOp3 for LinearTokenLosses {
    fn name(&self) -> &'static str {
        "taper-linear-token-losses"
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
        let d = head_dims(l1, l2, l3)?;
        check_targets(&self.targets, d.0, d.2)?;
        let (out, probs) = match s1.dtype() {
            DType::F32 => {
                let (o, p) = head_fwd::<f32>(
                    slice(s1, l1, "output head")?,
                    slice(s2, l2, "output head")?,
                    slice(s3, l3, "output head")?,
                    d,
                    &self.targets,
                    self.eps,
                );
                (CpuStorage::F32(o), CpuStorage::F32(p))
            }
            DType::F64 => {
                let (o, p) = head_fwd::<f64>(
                    slice(s1, l1, "output head")?,
                    slice(s2, l2, "output head")?,
                    slice(s3, l3, "output head")?,
                    d,
                    &self.targets,
                    self.eps,
                );
                (CpuStorage::F64(o), CpuStorage::F64(p))
            }
            dt => candle_core::bail!("output head: unsupported dtype {dt:?}"),
        };
        *self.probs.lock().unwrap_or_else(|e| e.into_inner()) = Some(probs);
        Ok((out, Shape::from((d.0, 3))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let k = x.dim(D::Minus1)?;
        let m = x.elem_count() / k.max(1);
        let n = w.dim(0)?;
        let cached = self.probs.lock().unwrap_or_else(|e| e.into_inner()).take();
        macro_rules! logit_grad {
            ($t:ty, $variant:ident) => {{
                let mut p: Vec<$t> = match cached {
                    Some(CpuStorage::$variant(p)) if p.len() == m * n => p,
                    // A second backward over the same graph: recompute.
                    _ => {
                        let host = |t: &Tensor| t.detach().flatten_all()?.to_vec1::<$t>();
                        let (xv, wv, bv) = (host(x)?, host(w)?, host(b)?);
                        head_fwd::<$t>(&xv, &wv, &bv, (m, k, n), &self.targets, self.eps).1
                    }
                };
                let g: Vec<$t> = grad.flatten_all()?.to_vec1()?;
                head_logit_grad(&mut p, &g, n, &self.targets, self.eps);
                Tensor::from_vec(p, (m, n), &Device::Cpu)?
            }};
        }
        let dlogits = match x.dtype() {
            DType::F32 => logit_grad!(f32, F32),
            DType::F64 => logit_grad!(f64, F64),
            dt => candle_core::bail!("output head: unsupported dtype {dt:?}"),
        };
        super::linear::backward(
            &x.detach(),
            &w.detach(),
            &dlogits,
            (x.track_op(), w.track_op(), b.track_op()),
        )
    }
}

/// `token_losses(x·Wᵀ + b, targets, eps)` as one op on the CPU (see
/// [`LinearTokenLosses`]); candle's projection and [`token_losses`] elsewhere.
/// `x (…, H)`, `w (V, H)`, `b (V)`; returns `(rows, 3)`.
pub fn linear_token_losses(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    targets: &[u32],
    eps: f64,
) -> Result<Tensor> {
    if x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64) {
        x.contiguous()?.apply_op3(
            &w.contiguous()?,
            &b.contiguous()?,
            LinearTokenLosses {
                targets: targets.to_vec(),
                eps,
                probs: Arc::new(Mutex::new(None)),
            },
        )
    } else {
        let k = x.dim(D::Minus1)?;
        let logits = super::linear::linear(&x.reshape(((), k))?, w, Some(b))?;
        token_losses(&logits, targets, eps)
    }
}
