//! Layers the generative and video models need beyond `taper_train::nn`: a
//! transposed convolution on the CPU kernels, a batch norm built from
//! differentiable ops, and LeakyReLU.

use super::bn::BnTrain;
use candle_core::backend::BackendStorage;
use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Module, Result, Shape, Tensor, Var,
    WithDType, D,
};
use candle_nn::{Init, VarBuilder};
use rayon::prelude::*;
use taper_train::kernels::{Real, Window};

/// Transposed 2-D convolution of `x` `(N, Cin, H, W)` with `weight`
/// `(Cin, Cout, k, k)` (PyTorch's layout): output side `(H - 1)·stride - 2·padding + k`.
///
/// On the CPU it is taper-train's fused [`ConvTranspose2d`](taper_train::kernels::conv::ConvTranspose2d)
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
        || (h - 1) * stride + kh < 2 * padding + 1
        || (w - 1) * stride + kw < 2 * padding + 1
    {
        candle_core::bail!(
            "conv_transpose2d: stride {stride}, padding {padding} and a {kh}x{kw} kernel give no output for a {h}x{w} input"
        );
    }
    if !x.device().is_cpu() || !matches!(x.dtype(), DType::F32 | DType::F64) {
        return x.conv_transpose2d(weight, padding, 0, stride, 1);
    }
    taper_train::kernels::conv::conv_transpose2d_cpu(
        x,
        weight,
        Window {
            kernel: (kh, kw),
            stride,
            padding,
        },
    )
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
        self.forward_impl(xs, train, false)
    }

    /// `relu(forward_t(xs))`, fused into the batch norm's passes on the CPU.
    pub fn forward_relu_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        self.forward_impl(xs, train, true)
    }

    fn forward_impl(&self, xs: &Tensor, train: bool, relu: bool) -> Result<Tensor> {
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
            let op = BnTrain::new(self.eps, relu);
            let y = xs
                .contiguous()?
                .apply_op3(&self.weight, &self.bias, op.clone())?;
            let (mean, var) = op.batch_stats()?;
            let (dev, dt) = (xs.device(), self.running_mean.dtype());
            self.update_running(
                &Tensor::from_vec(mean, c, dev)?.to_dtype(dt)?,
                &Tensor::from_vec(var, c, dev)?.to_dtype(dt)?,
                m,
            )?;
            return Ok(y);
        }
        if !train && xs.device().is_cpu() && matches!(xs.dtype(), DType::F32 | DType::F64) {
            // Evaluation is one per-channel affine map: fold the running statistics
            // into a scale and a shift (two vectors of C), then a single pass.
            let dt = xs.dtype();
            let rm = self.running_mean.as_tensor().to_dtype(dt)?;
            let rv = self.running_var.as_tensor().to_dtype(dt)?;
            let scale = self.weight.broadcast_div(&(rv + self.eps)?.sqrt()?)?;
            let shift = (&self.bias - (&scale * rm)?)?;
            let y = xs.contiguous()?.apply_op3(&scale, &shift, ChannelAffine)?;
            return if relu {
                taper_train::nn::relu(&y)
            } else {
                Ok(y)
            };
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
        let y = normed
            .broadcast_mul(&self.weight.reshape(shape.clone())?)?
            .broadcast_add(&self.bias.reshape(shape)?)?;
        if relu {
            taper_train::nn::relu(&y)
        } else {
            Ok(y)
        }
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

/// A [`BatchNorm`] of `channels` with PyTorch's defaults: momentum 0.1, epsilon
/// 1e-5, scale 1 and shift 0.
pub fn batch_norm(channels: usize, vb: VarBuilder) -> Result<BatchNorm> {
    batch_norm_init(channels, Init::Const(1.0), vb)
}

/// A [`BatchNorm`] as [`batch_norm`], its scale drawn from N(1, 0.02) as in DCGAN.
pub fn batch_norm_dcgan(channels: usize, vb: VarBuilder) -> Result<BatchNorm> {
    batch_norm_init(
        channels,
        Init::Randn {
            mean: 1.0,
            stdev: 0.02,
        },
        vb,
    )
}

fn batch_norm_init(channels: usize, scale: Init, vb: VarBuilder) -> Result<BatchNorm> {
    let weight = vb.get_with_hints(channels, "weight", scale)?;
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

// ---- CPU kernels: batch norm in evaluation and LeakyReLU ----------------------
//
// Composed of candle ops, LeakyReLU (`maximum`) took 68 ms over a (64, 64, 14, 14)
// activation on two cores; these kernels make one pass each way.

use super::bn::ncs;

/// Per-channel affine map `(x, scale, shift)` → `scale[c]·x + shift[c]` over
/// `(N, C, ...)`: batch norm in evaluation, with gradients for all three (saliency
/// and Grad-CAM differentiate a model in evaluation mode).
#[derive(Debug, Clone, Copy)]
struct ChannelAffine;

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
        let out = taper_train::float_dispatch!(
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
        let out = taper_train::float_dispatch!(
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
                            for (xv, gv) in x[r.clone()].iter().zip(&g[r]) {
                                sgx += gv.to_f64() * xv.to_f64();
                                sg += gv.to_f64();
                            }
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
    let mut out = vec![T::zero(); x.len()];
    out.par_chunks_mut(1 << 14)
        .zip(x.par_chunks(1 << 14).zip(v.par_chunks(1 << 14)))
        .for_each(|(d, (xs, vs))| {
            for ((o, xv), vv) in d.iter_mut().zip(xs).zip(vs) {
                *o = T::select(*xv > T::zero(), *vv, k * *vv);
            }
        });
    out
}

impl CustomOp1 for LeakyRelu {
    fn name(&self) -> &'static str {
        "taper-leaky-relu"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let out = taper_train::float_dispatch!("leaky relu", s.dtype(), [(x, s, l)], {
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
        let out =
            taper_train::float_dispatch!("leaky relu", s1.dtype(), [(x, s1, l1), (g, s2, l2)], {
                leaky(x, g, self.0)
            });
        Ok((out, l1.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use taper_train::gradcheck::check_gradients;

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
