//! Input validation shared by the estimators, so every entry point rejects
//! bad shapes and non-finite values with the same typed errors.

use crate::error::{Error, Result};
use nalgebra::{DMatrix, DVector};

pub(crate) fn finite_matrix(x: &DMatrix<f64>, what: &'static str) -> Result<()> {
    for column in 0..x.ncols() {
        for row in 0..x.nrows() {
            if !x[(row, column)].is_finite() {
                return Err(Error::NonFiniteInput { what, row, column });
            }
        }
    }
    Ok(())
}

pub(crate) fn finite_vector(y: &DVector<f64>, what: &'static str) -> Result<()> {
    finite_slice(y.as_slice(), what)
}

pub(crate) fn finite_slice(y: &[f64], what: &'static str) -> Result<()> {
    match y.iter().position(|v| !v.is_finite()) {
        Some(row) => Err(Error::NonFiniteInput {
            what,
            row,
            column: 0,
        }),
        None => Ok(()),
    }
}

pub(crate) fn non_empty(x: &DMatrix<f64>, what: &'static str) -> Result<()> {
    if x.nrows() == 0 || x.ncols() == 0 {
        return Err(Error::EmptyInput { what });
    }
    Ok(())
}

pub(crate) fn same_len(what: &'static str, left: usize, right: usize) -> Result<()> {
    if left != right {
        return Err(Error::LengthMismatch { what, left, right });
    }
    Ok(())
}

pub(crate) fn n_features(expected: usize, found: usize) -> Result<()> {
    if expected != found {
        return Err(Error::FeatureMismatch { expected, found });
    }
    Ok(())
}

/// Validates a design matrix and target for fitting.
pub(crate) fn fit_inputs(x: &DMatrix<f64>, y_len: usize) -> Result<()> {
    non_empty(x, "x")?;
    same_len("rows of x and length of y", x.nrows(), y_len)?;
    finite_matrix(x, "x")
}

/// Validates a matrix for prediction against the fitted width.
pub(crate) fn predict_input(x: &DMatrix<f64>, expected: usize) -> Result<()> {
    n_features(expected, x.ncols())?;
    finite_matrix(x, "x")
}

/// Rejects a hyper-parameter that must be finite and strictly positive.
pub(crate) fn positive(name: &'static str, value: f64) -> Result<()> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(Error::param(
            name,
            format!("must be finite and > 0, got {value}"),
        ))
    }
}

/// Validates an iterative solver's stopping rule.
pub(crate) fn solver_limits(tol: f64, max_iter: usize) -> Result<()> {
    positive("tol", tol)?;
    if max_iter == 0 {
        return Err(Error::param("max_iter", "must be at least 1"));
    }
    Ok(())
}
