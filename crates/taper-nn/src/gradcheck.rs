//! Finite-difference gradient checks.
//!
//! A layer whose backward silently returns no gradient (as candle-nn 0.11.1's
//! `LayerNorm::forward` does) trains nothing while raising no error; comparing
//! autograd with central differences catches it.

use candle_core::Result;
use candle_core::{DType, Tensor, Var};

/// The largest discrepancy found by [`check_gradients`].
#[derive(Debug, Clone)]
pub struct GradCheck {
    /// Largest `|analytic - numeric| / max(1, |numeric|)` over all checked entries.
    pub max_error: f64,
    /// Input index and flat element index where it occurred.
    pub worst: (usize, usize),
    /// Number of elements compared.
    pub checked: usize,
    /// Largest absolute numeric gradient (0 would make the check vacuous).
    pub max_numeric: f64,
}

impl GradCheck {
    /// True when the largest error is at most `tol`.
    pub fn passed(&self, tol: f64) -> bool {
        self.max_error <= tol
    }
}

/// Compares the autograd gradient of the scalar `f(inputs)` with respect to each
/// input against central differences with step `eps`, computed in f64.
///
/// Inputs are converted to f64 `Var`s, so `f` must work in f64. At most
/// `max_per_input` elements of each input are probed (evenly spaced).
pub fn check_gradients<F>(
    f: F,
    inputs: &[Tensor],
    eps: f64,
    max_per_input: usize,
) -> Result<GradCheck>
where
    F: Fn(&[Tensor]) -> candle_core::Result<Tensor>,
{
    let vars: Vec<Var> = inputs
        .iter()
        .map(|t| Var::from_tensor(&t.to_dtype(DType::F64)?))
        .collect::<candle_core::Result<_>>()?;
    let as_tensors = |vs: &[Var]| vs.iter().map(|v| v.as_tensor().clone()).collect::<Vec<_>>();
    let out = f(&as_tensors(&vars))?;
    let grads = out.sum_all()?.backward()?;
    let mut report = GradCheck {
        max_error: 0.0,
        worst: (0, 0),
        checked: 0,
        max_numeric: 0.0,
    };
    for (i, var) in vars.iter().enumerate() {
        let analytic: Vec<f64> = match grads.get(var) {
            Some(g) => g.flatten_all()?.to_vec1()?,
            None => vec![0.0; var.elem_count()],
        };
        let base: Vec<f64> = var.as_tensor().flatten_all()?.to_vec1()?;
        let n = base.len();
        let stride = n.div_ceil(max_per_input.max(1)).max(1);
        for j in (0..n).step_by(stride) {
            let eval = |delta: f64| -> Result<f64> {
                let mut v = base.clone();
                v[j] += delta;
                let t = Tensor::from_vec(v, var.shape(), var.device())?;
                let mut ins = as_tensors(&vars);
                ins[i] = t;
                f(&ins)?.sum_all()?.to_scalar::<f64>()
            };
            let numeric = (eval(eps)? - eval(-eps)?) / (2.0 * eps);
            let err = (analytic[j] - numeric).abs() / numeric.abs().max(1.0);
            report.checked += 1;
            report.max_numeric = report.max_numeric.max(numeric.abs());
            if err > report.max_error {
                report.max_error = err;
                report.worst = (i, j);
            }
        }
    }
    Ok(report)
}

/// [`check_gradients`] for the parameters of a layer: compares the autograd
/// gradient of the scalar `f()` with respect to each of `params` (f64 `Var`s, a
/// layer's weights as its `VarBuilder` made them) against central differences,
/// setting each probed element to `value ± eps` in place and restoring it.
/// Inputs of `f` are whatever it closes over. At most `max_per_param` elements
/// of each parameter are probed (evenly spaced).
///
/// # Errors
/// A parameter that is not f64, or whatever `f` raises.
pub fn check_param_gradients<F>(
    f: F,
    params: &[Var],
    eps: f64,
    max_per_param: usize,
) -> Result<GradCheck>
where
    F: Fn() -> candle_core::Result<Tensor>,
{
    if let Some(p) = params.iter().find(|p| p.dtype() != DType::F64) {
        candle_core::bail!(
            "check_param_gradients: parameters must be f64, found {:?}",
            p.dtype()
        );
    }
    let grads = f()?.sum_all()?.backward()?;
    let mut report = GradCheck {
        max_error: 0.0,
        worst: (0, 0),
        checked: 0,
        max_numeric: 0.0,
    };
    for (i, var) in params.iter().enumerate() {
        let analytic: Vec<f64> = match grads.get(var) {
            Some(g) => g.flatten_all()?.to_vec1()?,
            None => vec![0.0; var.elem_count()],
        };
        let base: Vec<f64> = var.as_tensor().flatten_all()?.to_vec1()?;
        let n = base.len();
        let stride = n.div_ceil(max_per_param.max(1)).max(1);
        let set = |v: &[f64]| var.set(&Tensor::from_slice(v, var.shape(), var.device())?);
        for j in (0..n).step_by(stride) {
            let mut v = base.clone();
            let mut eval = |delta: f64| -> Result<f64> {
                v[j] = base[j] + delta;
                set(&v)?;
                f()?.sum_all()?.to_scalar::<f64>()
            };
            let (up, down) = (eval(eps), eval(-eps));
            set(&base)?;
            let numeric = (up? - down?) / (2.0 * eps);
            let err = (analytic[j] - numeric).abs() / numeric.abs().max(1.0);
            report.checked += 1;
            report.max_numeric = report.max_numeric.max(numeric.abs());
            if err > report.max_error {
                report.max_error = err;
                report.worst = (i, j);
            }
        }
    }
    Ok(report)
}
