//! In-place optimizer updates on the CPU: one pass over the parameter, its
//! gradient and the state tensors, with no temporaries.
//!
//! Composed of tensor ops, an Adam step allocated and filled about fourteen
//! parameter-sized tensors (moments, their square, bias corrections, the
//! denominator, the update, the decayed weights) and then copied the result into
//! the variable. These kernels rewrite the moment buffers and the variable where
//! they lie. Other devices, and AMSGrad, keep the composed form.

use candle_core::{CpuStorage, DType, InplaceOp1, InplaceOp2, Layout, Result, Tensor};
use std::sync::Mutex;
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

/// One Adam(W) step over a slice of each buffer, `ĝ = g + wd·p` when the decay is
/// coupled (Adam's L2):
/// - `m ← β₁m + (1-β₁)ĝ`,
/// - `v ← β₂v + (1-β₂)ĝ²`,
/// - `p ← p·(1 - lr·wd) - lr/bc₁ · m / (√v/√bc₂ + ε)` (Loshchilov and Hutter 2019,
///   "Decoupled weight decay regularization", algorithm 2, with PyTorch's placement
///   of ε),
///
/// at the CPU's vector width: the square root and division are not memory-bound at
/// SSE2's four lanes. The expressions are those of the earlier three-pass kernel,
/// so the values are the same bits.
#[inline(always)]
fn update<T: Real>(s: &AdamStep, p: &mut [T], g: &[T], m: &mut [T], v: &mut [T]) {
    let c = |x: f64| T::from_f64(x);
    let wd = c(s.coupled_wd);
    let (b1, k1, b2, k2) = (c(s.beta1), c(1.0 - s.beta1), c(s.beta2), c(1.0 - s.beta2));
    let decay = c(1.0 - s.lr * s.decoupled_wd);
    let (step, bc2, eps) = (c(s.lr / s.bc1), c(s.bc2_sqrt), c(s.eps));
    taper_nn::kernels::simd::dispatch(
        #[inline(always)]
        || {
            for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
                let g = g + wd * *p;
                let m1 = *m * b1 + g * k1;
                let v1 = *v * b2 + g * g * k2;
                *m = m1;
                *v = v1;
                *p = *p * decay - step * m1 / (v1.sqrt_() / bc2 + eps);
            }
        },
    )
}

/// [`update`] over whole buffers. Those of at least [`PARALLEL_MIN`] values are
/// split into chunks over the pool's threads; each value's arithmetic is the same
/// either way, so the result does not depend on the thread count. Smaller ones stay
/// on one thread. The update is memory-bound: called from `main`, splitting the
/// MLP's 200k-value weight woke the pool for nothing; on a pool thread (the
/// Trainer's `in_pool`) it took the MLP step from 1.53 to 1.41 ms.
fn update_all<T: Real>(s: &AdamStep, p: &mut [T], g: &[T], m: &mut [T], v: &mut [T]) {
    if p.len() < PARALLEL_MIN || rayon::current_num_threads() < 2 {
        return update(s, p, g, m, v);
    }
    use rayon::prelude::*;
    p.par_chunks_mut(CHUNK)
        .zip(g.par_chunks(CHUNK))
        .zip(m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK)))
        .for_each(|((p, g), (m, v))| update(s, p, g, m, v));
}

/// A moment buffer lent by an outer in-place op to the op nested in it.
enum Lent<'a> {
    F32(&'a mut [f32]),
    F64(&'a mut [f64]),
}

impl<'a> Lent<'a> {
    fn of(st: &'a mut CpuStorage, l: &Layout) -> Result<Self> {
        let r = range(l)?;
        Ok(match st {
            CpuStorage::F32(d) => Lent::F32(&mut d[r]),
            CpuStorage::F64(d) => Lent::F64(&mut d[r]),
            _ => candle_core::bail!("adam: unsupported dtype"),
        })
    }
}

/// Takes the buffer a [`Handoff`] holds (each op runs once per call).
type Handoff<'a> = Mutex<Option<Lent<'a>>>;

fn take<'a>(h: &Handoff<'a>) -> Result<Lent<'a>> {
    h.lock()
        .map_err(|_| candle_core::Error::Msg("adam: a poisoned hand-off".into()))?
        .take()
        .ok_or_else(|| candle_core::Error::Msg("adam: a buffer handed off twice".into()))
}

/// The step's three rewritten buffers in one pass. candle's in-place ops give one
/// mutable buffer per call, so the step nests three: [`LendM`] holds `m`'s storage
/// and, inside, runs [`LendV`] on `v`, which runs [`Update`] on `p` (with `g` as a
/// source); each hands its buffer inward. The three passes this replaced (one per
/// buffer) moved 48 bytes per f32 value, this one 28. The moments are the
/// optimizer's own tensors, never shared with each other, the parameter or the
/// gradient, so the nested write locks are on distinct storages.
struct LendM<'t> {
    v: &'t Tensor,
    p: &'t Tensor,
    g: &'t Tensor,
    s: AdamStep,
}

struct LendV<'t, 'a> {
    m: Handoff<'a>,
    p: &'t Tensor,
    g: &'t Tensor,
    s: AdamStep,
}

struct Update<'a> {
    m: Handoff<'a>,
    v: Handoff<'a>,
    s: AdamStep,
}

impl InplaceOp1 for LendM<'_> {
    fn name(&self) -> &'static str {
        "taper-adam"
    }
    fn cpu_fwd(&self, st: &mut CpuStorage, l: &Layout) -> Result<()> {
        let m = Lent::of(st, l)?;
        self.v.inplace_op1(&LendV {
            m: Mutex::new(Some(m)),
            p: self.p,
            g: self.g,
            s: self.s,
        })
    }
}

impl InplaceOp1 for LendV<'_, '_> {
    fn name(&self) -> &'static str {
        "taper-adam"
    }
    fn cpu_fwd(&self, st: &mut CpuStorage, l: &Layout) -> Result<()> {
        let v = Lent::of(st, l)?;
        self.p.inplace_op2(
            self.g,
            &Update {
                m: Mutex::new(Some(take(&self.m)?)),
                v: Mutex::new(Some(v)),
                s: self.s,
            },
        )
    }
}

impl InplaceOp2 for Update<'_> {
    fn name(&self) -> &'static str {
        "taper-adam"
    }
    fn cpu_fwd(
        &self,
        dst: &mut CpuStorage,
        dst_l: &Layout,
        src: &CpuStorage,
        src_l: &Layout,
    ) -> Result<()> {
        use taper_nn::kernels::cpu_slice;
        let r = range(dst_l)?;
        match (dst, take(&self.m)?, take(&self.v)?) {
            (CpuStorage::F32(p), Lent::F32(m), Lent::F32(v)) => {
                update_all(&self.s, &mut p[r], cpu_slice(src, src_l, "adam")?, m, v)
            }
            (CpuStorage::F64(p), Lent::F64(m), Lent::F64(v)) => {
                update_all(&self.s, &mut p[r], cpu_slice(src, src_l, "adam")?, m, v)
            }
            _ => candle_core::bail!("adam: the moments' dtype differs from the parameter's"),
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

/// Runs one Adam step in place on `p` (the variable's own tensor), `m` and `v`, in
/// one pass over the four buffers (see [`LendM`]). `m` and `v` must be the
/// optimizer's own tensors: distinct storages, shared with nothing else.
///
/// # Errors
/// Buffers that are not contiguous CPU f32/f64 of one dtype and shape.
pub(super) fn adam_step(p: &Tensor, g: &Tensor, m: &Tensor, v: &Tensor, s: AdamStep) -> Result<()> {
    if [g.shape(), m.shape(), v.shape()]
        .iter()
        .any(|x| *x != p.shape())
    {
        candle_core::bail!("adam: state shapes differ from the parameter's");
    }
    m.inplace_op1(&LendM { v, p, g, s })
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
