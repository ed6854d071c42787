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
//! The intercept is never penalised. `fit_gd` reaches the OLS / ridge solution
//! by mini-batch gradient descent through taper-train's Trainer instead.

use crate::check;
use crate::data::{default_names, Dataset};
use crate::error::{Error, Result};
use crate::fitted::{fit_matrix, fitted_accessors, solver_setters, Fitted};
use crate::gd::{self, GdConfig};
use crate::persist;
use crate::preprocessing::StandardScaler;
use crate::stats;
use candle_core::{DType, Device, Tensor};
use nalgebra::{DMatrix, DVector};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

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

    solver_setters!();

    fn validate(&self) -> Result<()> {
        match self.penalty {
            Penalty::None => {}
            Penalty::Ridge { alpha } | Penalty::Lasso { alpha } => check::positive("alpha", alpha)?,
            Penalty::ElasticNet { alpha, l1_ratio } => {
                check::positive("alpha", alpha)?;
                if !(0.0..=1.0).contains(&l1_ratio) {
                    return Err(Error::param(
                        "l1_ratio",
                        format!("must lie in [0, 1], got {l1_ratio}"),
                    ));
                }
            }
        }
        check::solver_limits(self.tol, self.max_iter)
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
        check::finite_vector(y, "y")?;
        let (scaler, xs) = fit_matrix(x, y.len(), &feature_names, self.standardize)?;
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
            fitted: Fitted {
                feature_names,
                scaler,
                n_iter,
                converged,
            },
            summary,
        })
    }
}

/// Gradient-descent fits through taper-train's `Trainer` (see [`crate::gd`]), for data
/// too large to solve at once. OLS and ridge only: they converge to [`LinearRegression::fit`]'s
/// closed-form solution as the learning rate decays.
impl LinearRegression {
    /// Fits by (mini-batch) gradient descent with `cfg`; features are named `x0, x1, ...`.
    pub fn fit_gd(
        &self,
        x: &DMatrix<f64>,
        y: &DVector<f64>,
        cfg: &GdConfig,
    ) -> Result<LinearModel> {
        self.fit_gd_named(x, y, default_names(x.ncols()), cfg)
    }

    /// [`LinearRegression::fit_gd`] on a dataset, keeping its feature names.
    pub fn fit_dataset_gd(&self, ds: &Dataset, cfg: &GdConfig) -> Result<LinearModel> {
        self.fit_gd_named(&ds.x, &ds.y, ds.feature_names.clone(), cfg)
    }

    /// [`LinearRegression::fit_gd`] on tensors, for data too large for a host matrix:
    /// features `(N, p)` and targets `(N,)`. `standardize` must be off (scale the
    /// features beforehand); features are named `x0, x1, ...`.
    pub fn fit_tensors_gd(&self, x: &Tensor, y: &Tensor, cfg: &GdConfig) -> Result<LinearModel> {
        let alpha = self.gd_alpha()?;
        let x = gd::host_features(x, self.standardize, cfg.dtype)?;
        if y.rank() != 1 {
            return Err(Error::param(
                "y",
                format!("must be a vector (N,), got shape {:?}", y.dims()),
            ));
        }
        check::same_len("rows of x and length of y", x.dim(0)?, y.dim(0)?)?;
        gd::finite_tensor(y, "y")?;
        let y = y.to_device(&Device::Cpu)?.to_dtype(cfg.dtype)?;
        let names = default_names(x.dim(1)?);
        self.gd(x, y, alpha, names, None, cfg)
    }

    fn fit_gd_named(
        &self,
        x: &DMatrix<f64>,
        y: &DVector<f64>,
        feature_names: Vec<String>,
        cfg: &GdConfig,
    ) -> Result<LinearModel> {
        let alpha = self.gd_alpha()?;
        check::finite_vector(y, "y")?;
        let (scaler, xs) = fit_matrix(x, y.len(), &feature_names, self.standardize)?;
        let xt = persist::matrix_tensor(&xs, &Device::Cpu, cfg.dtype)?;
        let yt = persist::vector_tensor(y, &Device::Cpu, cfg.dtype)?;
        self.gd(xt, yt, alpha, feature_names, scaler, cfg)
    }

    /// The ridge strength a gradient-descent fit adds (0 for OLS), after validation.
    fn gd_alpha(&self) -> Result<f64> {
        self.validate()?;
        match self.penalty {
            Penalty::None => Ok(0.0),
            Penalty::Ridge { alpha } => Ok(alpha),
            // A subgradient step never lands exactly on zero, so it cannot give the lasso's sparsity.
            Penalty::Lasso { .. } | Penalty::ElasticNet { .. } => Err(Error::param(
                "penalty",
                "gradient-descent fits take no penalty or ridge; lasso and elastic net need `fit` (coordinate descent)",
            )),
        }
    }

    fn gd(
        &self,
        x: Tensor,
        y: Tensor,
        alpha: f64,
        feature_names: Vec<String>,
        scaler: Option<StandardScaler>,
        cfg: &GdConfig,
    ) -> Result<LinearModel> {
        let (n, p) = x.dims2()?;
        let y64 = y.to_dtype(DType::F64)?;
        let mean_y = y64.mean_all()?.to_scalar::<f64>()?;
        let rms_y = y64.sqr()?.mean_all()?.to_scalar::<f64>()?.sqrt();
        let problem = gd::Problem {
            x,
            y,
            loss: gd::Loss::Squared,
            coef_shape: vec![p],
            intercept: self.fit_intercept.then_some((1, mean_y)),
            l2: alpha / n as f64,
        };
        let trained = gd::train(problem, cfg)?;
        let mut model =
            LinearModel::from_tensors(self.clone(), feature_names, scaler, &trained.tensors)?;
        model.fitted.n_iter = trained.steps;
        // The gradient is in units of y, so `tol` is taken relative to y's magnitude.
        model.fitted.converged = trained.grad_max <= self.tol * rms_y.max(f64::MIN_POSITIVE);
        Ok(model)
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
    fitted: Fitted,
    summary: Option<OlsSummary>,
}

impl LinearModel {
    fitted_accessors!(LinearRegression, "regression.linear");

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
        self.fitted.column(name).map(|j| self.coef[j])
    }

    /// `(feature name, coefficient)` pairs in column order.
    pub fn named_coef(&self) -> Vec<(&str, f64)> {
        self.fitted
            .feature_names
            .iter()
            .map(String::as_str)
            .zip(self.coef.iter().copied())
            .collect()
    }

    /// Standard errors, t statistics and p-values; only for unpenalised closed-form fits.
    pub fn summary(&self) -> Option<&OlsSummary> {
        self.summary.as_ref()
    }

    /// The coefficient table a statistician expects, as statsmodels' and R's
    /// `summary` print it: each coefficient's estimate, standard error, t and
    /// two-sided p (from [`LinearModel::summary`]), then the residual standard
    /// error, R², adjusted R² and F. Without a summary (penalised or iterative
    /// fits): the estimates alone.
    pub fn coefficient_table(&self) -> String {
        use std::fmt::Write;
        let mut out = format!(
            "  {:<12} {:>12} {:>10} {:>8} {:>10}\n",
            "", "estimate", "std err", "t", "p"
        );
        let mut row = |name: &str, v: f64, stats: Option<(f64, f64, f64)>| {
            let _ = match stats {
                Some((se, t, p)) => {
                    writeln!(out, "  {name:<12} {v:>12.4} {se:>10.4} {t:>8.3} {p:>10.2e}")
                }
                None => writeln!(out, "  {name:<12} {v:>12.4}"),
            };
        };
        let s = self.summary.as_ref();
        let icpt =
            s.and_then(|s| Some((s.intercept_std_error?, s.intercept_t?, s.intercept_p_value?)));
        if self.settings.fit_intercept {
            row("intercept", self.intercept, icpt);
        }
        for (j, (name, v)) in self.named_coef().into_iter().enumerate() {
            row(
                name,
                v,
                s.map(|s| (s.std_errors[j], s.t_values[j], s.p_values[j])),
            );
        }
        if let Some(s) = s {
            let _ = writeln!(
                out,
                "  residual std error {:.3} on {} df; R² {:.4}, adjusted {:.4}; F {:.2}",
                s.sigma, s.df_resid, s.r2, s.adj_r2, s.f_statistic
            );
        }
        out
    }

    /// Predicted targets for the rows of `x`.
    pub fn predict(&self, x: &DMatrix<f64>) -> Result<DVector<f64>> {
        Ok((self.fitted.prepare(x)? * &self.coef).add_scalar(self.intercept))
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
        let intercept = DVector::from_element(1, self.intercept);
        persist::param_map(self.coef_tensor(device, dtype)?, &intercept, device, dtype)
    }

    /// Rebuilds a model from named tensors (as written by [`LinearModel::to_tensors`]), e.g. after training elsewhere.
    pub fn from_tensors(
        settings: LinearRegression,
        feature_names: Vec<String>,
        scaler: Option<StandardScaler>,
        tensors: &HashMap<String, Tensor>,
    ) -> Result<Self> {
        let fitted = Fitted::new(feature_names, scaler)?;
        let coef = persist::tensor_vector(tensors, "coef", fitted.feature_names.len())?;
        let intercept = persist::tensor_vector(tensors, "intercept", 1)?[0];
        persist::finite_params(coef.as_slice(), &[intercept])?;
        Ok(LinearModel {
            settings,
            coef,
            intercept,
            fitted,
            summary: None,
        })
    }
}

/// The linear model's own settings-file fields.
#[derive(Serialize, Deserialize)]
pub(crate) struct LinearExtra {
    settings: LinearRegression,
    summary: Option<OlsSummary>,
}

impl persist::Persist for LinearModel {
    const FORMAT: &'static str = "taper-regression/linear";
    type Extra = LinearExtra;

    fn parts(&self) -> Result<(&Fitted, HashMap<String, Tensor>, LinearExtra)> {
        let extra = LinearExtra {
            settings: self.settings.clone(),
            summary: self.summary.clone(),
        };
        Ok((
            &self.fitted,
            self.to_tensors(&Device::Cpu, DType::F64)?,
            extra,
        ))
    }

    fn restore(e: LinearExtra, fitted: Fitted, tensors: &HashMap<String, Tensor>) -> Result<Self> {
        let names = fitted.feature_names.clone();
        let mut model = Self::from_tensors(e.settings, names, fitted.scaler.clone(), tensors)?;
        model.fitted = fitted;
        model.summary = e.summary;
        Ok(model)
    }
}
