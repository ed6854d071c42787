//! Activations: ReLU, LeakyReLU, tanh, softmax and log-softmax, with one-pass
//! CPU kernels where candle's cost several passes (or give no gradient).
//!
//! ```
//! use candle_core::{Device, Tensor};
//!
//! let x = Tensor::new(&[[-1f32, 0.5, 2.0]], &Device::Cpu)?;
//! assert_eq!(taper_nn::relu(&x)?.to_vec2::<f32>()?, [[0.0, 0.5, 2.0]]);
//! assert_eq!(taper_nn::leaky_relu(&x, 0.1)?.to_vec2::<f32>()?, [[-0.1, 0.5, 2.0]]);
//! let p = taper_nn::softmax(&x)?.sum_all()?.to_scalar::<f32>()?;
//! assert!((p - 1.0).abs() < 1e-6);
//! # Ok::<(), candle_core::Error>(())
//! ```

use candle_core::{Result, Tensor, D};

pub use crate::kernels::activation::{leaky_relu, relu, tanh};

/// Softmax over the last dimension, with gradient: one fused op on the CPU
/// ([`crate::kernels::norm::Softmax`]); candle-nn's composition elsewhere
/// (its `softmax_last_dim` gives no gradient).
pub fn softmax(xs: &Tensor) -> Result<Tensor> {
    if crate::kernels::norm::fusable(xs) && xs.rank() > 0 {
        return xs.contiguous()?.apply_op1(crate::kernels::norm::Softmax);
    }
    candle_nn::ops::softmax(xs, D::Minus1)
}

/// Log-softmax over the last dimension, `x - max - ln Σ e^(x - max)` per row, with
/// gradient: one fused op on the CPU ([`crate::kernels::norm::LogSoftmax`]; the
/// rows' exponentials vectorised, where candle-nn's composition of six ops called
/// the C library's `expf` per element), candle-nn's composition elsewhere.
pub fn log_softmax(xs: &Tensor) -> Result<Tensor> {
    if crate::kernels::norm::fusable(xs) && xs.rank() > 0 {
        return xs.contiguous()?.apply_op1(crate::kernels::norm::LogSoftmax);
    }
    candle_nn::ops::log_softmax(xs, D::Minus1)
}

/// GELU in its exact form `x · Φ(x) = x/2 · (1 + erf(x/√2))` (Hendrycks &
/// Gimpel 2016), what Hugging Face's `"gelu"` and PyTorch's `nn.GELU()`
/// compute (not the tanh approximation), with gradient: a fused kernel in f32
/// on the CPU ([`crate::kernels::activation::gelu`]).
pub fn gelu(xs: &Tensor) -> Result<Tensor> {
    crate::kernels::activation::gelu(xs)
}

/// The logistic sigmoid `1 / (1 + e^-x)`, with gradient.
pub fn sigmoid(xs: &Tensor) -> Result<Tensor> {
    candle_nn::ops::sigmoid(xs)
}
