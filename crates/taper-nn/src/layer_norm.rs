//! Layer and RMS normalisation whose gradients reach every input.
//!
//! candle-nn 0.11.1's `LayerNorm::forward` and `RmsNorm::forward` run their
//! backward without error but give no gradient at all (`tests/gradcheck.rs`
//! fails if that changes); these route through differentiable versions.
//!
//! ```
//! use candle_core::{DType, Device, Module, Tensor};
//! use candle_nn::VarMap;
//! use taper_nn::{init::seeded_var_builder, layer_norm};
//!
//! let varmap = VarMap::new();
//! let ln = layer_norm(8, 1e-5, seeded_var_builder(&varmap, 0, DType::F32, &Device::Cpu).pp("ln"))?;
//! let x = Tensor::arange(0f32, 16.0, &Device::Cpu)?.reshape((2, 8))?;
//! let y = ln.forward(&x)?;
//! // Each row now has mean 0 (and variance 1).
//! let means = y.mean(1)?.to_vec1::<f32>()?;
//! assert!(means.iter().all(|m| m.abs() < 1e-5));
//! # Ok::<(), candle_core::Error>(())
//! ```

use candle_core::{Module, Result, Tensor, D};
use candle_nn::VarBuilder;

/// Layer normalisation over the last dimension: `(x - mean) / √(var + eps) ·
/// weight + bias` (Ba et al. 2016), one fused op each way on the CPU.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Option<Tensor>,
    eps: f32,
}

impl LayerNorm {
    /// From explicit `weight (D,)` and `bias (D,)`.
    pub fn new(weight: Tensor, bias: Option<Tensor>, eps: f32) -> Self {
        Self { weight, bias, eps }
    }
}

impl Module for LayerNorm {
    /// `(…, D)` → `(…, D)`.
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

crate::mode::forward_by_module!(LayerNorm);

/// A [`LayerNorm`] of `size` features, variables `weight` (ones) and `bias`
/// (zeros) under `vb` (PyTorch's names, so checkpoints load there).
pub fn layer_norm(size: usize, eps: f64, vb: VarBuilder) -> Result<LayerNorm> {
    let weight = vb.get_with_hints(size, "weight", candle_nn::Init::Const(1.0))?;
    let bias = vb.get_with_hints(size, "bias", candle_nn::Init::Const(0.0))?;
    Ok(LayerNorm::new(weight, Some(bias), eps as f32))
}

/// RMS normalisation `x / √(mean(x²) + eps) · weight` over the last dimension
/// (Zhang and Sennrich 2019), whose backward propagates (through candle-nn's
/// `RmsNorm::forward_diff`).
pub fn rms_norm(xs: &Tensor, weight: &Tensor, eps: f32) -> Result<Tensor> {
    candle_nn::RmsNorm::new(weight.clone(), eps as f64).forward_diff(xs)
}
