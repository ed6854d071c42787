//! Gradient clipping by global norm and by value.

use crate::Result;
use candle_core::backprop::GradStore;
use candle_core::Var;

/// How a group's gradients are clipped before the update.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Clip {
    /// No clipping.
    #[default]
    None,
    /// Scale all gradients so that their joint L2 norm is at most this.
    GlobalNorm(f64),
    /// Clamp each gradient element into `[-v, v]`.
    Value(f64),
}

/// The joint L2 norm of the gradients of `vars`.
pub fn grad_norm(vars: &[&Var], grads: &GradStore) -> Result<f64> {
    let mut total = 0f64;
    for v in vars {
        if let Some(g) = grads.get(v) {
            total += g
                .to_dtype(candle_core::DType::F64)?
                .sqr()?
                .sum_all()?
                .to_scalar::<f64>()?;
        }
    }
    Ok(total.sqrt())
}

/// True when every gradient of `vars` is free of NaN and infinity: one host
/// read for the whole set (a sum propagates any NaN or infinity it meets).
pub fn grads_finite(vars: &[&Var], grads: &GradStore) -> Result<bool> {
    let mut total: Option<candle_core::Tensor> = None;
    for v in vars {
        if let Some(g) = grads.get(v) {
            let s = g.sum_all()?.to_dtype(candle_core::DType::F32)?;
            total = Some(match total {
                None => s,
                Some(t) => (t + s)?,
            });
        }
    }
    match total {
        None => Ok(true),
        // An overflow of the sum itself to infinity is treated as non-finite too:
        // gradients that large are as unusable as a NaN.
        Some(t) => Ok(t.to_scalar::<f32>()?.is_finite()),
    }
}

/// The name of the first variable whose gradient holds a NaN or infinity.
pub fn first_non_finite(vars: &[(String, Var)], grads: &GradStore) -> Result<Option<String>> {
    for (name, v) in vars {
        if let Some(g) = grads.get(v) {
            let s = g.to_dtype(candle_core::DType::F64)?.abs()?.sum_all()?;
            if !s.to_scalar::<f64>()?.is_finite() {
                return Ok(Some(name.clone()));
            }
        }
    }
    Ok(None)
}

/// Scales the gradients of `vars` so their joint norm is at most `max_norm`
/// (PyTorch `clip_grad_norm_`); returns the norm before clipping.
pub fn clip_grad_norm(vars: &[&Var], grads: &mut GradStore, max_norm: f64) -> Result<f64> {
    let norm = grad_norm(vars, grads)?;
    let coef = max_norm / (norm + 1e-6);
    if coef < 1.0 {
        for v in vars {
            if let Some(g) = grads.get(v) {
                let g = (g * coef)?;
                grads.insert(v, g);
            }
        }
    }
    Ok(norm)
}

/// Clamps every gradient element of `vars` into `[-value, value]`.
pub fn clip_grad_value(vars: &[&Var], grads: &mut GradStore, value: f64) -> Result<()> {
    for v in vars {
        if let Some(g) = grads.get(v) {
            let g = g.clamp(-value, value)?;
            grads.insert(v, g);
        }
    }
    Ok(())
}

/// Applies `clip` to the gradients of `vars`.
pub fn apply(clip: Clip, vars: &[&Var], grads: &mut GradStore) -> Result<()> {
    match clip {
        Clip::None => Ok(()),
        Clip::GlobalNorm(n) => clip_grad_norm(vars, grads, n).map(|_| ()),
        Clip::Value(v) => clip_grad_value(vars, grads, v),
    }
}
