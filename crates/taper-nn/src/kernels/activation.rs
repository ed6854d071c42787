//! Element-wise activations with one-pass backward passes: ReLU, LeakyReLU and
//! tanh. candle's versions cost several passes each way (compare, convert,
//! multiply), and its CPU tanh calls the slow `f32::tanh`.

use super::{cpu_slice as slice, simd, Real};
use candle_core::backend::BackendStorage;
use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, DType, Layout, Result, Shape, Tensor, WithDType,
};

/// `tanh` with a one-pass backward (`g·(1 - y²)`), computed through `exp`:
/// candle's CPU tanh calls the slow `f32::tanh`, and the additive attention's
/// `(B, Tq, S, A)` tanh was the largest cost of a training step.
#[derive(Debug, Clone, Copy)]
struct Tanh;

#[derive(Debug, Clone, Copy)]
struct TanhGrad;

/// Values per parallel chunk of the element-wise maps.
const CHUNK: usize = 1 << 14;

/// `f(x[i])` for every `i`, in parallel chunks at the CPU's vector width.
fn map_par<T: WithDType>(x: &[T], f: impl Fn(T) -> T + Sync + Send) -> Vec<T> {
    // SAFETY: chunk `i` of the output and `x[i·CHUNK..]` have the same length
    // up to the chunk's, so the loop writes every value of the chunk.
    unsafe {
        super::par_new(x.len(), CHUNK, |i, d| {
            let s = &x[i * CHUNK..];
            // A `for` loop, not `for_each`: `Zip::fold` is not inlined into the
            // dispatched copy, and would run at the baseline width.
            simd::dispatch(
                #[inline(always)]
                || {
                    for (o, &v) in d.iter_mut().zip(s) {
                        o.write(f(v));
                    }
                },
            )
        })
    }
}

/// `f(a[i], b[i])` for every `i`, in parallel chunks: the backward passes'
/// one-pass loop over an activation (or input) and its gradient.
fn zip_map_par<T: WithDType>(a: &[T], b: &[T], f: impl Fn(T, T) -> T + Sync + Send) -> Vec<T> {
    assert_eq!(a.len(), b.len());
    // SAFETY: as in `map_par`; `b` is as long as `a`.
    unsafe {
        super::par_new(a.len(), CHUNK, |i, d| {
            let (xs, ys) = (&a[i * CHUNK..], &b[i * CHUNK..]);
            simd::dispatch(
                #[inline(always)]
                || {
                    for ((o, &x), &y) in d.iter_mut().zip(xs).zip(ys) {
                        o.write(f(x, y));
                    }
                },
            )
        })
    }
}

impl CustomOp1 for Tanh {
    fn name(&self) -> &'static str {
        "taper-tanh"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let out = match s.dtype() {
            DType::F32 => CpuStorage::F32(map_par(
                slice::<f32>(s, l, "tanh")?,
                #[inline(always)]
                |v| v.th(),
            )),
            DType::F64 => CpuStorage::F64(map_par(
                slice::<f64>(s, l, "tanh")?,
                #[inline(always)]
                |v| v.th(),
            )),
            d => candle_core::bail!("tanh: unsupported dtype {d:?}"),
        };
        Ok((out, l.shape().clone()))
    }
    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(res.apply_op2_no_bwd(&grad.contiguous()?, &TanhGrad)?))
    }
}

fn tanh_grad<T: Real>(y: &[T], g: &[T]) -> Vec<T> {
    zip_map_par(
        y,
        g,
        #[inline(always)]
        |y, g| g * (T::one() - y * y),
    )
}

impl candle_core::CustomOp2 for TanhGrad {
    fn name(&self) -> &'static str {
        "taper-tanh-grad"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        if l1.shape() != l2.shape() {
            candle_core::bail!("tanh backward: shapes {:?} and {:?}", l1.dims(), l2.dims());
        }
        let out = match s1.dtype() {
            DType::F32 => CpuStorage::F32(tanh_grad(
                slice::<f32>(s1, l1, "tanh")?,
                slice::<f32>(s2, l2, "tanh")?,
            )),
            DType::F64 => CpuStorage::F64(tanh_grad(
                slice::<f64>(s1, l1, "tanh")?,
                slice::<f64>(s2, l2, "tanh")?,
            )),
            d => candle_core::bail!("tanh: unsupported dtype {d:?}"),
        };
        Ok((out, l1.shape().clone()))
    }
}

/// Hyperbolic tangent: the fused kernel on the CPU, candle's elsewhere.
pub fn tanh(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64) {
        x.contiguous()?.apply_op1(Tanh)
    } else {
        x.tanh()
    }
}

/// `max(x, 0)` whose backward is one pass over (output, gradient) instead of
/// candle's compare, convert and multiply.
#[derive(Debug, Clone, Copy)]
pub struct Relu;

#[derive(Debug, Clone, Copy)]
struct ReluGrad;

impl CustomOp1 for Relu {
    fn name(&self) -> &'static str {
        "taper-relu"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let out = crate::float_dispatch!(
            "relu",
            s.dtype(),
            [(x, s, l)],
            map_par(
                x,
                #[inline(always)]
                |v| if v > 0.0 { v } else { 0.0 }
            )
        );
        Ok((out, l.shape().clone()))
    }
    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(
            res.apply_op2_no_bwd(&grad_res.contiguous()?, &ReluGrad)?,
        ))
    }
}

fn relu_grad<T: Real>(y: &[T], g: &[T]) -> Vec<T> {
    zip_map_par(
        y,
        g,
        #[inline(always)]
        |y, g| T::select(y > T::zero(), g, T::zero()),
    )
}

impl candle_core::CustomOp2 for ReluGrad {
    fn name(&self) -> &'static str {
        "taper-relu-grad"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        if l1.shape() != l2.shape() {
            candle_core::bail!(
                "relu backward: shapes {:?} and {:?} differ",
                l1.dims(),
                l2.dims()
            );
        }
        let out = crate::float_dispatch!(
            "relu",
            s1.dtype(),
            [(y, s1, l1), (g, s2, l2)],
            relu_grad(y, g)
        );
        Ok((out, l1.shape().clone()))
    }
}

/// ReLU: the one-pass kernel on the CPU, candle's elsewhere.
pub fn relu(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64) {
        x.contiguous()?.apply_op1(Relu)
    } else {
        x.relu()
    }
}

/// LeakyReLU with slope `.0` for negative inputs.
#[derive(Debug, Clone, Copy)]
struct LeakyRelu(f64);

/// Its backward: `(x, grad)` → `grad` where `x > 0`, `slope·grad` elsewhere.
#[derive(Debug, Clone, Copy)]
struct LeakyReluGrad(f64);

/// `v` where `x > 0`, `slope·v` elsewhere, with `v = x` (forward) or the
/// gradient (backward); branch-free.
fn leaky<T: Real>(x: &[T], v: &[T], slope: f64) -> Vec<T> {
    let k = T::from_f64(slope);
    zip_map_par(
        x,
        v,
        #[inline(always)]
        |x, v| T::select(x > T::zero(), v, k * v),
    )
}

impl CustomOp1 for LeakyRelu {
    fn name(&self) -> &'static str {
        "taper-leaky-relu"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let out = crate::float_dispatch!("leaky relu", s.dtype(), [(x, s, l)], {
            leaky(x, x, self.0)
        });
        Ok((out, l.shape().clone()))
    }
    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(arg.apply_op2_no_bwd(
            &grad.contiguous()?,
            &LeakyReluGrad(self.0),
        )?))
    }
}

impl CustomOp2 for LeakyReluGrad {
    fn name(&self) -> &'static str {
        "taper-leaky-relu-grad"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        if l1.shape() != l2.shape() {
            candle_core::bail!(
                "leaky relu backward: shapes {:?} and {:?}",
                l1.dims(),
                l2.dims()
            );
        }
        let out = crate::float_dispatch!("leaky relu", s1.dtype(), [(x, s1, l1), (g, s2, l2)], {
            leaky(x, g, self.0)
        });
        Ok((out, l1.shape().clone()))
    }
}

/// LeakyReLU: `x` where positive, `slope·x` elsewhere (a one-pass kernel with a
/// one-pass backward on the CPU; candle's `maximum` costs several passes each way).
pub fn leaky_relu(xs: &Tensor, slope: f64) -> Result<Tensor> {
    if xs.device().is_cpu() && matches!(xs.dtype(), DType::F32 | DType::F64) {
        xs.contiguous()?.apply_op1(LeakyRelu(slope))
    } else {
        xs.maximum(&(xs * slope)?)
    }
}

/// GELU `x·Φ(x)` in f32 with a one-pass backward `g·(Φ(x) + x·φ(x))`, through
/// the vectorised [`super::vmath::erf`] and `exp`: candle's `gelu_erf` calls
/// libm's scalar `erff` per element (a sixth of a BERT forward pass).
#[derive(Debug, Clone, Copy)]
struct Gelu;

#[derive(Debug, Clone, Copy)]
struct GeluGrad;

const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// 1 / √(2π).
const INV_SQRT_2PI: f32 = 0.398_942_3;

impl CustomOp1 for Gelu {
    fn name(&self) -> &'static str {
        "taper-gelu"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = slice::<f32>(s, l, "gelu")?;
        let out = map_par(
            x,
            #[inline(always)]
            |v| 0.5 * v * (1.0 + super::vmath::erf(v * FRAC_1_SQRT_2)),
        );
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }
    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(arg.apply_op2_no_bwd(&grad.contiguous()?, &GeluGrad)?))
    }
}

impl CustomOp2 for GeluGrad {
    fn name(&self) -> &'static str {
        "taper-gelu-grad"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        if l1.shape() != l2.shape() {
            candle_core::bail!("gelu backward: shapes {:?} and {:?}", l1.dims(), l2.dims());
        }
        let (x, g) = (slice::<f32>(s1, l1, "gelu")?, slice::<f32>(s2, l2, "gelu")?);
        let out = zip_map_par(
            x,
            g,
            #[inline(always)]
            |x, g| {
                let cdf = 0.5 * (1.0 + super::vmath::erf(x * FRAC_1_SQRT_2));
                let pdf = INV_SQRT_2PI * super::vmath::exp(-0.5 * x * x);
                g * (cdf + x * pdf)
            },
        );
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// GELU (exact erf form): the fused kernel for f32 on the CPU, candle's
/// `gelu_erf` elsewhere (f64 keeps libm's full-precision erf).
pub fn gelu(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        x.contiguous()?.apply_op1(Gelu)
    } else {
        x.gelu_erf()
    }
}
