//! CPU kernels that candle lacks or runs slowly, as candle custom ops.
//!
//! candle 0.11.1's CPU conv2d computes its input gradient with a plain loop (5-7x
//! the forward) and computes it even for data that needs none; [`conv`] is im2col
//! and GEMM per image, whose gradients are GEMMs and a col2im, each computed only
//! where needed. [`linear`], [`norm`], [`batch_norm`], [`activation`] and
//! [`pool`] fuse the other layers; [`rnn`], [`attention`] and [`loss`] the
//! sequence models' recurrence, attention scores and output head. Each op has a
//! value check against candle's own op and a finite-difference gradient check.
//! Other devices, and other dtypes, keep candle's kernels.

use candle_core::{CpuStorage, DType, Layout, Result, Tensor, WithDType};

pub mod activation;
pub mod attention;
pub(crate) mod batch_norm;
pub mod blas;
pub mod bmm;
pub mod conv;
pub mod linear;
pub mod loss;
pub mod norm;
pub mod pool;
pub mod rnn;
mod scratch;
pub mod sdpa;
pub mod select;
pub mod simd;
pub mod vmath;
pub use activation::{leaky_relu, relu, tanh};
pub use bmm::{bmm, bmm_t};
pub use conv::{gemm, MatRef};
pub use pool::max_pool2d;
pub use sdpa::sdpa;
pub use select::select_rows;

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
    /// The square root in the type's own precision (IEEE 754, correctly rounded,
    /// so f32's equals the f64 root rounded to f32), which vectorises in f32.
    fn sqrt_(self) -> Self;
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
    #[inline(always)]
    fn sqrt_(self) -> f32 {
        self.sqrt()
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
    #[inline(always)]
    fn sqrt_(self) -> f64 {
        self.sqrt()
    }
}

/// A new vector of `len` values, written in parallel by `fill(i, chunk)` for
/// each `i`-th chunk of `chunk` values (the last one shorter), without zeroing
/// it first. The kernels' outputs used to be `vec![0; len]` and then
/// overwritten: that memset was 5-7 % of a LeNet or DCGAN training step.
///
/// # Safety
/// `fill` must write every value of each chunk it is given (`MaybeUninit::write`);
/// the vector is read as initialised afterwards.
pub(crate) unsafe fn par_new<T: Copy + Send + Sync>(
    len: usize,
    chunk: usize,
    fill: impl Fn(usize, &mut [std::mem::MaybeUninit<T>]) + Sync + Send,
) -> Vec<T> {
    // SAFETY: the caller's contract, passed on.
    unsafe { par_new_with(len, chunk, || (), |_, i, c| fill(i, c)) }
}

/// [`par_new`] with per-worker scratch made by `init` (as rayon's
/// `for_each_init`), for fillers that need buffers (a convolution's columns).
///
/// # Safety
/// As [`par_new`]: `fill` must write every value of each chunk it is given.
pub(crate) unsafe fn par_new_with<T: Copy + Send + Sync, S>(
    len: usize,
    chunk: usize,
    init: impl Fn() -> S + Sync + Send,
    fill: impl Fn(&mut S, usize, &mut [std::mem::MaybeUninit<T>]) + Sync + Send,
) -> Vec<T> {
    use rayon::prelude::*;
    let mut out = Vec::with_capacity(len);
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(chunk.max(1))
        .enumerate()
        .for_each_init(init, |s, (i, c)| fill(s, i, c));
    // SAFETY: the capacity is `len`, and the caller's contract is that `fill`
    // wrote every one of the `len` values.
    unsafe { out.set_len(len) };
    out
}

/// How many partial sums a parallel reduction is cut into: fixed, so the rounding
/// of every sum depends on its inputs alone, never on the thread count or timing.
pub const REDUCE_CHUNKS: usize = 16;

/// `Σ_i item(i)` over `0..n`, each item a vector of `len` values, summed in
/// parallel with a result independent of the thread count and of timing.
///
/// A rayon `fold`/`reduce` splits the work as threads steal it, so its float sums
/// (a convolution's weight gradient over the images of a batch) differed between
/// two identical calls on two threads, and so did a training run. Here the items
/// are cut into at most [`REDUCE_CHUNKS`] chunks fixed by `n` alone; each chunk
/// adds its items in index order into its own accumulator (starting at `zero`),
/// and the accumulators are added in chunk order. `scratch` makes per-worker
/// buffers (im2col columns) that do not affect the sums; `add(scratch, i, acc)`
/// adds item `i` into `acc`.
pub fn ordered_sum<A, S>(
    n: usize,
    len: usize,
    zero: A,
    scratch: impl Fn() -> S + Sync + Send,
    add: impl Fn(&mut S, usize, &mut [A]) + Sync + Send,
) -> Vec<A>
where
    A: Copy + Send + Sync + std::ops::AddAssign,
{
    use rayon::prelude::*;
    let per = n.div_ceil(REDUCE_CHUNKS).max(1);
    let parts: Vec<Vec<A>> = (0..n.div_ceil(per))
        .into_par_iter()
        .map_init(scratch, |s, c| {
            let mut acc = vec![zero; len];
            for i in c * per..((c + 1) * per).min(n) {
                add(s, i, &mut acc);
            }
            acc
        })
        .collect();
    let mut parts = parts.into_iter();
    let mut total = parts.next().unwrap_or_else(|| vec![zero; len]);
    for p in parts {
        for (t, v) in total.iter_mut().zip(p) {
            *t += v;
        }
    }
    total
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
    if let Some(half) = cpu_half(x) {
        // candle's CPU convolution has no bf16 kernel: half precision runs the
        // fused f32 kernel on widened copies and rounds the result (the casts
        // are differentiable, so gradients flow back in half precision).
        let f = |t: &Tensor| t.to_dtype(DType::F32);
        let b = bias.map(f).transpose()?;
        return conv::conv2d_cpu(&f(x)?, &f(weight)?, b.as_ref(), win)?.to_dtype(half);
    }
    if !x.device().is_cpu() || !matches!(x.dtype(), DType::F32 | DType::F64) {
        let y = x.conv2d(weight, padding, stride, 1, 1)?;
        return match bias {
            Some(b) => y.broadcast_add(&b.reshape((1, co, 1, 1))?),
            None => Ok(y),
        };
    }
    conv::conv2d_cpu(x, weight, bias, win)
}

/// Transposed 2-D convolution of `x` `(N, Cin, H, W)` with `weight`
/// `(Cin, Cout, k, k)` (PyTorch's layout): output side `(H - 1)·stride - 2·padding + k`.
///
/// On the CPU it is the fused [`conv::ConvTranspose2d`]
/// (the adjoint of its im2col convolution: per image one matrix product and a
/// col2im scatter, and both gradients the same way); candle's own CPU
/// `conv_transpose2d` runs plain loops. Other devices use candle's.
pub fn conv_transpose2d(
    x: &Tensor,
    weight: &Tensor,
    stride: usize,
    padding: usize,
) -> Result<Tensor> {
    let (_, cin, h, w) = x.dims4()?;
    let (wc, _, kh, kw) = weight.dims4()?;
    if wc != cin {
        candle_core::bail!(
            "conv_transpose2d: input has {cin} channels, weight expects {wc} (weight {:?})",
            weight.dims()
        );
    }
    if stride == 0
        || h == 0
        || w == 0
        || (h - 1) * stride + kh < 2 * padding + 1
        || (w - 1) * stride + kw < 2 * padding + 1
    {
        candle_core::bail!(
            "conv_transpose2d: stride {stride}, padding {padding} and a {kh}x{kw} kernel give no output for a {h}x{w} input"
        );
    }
    let win = Window {
        kernel: (kh, kw),
        stride,
        padding,
    };
    if let Some(half) = cpu_half(x) {
        let f = |t: &Tensor| t.to_dtype(DType::F32);
        return conv::conv_transpose2d_cpu(&f(x)?, &f(weight)?, win)?.to_dtype(half);
    }
    if !x.device().is_cpu() || !matches!(x.dtype(), DType::F32 | DType::F64) {
        return x.conv_transpose2d(weight, padding, 0, stride, 1);
    }
    conv::conv_transpose2d_cpu(x, weight, win)
}

/// The half-precision dtype of a CPU tensor (bf16 or f16), if it is one.
fn cpu_half(x: &Tensor) -> Option<DType> {
    (x.device().is_cpu() && matches!(x.dtype(), DType::BF16 | DType::F16)).then(|| x.dtype())
}
