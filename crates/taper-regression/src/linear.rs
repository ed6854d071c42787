//! Linear regression `y = θ0 + θ·x + ε`: ordinary least squares and ridge in
//! closed form (Householder QR), lasso and elastic net by coordinate descent.
//!
//! Objectives (scikit-learn's, so figures can be checked against it):
//! - OLS: `||y - Xw - b||²`
//! - ridge: `||y - Xw - b||² + α||w||²`
//! - elastic net: `(1/(2n))||y - Xw - b||² + α·ρ·||w||₁ + ½·α·(1-ρ)·||w||²`, lasso is `ρ = 1`.
//!
//! Ridge's α and the elastic net's α live on different scales (sum vs mean of
//! squared residuals), exactly as in scikit-learn's `Ridge` and `ElasticNet`.
//! The intercept is never penalised.

use crate::check;
use crate::data::{default_names, Dataset};
use crate::error::{Error, Result};
use crate::persist;
use crate::preprocessing::StandardScaler;
use crate::stats;
use candle_core::{DType, Device, Tensor};
use nalgebra::{DMatrix, DVector};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// The penalty on the coefficients (never on the intercept).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Penalty {
    /// Ordinary least squares.
    None,
    /// L2: adds `α||w||²` to the residual sum of squares.
    Ridge {
        /// Penalty strength, > 0.
        alpha: f64,
    },
    /// L1 on the mean-squared-error scale: `(1/(2n))RSS + α||w||₁`.
    Lasso {
        /// Penalty strength, > 0.
        alpha: f64,
    },
    /// L1 + L2 mix on the mean-squared-error scale (scikit-learn's `ElasticNet`).
    ElasticNet {
        /// Overall strength, > 0.
        alpha: f64,
        /// Share of L1 in `[0, 1]`.
        l1_ratio: f64,
    },
}

/// Settings of a linear regression; call [`LinearRegression::fit`] to get a [`LinearModel`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearRegression {
    /// Coefficient penalty.
    pub penalty: Penalty,
    /// Fit an unpenalised intercept (otherwise the line goes through the origin).
    pub fit_intercept: bool,
    /// Standardise features on the training rows first; the model then applies the same scaling when predicting.
    pub standardize: bool,
    /// Coordinate-descent sweeps allowed (lasso / elastic net only).
    pub max_iter: usize,
    /// Coordinate-descent stopping tolerance on the duality gap, relative to `||y||²`.
    pub tol: f64,
}

impl Default for LinearRegression {
    fn default() -> Self {
        LinearRegression {
            penalty: Penalty::None,
            fit_intercept: true,
            standardize: false,
            max_iter: 1000,
            tol: 1e-4,
        }
    }
}

impl LinearRegression {
    /// Ordinary least squares.
    pub fn ols() -> Self {
        Self::default()
    }

    /// Ridge regression with strength `alpha` (scikit-learn `Ridge` scale).
    pub fn ridge(alpha: f64) -> Self {
        Self::with_penalty(Penalty::Ridge { alpha })
    }

    /// Lasso with strength `alpha` (scikit-learn `Lasso` scale).
    pub fn lasso(alpha: f64) -> Self {
        Self::with_penalty(Penalty::Lasso { alpha })
    }

    /// Elastic net with strength `alpha` and L1 share `l1_ratio` (scikit-learn `ElasticNet`).
    pub fn elastic_net(alpha: f64, l1_ratio: f64) -> Self {
        Self::with_penalty(Penalty::ElasticNet { alpha, l1_ratio })
    }

    /// Any penalty, with default settings otherwise.
    pub fn with_penalty(penalty: Penalty) -> Self {
        LinearRegression {
            penalty,
            ..Self::default()
        }
    }

    /// Turns the intercept on or off.
    pub fn intercept(mut self, on: bool) -> Self {
        self.fit_intercept = on;
        self
    }

    /// Turns built-in standardisation on or off.
    pub fn standardize(mut self, on: bool) -> Self {
        self.standardize = on;
        self
    }

    /// Sets the coordinate-descent sweep limit.
    pub fn max_iter(mut self, n: usize) -> Self {
        self.max_iter = n;
        self
    }

    /// Sets the coordinate-descent tolerance.
    pub fn tol(mut self, tol: f64) -> Self {
        self.tol = tol;
        self
    }

    fn validate(&self) -> Result<()> {
        let positive = |name: &'static str, a: f64| {
            if a.is_finite() && a > 0.0 {
                Ok(())
            } else {
                Err(Error::param(
                    name,
                    format!("must be finite and > 0, got {a}"),
                ))
            }
        };
        match self.penalty {
            Penalty::None => {}
            Penalty::Ridge { alpha } | Penalty::Lasso { alpha } => positive("alpha", alpha)?,
            Penalty::ElasticNet { alpha, l1_ratio } => {
                positive("alpha", alpha)?;
                if !(0.0..=1.0).contains(&l1_ratio) {
                    return Err(Error::param(
                        "l1_ratio",
                        format!("must lie in [0, 1], got {l1_ratio}"),
                    ));
                }
            }
        }
        if !(self.tol.is_finite() && self.tol > 0.0) {
            return Err(Error::param(
                "tol",
                format!("must be > 0, got {}", self.tol),
            ));
        }
        if self.max_iter == 0 {
            return Err(Error::param("max_iter", "must be at least 1"));
        }
        Ok(())
    }

    /// Fits on a dataset, keeping its feature names for reading the coefficients.
    pub fn fit_dataset(&self, ds: &Dataset) -> Result<LinearModel> {
        self.fit_named(&ds.x, &ds.y, ds.feature_names.clone())
    }

    /// Fits on a feature matrix and target; features are named `x0, x1, ...`.
    pub fn fit(&self, x: &DMatrix<f64>, y: &DVector<f64>) -> Result<LinearModel> {
        self.fit_named(x, y, default_names(x.ncols()))
    }

    /// Fits with explicit feature names (one per column of `x`).
    pub fn fit_named(
        &self,
        x: &DMatrix<f64>,
        y: &DVector<f64>,
        feature_names: Vec<String>,
    ) -> Result<LinearModel> {
        self.validate()?;
        check::fit_inputs(x, y.len())?;
        check::finite_vector(y, "y")?;
        check::same_len(
            "feature names and columns of x",
            feature_names.len(),
            x.ncols(),
        )?;
        let (scaler, xs) = if self.standardize {
            let (s, t) = StandardScaler::fit_transform(x)?;
            (Some(s), t)
        } else {
            (None, x.clone())
        };
        let n = xs.nrows();
        let p = xs.ncols();
        // Centring removes the intercept from the problem, so it is never penalised
        // and the solvers below only see the slopes.
        let (x_mean, y_mean) = if self.fit_intercept {
            let xm = DVector::from_fn(p, |j, _| xs.column(j).mean());
            (xm, y.mean())
        } else {
            (DVector::zeros(p), 0.0)
        };
        let xc = DMatrix::from_fn(n, p, |i, j| xs[(i, j)] - x_mean[j]);
        let yc = y.add_scalar(-y_mean);

        let mut n_iter = 1;
        let mut converged = true;
        let mut ols_parts = None;
        let coef = match self.penalty {
            Penalty::None => {
                let unknowns = p + usize::from(self.fit_intercept);
                if n < unknowns {
                    return Err(Error::Underdetermined {
                        n_samples: n,
                        n_features: p,
                        intercept: self.fit_intercept,
                        n_unknowns: unknowns,
                    });
                }
                let (coef, r_inv) = least_squares(&xc, &yc, &feature_names)?;
                ols_parts = Some(r_inv);
                coef
            }
            Penalty::Ridge { alpha } => {
                // QR of [X; √α·I] solves the ridge normal equations without squaring X's condition number.
                let mut aug = DMatrix::zeros(n + p, p);
                aug.view_mut((0, 0), (n, p)).copy_from(&xc);
                for j in 0..p {
                    aug[(n + j, j)] = alpha.sqrt();
                }
                let mut rhs = DVector::zeros(n + p);
                rhs.rows_mut(0, n).copy_from(&yc);
                least_squares(&aug, &rhs, &feature_names)?.0
            }
            Penalty::Lasso { alpha } => {
                let cd = coordinate_descent(&xc, &yc, alpha, 1.0, self.max_iter, self.tol);
                n_iter = cd.n_iter;
                converged = cd.converged;
                cd.coef
            }
            Penalty::ElasticNet { alpha, l1_ratio } => {
                let cd = coordinate_descent(&xc, &yc, alpha, l1_ratio, self.max_iter, self.tol);
                n_iter = cd.n_iter;
                converged = cd.converged;
                cd.coef
            }
        };
        let intercept = if self.fit_intercept {
            y_mean - coef.dot(&x_mean)
        } else {
            0.0
        };
        let summary = ols_parts.map(|r_inv| {
            ols_summary(
                &xc,
                &yc,
                &coef,
                &r_inv,
                &x_mean,
                self.fit_intercept.then_some(intercept),
            )
        });
        Ok(LinearModel {
            settings: self.clone(),
            coef,
            intercept,
            feature_names,
            scaler,
            n_iter,
            converged,
            summary,
        })
    }
}

/// Least squares by Householder QR; also returns `R⁻¹` for the coefficient covariance.
fn least_squares(
    a: &DMatrix<f64>,
    b: &DVector<f64>,
    names: &[String],
) -> Result<(DVector<f64>, DMatrix<f64>)> {
    let p = a.ncols();
    let qr = a.clone().qr();
    let r = qr.r();
    // Without pivoting, a tiny R[j,j] means column j adds (almost) nothing beyond the
    // columns before it; compare with the column's own norm so units do not matter.
    for j in 0..p {
        let norm = a.column(j).norm();
        if norm == 0.0 || r[(j, j)].abs() <= 1e-10 * norm {
            return Err(Error::Singular {
                feature: names.get(j).cloned().unwrap_or_else(|| format!("x{j}")),
            });
        }
    }
    let mut qtb = b.clone();
    qr.q_tr_mul(&mut qtb);
    let qtb = qtb.rows(0, p).into_owned();
    let singular = || Error::Singular {
        feature: "(triangular solve)".into(),
    };
    let coef = r.solve_upper_triangular(&qtb).ok_or_else(singular)?;
    let r_inv = r
        .solve_upper_triangular(&DMatrix::identity(p, p))
        .ok_or_else(singular)?;
    Ok((coef, r_inv))
}

/// Classical OLS inference: standard errors from `σ²(XᵀX)⁻¹`, t statistics and two-sided p-values.
fn ols_summary(
    xc: &DMatrix<f64>,
    yc: &DVector<f64>,
    coef: &DVector<f64>,
    r_inv: &DMatrix<f64>,
    x_mean: &DVector<f64>,
    intercept: Option<f64>,
) -> OlsSummary {
    let n = xc.nrows() as f64;
    let p = xc.ncols() as f64;
    let resid = yc - xc * coef;
    let rss = resid.norm_squared();
    // With an intercept yc is centred, so this is the total sum of squares about the mean;
    // without one it is the uncentred sum, the usual convention for through-origin fits.
    let tss = yc.norm_squared();
    let k0 = if intercept.is_some() { 1.0 } else { 0.0 };
    let df = n - p - k0;
    let sigma2 = if df > 0.0 { rss / df } else { f64::NAN };
    // diag((XᵀX)⁻¹) = diag(R⁻¹R⁻ᵀ) = squared row norms of R⁻¹.
    let std_errors: Vec<f64> = (0..xc.ncols())
        .map(|j| (sigma2 * r_inv.row(j).norm_squared()).sqrt())
        .collect();
    let t_values: Vec<f64> = coef.iter().zip(&std_errors).map(|(c, s)| c / s).collect();
    let p_values = t_values
        .iter()
        .map(|&t| stats::t_two_sided_p(t, df))
        .collect();
    let (intercept_std_error, intercept_t, intercept_p_value) = match intercept {
        Some(b) => {
            // Var(b) = σ²(1/n + x̄ᵀ(XᵀX)⁻¹x̄) for the centred design, and x̄ᵀ(XᵀX)⁻¹x̄ = ||R⁻ᵀx̄||².
            let v = r_inv.transpose() * x_mean;
            let se = (sigma2 * (1.0 / n + v.norm_squared())).sqrt();
            let t = b / se;
            (Some(se), Some(t), Some(stats::t_two_sided_p(t, df)))
        }
        None => (None, None, None),
    };
    let r2 = if tss > 0.0 { 1.0 - rss / tss } else { f64::NAN };
    let adj_r2 = if df > 0.0 {
        1.0 - (1.0 - r2) * (n - k0) / df
    } else {
        f64::NAN
    };
    let f_statistic = if df > 0.0 && p > 0.0 && r2 < 1.0 {
        (r2 / p) / ((1.0 - r2) / df)
    } else {
        f64::NAN
    };
    OlsSummary {
        std_errors,
        t_values,
        p_values,
        intercept_std_error,
        intercept_t,
        intercept_p_value,
        sigma: sigma2.sqrt(),
        df_resid: df,
        r2,
        adj_r2,
        f_statistic,
    }
}

/// Classical inference for an OLS fit (Gaussian errors, homoscedastic).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OlsSummary {
    /// Standard error of each coefficient.
    pub std_errors: Vec<f64>,
    /// `coef / std_error` for each coefficient.
    pub t_values: Vec<f64>,
    /// Two-sided p-value of each t statistic (H0: coefficient = 0).
    pub p_values: Vec<f64>,
    /// Standard error of the intercept, when one was fitted.
    pub intercept_std_error: Option<f64>,
    /// t statistic of the intercept, when one was fitted.
    pub intercept_t: Option<f64>,
    /// Two-sided p-value of the intercept, when one was fitted.
    pub intercept_p_value: Option<f64>,
    /// Residual standard error `sqrt(RSS / df_resid)`.
    pub sigma: f64,
    /// Residual degrees of freedom `n - p - [intercept]`.
    pub df_resid: f64,
    /// Training R² (uncentred when there is no intercept).
    pub r2: f64,
    /// R² adjusted for the number of coefficients.
    pub adj_r2: f64,
    /// F statistic of the regression against the intercept-only model.
    pub f_statistic: f64,
}

struct CdResult {
    coef: DVector<f64>,
    n_iter: usize,
    converged: bool,
}

/// Cyclic coordinate descent on `(1/(2n))||y - Xw||² + α·ρ·||w||₁ + ½·α·(1-ρ)·||w||²`.
fn coordinate_descent(
    x: &DMatrix<f64>,
    y: &DVector<f64>,
    alpha: f64,
    l1_ratio: f64,
    max_iter: usize,
    tol: f64,
) -> CdResult {
    let n = x.nrows();
    let p = x.ncols();
    // Work on the objective multiplied by n, which makes each coordinate update a plain ratio.
    let l1 = alpha * l1_ratio * n as f64;
    let l2 = alpha * (1.0 - l1_ratio) * n as f64;
    let col_sq: Vec<f64> = x.column_iter().map(|c| c.norm_squared()).collect();
    let mut w = DVector::zeros(p);
    let mut resid = y.clone();
    let gap_tol = tol * y.norm_squared();
    for sweep in 1..=max_iter {
        let mut max_change: f64 = 0.0;
        let mut max_w: f64 = 0.0;
        for j in 0..p {
            if col_sq[j] == 0.0 {
                continue;
            }
            let old = w[j];
            // ρ_j = x_jᵀ(r + x_j·w_j): the fit column j would get on its own residual.
            let rho = x.column(j).dot(&resid) + col_sq[j] * old;
            let new = soft_threshold(rho, l1) / (col_sq[j] + l2);
            if new != old {
                resid.axpy(old - new, &x.column(j), 1.0);
                w[j] = new;
            }
            max_change = max_change.max((new - old).abs());
            max_w = max_w.max(new.abs());
        }
        // The duality gap bounds the distance to the optimum; check it only once the
        // coefficients have stopped moving, as it costs a full Xᵀr.
        if max_w == 0.0 || max_change / max_w < tol || sweep == max_iter {
            let gap = duality_gap(x, y, &w, &resid, l1, l2);
            if gap <= gap_tol {
                return CdResult {
                    coef: w,
                    n_iter: sweep,
                    converged: true,
                };
            }
        }
    }
    CdResult {
        coef: w,
        n_iter: max_iter,
        converged: false,
    }
}

fn soft_threshold(z: f64, t: f64) -> f64 {
    if z > t {
        z - t
    } else if z < -t {
        z + t
    } else {
        0.0
    }
}

/// Primal minus dual objective (times n) for the elastic net; zero exactly at the optimum.
fn duality_gap(
    x: &DMatrix<f64>,
    y: &DVector<f64>,
    w: &DVector<f64>,
    resid: &DVector<f64>,
    l1: f64,
    l2: f64,
) -> f64 {
    let xtr = x.tr_mul(resid) - w * l2;
    let dual_norm = xtr.amax();
    let r2 = resid.norm_squared();
    // Scale the residual into the dual-feasible set when the L1 constraint is violated.
    let scale = if l1 > 0.0 && dual_norm > l1 {
        l1 / dual_norm
    } else {
        1.0
    };
    0.5 * r2 * (1.0 + scale * scale) + l1 * w.lp_norm(1) - scale * resid.dot(y)
        + 0.5 * l2 * (1.0 + scale * scale) * w.norm_squared()
}

/// A fitted linear regression.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearModel {
    settings: LinearRegression,
    coef: DVector<f64>,
    intercept: f64,
    feature_names: Vec<String>,
    scaler: Option<StandardScaler>,
    n_iter: usize,
    converged: bool,
    summary: Option<OlsSummary>,
}

impl LinearModel {
    /// Slopes, one per feature (on the standardised scale when `standardize` was on).
    pub fn coef(&self) -> &[f64] {
        self.coef.as_slice()
    }

    /// The intercept θ0 (0 when fitted without one).
    pub fn intercept(&self) -> f64 {
        self.intercept
    }

    /// The coefficient of the feature called `name`.
    pub fn coef_of(&self, name: &str) -> Option<f64> {
        self.feature_names
            .iter()
            .position(|n| n == name)
            .map(|j| self.coef[j])
    }

    /// `(feature name, coefficient)` pairs in column order.
    pub fn named_coef(&self) -> Vec<(&str, f64)> {
        self.feature_names
            .iter()
            .map(String::as_str)
            .zip(self.coef.iter().copied())
            .collect()
    }

    /// Feature names, one per column the model expects.
    pub fn feature_names(&self) -> &[String] {
        &self.feature_names
    }

    /// The settings the model was fitted with.
    pub fn settings(&self) -> &LinearRegression {
        &self.settings
    }

    /// The scaler applied to inputs before the coefficients, if `standardize` was on.
    pub fn scaler(&self) -> Option<&StandardScaler> {
        self.scaler.as_ref()
    }

    /// Coordinate-descent sweeps used (1 for closed-form fits).
    pub fn n_iter(&self) -> usize {
        self.n_iter
    }

    /// False when coordinate descent hit `max_iter` before the tolerance.
    pub fn converged(&self) -> bool {
        self.converged
    }

    /// Standard errors, t statistics and p-values; only for unpenalised fits.
    pub fn summary(&self) -> Option<&OlsSummary> {
        self.summary.as_ref()
    }

    /// Predicted targets for the rows of `x`.
    pub fn predict(&self, x: &DMatrix<f64>) -> Result<DVector<f64>> {
        check::predict_input(x, self.coef.len())?;
        let xs = match &self.scaler {
            Some(s) => s.transform(x)?,
            None => x.clone(),
        };
        Ok((xs * &self.coef).add_scalar(self.intercept))
    }

    /// R² of the predictions on `(x, y)`.
    pub fn score(&self, x: &DMatrix<f64>, y: &DVector<f64>) -> Result<f64> {
        let pred = self.predict(x)?;
        crate::metrics::r2(y.as_slice(), pred.as_slice())
    }

    /// The slopes as a 1-D candle tensor of shape `[n_features]`.
    pub fn coef_tensor(&self, device: &Device, dtype: DType) -> Result<Tensor> {
        persist::vector_tensor(&self.coef, device, dtype)
    }

    /// Parameters as named tensors: `coef` `[n_features]` and `intercept` `[1]`.
    pub fn to_tensors(&self, device: &Device, dtype: DType) -> Result<HashMap<String, Tensor>> {
        let mut m = HashMap::new();
        m.insert("coef".to_string(), self.coef_tensor(device, dtype)?);
        m.insert(
            "intercept".to_string(),
            persist::vector_tensor(&DVector::from_element(1, self.intercept), device, dtype)?,
        );
        Ok(m)
    }

    /// Rebuilds a model from named tensors (as written by [`LinearModel::to_tensors`]), e.g. after training elsewhere.
    pub fn from_tensors(
        settings: LinearRegression,
        feature_names: Vec<String>,
        scaler: Option<StandardScaler>,
        tensors: &HashMap<String, Tensor>,
    ) -> Result<Self> {
        let p = feature_names.len();
        let coef = persist::tensor_vector(tensors, "coef", p)?;
        let intercept = persist::tensor_vector(tensors, "intercept", 1)?[0];
        persist::finite_params(coef.as_slice(), "coef")?;
        persist::finite_params(&[intercept], "intercept")?;
        if let Some(s) = &scaler {
            check::n_features(p, s.n_features())?;
        }
        Ok(LinearModel {
            settings,
            coef,
            intercept,
            feature_names,
            scaler,
            n_iter: 0,
            converged: true,
            summary: None,
        })
    }

    /// Saves the parameters to `path` (safetensors) and the settings beside it (`.json`), each atomically.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let mut tensors = self.to_tensors(&Device::Cpu, DType::F64)?;
        let meta = LinearMeta {
            format: LINEAR_FORMAT.into(),
            version: 1,
            settings: self.settings.clone(),
            feature_names: self.feature_names.clone(),
            scaler: persist::put_scaler(self.scaler.as_ref(), &mut tensors)?,
            n_iter: self.n_iter,
            converged: self.converged,
            summary: self.summary.clone(),
        };
        persist::save_tensors(path, &tensors)?;
        persist::save_json(&persist::settings_path(path), &meta)
    }

    /// Loads a model written by [`LinearModel::save`].
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let json_path = persist::settings_path(path);
        let meta: LinearMeta = persist::load_meta(&json_path, LINEAR_FORMAT)?;
        let tensors = persist::load_tensors(path)?;
        let scaler =
            persist::take_scaler(meta.scaler.as_ref(), &tensors).map_err(|e| Error::ModelFile {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        let mut model = Self::from_tensors(meta.settings, meta.feature_names, scaler, &tensors)
            .map_err(|e| Error::ModelFile {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        model.n_iter = meta.n_iter;
        model.converged = meta.converged;
        model.summary = meta.summary;
        Ok(model)
    }
}

const LINEAR_FORMAT: &str = "taper-regression/linear";

#[derive(Serialize, Deserialize)]
struct LinearMeta {
    format: String,
    version: u32,
    settings: LinearRegression,
    feature_names: Vec<String>,
    scaler: Option<persist::ScalerMeta>,
    n_iter: usize,
    converged: bool,
    summary: Option<OlsSummary>,
}
