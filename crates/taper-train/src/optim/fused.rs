//! In-place optimizer updates on the CPU: one pass per state tensor and one for
//! the parameter, with no temporaries.
//!
//! Composed of tensor ops, an Adam step allocated and filled about fourteen
//! parameter-sized tensors (moments, their square, bias corrections, the
//! denominator, the update, the decayed weights) and then copied the result into
//! the variable. These kernels rewrite the moment buffers and the variable where
//! they lie. Other devices, and AMSGrad, keep the composed form.

use candle_core::{CpuStorage, DType, InplaceOp3, Layout, Result, Tensor};
use taper_nn::kernels::Real;

fn range(l: &Layout) -> Result<std::ops::Range<usize>> {
    let (a, b) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("optimizer state must be contiguous".into()))?;
    Ok(a..b)
}

/// Values per parallel chunk of an update, and the fewest a tensor needs to be
/// split at all.
const CHUNK: usize = 1 << 15;
const PARALLEL_MIN: usize = 1 << 16;

/// `dst[i] = f(dst[i], a[i], b[i])`. Tensors of at least [`PARALLEL_MIN`] values
/// are split into chunks over the pool's threads; each value's arithmetic is the
/// same either way, so the result does not depend on the thread count. Smaller
/// ones stay on one thread. The update is memory-bound: called from `main`,
/// splitting the MLP's 200k-value weight woke the pool for nothing; on a pool
/// thread (the Trainer's `in_pool`) it took the MLP step from 1.53 to 1.41 ms.
fn zip3<T: Real>(dst: &mut [T], a: &[T], b: &[T], f: impl Fn(T, T, T) -> T + Sync) {
    // At the CPU's vector width: the parameter pass's square root and division
    // are not memory-bound at SSE2's four lanes.
    let serial = |dst: &mut [T], a: &[T], b: &[T]| {
        taper_nn::kernels::simd::dispatch(
            #[inline(always)]
            || {
                for ((d, x), y) in dst.iter_mut().zip(a).zip(b) {
                    *d = f(*d, *x, *y);
                }
            },
        )
    };
    if dst.len() < PARALLEL_MIN || rayon::current_num_threads() < 2 {
        return serial(dst, a, b);
    }
    use rayon::prelude::*;
    dst.par_chunks_mut(CHUNK)
        .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
        .for_each(|(d, (a, b))| serial(d, a, b));
}

/// Which buffer an [`AdamKernel`] rewrites.
#[derive(Debug, Clone, Copy)]
enum Part {
    /// `m ← β₁m + (1-β₁)ĝ` with sources `(grad, param)`.
    First,
    /// `v ← β₂v + (1-β₂)ĝ²` with sources `(grad, param)`.
    Second,
    /// `p ← p·(1 - lr·wd) - lr/bc₁ · m / (√v/√bc₂ + ε)` with sources `(m, v)`.
    Param,
}

/// One pass of an Adam(W) step; `ĝ = g + wd·p` when the decay is coupled (Adam's L2).
#[derive(Debug, Clone, Copy)]
struct AdamKernel {
    part: Part,
    beta1: f64,
    beta2: f64,
    eps: f64,
    lr: f64,
    coupled_wd: f64,
    decoupled_wd: f64,
    bc1: f64,
    bc2_sqrt: f64,
}

impl AdamKernel {
    fn run<T: Real>(&self, dst: &mut [T], a: &[T], b: &[T]) {
        let c = |v: f64| T::from_f64(v);
        let wd = c(self.coupled_wd);
        match self.part {
            Part::First => {
                let (b1, k) = (c(self.beta1), c(1.0 - self.beta1));
                zip3(dst, a, b, move |m, g, p| m * b1 + (g + wd * p) * k);
            }
            Part::Second => {
                let (b2, k) = (c(self.beta2), c(1.0 - self.beta2));
                zip3(dst, a, b, move |v, g, p| {
                    let g = g + wd * p;
                    v * b2 + g * g * k
                });
            }
            Part::Param => {
                let decay = c(1.0 - self.lr * self.decoupled_wd);
                let (step, bc2, eps) = (c(self.lr / self.bc1), c(self.bc2_sqrt), c(self.eps));
                zip3(dst, a, b, move |p, m, v| {
                    p * decay - step * m / (v.sqrt_() / bc2 + eps)
                });
            }
        }
    }
}

impl InplaceOp3 for AdamKernel {
    fn name(&self) -> &'static str {
        "taper-adam"
    }
    fn cpu_fwd(
        &self,
        dst: &mut CpuStorage,
        dst_l: &Layout,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<()> {
        use taper_nn::kernels::cpu_slice;
        if l1.shape() != dst_l.shape() || l2.shape() != dst_l.shape() {
            candle_core::bail!("adam: state shapes differ from the parameter's");
        }
        let r = range(dst_l)?;
        match dst {
            CpuStorage::F32(d) => self.run(
                &mut d[r],
                cpu_slice(s1, l1, "adam")?,
                cpu_slice(s2, l2, "adam")?,
            ),
            CpuStorage::F64(d) => self.run(
                &mut d[r],
                cpu_slice(s1, l1, "adam")?,
                cpu_slice(s2, l2, "adam")?,
            ),
            _ => candle_core::bail!("adam: unsupported dtype"),
        }
        Ok(())
    }
}

/// Settings of one fused Adam step.
#[derive(Debug, Clone, Copy)]
pub(super) struct AdamStep {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub lr: f64,
    pub coupled_wd: f64,
    pub decoupled_wd: f64,
    pub bc1: f64,
    pub bc2_sqrt: f64,
}

/// True when `p`, `g` and the moments can take the in-place path.
pub(super) fn fusable(p: &Tensor, g: &Tensor, state: [Option<&Tensor>; 2]) -> bool {
    let ok = |t: &Tensor| {
        t.device().is_cpu() && t.dtype() == p.dtype() && t.is_contiguous() && t.shape() == p.shape()
    };
    matches!(p.dtype(), DType::F32 | DType::F64)
        && ok(p)
        && ok(g)
        && state.iter().all(|s| s.is_none_or(ok))
}

/// Runs one Adam step in place on `p` (the variable's own tensor), `m` and `v`.
pub(super) fn adam_step(p: &Tensor, g: &Tensor, m: &Tensor, v: &Tensor, s: AdamStep) -> Result<()> {
    let k = |part| AdamKernel {
        part,
        beta1: s.beta1,
        beta2: s.beta2,
        eps: s.eps,
        lr: s.lr,
        coupled_wd: s.coupled_wd,
        decoupled_wd: s.decoupled_wd,
        bc1: s.bc1,
        bc2_sqrt: s.bc2_sqrt,
    };
    m.inplace_op3(g, p, &k(Part::First))?;
    v.inplace_op3(g, p, &k(Part::Second))?;
    p.inplace_op3(m, v, &k(Part::Param))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// AdamW's defaults with the bias corrections of its first step (`1 - β₁ = 0.1`,
    /// `√(1 - β₂) = √0.001`).
    const SETTINGS: AdamStep = AdamStep {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        lr: 1e-3,
        coupled_wd: 0.0,
        decoupled_wd: 0.01,
        bc1: 0.1,
        bc2_sqrt: 0.031_622_776_601_683_79,
    };

    /// One step on a parameter large enough to be split over threads.
    fn step_on(threads: usize) -> Vec<Vec<f32>> {
        let n = PARALLEL_MIN + 12_345;
        let t = |k: f32| {
            let v: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37 + k).sin()).collect();
            Tensor::from_vec(v, n, &Device::Cpu).unwrap()
        };
        let (p, g, m) = (t(0.0), t(1.0), t(2.0));
        let v = t(3.0).abs().unwrap();
        let s = SETTINGS;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| adam_step(&p, &g, &m, &v, s)).unwrap();
        [p, m, v].iter().map(|x| x.to_vec1().unwrap()).collect()
    }

    /// The f32 update at every vector level the CPU has equals, bit for bit,
    /// the scalar formula with the square root taken in f64 and rounded (what
    /// the kernel computed before it took f32's own root): a correctly rounded
    /// f32 root is that value.
    #[test]
    fn the_f32_update_is_the_same_at_every_vector_level() {
        use taper_nn::kernels::simd;
        let n = 1000 + 7;
        let t = |k: f32, abs: bool| {
            let v: Vec<f32> = (0..n)
                .map(|i| (i as f32 * 0.37 + k).sin() * if abs { 1.0 } else { 3.0 })
                .map(|x| if abs { x.abs() * 1e-3 } else { x })
                .collect();
            v
        };
        let (p0, g0, m0, v0) = (t(0.0, false), t(1.0, false), t(2.0, false), t(3.0, true));
        let s = SETTINGS;
        let run = || {
            let ten = |v: &Vec<f32>| Tensor::from_vec(v.clone(), n, &Device::Cpu).unwrap();
            let (p, g, m, v) = (ten(&p0), ten(&g0), ten(&m0), ten(&v0));
            adam_step(&p, &g, &m, &v, s).unwrap();
            p.to_vec1::<f32>().unwrap()
        };
        // The formula, one value at a time, root in f64.
        let c = |x: f64| x as f32;
        let want: Vec<f32> = (0..n)
            .map(|i| {
                let m = m0[i] * c(s.beta1) + g0[i] * c(1.0 - s.beta1);
                let v = v0[i] * c(s.beta2) + g0[i] * g0[i] * c(1.0 - s.beta2);
                let root = (v as f64).sqrt() as f32;
                p0[i] * c(1.0 - s.lr * s.decoupled_wd)
                    - c(s.lr / s.bc1) * m / (root / c(s.bc2_sqrt) + c(s.eps))
            })
            .collect();
        for level in simd::available() {
            simd::set_level(level).unwrap();
            assert!(run() == want, "{}", level.name());
        }
        simd::set_level(simd::detected()).unwrap();
    }

    #[test]
    fn a_split_update_equals_the_one_thread_update() {
        let (one, two) = (step_on(1), step_on(2));
        assert_eq!(one, two);
        // And the update did happen: the first moment is 0.9 m + 0.1 g.
        let n = one[1].len();
        let (m0, g0) = (2.0f32.sin(), 1.0f32.sin());
        assert!((one[1][0] - (0.9 * m0 + 0.1 * g0)).abs() < 1e-6);
        assert_eq!(n, PARALLEL_MIN + 12_345);
    }
}
