//! Layers the generative and video models need beyond `taper_train::nn`: a
//! transposed convolution on the CPU kernels, a batch norm built from
//! differentiable ops, and LeakyReLU.

use candle_core::backend::BackendStorage;
use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Module, Result, Shape, Tensor, Var,
    WithDType, D,
};
use candle_nn::{Init, VarBuilder};
use rayon::prelude::*;
use taper_train::kernels::{Col2Im, Im2Col, Window};

/// [`Col2Im`] with a backward (an [`Im2Col`] of the gradient): the scatter step of
/// a transposed convolution, whose input gradient taper-train's kernel does not
/// need for its own use.
#[derive(Debug, Clone, Copy)]
struct Col2ImGrad(Col2Im);

impl CustomOp1 for Col2ImGrad {
    fn name(&self) -> &'static str {
        "taper-vision-col2im"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        if !matches!(s.dtype(), DType::F32 | DType::F64) {
            candle_core::bail!("conv_transpose2d: unsupported dtype {:?}", s.dtype());
        }
        self.0.cpu_fwd(s, l)
    }
    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(
            grad_res
                .contiguous()?
                .apply_op1_no_bwd(&Im2Col(self.0.window))?,
        ))
    }
}

/// Transposed 2-D convolution of `x` `(N, Cin, H, W)` with `weight`
/// `(Cin, Cout, k, k)` (PyTorch's layout): output side `(H - 1)·stride - 2·padding + k`.
///
/// On the CPU it is one matrix product followed by a col2im scatter (the adjoint
/// of taper-train's im2col convolution), so both gradients are matrix products;
/// candle's own CPU `conv_transpose2d` runs plain loops. Other devices use candle's.
pub fn conv_transpose2d(
    x: &Tensor,
    weight: &Tensor,
    stride: usize,
    padding: usize,
) -> Result<Tensor> {
    let (n, cin, h, w) = x.dims4()?;
    let (wc, cout, kh, kw) = weight.dims4()?;
    if wc != cin {
        candle_core::bail!(
            "conv_transpose2d: input has {cin} channels, weight expects {wc} (weight {:?})",
            weight.dims()
        );
    }
    if stride == 0
        || (h - 1) * stride + kh < 2 * padding + 1
        || (w - 1) * stride + kw < 2 * padding + 1
    {
        candle_core::bail!(
            "conv_transpose2d: stride {stride}, padding {padding} and a {kh}x{kw} kernel give no output for a {h}x{w} input"
        );
    }
    let (ho, wo) = (
        (h - 1) * stride + kh - 2 * padding,
        (w - 1) * stride + kw - 2 * padding,
    );
    if !x.device().is_cpu() {
        return x.conv_transpose2d(weight, padding, 0, stride, 1);
    }
    let xm = x.transpose(0, 1)?.contiguous()?.reshape((cin, n * h * w))?;
    let wm = weight.reshape((cin, cout * kh * kw))?.t()?;
    let cols = wm.matmul(&xm)?.contiguous()?;
    cols.apply_op1(Col2ImGrad(Col2Im {
        window: Window {
            kernel: (kh, kw),
            stride,
            padding,
        },
        image: (n, cout, ho, wo),
    }))
}

/// A transposed convolution layer (weights `weight` `(Cin, Cout, k, k)`, optional
/// `bias` `(Cout,)`), as PyTorch's `nn.ConvTranspose2d`.
#[derive(Debug, Clone)]
pub struct ConvTranspose2d {
    weight: Tensor,
    bias: Option<Tensor>,
    stride: usize,
    padding: usize,
}

impl ConvTranspose2d {
    /// From explicit tensors.
    pub fn new(weight: Tensor, bias: Option<Tensor>, stride: usize, padding: usize) -> Self {
        Self {
            weight,
            bias,
            stride,
            padding,
        }
    }
}

impl Module for ConvTranspose2d {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let y = conv_transpose2d(xs, &self.weight, self.stride, self.padding)?;
        match &self.bias {
            Some(b) => y.broadcast_add(&b.reshape((1, b.dim(0)?, 1, 1))?),
            None => Ok(y),
        }
    }
}

/// A `k`x`k` transposed convolution without bias (it precedes a batch norm or
/// `tanh` in DCGAN), weights drawn from N(0, 0.02) as in the DCGAN paper.
pub fn conv_transpose2d_no_bias(
    cin: usize,
    cout: usize,
    k: usize,
    stride: usize,
    padding: usize,
    vb: VarBuilder,
) -> Result<ConvTranspose2d> {
    let weight = vb.get_with_hints((cin, cout, k, k), "weight", DCGAN_INIT)?;
    Ok(ConvTranspose2d::new(weight, None, stride, padding))
}

/// DCGAN's initialisation of convolution weights: N(0, 0.02).
pub const DCGAN_INIT: Init = Init::Randn {
    mean: 0.0,
    stdev: 0.02,
};

/// Batch normalisation over `(N, C, ...)` (statistics per channel `C`), composed of
/// differentiable tensor ops.
///
/// Weights `weight`, `bias`, `running_mean`, `running_var` (PyTorch's names). In
/// training the batch statistics normalise and the running ones move by
/// `momentum`; in evaluation the running ones normalise.
#[derive(Debug, Clone)]
pub struct BatchNorm {
    weight: Tensor,
    bias: Tensor,
    running_mean: Var,
    running_var: Var,
    momentum: f64,
    eps: f64,
}

impl BatchNorm {
    /// The number of channels.
    pub fn channels(&self) -> usize {
        self.weight.dim(0).unwrap_or(0)
    }

    /// Normalises `xs`; `train` selects batch statistics (and updates the running ones).
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let c = self.channels();
        if xs.rank() < 2 || xs.dim(1)? != c {
            candle_core::bail!(
                "batch norm over {c} channels got input of shape {:?}",
                xs.dims()
            );
        }
        let m = xs.elem_count() / c.max(1);
        if train && m < 2 {
            candle_core::bail!(
                "batch norm in training needs more than one value per channel, got input {:?}",
                xs.dims()
            );
        }
        if train && xs.device().is_cpu() && matches!(xs.dtype(), DType::F32 | DType::F64) {
            let xs = xs.contiguous()?;
            let stats = xs.apply_op1_no_bwd(&ChannelStats)?;
            self.update_running(&stats.get(0)?, &stats.get(1)?, m)?;
            return xs.apply_op3(&self.weight, &self.bias, BnTrain { eps: self.eps });
        }
        let mut shape = vec![1usize; xs.rank()];
        shape[1] = c;
        let (mean, var) = if train {
            // Channels first, everything else flattened: one reduction per channel.
            let flat = xs.transpose(0, 1)?.contiguous()?.reshape((c, ()))?;
            let mean = flat.mean_keepdim(D::Minus1)?;
            let var = flat.broadcast_sub(&mean)?.sqr()?.mean_keepdim(D::Minus1)?;
            self.update_running(&mean.flatten_all()?, &var.flatten_all()?, m)?;
            (mean.reshape(shape.clone())?, var.reshape(shape.clone())?)
        } else {
            (
                self.running_mean.as_tensor().reshape(shape.clone())?,
                self.running_var.as_tensor().reshape(shape.clone())?,
            )
        };
        let normed = xs
            .broadcast_sub(&mean)?
            .broadcast_div(&(var + self.eps)?.sqrt()?)?;
        normed
            .broadcast_mul(&self.weight.reshape(shape.clone())?)?
            .broadcast_add(&self.bias.reshape(shape)?)
    }

    /// Moves the running statistics towards a batch's (biased variance `var` over
    /// `m` values per channel; the running variance is unbiased, as PyTorch's).
    fn update_running(&self, mean: &Tensor, var: &Tensor, m: usize) -> Result<()> {
        let mo = self.momentum;
        let unbiased = (var.detach() * (m as f64 / (m - 1) as f64))?;
        let rm = ((self.running_mean.as_tensor() * (1.0 - mo))? + (mean.detach() * mo)?)?;
        let rv = ((self.running_var.as_tensor() * (1.0 - mo))? + (unbiased * mo)?)?;
        self.running_mean
            .set(&rm.to_dtype(self.running_mean.dtype())?)?;
        self.running_var
            .set(&rv.to_dtype(self.running_var.dtype())?)
    }
}

/// A [`BatchNorm`] of `channels`, momentum 0.1 and epsilon 1e-5 (PyTorch's
/// defaults), its scale drawn from N(1, 0.02) as in DCGAN.
pub fn batch_norm(channels: usize, vb: VarBuilder) -> Result<BatchNorm> {
    let weight = vb.get_with_hints(
        channels,
        "weight",
        Init::Randn {
            mean: 1.0,
            stdev: 0.02,
        },
    )?;
    let bias = vb.get_with_hints(channels, "bias", Init::Const(0.0))?;
    let running_mean = vb.get_with_hints(channels, "running_mean", Init::Const(0.0))?;
    let running_var = vb.get_with_hints(channels, "running_var", Init::Const(1.0))?;
    Ok(BatchNorm {
        weight,
        bias,
        running_mean: Var::from_tensor(&running_mean)?,
        running_var: Var::from_tensor(&running_var)?,
        momentum: 0.1,
        eps: 1e-5,
    })
}

/// True for the names of batch-norm running statistics, which no optimizer updates.
pub fn is_running_stat(name: &str) -> bool {
    name.ends_with(".running_mean") || name.ends_with(".running_var")
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

// ---- CPU kernels: batch norm in training and LeakyReLU -------------------------
//
// Composed of candle ops, a training batch norm over (64, 64, 14, 14) took 11 ms
// forward and 177 ms forward + backward on two cores, and LeakyReLU (`maximum`)
// 68 ms; these kernels make one or two passes over the data instead.

/// `(N, C, rest...)` as (N, C, values per image and channel).
fn ncs(l: &Layout) -> Result<(usize, usize, usize)> {
    let d = l.dims();
    if d.len() < 2 || d[1] == 0 {
        candle_core::bail!("batch norm: input (N, C, ...) expected, got {d:?}");
    }
    Ok((d[0], d[1], d[2..].iter().product()))
}

/// Per-channel mean and biased variance of `x`, two passes (in f64).
fn channel_stats<T: WithDType>(x: &[T], (n, c, s): (usize, usize, usize)) -> Vec<(f64, f64)> {
    let m = (n * s) as f64;
    (0..c)
        .into_par_iter()
        .map(|ch| {
            let planes = || (0..n).map(move |b| &x[(b * c + ch) * s..(b * c + ch + 1) * s]);
            let mean = planes()
                .map(|p| p.iter().map(|v| v.to_f64()).sum::<f64>())
                .sum::<f64>()
                / m;
            let var = planes()
                .map(|p| p.iter().map(|v| (v.to_f64() - mean).powi(2)).sum::<f64>())
                .sum::<f64>()
                / m;
            (mean, var)
        })
        .collect()
}

/// `(2, C)`: each channel's batch mean (row 0) and biased variance (row 1).
struct ChannelStats;

impl CustomOp1 for ChannelStats {
    fn name(&self) -> &'static str {
        "taper-bn-stats"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let dims = ncs(l)?;
        let out = taper_train::float_dispatch!("bn stats", s.dtype(), [(x, s, l)], {
            let st = channel_stats(x, dims);
            st.iter()
                .map(|p| p.0)
                .chain(st.iter().map(|p| p.1))
                .map(WithDType::from_f64)
                .collect()
        });
        Ok((out, Shape::from((2, dims.1))))
    }
}

/// Training batch norm `(x, weight, bias)` → `weight·(x - mean)/sqrt(var + eps) + bias`
/// with the batch's statistics; gradients for all three.
#[derive(Debug, Clone, Copy)]
struct BnTrain {
    eps: f64,
}

/// Gradient of [`BnTrain`] with respect to `x`: `(x, grad, weight)` → `dx`.
#[derive(Debug, Clone, Copy)]
struct BnGradInput {
    eps: f64,
}

/// Gradients of [`BnTrain`] with respect to weight and bias: `(x, grad)` → `(2, C)`.
#[derive(Debug, Clone, Copy)]
struct BnGradParams {
    eps: f64,
}

/// Per channel: (mean, 1/std, sum of g, sum of g·x̂).
fn grad_sums<T: WithDType>(
    x: &[T],
    g: &[T],
    (n, c, s): (usize, usize, usize),
    eps: f64,
) -> Vec<(f64, f64, f64, f64)> {
    channel_stats(x, (n, c, s))
        .into_par_iter()
        .enumerate()
        .map(|(ch, (mean, var))| {
            let inv = 1.0 / (var + eps).sqrt();
            let (mut sg, mut sgx) = (0.0, 0.0);
            for b in 0..n {
                let r = (b * c + ch) * s..(b * c + ch + 1) * s;
                for (xv, gv) in x[r.clone()].iter().zip(&g[r]) {
                    let gv = gv.to_f64();
                    sg += gv;
                    sgx += gv * (xv.to_f64() - mean) * inv;
                }
            }
            (mean, inv, sg, sgx)
        })
        .collect()
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
        let (n, c, s) = ncs(l1)?;
        if l2.shape().elem_count() != c || l3.shape().elem_count() != c {
            candle_core::bail!("batch norm: weight and bias must have {c} values");
        }
        let out = taper_train::float_dispatch!(
            "batch norm",
            s1.dtype(),
            [(x, s1, l1), (w, s2, l2), (bias, s3, l3)],
            {
                let st = channel_stats(x, (n, c, s));
                let mut out = vec![WithDType::from_f64(0.0); x.len()];
                out.par_chunks_mut(s).enumerate().for_each(|(p, dst)| {
                    let ch = p % c;
                    let (mean, var) = st[ch];
                    let a = w[ch].to_f64() / (var + self.eps).sqrt();
                    let b = bias[ch].to_f64() - a * mean;
                    for (o, v) in dst.iter_mut().zip(&x[p * s..(p + 1) * s]) {
                        *o = WithDType::from_f64(a * v.to_f64() + b);
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
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let w = w.contiguous()?;
        let dx = x.apply_op3_no_bwd(&grad, &w, &BnGradInput { eps: self.eps })?;
        let dp = x.apply_op2_no_bwd(&grad, &BnGradParams { eps: self.eps })?;
        let shape = w.shape().clone();
        Ok((
            Some(dx),
            Some(dp.get(0)?.reshape(shape.clone())?),
            Some(dp.get(1)?.reshape(shape)?),
        ))
    }
}

impl CustomOp3 for BnGradInput {
    fn name(&self) -> &'static str {
        "taper-bn-grad-input"
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
        let (n, c, s) = ncs(l1)?;
        let out = taper_train::float_dispatch!(
            "batch norm backward",
            s1.dtype(),
            [(x, s1, l1), (g, s2, l2), (w, s3, l3)],
            {
                let sums = grad_sums(x, g, (n, c, s), self.eps);
                let m = (n * s) as f64;
                let mut out = vec![WithDType::from_f64(0.0); x.len()];
                out.par_chunks_mut(s).enumerate().for_each(|(p, dst)| {
                    let ch = p % c;
                    let (mean, inv, sg, sgx) = sums[ch];
                    let k = w[ch].to_f64() * inv;
                    let r = p * s..(p + 1) * s;
                    for ((o, xv), gv) in dst.iter_mut().zip(&x[r.clone()]).zip(&g[r]) {
                        let xh = (xv.to_f64() - mean) * inv;
                        *o = WithDType::from_f64(k * (gv.to_f64() - sg / m - xh * sgx / m));
                    }
                });
                out
            }
        );
        Ok((out, l1.shape().clone()))
    }
}

impl CustomOp2 for BnGradParams {
    fn name(&self) -> &'static str {
        "taper-bn-grad-params"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, c, s) = ncs(l1)?;
        let out = taper_train::float_dispatch!(
            "batch norm backward",
            s1.dtype(),
            [(x, s1, l1), (g, s2, l2)],
            {
                let sums = grad_sums(x, g, (n, c, s), self.eps);
                sums.iter()
                    .map(|t| t.3)
                    .chain(sums.iter().map(|t| t.2))
                    .map(WithDType::from_f64)
                    .collect()
            }
        );
        Ok((out, Shape::from((2, c))))
    }
}

/// LeakyReLU with slope `.0` for negative inputs.
#[derive(Debug, Clone, Copy)]
struct LeakyRelu(f64);

/// Its backward: `(x, grad)` → `grad` where `x > 0`, `slope·grad` elsewhere.
#[derive(Debug, Clone, Copy)]
struct LeakyReluGrad(f64);

impl CustomOp1 for LeakyRelu {
    fn name(&self) -> &'static str {
        "taper-leaky-relu"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let k = self.0;
        let out = taper_train::float_dispatch!("leaky relu", s.dtype(), [(x, s, l)], {
            let mut out = vec![WithDType::from_f64(0.0); x.len()];
            out.par_chunks_mut(1 << 14)
                .zip(x.par_chunks(1 << 14))
                .for_each(|(d, src)| {
                    for (o, v) in d.iter_mut().zip(src) {
                        let f = v.to_f64();
                        *o = if f > 0.0 {
                            *v
                        } else {
                            WithDType::from_f64(k * f)
                        };
                    }
                });
            out
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
        let k = self.0;
        let out =
            taper_train::float_dispatch!("leaky relu", s1.dtype(), [(x, s1, l1), (g, s2, l2)], {
                let mut out = vec![WithDType::from_f64(0.0); x.len()];
                out.par_chunks_mut(1 << 14)
                    .zip(x.par_chunks(1 << 14).zip(g.par_chunks(1 << 14)))
                    .for_each(|(d, (xs, gs))| {
                        for ((o, xv), gv) in d.iter_mut().zip(xs).zip(gs) {
                            *o = if xv.to_f64() > 0.0 {
                                *gv
                            } else {
                                WithDType::from_f64(k * gv.to_f64())
                            };
                        }
                    });
                out
            });
        Ok((out, l1.shape().clone()))
    }
}
