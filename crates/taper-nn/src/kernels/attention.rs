//! The fused additive (Bahdanau) attention score kernel.

use super::{cpu_slice as slice, Real};
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor, WithDType};
use rayon::prelude::*;

/// without materialising the `(B, Tq, S, A)` tensor: as candle ops its broadcast
/// sum, tanh and their backward passes (reductions over middle dimensions)
/// took most of a training step.
#[derive(Debug, Clone, Copy)]
struct AdditiveScores;

fn additive_fwd<T: Real>(
    q: &[T],
    k: &[T],
    v: &[T],
    (b, t, s, a): (usize, usize, usize, usize),
) -> Vec<T> {
    let mut out = vec![T::zero(); b * t * s];
    out.par_chunks_mut(t * s).enumerate().for_each(|(bi, o)| {
        super::simd::dispatch(
            #[inline(always)]
            || additive_rows(q, k, v, (bi, o), (t, s, a)),
        )
    });
    out
}

/// One batch entry's `(T, S)` scores of [`additive_fwd`].
#[inline(always)]
fn additive_rows<T: Real>(
    q: &[T],
    k: &[T],
    v: &[T],
    (bi, o): (usize, &mut [T]),
    (t, s, a): (usize, usize, usize),
) {
    for ti in 0..t {
        let qr = &q[(bi * t + ti) * a..(bi * t + ti + 1) * a];
        for si in 0..s {
            let kr = &k[(bi * s + si) * a..(bi * s + si + 1) * a];
            let mut acc = [T::zero(); 8];
            let mut tail = T::zero();
            let (qc, kc, vc) = (qr.chunks_exact(8), kr.chunks_exact(8), v.chunks_exact(8));
            for ((&x, &y), &w) in qc
                .remainder()
                .iter()
                .zip(kc.remainder())
                .zip(vc.remainder())
            {
                tail += w * (x + y).th();
            }
            for ((x, y), w) in qc.zip(kc).zip(vc) {
                for l in 0..8 {
                    acc[l] += w[l] * (x[l] + y[l]).th();
                }
            }
            o[ti * s + si] = acc.iter().fold(tail, |a, &b| a + b);
        }
    }
}

type Grads3<T> = (Vec<T>, Vec<T>, Vec<T>);

fn additive_bwd<T: Real>(
    q: &[T],
    k: &[T],
    v: &[T],
    g: &[T],
    (b, t, s, a): (usize, usize, usize, usize),
) -> Grads3<T> {
    let parts: Vec<(Vec<T>, Vec<T>, Vec<T>)> = (0..b)
        .into_par_iter()
        .map(|bi| {
            let mut dq = vec![T::zero(); t * a];
            let mut dk = vec![T::zero(); s * a];
            let mut dv = vec![T::zero(); a];
            // At the CPU's vector width, as the forward pass: compiled for baseline
            // x86-64 this loop (a tanh per entry) was 7 % of the LSTM seq2seq step
            // on one thread.
            super::simd::dispatch(
                #[inline(always)]
                || {
                    for ti in 0..t {
                        let qr = &q[(bi * t + ti) * a..(bi * t + ti + 1) * a];
                        let dqr = &mut dq[ti * a..(ti + 1) * a];
                        for si in 0..s {
                            let gs = g[(bi * t + ti) * s + si];
                            if gs == T::zero() {
                                continue;
                            }
                            let kr = &k[(bi * s + si) * a..(bi * s + si + 1) * a];
                            let dkr = &mut dk[si * a..(si + 1) * a];
                            for ((((dq, dk), dv), (&x, &y)), &w) in dqr
                                .iter_mut()
                                .zip(dkr.iter_mut())
                                .zip(dv.iter_mut())
                                .zip(qr.iter().zip(kr))
                                .zip(v)
                            {
                                let th = (x + y).th();
                                let d = gs * w * (T::one() - th * th);
                                *dq += d;
                                *dk += d;
                                *dv += gs * th;
                            }
                        }
                    }
                },
            );
            (dq, dk, dv)
        })
        .collect();
    let mut dq = Vec::with_capacity(b * t * a);
    let mut dk = Vec::with_capacity(b * s * a);
    let mut dv = vec![T::zero(); a];
    for (pq, pk, pv) in parts {
        dq.extend(pq);
        dk.extend(pk);
        for (d, x) in dv.iter_mut().zip(pv) {
            *d += x;
        }
    }
    (dq, dk, dv)
}

fn additive_dims(q: &Layout, k: &Layout, v: &Layout) -> Result<(usize, usize, usize, usize)> {
    let (b, t, a) = q.shape().dims3()?;
    let (kb, s, ka) = k.shape().dims3()?;
    if kb != b || ka != a || v.dims() != [a] {
        candle_core::bail!(
            "additive scores: q {:?}, k {:?}, v {:?} do not fit (B, T, A), (B, S, A), (A,)",
            q.dims(),
            k.dims(),
            v.dims()
        );
    }
    Ok((b, t, s, a))
}

impl CustomOp3 for AdditiveScores {
    fn name(&self) -> &'static str {
        "taper-additive-scores"
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
        let dims = additive_dims(l1, l2, l3)?;
        let out = match s1.dtype() {
            DType::F32 => CpuStorage::F32(additive_fwd::<f32>(
                slice(s1, l1, "additive")?,
                slice(s2, l2, "additive")?,
                slice(s3, l3, "additive")?,
                dims,
            )),
            DType::F64 => CpuStorage::F64(additive_fwd::<f64>(
                slice(s1, l1, "additive")?,
                slice(s2, l2, "additive")?,
                slice(s3, l3, "additive")?,
                dims,
            )),
            d => candle_core::bail!("additive scores: unsupported dtype {d:?}"),
        };
        Ok((out, Shape::from((dims.0, dims.1, dims.2))))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (b, t, a) = q.dims3()?;
        let s = k.dim(1)?;
        let dev = q.device();
        fn host<T: WithDType>(x: &Tensor) -> Result<Vec<T>> {
            x.detach().flatten_all()?.to_vec1()
        }
        macro_rules! run {
            ($t:ty) => {{
                let (dq, dk, dv) =
                    additive_bwd::<$t>(&host(q)?, &host(k)?, &host(v)?, &host(grad)?, (b, t, s, a));
                (
                    Tensor::from_vec(dq, (b, t, a), dev)?,
                    Tensor::from_vec(dk, (b, s, a), dev)?,
                    Tensor::from_vec(dv, a, dev)?,
                )
            }};
        }
        let (dq, dk, dv) = match q.dtype() {
            DType::F32 => run!(f32),
            DType::F64 => run!(f64),
            d => candle_core::bail!("additive scores: unsupported dtype {d:?}"),
        };
        Ok((Some(dq), Some(dk), Some(dv)))
    }
}

/// Additive attention scores `(B, Tq, S)` from projected queries `q (B, Tq, A)`,
/// projected keys `k (B, S, A)` and the scoring vector `v (A,)`: one fused op on
/// the CPU, candle ops elsewhere.
pub fn additive_scores(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
    if q.device().is_cpu() && matches!(q.dtype(), DType::F32 | DType::F64) {
        q.contiguous()?
            .apply_op3(&k.contiguous()?, &v.contiguous()?, AdditiveScores)
    } else {
        additive_scores_reference(q, k, v)
    }
}

/// [`additive_scores`] from candle ops.
pub fn additive_scores_reference(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
    let e = q.unsqueeze(2)?.broadcast_add(&k.unsqueeze(1)?)?.tanh()?;
    let (b, t, s, a) = e.dims4()?;
    e.reshape((b * t * s, a))?
        .matmul(&v.reshape((a, 1))?)?
        .reshape((b, t, s))
}
