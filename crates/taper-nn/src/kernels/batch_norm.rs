//! CPU kernels of batch normalisation in training, optionally fused with the
//! ReLU that follows it.
//!
//! Forward: one pass for the batch statistics (sums and sums of squares in f64),
//! one for the output. Backward: one pass for the per-channel sums of the
//! gradient, one for the input gradient. The statistics and sums travel from pass
//! to pass in a cache the op keeps, instead of being recomputed (the first
//! version made thirteen passes over each activation per step). Fused with the
//! ReLU, the activation costs no pass and no graph node of its own.

use super::Real;
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor};
use candle_core::{CustomOp2, WithDType};
use rayon::prelude::*;
use std::sync::{Arc, Mutex};

/// `(N, C, rest...)` as (N, C, values per image and channel).
fn ncs(l: &Layout) -> Result<(usize, usize, usize)> {
    let d = l.dims();
    if d.len() < 2 || d[1] == 0 {
        candle_core::bail!("batch norm: input (N, C, ...) expected, got {d:?}");
    }
    Ok((d[0], d[1], d[2..].iter().product()))
}

/// What the passes of one batch-norm call hand each other, per channel.
#[derive(Debug, Default)]
struct Cache {
    /// Batch mean and biased variance.
    stats: Vec<(f64, f64)>,
    /// Scale (the weight) read in the backward.
    weight: Vec<f64>,
    /// Σ g·x̂ and Σ g over the batch (g masked by the ReLU when fused).
    sums: Vec<(f64, f64)>,
}

/// Training batch norm `(x, weight, bias)` → `[relu](weight·x̂ + bias)`, with
/// `x̂ = (x - mean)/sqrt(var + eps)` over the batch's statistics.
#[derive(Debug, Clone)]
pub(crate) struct BnTrain {
    eps: f64,
    relu: bool,
    cache: Arc<Mutex<Cache>>,
}

impl BnTrain {
    pub(crate) fn new(eps: f64, relu: bool) -> Self {
        Self {
            eps,
            relu,
            cache: Arc::new(Mutex::new(Cache::default())),
        }
    }

    /// The batch mean and biased variance of each channel, after the forward pass.
    pub(crate) fn batch_stats(&self) -> Result<(Vec<f64>, Vec<f64>)> {
        let c = self.lock()?;
        Ok(c.stats.iter().copied().unzip())
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Cache>> {
        lock(&self.cache)
    }
}

fn lock(cache: &Mutex<Cache>) -> Result<std::sync::MutexGuard<'_, Cache>> {
    cache
        .lock()
        .map_err(|_| candle_core::Error::Msg("batch norm cache poisoned".into()))
}

fn stats<T: Real>(x: &[T], (n, c, s): (usize, usize, usize)) -> Vec<(f64, f64)> {
    let m = (n * s) as f64;
    (0..c)
        .into_par_iter()
        .map(|ch| {
            let (mut sum, mut sq) = (0f64, 0f64);
            for b in 0..n {
                let (ps, pq) = super::simd::dispatch(
                    #[inline(always)]
                    || {
                        let row = &x[(b * c + ch) * s..(b * c + ch + 1) * s];
                        super::vmath::dot_sums(row, row)
                    },
                );
                sum += ps;
                sq += pq;
            }
            let mean = sum / m;
            (mean, (sq / m - mean * mean).max(0.0))
        })
        .collect()
}

fn forward<T: Real>(
    x: &[T],
    w: &[T],
    b: &[T],
    dims: (usize, usize, usize),
    eps: f64,
    relu: bool,
    st: &[(f64, f64)],
) -> Vec<T> {
    let (_, c, s) = dims;
    // SAFETY: plane `p` of the output and `x[p·s..(p + 1)·s]` have the same
    // length, so the loop writes every value.
    unsafe {
        super::par_new(x.len(), s, |p, dst| {
            let ch = p % c;
            let (mean, var) = st[ch];
            let a = w[ch].to_f64() / (var + eps).sqrt();
            let (a, sh) = (T::from_f64(a), T::from_f64(b[ch].to_f64() - a * mean));
            super::simd::dispatch(
                #[inline(always)]
                || {
                    for (o, v) in dst.iter_mut().zip(&x[p * s..(p + 1) * s]) {
                        let y = a * *v + sh;
                        o.write(if relu {
                            T::select(y > T::zero(), y, T::zero())
                        } else {
                            y
                        });
                    }
                },
            )
        })
    }
}

impl CustomOp3 for BnTrain {
    fn name(&self) -> &'static str {
        "taper-bn-train"
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
        let dims = ncs(l1)?;
        if l2.shape().elem_count() != dims.1 || l3.shape().elem_count() != dims.1 {
            candle_core::bail!("batch norm: weight and bias must have {} values", dims.1);
        }
        let mut cache = self.lock()?;
        let out = crate::float_dispatch!(
            "batch norm",
            s1.dtype(),
            [(x, s1, l1), (w, s2, l2), (b, s3, l3)],
            {
                cache.stats = stats(x, dims);
                forward(x, w, b, dims, self.eps, self.relu, &cache.stats)
            }
        );
        Ok((out, l1.shape().clone()))
    }
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        self.lock()?.weight = w.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
        let op = BnGrad {
            eps: self.eps,
            relu: self.relu,
            cache: self.cache.clone(),
            sums: false,
        };
        let sums = x.apply_op3_no_bwd(
            &grad,
            res,
            &BnGrad {
                sums: true,
                ..op.clone()
            },
        )?;
        let dx = x.apply_op3_no_bwd(&grad, res, &op)?;
        let shape = w.shape().clone();
        Ok((
            Some(dx),
            Some(sums.get(0)?.reshape(shape.clone())?),
            Some(sums.get(1)?.reshape(shape)?),
        ))
    }
}

/// The backward passes, `(x, grad, output)`: with `sums`, the `(2, C)` gradients
/// of weight and bias (kept in the cache too); otherwise the input gradient.
#[derive(Debug, Clone)]
struct BnGrad {
    eps: f64,
    relu: bool,
    cache: Arc<Mutex<Cache>>,
    sums: bool,
}

impl BnGrad {
    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Cache>> {
        lock(&self.cache)
    }
}

/// Per channel: Σ g·x̂ and Σ g, with g zeroed where the fused ReLU output is 0.
fn grad_sums<T: Real>(
    x: &[T],
    g: &[T],
    y: &[T],
    (n, c, s): (usize, usize, usize),
    relu: bool,
    st: &[(f64, f64)],
    eps: f64,
) -> Vec<(f64, f64)> {
    (0..c)
        .into_par_iter()
        .map(|ch| {
            let (mean, var) = st[ch];
            let inv = 1.0 / (var + eps).sqrt();
            let (mut sgx, mut sg) = (0f64, 0f64);
            let mut masked = Vec::new();
            for b in 0..n {
                let r = (b * c + ch) * s..(b * c + ch + 1) * s;
                let (pg, px) = super::simd::dispatch(
                    #[inline(always)]
                    || {
                        // The ReLU's mask folded into g first: Σ over the y > 0 entries.
                        let (x, g, y) = (&x[r.clone()], &g[r.clone()], &y[r.clone()]);
                        if relu {
                            // g zeroed where y is not positive (an exact select),
                            // then the same sums.
                            let z = T::zero();
                            masked.clear();
                            masked
                                .extend(g.iter().zip(y).map(|(gv, yv)| T::select(*yv > z, *gv, z)));
                            super::vmath::dot_sums(x, &masked)
                        } else {
                            super::vmath::dot_sums(x, g)
                        }
                    },
                );
                sg += pg;
                sgx += px;
            }
            // Σ g·(x - mean)·inv = (Σ g·x - mean·Σ g)·inv
            ((sgx - mean * sg) * inv, sg)
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn grad_input<T: Real>(
    x: &[T],
    g: &[T],
    y: &[T],
    (n, c, s): (usize, usize, usize),
    relu: bool,
    cache: &Cache,
    eps: f64,
) -> Vec<T> {
    let m = (n * s) as f64;
    assert!(g.len() == x.len() && y.len() == x.len());
    // SAFETY: plane `p` of the output and `x`, `g` and `y`'s `p·s..(p + 1)·s`
    // have the same length, so the loop writes every value.
    unsafe {
        super::par_new(x.len(), s, |p, dst| {
            let ch = p % c;
            let (mean, var) = cache.stats[ch];
            let inv = 1.0 / (var + eps).sqrt();
            let (sgx, sg) = cache.sums[ch];
            // dx = w·inv·(g - Σg/m - x̂·Σgx̂/m), written as a·g + b·x + d.
            let k = cache.weight[ch] * inv;
            let bx = -k * inv * sgx / m;
            let d = -k * sg / m - bx * mean;
            let (k, bx, d) = (T::from_f64(k), T::from_f64(bx), T::from_f64(d));
            let r = p * s..(p + 1) * s;
            super::simd::dispatch(
                #[inline(always)]
                || {
                    for (((o, xv), gv), yv) in dst
                        .iter_mut()
                        .zip(&x[r.clone()])
                        .zip(&g[r.clone()])
                        .zip(&y[r])
                    {
                        let gv = if relu {
                            T::select(*yv > T::zero(), *gv, T::zero())
                        } else {
                            *gv
                        };
                        o.write(k * gv + bx * *xv + d);
                    }
                },
            )
        })
    }
}

impl CustomOp3 for BnGrad {
    fn name(&self) -> &'static str {
        "taper-bn-grad"
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
        let dims = ncs(l1)?;
        if l2.shape() != l1.shape() || l3.shape() != l1.shape() {
            candle_core::bail!(
                "batch norm backward: gradient {:?} for input {:?}",
                l2.dims(),
                l1.dims()
            );
        }
        let mut cache = self.lock()?;
        if cache.stats.len() != dims.1 || cache.weight.len() != dims.1 {
            candle_core::bail!("batch norm backward before its forward pass");
        }
        if self.sums {
            let out = crate::float_dispatch!(
                "batch norm backward",
                s1.dtype(),
                [(x, s1, l1), (g, s2, l2), (y, s3, l3)],
                {
                    cache.sums = grad_sums(x, g, y, dims, self.relu, &cache.stats, self.eps);
                    cache
                        .sums
                        .iter()
                        .map(|t| t.0)
                        .chain(cache.sums.iter().map(|t| t.1))
                        .map(candle_core::WithDType::from_f64)
                        .collect()
                }
            );
            return Ok((out, Shape::from((2, dims.1))));
        }
        if cache.sums.len() != dims.1 {
            candle_core::bail!("batch norm backward: input gradient before the sums");
        }
        let out = crate::float_dispatch!(
            "batch norm backward",
            s1.dtype(),
            [(x, s1, l1), (g, s2, l2), (y, s3, l3)],
            grad_input(x, g, y, dims, self.relu, &cache, self.eps)
        );
        Ok((out, l1.shape().clone()))
    }
}

// Batch norm in evaluation is one per-channel affine map (the running statistics
// folded into a scale and a shift): one pass each way.

/// Per-channel affine map `(x, scale, shift)` → `scale[c]·x + shift[c]` over
/// `(N, C, ...)`: batch norm in evaluation, with gradients for all three (saliency
/// and Grad-CAM differentiate a model in evaluation mode).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChannelAffine;

/// `(x, grad)` → `(2, C)`: per channel, the sum of `grad·x` (row 0) and of `grad` (row 1).
#[derive(Debug, Clone, Copy)]
struct ChannelGradSums;

impl CustomOp3 for ChannelAffine {
    fn name(&self) -> &'static str {
        "taper-channel-affine"
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
        let (_, c, s) = ncs(l1)?;
        if l2.shape().elem_count() != c || l3.shape().elem_count() != c {
            candle_core::bail!("batch norm: scale and shift must have {c} values");
        }
        let out = crate::float_dispatch!(
            "batch norm",
            s1.dtype(),
            [(x, s1, l1), (a, s2, l2), (b, s3, l3)],
            {
                let mut out = x.to_vec();
                out.par_chunks_mut(s.max(1))
                    .enumerate()
                    .for_each(|(p, dst)| {
                        let (a, b) = (a[p % c], b[p % c]);
                        for v in dst.iter_mut() {
                            *v = a * *v + b;
                        }
                    });
                out
            }
        );
        Ok((out, l1.shape().clone()))
    }
    fn bwd(
        &self,
        x: &Tensor,
        a: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let c = a.elem_count();
        let mut shape = vec![1usize; x.rank()];
        shape[1] = c;
        let dx = grad.broadcast_mul(&a.reshape(shape)?)?;
        let sums = x.apply_op2_no_bwd(&grad, &ChannelGradSums)?;
        Ok((
            Some(dx),
            Some(sums.get(0)?.reshape(a.shape())?),
            Some(sums.get(1)?.reshape(a.shape())?),
        ))
    }
}

impl CustomOp2 for ChannelGradSums {
    fn name(&self) -> &'static str {
        "taper-channel-grad-sums"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, c, s) = ncs(l1)?;
        let out = crate::float_dispatch!(
            "batch norm backward",
            s1.dtype(),
            [(x, s1, l1), (g, s2, l2)],
            {
                let sums: Vec<(f64, f64)> = (0..c)
                    .into_par_iter()
                    .map(|ch| {
                        let (mut sgx, mut sg) = (0.0, 0.0);
                        for b in 0..n {
                            let r = (b * c + ch) * s..(b * c + ch + 1) * s;
                            let (px, pg) = super::simd::dispatch(
                                #[inline(always)]
                                || {
                                    let (x, g) = (&x[r.clone()], &g[r.clone()]);
                                    let (sg, sgx) = super::vmath::dot_sums(x, g);
                                    (sgx, sg)
                                },
                            );
                            sgx += px;
                            sg += pg;
                        }
                        (sgx, sg)
                    })
                    .collect();
                sums.iter()
                    .map(|t| t.0)
                    .chain(sums.iter().map(|t| t.1))
                    .map(WithDType::from_f64)
                    .collect()
            }
        );
        Ok((out, Shape::from((2, c))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::check_gradients;
    use candle_core::Device;

    #[test]
    fn channel_affine_matches_broadcast_ops_and_has_exact_gradients() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f64, 1.0, (3, 4, 5, 3), &dev).unwrap();
        let a = Tensor::new(&[0.5f64, -1.5, 2.0, 0.25], &dev).unwrap();
        let b = Tensor::new(&[0.1f64, 0.2, -0.3, 0.0], &dev).unwrap();
        let fused = x.apply_op3(&a, &b, ChannelAffine).unwrap();
        let reference = x
            .broadcast_mul(&a.reshape((1, 4, 1, 1)).unwrap())
            .unwrap()
            .broadcast_add(&b.reshape((1, 4, 1, 1)).unwrap())
            .unwrap();
        let diff = (fused - reference)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert!(diff < 1e-12, "{diff}");
        let r = check_gradients(
            |t| t[0].apply_op3(&t[1], &t[2], ChannelAffine)?.sqr(),
            &[x, a, b],
            1e-6,
            30,
        )
        .unwrap();
        assert!(r.max_numeric > 1e-3 && r.passed(1e-6), "{r:?}");
    }

    #[test]
    fn fused_batch_norm_and_relu_match_composed_ops_with_exact_gradients() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f64, 1.0, (3, 4, 5, 3), &dev)
            .unwrap()
            .affine(2.0, 0.5)
            .unwrap();
        let w = Tensor::new(&[0.5f64, -1.5, 2.0, 0.25], &dev).unwrap();
        let b = Tensor::new(&[0.1f64, 0.2, -0.3, 0.0], &dev).unwrap();
        for relu in [false, true] {
            let fused = x.apply_op3(&w, &b, BnTrain::new(1e-5, relu)).unwrap();
            let flat = x
                .transpose(0, 1)
                .unwrap()
                .contiguous()
                .unwrap()
                .reshape((4, ()))
                .unwrap();
            let mean = flat.mean_keepdim(1).unwrap().reshape((1, 4, 1, 1)).unwrap();
            let var = flat
                .broadcast_sub(&flat.mean_keepdim(1).unwrap())
                .unwrap()
                .sqr()
                .unwrap()
                .mean_keepdim(1)
                .unwrap()
                .reshape((1, 4, 1, 1))
                .unwrap();
            let mut reference = x
                .broadcast_sub(&mean)
                .unwrap()
                .broadcast_div(&(var + 1e-5).unwrap().sqrt().unwrap())
                .unwrap()
                .broadcast_mul(&w.reshape((1, 4, 1, 1)).unwrap())
                .unwrap()
                .broadcast_add(&b.reshape((1, 4, 1, 1)).unwrap())
                .unwrap();
            if relu {
                reference = reference.relu().unwrap();
            }
            let diff = (fused - reference)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap();
            assert!(diff < 1e-10, "relu {relu}: {diff}");
            // A weighting keeps the loss from being invariant to the normalisation.
            let t = Tensor::randn(0f64, 1.0, (3, 4, 5, 3), &dev).unwrap();
            let r = check_gradients(
                |v| v[0].apply_op3(&v[1], &v[2], BnTrain::new(1e-5, relu))? * &t,
                &[x.clone(), w.clone(), b.clone()],
                1e-6,
                40,
            )
            .unwrap();
            assert!(r.max_numeric > 1e-3 && r.passed(1e-5), "relu {relu}: {r:?}");
        }
    }
}
