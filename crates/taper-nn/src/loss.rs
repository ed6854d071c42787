//! Losses: cross-entropy (with label smoothing), per-token losses for sequence
//! models (fused with the output projection on the CPU), binary cross-entropy on
//! logits and mean squared error. Each returns a scalar mean unless it says
//! otherwise.
//!
//! ```
//! use candle_core::{Device, Tensor};
//!
//! let logits = Tensor::new(&[[2f32, 0.0, 0.0], [0.0, 0.0, 2.0]], &Device::Cpu)?;
//! let targets = Tensor::new(&[0u32, 2], &Device::Cpu)?;
//! let ce = taper_nn::cross_entropy(&logits, &targets)?.to_scalar::<f32>()?;
//! // -ln(e² / (e² + 2)) for both rows.
//! assert!((ce - 0.2395).abs() < 1e-4, "{ce}");
//! // A label outside the classes is an error naming it, not an index panic.
//! let bad = Tensor::new(&[0u32, 3], &Device::Cpu)?;
//! assert!(taper_nn::cross_entropy(&logits, &bad).unwrap_err().to_string().contains("label 3"));
//! # Ok::<(), candle_core::Error>(())
//! ```

use candle_core::{DType, Result, Tensor};

pub use crate::kernels::loss::{linear_token_losses, token_losses, token_losses_reference};

/// Checks logits `(N, C)` against class indices `(N,)` and returns the indices
/// as `u32`, with an error naming the first label outside `0..C`.
fn class_targets(op: &str, logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    if logits.rank() != 2 || targets.rank() != 1 || logits.dim(0)? != targets.dim(0)? {
        return Err(candle_core::Error::UnexpectedShape {
            msg: format!("{op}: logits (N, C) and targets (N,)"),
            expected: (
                targets.elem_count(),
                logits.dims().last().copied().unwrap_or(0),
            )
                .into(),
            got: logits.shape().clone(),
        });
    }
    let c = logits.dim(1)?;
    let t = targets.to_dtype(DType::U32)?;
    let host: Vec<u32> = t.to_vec1()?;
    if let Some(&bad) = host.iter().find(|&&l| l as usize >= c) {
        candle_core::bail!("{op}: label {bad} is outside the model's {c} classes (0..{c})");
    }
    Ok(t)
}

/// Mean cross-entropy of `logits (N, C)` against class indices `targets (N,)`.
///
/// # Errors
/// Shapes other than `(N, C)` and `(N,)`, or a label outside `0..C`.
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let t = class_targets("cross_entropy", logits, targets)?;
    candle_nn::loss::nll(&crate::log_softmax(logits)?, &t)
}

/// Mean cross-entropy with label smoothing `eps`, PyTorch's
/// `cross_entropy(label_smoothing = eps)`: `(1 - eps)·nll + eps·mean_c(-log p_c)`
/// (Szegedy et al. 2016). `eps = 0` is [`cross_entropy`].
pub fn cross_entropy_smoothed(logits: &Tensor, targets: &Tensor, eps: f64) -> Result<Tensor> {
    let t = class_targets("cross_entropy", logits, targets)?;
    let host: Vec<u32> = t.to_vec1()?;
    token_losses(logits, &host, eps)?
        .narrow(1, 0, 1)?
        .mean_all()
}

/// Mean squared error.
pub fn mse(pred: &Tensor, target: &Tensor) -> Result<Tensor> {
    if pred.shape() != target.shape() {
        return Err(candle_core::Error::UnexpectedShape {
            msg: "mse: prediction and target differ".into(),
            expected: target.shape().clone(),
            got: pred.shape().clone(),
        });
    }
    (pred - target)?.sqr()?.mean_all()
}

/// Mean binary cross-entropy on logits, computed stably as
/// `max(x, 0) - x·y + log(1 + e^-|x|)` (PyTorch's `BCEWithLogitsLoss`).
pub fn binary_cross_entropy_with_logits(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let relu = logits.relu()?;
    let xy = (logits * targets)?;
    let softplus = (logits.abs()?.neg()?.exp()? + 1.0)?.log()?;
    ((relu - xy)? + softplus)?.mean_all()
}
