//! CPU kernels of batch normalisation in training, optionally fused with the
//! ReLU that follows it.
//!
//! Forward: one pass for the batch statistics (sums and sums of squares in f64),
//! one for the output. Backward: one pass for the per-channel sums of the
//! gradient, one for the input gradient. The statistics and sums travel from pass
//! to pass in a cache the op keeps, instead of being recomputed (the first
//! version made thirteen passes over each activation per step). Fused with the
//! ReLU, the activation costs no pass and no graph node of its own.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::sync::{Arc, Mutex};
use taper_train::kernels::Real;

/// `(N, C, rest...)` as (N, C, values per image and channel).
pub(super) fn ncs(l: &Layout) -> Result<(usize, usize, usize)> {
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
pub(super) struct BnTrain {
    eps: f64,
    relu: bool,
    cache: Arc<Mutex<Cache>>,
}

impl BnTrain {
    pub(super) fn new(eps: f64, relu: bool) -> Self {
        Self {
            eps,
            relu,
            cache: Arc::new(Mutex::new(Cache::default())),
        }
    }

    /// The batch mean and biased variance of each channel, after the forward pass.
    pub(super) fn batch_stats(&self) -> Result<(Vec<f64>, Vec<f64>)> {
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
                let (mut ps, mut pq) = (0f64, 0f64);
                for v in &x[(b * c + ch) * s..(b * c + ch + 1) * s] {
                    let v = v.to_f64();
                    ps += v;
                    pq += v * v;
                }
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
    let mut out = vec![T::zero(); x.len()];
    out.par_chunks_mut(s.max(1))
        .enumerate()
        .for_each(|(p, dst)| {
            let ch = p % c;
            let (mean, var) = st[ch];
            let a = w[ch].to_f64() / (var + eps).sqrt();
            let (a, sh) = (T::from_f64(a), T::from_f64(b[ch].to_f64() - a * mean));
            for (o, v) in dst.iter_mut().zip(&x[p * s..(p + 1) * s]) {
                let y = a * *v + sh;
                *o = if relu {
                    T::select(y > T::zero(), y, T::zero())
                } else {
                    y
                };
            }
        });
    out
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
        let out = taper_train::float_dispatch!(
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
            for b in 0..n {
                let r = (b * c + ch) * s..(b * c + ch + 1) * s;
                let (mut px, mut pg) = (0f64, 0f64);
                for ((xv, gv), yv) in x[r.clone()].iter().zip(&g[r.clone()]).zip(&y[r]) {
                    let gv = if relu {
                        T::select(*yv > T::zero(), *gv, T::zero())
                    } else {
                        *gv
                    }
                    .to_f64();
                    pg += gv;
                    px += gv * xv.to_f64();
                }
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
    let mut out = vec![T::zero(); x.len()];
    out.par_chunks_mut(s.max(1))
        .enumerate()
        .for_each(|(p, dst)| {
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
                *o = k * gv + bx * *xv + d;
            }
        });
    out
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
            let out = taper_train::float_dispatch!(
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
        let out = taper_train::float_dispatch!(
            "batch norm backward",
            s1.dtype(),
            [(x, s1, l1), (g, s2, l2), (y, s3, l3)],
            grad_input(x, g, y, dims, self.relu, &cache, self.eps)
        );
        Ok((out, l1.shape().clone()))
    }
}
