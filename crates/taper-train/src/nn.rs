//! Layers and losses whose gradients reach every input, checked by
//! `tests/gradcheck.rs`.
//!
//! candle-nn 0.11.1's `LayerNorm::forward`, `RmsNorm::forward` and
//! `ops::softmax_last_dim` run their backward without error but give no gradient
//! at all; these wrappers route through the differentiable versions.

use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn::VarBuilder;

/// Softmax over the last dimension, with gradient: one fused op on the CPU
/// ([`crate::kernels::norm::Softmax`]), candle-nn's composition elsewhere.
pub fn softmax(xs: &Tensor) -> Result<Tensor> {
    if crate::kernels::norm::fusable(xs) && xs.rank() > 0 {
        return xs.contiguous()?.apply_op1(crate::kernels::norm::Softmax);
    }
    candle_nn::ops::softmax(xs, D::Minus1)
}

/// Log-softmax over the last dimension, with gradient.
pub fn log_softmax(xs: &Tensor) -> Result<Tensor> {
    candle_nn::ops::log_softmax(xs, D::Minus1)
}

/// Mean cross-entropy of `logits` (N, C) against class indices `targets` (N,).
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    if logits.rank() != 2 || targets.rank() != 1 || logits.dim(0)? != targets.dim(0)? {
        candle_core::bail!(
            "cross_entropy expects logits (N, C) and targets (N,), got {:?} and {:?}",
            logits.dims(),
            targets.dims()
        );
    }
    let t = targets.to_dtype(DType::U32)?;
    candle_nn::loss::nll(&log_softmax(logits)?, &t)
}

/// Mean squared error.
pub fn mse(pred: &Tensor, target: &Tensor) -> Result<Tensor> {
    if pred.shape() != target.shape() {
        candle_core::bail!(
            "mse: prediction shape {:?} differs from target shape {:?}",
            pred.dims(),
            target.dims()
        );
    }
    (pred - target)?.sqr()?.mean_all()
}

/// Mean binary cross-entropy on logits, computed stably as
/// `max(x, 0) - x·y + log(1 + e^-|x|)`.
pub fn binary_cross_entropy_with_logits(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let relu = logits.relu()?;
    let xy = (logits * targets)?;
    let softplus = (logits.abs()?.neg()?.exp()? + 1.0)?.log()?;
    ((relu - xy)? + softplus)?.mean_all()
}

/// Layer normalisation over the last dimension whose backward propagates
/// (candle-nn's `LayerNorm::forward` does not).
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Option<Tensor>,
    eps: f32,
}

impl LayerNorm {
    /// From explicit weight and bias.
    pub fn new(weight: Tensor, bias: Option<Tensor>, eps: f32) -> Self {
        Self { weight, bias, eps }
    }
}

impl Module for LayerNorm {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        if crate::kernels::norm::fusable(xs) && xs.rank() > 0 {
            let b = match &self.bias {
                Some(b) => b.clone(),
                None => self.weight.zeros_like()?,
            };
            let w = self.weight.to_dtype(xs.dtype())?.contiguous()?;
            let b = b.to_dtype(xs.dtype())?.contiguous()?;
            let op = crate::kernels::norm::LayerNormOp {
                eps: self.eps as f64,
            };
            return xs.contiguous()?.apply_op3(&w, &b, op);
        }
        // Elsewhere composed of differentiable ops (see the module comment).
        let n = xs.dim(D::Minus1)? as f64;
        let centered = xs.broadcast_sub(&(xs.sum_keepdim(D::Minus1)? / n)?)?;
        let var = (centered.sqr()?.sum_keepdim(D::Minus1)? / n)?;
        let normed = centered.broadcast_div(&(var + self.eps as f64)?.sqrt()?)?;
        let scaled = normed.broadcast_mul(&self.weight)?;
        match &self.bias {
            Some(b) => scaled.broadcast_add(b),
            None => Ok(scaled),
        }
    }
}

/// A [`LayerNorm`] of `size` features, weights `weight` and `bias` under `vb`
/// (PyTorch's names, so checkpoints load there).
pub fn layer_norm(size: usize, eps: f64, vb: VarBuilder) -> Result<LayerNorm> {
    let weight = vb.get_with_hints(size, "weight", candle_nn::Init::Const(1.0))?;
    let bias = vb.get_with_hints(size, "bias", candle_nn::Init::Const(0.0))?;
    Ok(LayerNorm::new(weight, Some(bias), eps as f32))
}

/// RMS normalisation whose backward propagates (via `RmsNorm::forward_diff`).
pub fn rms_norm(xs: &Tensor, weight: &Tensor, eps: f32) -> Result<Tensor> {
    candle_nn::RmsNorm::new(weight.clone(), eps as f64).forward_diff(xs)
}

/// Max pooling with a `k`×`k` window and stride `k` (rows and columns beyond a
/// multiple of `k` are dropped, as in PyTorch).
///
/// candle 0.11.1's `max_pool2d` backward multiplies the gradient by the fraction
/// of window elements equal to the maximum instead of dividing by their count, so
/// a unique maximum receives 1/k² of its gradient. This one's gradient is exact
/// (checked in `tests/gradcheck.rs`): a custom kernel on the CPU, reshapes and
/// `max` reductions elsewhere.
pub fn max_pool2d(xs: &Tensor, k: usize) -> Result<Tensor> {
    crate::kernels::max_pool2d(xs, k)
}

/// ReLU with a one-pass backward on the CPU.
pub fn relu(xs: &Tensor) -> Result<Tensor> {
    crate::kernels::relu(xs)
}

/// [`max_pool2d`] from reshapes and `max` reductions (any device).
pub fn max_pool2d_reshape(xs: &Tensor, k: usize) -> Result<Tensor> {
    let (n, c, h, w) = xs.dims4()?;
    let (ho, wo) = (h / k, w / k);
    if ho == 0 || wo == 0 {
        candle_core::bail!("max_pool2d: window {k} larger than input {h}x{w}");
    }
    let xs = if ho * k != h || wo * k != w {
        xs.narrow(2, 0, ho * k)?.narrow(3, 0, wo * k)?
    } else {
        xs.clone()
    };
    xs.reshape((n, c, ho, k, wo, k))?.max(5)?.max(3)
}

/// Settings of a [`Conv2d`].
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

/// A 2-D convolution layer on [`crate::kernels::conv2d`] (fast CPU path, candle's
/// kernel on other devices). Weights `weight` `(Co, C, k, k)` and `bias` `(Co,)`,
/// initialised like PyTorch's `nn.Conv2d`.
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

    /// The weight.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }
}

impl Module for Conv2d {
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

/// PyTorch's default for convolution weights and biases: uniform in ±1/sqrt(fan_in)
/// (kaiming-uniform with a = sqrt(5) for the weights).
fn conv_init(cin: usize, k: usize) -> candle_nn::Init {
    let bound = 1.0 / ((cin * k * k) as f64).sqrt();
    candle_nn::Init::Uniform {
        lo: -bound,
        up: bound,
    }
}

fn conv_weight(cin: usize, cout: usize, k: usize, vb: &VarBuilder) -> Result<Tensor> {
    vb.get_with_hints((cout, cin, k, k), "weight", conv_init(cin, k))
}

/// A `k`x`k` convolution from `cin` to `cout` channels with bias.
pub fn conv2d(
    cin: usize,
    cout: usize,
    k: usize,
    cfg: Conv2dConfig,
    vb: VarBuilder,
) -> Result<Conv2d> {
    let weight = conv_weight(cin, cout, k, &vb)?;
    let bias = vb.get_with_hints(cout, "bias", conv_init(cin, k))?;
    Ok(Conv2d::new(weight, Some(bias), cfg))
}

/// A `k`x`k` convolution without bias (before batch norm).
pub fn conv2d_no_bias(
    cin: usize,
    cout: usize,
    k: usize,
    cfg: Conv2dConfig,
    vb: VarBuilder,
) -> Result<Conv2d> {
    Ok(Conv2d::new(conv_weight(cin, cout, k, &vb)?, None, cfg))
}

/// A linear layer `x·Wᵀ + b` over the last dimension of any input (leading
/// dimensions flatten into one matrix product), weights `weight (out, in)` and
/// optional `bias (out,)` (PyTorch's names), on the fused op of
/// [`crate::kernels::linear`] on the CPU.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    /// From explicit tensors.
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self { weight, bias }
    }

    /// The weight `(out, in)`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The bias, if any.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        crate::kernels::linear::linear(x, &self.weight, self.bias.as_ref())
    }
}

fn linear_init(inp: usize, out: usize, bias: bool, vb: VarBuilder) -> Result<Linear> {
    // PyTorch's nn.Linear default: uniform in ±1/√fan_in.
    let b = 1.0 / (inp as f64).sqrt();
    let init = candle_nn::Init::Uniform { lo: -b, up: b };
    let w = vb.get_with_hints((out, inp), "weight", init)?;
    let bias = if bias {
        Some(vb.get_with_hints(out, "bias", init)?)
    } else {
        None
    };
    Ok(Linear::new(w, bias))
}

/// A linear layer from `inp` to `out` features, initialised like PyTorch's `nn.Linear`.
pub fn linear(inp: usize, out: usize, vb: VarBuilder) -> Result<Linear> {
    linear_init(inp, out, true, vb)
}

/// [`linear`] without bias.
pub fn linear_no_bias(inp: usize, out: usize, vb: VarBuilder) -> Result<Linear> {
    linear_init(inp, out, false, vb)
}
