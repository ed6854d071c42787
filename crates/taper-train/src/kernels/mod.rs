//! CPU kernels that candle lacks or runs slowly, as candle custom ops.
//!
//! candle 0.11.1's CPU conv2d computes its input gradient with a plain loop (5-7x
//! the forward) and computes it even for data that needs none; [`conv`] is im2col
//! and GEMM per image, whose gradients are GEMMs and a col2im, each computed only
//! where needed. [`linear`] and [`norm`] fuse the other layers, and this module
//! holds max-pool, ReLU and the helpers they share. Other devices keep candle's
//! own kernels.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor, WithDType};
use rayon::prelude::*;

pub mod conv;
pub mod linear;
pub mod norm;
pub mod vmath;
pub use conv::{gemm, MatRef};

/// Geometry of a 2-D convolution window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Kernel height and width.
    pub kernel: (usize, usize),
    /// Stride.
    pub stride: usize,
    /// Zero padding on each side.
    pub padding: usize,
}

impl Window {
    /// Output height and width for an input of `h` x `w`.
    pub fn output(&self, h: usize, w: usize) -> Result<(usize, usize)> {
        let (kh, kw) = self.kernel;
        let (ph, pw) = (h + 2 * self.padding, w + 2 * self.padding);
        if ph < kh || pw < kw || self.stride == 0 {
            candle_core::bail!(
                "conv window {kh}x{kw} (padding {}) does not fit a {h}x{w} input",
                self.padding
            );
        }
        Ok(((ph - kh) / self.stride + 1, (pw - kw) / self.stride + 1))
    }
}

/// The typed slice of a contiguous CPU storage; `op` names the kernel in the error.
/// Shared by every crate's custom ops (with [`float_dispatch!`](crate::float_dispatch)).
pub fn cpu_slice<'a, T: WithDType>(s: &'a CpuStorage, l: &Layout, op: &str) -> Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&s.as_slice::<T>()?[a..b]),
        None => candle_core::bail!("{op}: input must be contiguous"),
    }
}

use cpu_slice as contiguous;

/// The float types the kernels run on, with a branch-free select.
///
/// A data-dependent `if` in a kernel's inner loop (ReLU's backward, a max-pool
/// argmax) compiled to a branch that random activations mispredict half the
/// time: ReLU's backward over 1.2 M values took 6.8 ms that way and 0.3 ms with
/// a bit mask, which the compiler also vectorises.
pub trait Real: WithDType {
    /// `a` where `c` holds, `b` elsewhere, without a branch.
    fn select(c: bool, a: Self, b: Self) -> Self;
    /// `e^self`: [`vmath::exp`] for f32 (vectorises), std's for f64.
    fn ex(self) -> Self;
    /// `tanh(self)`: [`vmath::tanh`] for f32, std's for f64.
    fn th(self) -> Self;
    /// The logistic sigmoid: [`vmath::sigmoid`] for f32.
    fn sig(self) -> Self;
}

impl Real for f32 {
    #[inline(always)]
    fn select(c: bool, a: f32, b: f32) -> f32 {
        let m = (c as u32).wrapping_neg();
        f32::from_bits((a.to_bits() & m) | (b.to_bits() & !m))
    }
    #[inline(always)]
    fn ex(self) -> f32 {
        vmath::exp(self)
    }
    #[inline(always)]
    fn th(self) -> f32 {
        vmath::tanh(self)
    }
    #[inline(always)]
    fn sig(self) -> f32 {
        vmath::sigmoid(self)
    }
}

impl Real for f64 {
    #[inline(always)]
    fn select(c: bool, a: f64, b: f64) -> f64 {
        let m = (c as u64).wrapping_neg();
        f64::from_bits((a.to_bits() & m) | (b.to_bits() & !m))
    }
    fn ex(self) -> f64 {
        self.exp()
    }
    fn th(self) -> f64 {
        self.tanh()
    }
    fn sig(self) -> f64 {
        1.0 / (1.0 + (-self).exp())
    }
}

/// Runs `$body` with each `$x` bound to the contiguous f32 or f64 slice of its
/// storage (all of dtype `$dtype`) and wraps the `Vec` it returns in the matching
/// `CpuStorage`: a custom op's kernel is written once, generically, in any crate.
///
/// `float_dispatch!("name", dtype, [(x, s1, l1), (g, s2, l2)], body)`
#[macro_export]
macro_rules! float_dispatch {
    ($op:expr, $dtype:expr, [$(($x:ident, $s:expr, $l:expr)),+], $body:expr) => {
        match $dtype {
            ::candle_core::DType::F32 => {
                $(let $x = $crate::kernels::cpu_slice::<f32>($s, $l, $op)?;)+
                ::candle_core::CpuStorage::F32($body)
            }
            ::candle_core::DType::F64 => {
                $(let $x = $crate::kernels::cpu_slice::<f64>($s, $l, $op)?;)+
                ::candle_core::CpuStorage::F64($body)
            }
            d => ::candle_core::bail!("{}: unsupported dtype {d:?}", $op),
        }
    };
}

/// Binds the contiguous f32 or f64 slices of one or two storages and wraps the
/// `Vec` the body returns in the matching `CpuStorage`: each kernel is written
/// once, generically, and dispatched here.
macro_rules! float_op {
    ($op:expr, $s:expr, $l:expr, |$x:ident| $body:expr) => {
        match $s.dtype() {
            DType::F32 => {
                let $x = contiguous::<f32>($s, $l, $op)?;
                CpuStorage::F32($body)
            }
            DType::F64 => {
                let $x = contiguous::<f64>($s, $l, $op)?;
                CpuStorage::F64($body)
            }
            d => candle_core::bail!("{}: unsupported dtype {d:?}", $op),
        }
    };
    ($op:expr, $s1:expr, $l1:expr, $s2:expr, $l2:expr, |$x:ident, $y:ident| $body:expr) => {
        match $s1.dtype() {
            DType::F32 => {
                let ($x, $y) = (
                    contiguous::<f32>($s1, $l1, $op)?,
                    contiguous::<f32>($s2, $l2, $op)?,
                );
                CpuStorage::F32($body)
            }
            DType::F64 => {
                let ($x, $y) = (
                    contiguous::<f64>($s1, $l1, $op)?,
                    contiguous::<f64>($s2, $l2, $op)?,
                );
                CpuStorage::F64($body)
            }
            d => candle_core::bail!("{}: unsupported dtype {d:?}", $op),
        }
    };
}

/// 2-D convolution (no groups, no dilation) of `x` `(N, C, H, W)` with `weight`
/// `(Co, C, kh, kw)`: the fused per-image im2col + GEMM op of [`conv::Conv2d`] on
/// the CPU in f32/f64, candle's `conv2d` elsewhere.
pub fn conv2d(x: &Tensor, weight: &Tensor, stride: usize, padding: usize) -> Result<Tensor> {
    conv2d_bias(x, weight, None, stride, padding)
}

/// [`conv2d`] plus an optional bias `(Co,)`, fused into the product on the CPU.
pub fn conv2d_bias(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    stride: usize,
    padding: usize,
) -> Result<Tensor> {
    let (_, c, h, w) = x.dims4()?;
    let (co, ci, kh, kw) = weight.dims4()?;
    if c != ci {
        candle_core::bail!(
            "conv2d: input has {c} channels, weight expects {ci} (weight {:?})",
            weight.dims()
        );
    }
    if let Some(b) = bias {
        if b.elem_count() != co {
            candle_core::bail!("conv2d: bias {:?} for {co} output channels", b.dims());
        }
    }
    let win = Window {
        kernel: (kh, kw),
        stride,
        padding,
    };
    win.output(h, w)?;
    if !x.device().is_cpu() || !matches!(x.dtype(), DType::F32 | DType::F64) {
        let y = x.conv2d(weight, padding, stride, 1, 1)?;
        return match bias {
            Some(b) => y.broadcast_add(&b.reshape((1, co, 1, 1))?),
            None => Ok(y),
        };
    }
    conv::conv2d_cpu(x, weight, bias, win)
}

/// Max pooling with a `k`x`k` window and stride `k` over `(N, C, H, W)` (rows and
/// columns beyond a multiple of `k` are dropped). The gradient goes to the first
/// maximum of each window, as in PyTorch.
#[derive(Debug, Clone, Copy)]
pub struct MaxPool(pub usize);

/// The backward of [`MaxPool`]: `(input, output gradient)` → input gradient.
#[derive(Debug, Clone, Copy)]
struct MaxPoolGrad(usize);

fn pool_dims(l: &Layout, k: usize) -> Result<(usize, usize, usize, usize, usize, usize)> {
    let (n, c, h, w) = l.shape().dims4()?;
    if k == 0 || h < k || w < k {
        candle_core::bail!("max_pool2d: window {k} does not fit a {h}x{w} input");
    }
    Ok((n, c, h, w, h / k, w / k))
}

fn maxpool_fwd<T: WithDType>(x: &[T], l: &Layout, k: usize) -> Result<Vec<T>> {
    let (n, c, h, w, ho, wo) = pool_dims(l, k)?;
    let mut out = vec![T::zero(); n * c * ho * wo];
    out.par_chunks_mut(ho * wo)
        .enumerate()
        .for_each(|(p, dst)| {
            let src = &x[p * h * w..(p + 1) * h * w];
            for oh in 0..ho {
                for ow in 0..wo {
                    let mut m = src[oh * k * w + ow * k];
                    for i in 0..k {
                        for v in &src[(oh * k + i) * w + ow * k..(oh * k + i) * w + ow * k + k] {
                            if *v > m {
                                m = *v;
                            }
                        }
                    }
                    dst[oh * wo + ow] = m;
                }
            }
        });
    Ok(out)
}

fn maxpool_bwd<T: Real>(x: &[T], g: &[T], l: &Layout, k: usize) -> Result<Vec<T>> {
    let (n, c, h, w, ho, wo) = pool_dims(l, k)?;
    if g.len() != n * c * ho * wo {
        candle_core::bail!(
            "max_pool2d backward: gradient of {} values for {n}x{c}x{ho}x{wo}",
            g.len()
        );
    }
    let mut out = vec![T::zero(); n * c * h * w];
    out.par_chunks_mut(h * w).enumerate().for_each(|(p, dst)| {
        let src = &x[p * h * w..(p + 1) * h * w];
        let gp = &g[p * ho * wo..(p + 1) * ho * wo];
        for oh in 0..ho {
            for ow in 0..wo {
                // Branch-free argmax (first maximum wins, as in PyTorch).
                let mut best = oh * k * w + ow * k;
                let mut top = src[best];
                for i in 0..k {
                    for j in 0..k {
                        let idx = (oh * k + i) * w + ow * k + j;
                        let v = src[idx];
                        let better = v > top;
                        best = if better { idx } else { best };
                        top = T::select(better, v, top);
                    }
                }
                dst[best] += gp[oh * wo + ow];
            }
        }
    });
    Ok(out)
}

impl CustomOp1 for MaxPool {
    fn name(&self) -> &'static str {
        "taper-maxpool"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, _, _, ho, wo) = pool_dims(l, self.0)?;
        let out = float_op!("max_pool2d", s, l, |x| maxpool_fwd(x, l, self.0)?);
        Ok((out, Shape::from((n, c, ho, wo))))
    }
    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(arg.apply_op2_no_bwd(
            &grad_res.contiguous()?,
            &MaxPoolGrad(self.0),
        )?))
    }
}

impl candle_core::CustomOp2 for MaxPoolGrad {
    fn name(&self) -> &'static str {
        "taper-maxpool-grad"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let out = float_op!("max_pool2d", s1, l1, s2, l2, |x, g| maxpool_bwd(
            x, g, l1, self.0
        )?);
        Ok((out, l1.shape().clone()))
    }
}

/// `max(x, 0)` whose backward is one pass over (output, gradient) instead of
/// candle's compare, convert and multiply.
#[derive(Debug, Clone, Copy)]
pub struct Relu;

#[derive(Debug, Clone, Copy)]
struct ReluGrad;

fn map_contig<T: WithDType>(x: &[T], f: impl Fn(T) -> T + Sync + Send) -> Vec<T> {
    let mut out = vec![T::zero(); x.len()];
    out.par_chunks_mut(1 << 14)
        .zip(x.par_chunks(1 << 14))
        .for_each(|(d, s)| {
            for (o, v) in d.iter_mut().zip(s) {
                *o = f(*v);
            }
        });
    out
}

impl CustomOp1 for Relu {
    fn name(&self) -> &'static str {
        "taper-relu"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let out = float_op!("relu", s, l, |x| map_contig(x, |v| if v > 0.0 {
            v
        } else {
            0.0
        }));
        Ok((out, l.shape().clone()))
    }
    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(
            res.apply_op2_no_bwd(&grad_res.contiguous()?, &ReluGrad)?,
        ))
    }
}

fn relu_grad<T: Real>(y: &[T], g: &[T]) -> Vec<T> {
    let mut out = vec![T::zero(); y.len()];
    out.par_chunks_mut(1 << 14)
        .zip(y.par_chunks(1 << 14).zip(g.par_chunks(1 << 14)))
        .for_each(|(d, (ys, gs))| {
            for ((o, y), g) in d.iter_mut().zip(ys).zip(gs) {
                *o = T::select(*y > T::zero(), *g, T::zero());
            }
        });
    out
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
        let out = float_op!("relu", s1, l1, s2, l2, |y, g| relu_grad(y, g));
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

/// `k`x`k` max pooling with stride `k`: the kernel above on the CPU, candle's
/// (with a corrected gradient, see [`crate::nn::max_pool2d`]) elsewhere.
pub fn max_pool2d(x: &Tensor, k: usize) -> Result<Tensor> {
    if x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64) {
        x.contiguous()?.apply_op1(MaxPool(k))
    } else {
        crate::nn::max_pool2d_reshape(x, k)
    }
}
