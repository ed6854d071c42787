//! 2-D convolutions and transposed convolutions on the fused CPU kernels
//! (per-image im2col + GEMM; candle's kernels on other devices).
//!
//! ```
//! use candle_core::{DType, Device, Module, Tensor};
//! use candle_nn::VarMap;
//! use taper_nn::{conv2d, conv_transpose2d, init::seeded_var_builder, Conv2dConfig};
//!
//! let varmap = VarMap::new();
//! let vb = seeded_var_builder(&varmap, 0, DType::F32, &Device::Cpu);
//! let same = Conv2dConfig { padding: 1, stride: 1 };
//! let conv = conv2d(1, 8, 3, same, vb.pp("conv"))?;
//! let x = Tensor::zeros((2, 1, 28, 28), DType::F32, &Device::Cpu)?;
//! assert_eq!(conv.forward(&x)?.dims(), &[2, 8, 28, 28]);
//! // A stride-2 transposed convolution doubles the side.
//! let up = conv_transpose2d(8, 4, 4, Conv2dConfig { padding: 1, stride: 2 }, vb.pp("up"))?;
//! assert_eq!(up.forward(&conv.forward(&x)?)?.dims(), &[2, 4, 56, 56]);
//! # Ok::<(), candle_core::Error>(())
//! ```

use candle_core::{Module, Result, Tensor};
use candle_nn::{Init, VarBuilder};

/// Padding and stride of a [`Conv2d`] or [`ConvTranspose2d`] (square kernels,
/// no dilation, no groups).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dConfig {
    /// Zero padding on each side.
    pub padding: usize,
    /// Stride.
    pub stride: usize,
}

impl Default for Conv2dConfig {
    fn default() -> Self {
        Self {
            padding: 0,
            stride: 1,
        }
    }
}

/// A 2-D convolution layer on [`crate::kernels::conv2d_bias`]: weights `weight`
/// `(out_channels, in_channels, k, k)` and `bias` `(out_channels,)`. Input
/// `(N, in_channels, H, W)`, output `(N, out_channels, H', W')` with
/// `H' = (H + 2·padding - k) / stride + 1`.
#[derive(Debug, Clone)]
pub struct Conv2d {
    weight: Tensor,
    bias: Option<Tensor>,
    cfg: Conv2dConfig,
}

impl Conv2d {
    /// From explicit tensors.
    pub fn new(weight: Tensor, bias: Option<Tensor>, cfg: Conv2dConfig) -> Self {
        Self { weight, bias, cfg }
    }

    /// The weight `(out_channels, in_channels, k, k)`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// Padding and stride.
    pub fn config(&self) -> Conv2dConfig {
        self.cfg
    }

    /// The same layer with its parameters detached from autodiff (sharing their
    /// storage): gradients still flow to its input, but none are computed for
    /// its weight and bias, as for a GAN's discriminator in the generator's step.
    pub fn detached(&self) -> Self {
        Self {
            weight: self.weight.detach(),
            bias: self.bias.as_ref().map(Tensor::detach),
            cfg: self.cfg,
        }
    }
}

impl Module for Conv2d {
    /// # Errors
    /// An input that is not `(N, in_channels, H, W)` or smaller than the kernel.
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        crate::kernels::conv2d_bias(
            xs,
            &self.weight,
            self.bias.as_ref(),
            self.cfg.stride,
            self.cfg.padding,
        )
    }
}

/// PyTorch's default for convolution weights and biases: uniform in ±1/√fan_in
/// (kaiming-uniform with a = √5), `fan_in` = the weight's size over its first
/// dimension.
fn uniform_fan_in(fan_in: usize) -> Init {
    let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
    Init::Uniform {
        lo: -bound,
        up: bound,
    }
}

fn conv_weight(
    in_channels: usize,
    out_channels: usize,
    k: usize,
    vb: &VarBuilder,
) -> Result<Tensor> {
    vb.get_with_hints(
        (out_channels, in_channels, k, k),
        "weight",
        uniform_fan_in(in_channels * k * k),
    )
}

/// A `k`x`k` convolution from `in_channels` to `out_channels` with bias, initialised
/// like PyTorch's `nn.Conv2d`; variables `weight` and `bias` under `vb`.
pub fn conv2d(
    in_channels: usize,
    out_channels: usize,
    k: usize,
    cfg: Conv2dConfig,
    vb: VarBuilder,
) -> Result<Conv2d> {
    let weight = conv_weight(in_channels, out_channels, k, &vb)?;
    let bias = vb.get_with_hints(out_channels, "bias", uniform_fan_in(in_channels * k * k))?;
    Ok(Conv2d::new(weight, Some(bias), cfg))
}

/// A `k`x`k` convolution without bias (before a batch norm).
pub fn conv2d_no_bias(
    in_channels: usize,
    out_channels: usize,
    k: usize,
    cfg: Conv2dConfig,
    vb: VarBuilder,
) -> Result<Conv2d> {
    Ok(Conv2d::new(
        conv_weight(in_channels, out_channels, k, &vb)?,
        None,
        cfg,
    ))
}

/// A transposed convolution layer, PyTorch's `nn.ConvTranspose2d`: weights `weight`
/// `(in_channels, out_channels, k, k)`, optional `bias` `(out_channels,)`. Output
/// side `(H - 1)·stride - 2·padding + k`. On the CPU it is the adjoint of the
/// fused convolution ([`crate::kernels::conv_transpose2d`]).
#[derive(Debug, Clone)]
pub struct ConvTranspose2d {
    weight: Tensor,
    bias: Option<Tensor>,
    cfg: Conv2dConfig,
}

impl ConvTranspose2d {
    /// From explicit tensors.
    pub fn new(weight: Tensor, bias: Option<Tensor>, cfg: Conv2dConfig) -> Self {
        Self { weight, bias, cfg }
    }

    /// The weight `(in_channels, out_channels, k, k)`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }
}

impl Module for ConvTranspose2d {
    /// # Errors
    /// An input that is not `(N, in_channels, H, W)`, or a geometry with no output.
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let y =
            crate::kernels::conv_transpose2d(xs, &self.weight, self.cfg.stride, self.cfg.padding)?;
        match &self.bias {
            Some(b) => y.broadcast_add(&b.reshape((1, b.dim(0)?, 1, 1))?),
            None => Ok(y),
        }
    }
}

fn conv_transpose_weight(
    in_channels: usize,
    out_channels: usize,
    k: usize,
    vb: &VarBuilder,
) -> Result<Tensor> {
    // PyTorch computes fan_in from the weight's second dimension here.
    vb.get_with_hints(
        (in_channels, out_channels, k, k),
        "weight",
        uniform_fan_in(out_channels * k * k),
    )
}

/// A `k`x`k` transposed convolution with bias, initialised like PyTorch's
/// `nn.ConvTranspose2d`; variables `weight` and `bias` under `vb`.
pub fn conv_transpose2d(
    in_channels: usize,
    out_channels: usize,
    k: usize,
    cfg: Conv2dConfig,
    vb: VarBuilder,
) -> Result<ConvTranspose2d> {
    let weight = conv_transpose_weight(in_channels, out_channels, k, &vb)?;
    let bias = vb.get_with_hints(out_channels, "bias", uniform_fan_in(out_channels * k * k))?;
    Ok(ConvTranspose2d::new(weight, Some(bias), cfg))
}

/// [`conv_transpose2d`] without bias.
pub fn conv_transpose2d_no_bias(
    in_channels: usize,
    out_channels: usize,
    k: usize,
    cfg: Conv2dConfig,
    vb: VarBuilder,
) -> Result<ConvTranspose2d> {
    Ok(ConvTranspose2d::new(
        conv_transpose_weight(in_channels, out_channels, k, &vb)?,
        None,
        cfg,
    ))
}

crate::mode::forward_by_module!(Conv2d, ConvTranspose2d);
