//! Logistic regression `P(y=1|x) = σ(θ0 + θ·x)`, binary and multinomial
//! (softmax), with scikit-learn's L2 convention: minimise
//! `C·Σᵢ loss(xᵢ, yᵢ) + ½||W||²`, intercepts unpenalised.
//!
//! Binary fits use Newton's method (IRLS), whose quadratic convergence gives
//! coefficients accurate to many digits in a handful of steps; multinomial
//! fits use L-BFGS, since the full Hessian grows with `(classes·features)²`.
//! Both run on the host in f64 with nalgebra. `fit_gd` minimises the same
//! objective by mini-batch gradient descent through taper-train's Trainer.

use crate::check;
use crate::data::{default_names, Dataset};
use crate::error::{Error, Result};
use crate::fitted::{fit_matrix, fitted_accessors, solver_setters, Fitted};
use crate::gd::{self, GdConfig};
use crate::persist;
use crate::preprocessing::StandardScaler;
use candle_core::{DType, Device, Tensor};
use nalgebra::{DMatrix, DVector};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Settings of a logistic regression; call [`LogisticRegression::fit`] to get a [`LogisticModel`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogisticRegression {
    /// Inverse L2 strength (scikit-learn's `C`): larger means weaker regularisation.
    pub c: f64,
    /// Fit unpenalised intercepts.
    pub fit_intercept: bool,
    /// Standardise features on the training rows first; the model then applies the same scaling when predicting.
    pub standardize: bool,
    /// Newton or L-BFGS iterations allowed.
    pub max_iter: usize,
    /// Stop once the max-norm of the gradient of the per-sample objective falls below this.
    pub tol: f64,
}

impl Default for LogisticRegression {
    fn default() -> Self {
        LogisticRegression {
            c: 1.0,
            fit_intercept: true,
            standardize: false,
            max_iter: 1000,
            tol: 1e-6,
        }
    }
}

impl LogisticRegression {
    /// Default settings: `C = 1`, intercept on, no standardisation.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the inverse regularisation strength `C`.
    pub fn c(mut self, c: f64) -> Self {
        self.c = c;
        self
    }

    solver_setters!();

    fn validate(&self) -> Result<()> {
        check::positive("c", self.c)?;
        check::solver_limits(self.tol, self.max_iter)
    }

    /// Fits on a dataset whose target holds class labels, keeping its feature and class names.
    pub fn fit_dataset(&self, ds: &Dataset) -> Result<LogisticModel> {
        let labels = ds.labels()?;
        self.fit_named(
            &ds.x,
            &labels,
            ds.feature_names.clone(),
            ds.class_names.clone(),
        )
    }

    /// Fits on features and class labels; features are named `x0, x1, ...`.
    pub fn fit(&self, x: &DMatrix<f64>, labels: &[usize]) -> Result<LogisticModel> {
        self.fit_named(x, labels, default_names(x.ncols()), Vec::new())
    }

    /// Fits with explicit feature names and class names (indexed by label; may be empty).
    pub fn fit_named(
        &self,
        x: &DMatrix<f64>,
        labels: &[usize],
        feature_names: Vec<String>,
        class_names: Vec<String>,
    ) -> Result<LogisticModel> {
        self.validate()?;
        let (scaler, xs) = fit_matrix(x, labels.len(), &feature_names, self.standardize)?;
        let (classes, names, index) = encode_labels(labels, &class_names)?;
        let fit = if classes.len() == 2 {
            let y: Vec<f64> = index.iter().map(|&i| i as f64).collect();
            newton_binary(&xs, &y, self)
        } else {
            lbfgs_multinomial(&xs, &index, classes.len(), self)
        };
        Ok(LogisticModel {
            settings: self.clone(),
            classes,
            class_names: names,
            coef: fit.coef,
            intercept: fit.intercept,
            threshold: 0.5,
            fitted: Fitted {
                feature_names,
                scaler,
                n_iter: fit.n_iter,
                converged: fit.converged,
            },
        })
    }
}

/// Gradient-descent fits through taper-train's `Trainer` (see [`crate::gd`]). They
/// minimise the same objective as [`LogisticRegression::fit`], whose Newton / L-BFGS
/// solution stays the default and the reference they approach.
impl LogisticRegression {
    /// Fits by (mini-batch) gradient descent with `cfg`; features are named `x0, x1, ...`.
    pub fn fit_gd(
        &self,
        x: &DMatrix<f64>,
        labels: &[usize],
        cfg: &GdConfig,
    ) -> Result<LogisticModel> {
        self.fit_gd_named(x, labels, default_names(x.ncols()), Vec::new(), cfg)
    }

    /// [`LogisticRegression::fit_gd`] on a dataset, keeping its feature and class names.
    pub fn fit_dataset_gd(&self, ds: &Dataset, cfg: &GdConfig) -> Result<LogisticModel> {
        let labels = ds.labels()?;
        self.fit_gd_named(
            &ds.x,
            &labels,
            ds.feature_names.clone(),
            ds.class_names.clone(),
            cfg,
        )
    }

    /// [`LogisticRegression::fit_gd`] on tensors, for data too large for a host matrix:
    /// features `(N, p)` and integer labels `(N,)`, of any dtype. `standardize` must be
    /// off (scale the features beforehand); features are named `x0, x1, ...`.
    pub fn fit_tensors_gd(
        &self,
        x: &Tensor,
        labels: &Tensor,
        cfg: &GdConfig,
    ) -> Result<LogisticModel> {
        self.validate()?;
        let x = gd::host_features(x, self.standardize, cfg.dtype)?;
        if labels.rank() != 1 {
            return Err(Error::param(
                "labels",
                format!("must be a vector (N,), got shape {:?}", labels.dims()),
            ));
        }
        let floats: Vec<f64> = labels
            .to_dtype(DType::F64)?
            .to_device(&Device::Cpu)?
            .to_vec1()?;
        let labels = crate::data::labels_from_floats(&floats)?;
        check::same_len("rows of x and length of labels", x.dim(0)?, labels.len())?;
        let names = default_names(x.dim(1)?);
        self.gd(x, &labels, names, Vec::new(), None, cfg)
    }

    fn fit_gd_named(
        &self,
        x: &DMatrix<f64>,
        labels: &[usize],
        feature_names: Vec<String>,
        class_names: Vec<String>,
        cfg: &GdConfig,
    ) -> Result<LogisticModel> {
        self.validate()?;
        let (scaler, xs) = fit_matrix(x, labels.len(), &feature_names, self.standardize)?;
        let xt = persist::matrix_tensor(&xs, &Device::Cpu, cfg.dtype)?;
        self.gd(xt, labels, feature_names, class_names, scaler, cfg)
    }

    fn gd(
        &self,
        x: Tensor,
        labels: &[usize],
        feature_names: Vec<String>,
        class_names: Vec<String>,
        scaler: Option<StandardScaler>,
        cfg: &GdConfig,
    ) -> Result<LogisticModel> {
        let (classes, names, index) = encode_labels(labels, &class_names)?;
        let (n, p) = x.dims2()?;
        let k = classes.len();
        let (loss, y, rows) = if k == 2 {
            let y: Vec<f64> = index.iter().map(|&i| i as f64).collect();
            let y = Tensor::from_vec(y, n, &Device::Cpu)?.to_dtype(cfg.dtype)?;
            (gd::Loss::Logistic, y, 1)
        } else {
            let y: Vec<u32> = index.iter().map(|&i| i as u32).collect();
            (gd::Loss::Softmax, Tensor::from_vec(y, n, &Device::Cpu)?, k)
        };
        let problem = gd::Problem {
            x,
            y,
            loss,
            coef_shape: vec![rows, p],
            intercept: self.fit_intercept.then_some((rows, 0.0)),
            l2: 1.0 / (2.0 * self.c * n as f64),
        };
        let trained = gd::train(problem, cfg)?;
        let mut model = LogisticModel::from_tensors(
            self.clone(),
            classes,
            names,
            feature_names,
            scaler,
            &trained.tensors,
        )?;
        model.fitted.n_iter = trained.steps;
        // `tol` bounds the same per-sample gradient the Newton and L-BFGS solvers stop on.
        model.fitted.converged = trained.grad_max <= self.tol;
        Ok(model)
    }
}

/// The sorted distinct labels, their names (from `class_names` by label, else the
/// label itself) and each sample's position among them.
fn encode_labels(
    labels: &[usize],
    class_names: &[String],
) -> Result<(Vec<usize>, Vec<String>, Vec<usize>)> {
    let mut classes = labels.to_vec();
    classes.sort_unstable();
    classes.dedup();
    match classes.as_slice() {
        [] => return Err(Error::EmptyInput { what: "labels" }),
        [only] => return Err(Error::SingleClass { class: *only }),
        _ => {}
    }
    let names = classes
        .iter()
        .map(|&c| class_names.get(c).cloned().unwrap_or_else(|| c.to_string()))
        .collect();
    let index = labels
        .iter()
        .map(|l| classes.binary_search(l).unwrap_or(0))
        .collect();
    Ok((classes, names, index))
}

struct Fit {
    coef: DMatrix<f64>,
    intercept: DVector<f64>,
    n_iter: usize,
    converged: bool,
}

fn sigmoid(z: f64) -> f64 {
    // Two branches so exp never overflows.
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

fn softplus(z: f64) -> f64 {
    z.max(0.0) + (-z.abs()).exp().ln_1p()
}

/// Newton's method on the per-sample objective `mean(softplus(z) - y·z) + ||w||²/(2Cn)`.
fn newton_binary(x: &DMatrix<f64>, y: &[f64], s: &LogisticRegression) -> Fit {
    let n = x.nrows();
    let p = x.ncols();
    let d = p + usize::from(s.fit_intercept);
    let a = if s.fit_intercept {
        x.clone().insert_column(p, 1.0)
    } else {
        x.clone()
    };
    let nf = n as f64;
    let lam = 1.0 / (s.c * nf);
    let objective = |beta: &DVector<f64>| -> f64 {
        let z = &a * beta;
        let loss: f64 = z.iter().zip(y).map(|(&z, &y)| softplus(z) - y * z).sum();
        loss / nf + 0.5 * lam * beta.rows(0, p).norm_squared()
    };
    let mut beta = DVector::<f64>::zeros(d);
    let mut f = objective(&beta);
    let mut converged = false;
    let mut iters = 0;
    for it in 0..s.max_iter {
        iters = it;
        let z = &a * &beta;
        let prob: Vec<f64> = z.iter().map(|&v| sigmoid(v)).collect();
        let resid = DVector::from_fn(n, |i, _| (prob[i] - y[i]) / nf);
        let mut grad = a.tr_mul(&resid);
        for j in 0..p {
            grad[j] += lam * beta[j];
        }
        if grad.amax() <= s.tol {
            converged = true;
            break;
        }
        // H = AᵀDA/n + λ·I_w, with D = p(1-p): the Fisher information of the Bernoulli model.
        let weighted = DMatrix::from_fn(n, d, |i, j| a[(i, j)] * prob[i] * (1.0 - prob[i]) / nf);
        let mut h = a.tr_mul(&weighted);
        for j in 0..p {
            h[(j, j)] += lam;
        }
        let step = solve_spd(h, &grad).map(|v| -v);
        let step = match step {
            Some(v) => v,
            // A Hessian too ill-conditioned to factor still allows a gradient step.
            None => -&grad,
        };
        let slope = grad.dot(&step);
        let mut t = 1.0;
        let mut accepted = false;
        for _ in 0..60 {
            let cand = &beta + &step * t;
            let fc = objective(&cand);
            if fc <= f + 1e-4 * t * slope {
                beta = cand;
                f = fc;
                accepted = true;
                break;
            }
            t *= 0.5;
        }
        if !accepted {
            // No decrease is representable in f64: we are at the optimum to machine precision.
            converged = true;
            break;
        }
        iters = it + 1;
    }
    let coef = DMatrix::from_row_slice(1, p, &beta.as_slice()[..p]);
    let intercept = DVector::from_element(1, if s.fit_intercept { beta[p] } else { 0.0 });
    Fit {
        coef,
        intercept,
        n_iter: iters,
        converged,
    }
}

/// Solves `h·v = g` by Cholesky, adding a little jitter to the diagonal if it fails.
fn solve_spd(h: DMatrix<f64>, g: &DVector<f64>) -> Option<DVector<f64>> {
    let scale = h.diagonal().amax().max(f64::MIN_POSITIVE);
    let mut jitter = 0.0;
    for _ in 0..8 {
        let mut hj = h.clone();
        for j in 0..hj.nrows() {
            hj[(j, j)] += jitter;
        }
        if let Some(ch) = hj.cholesky() {
            return Some(ch.solve(g));
        }
        jitter = if jitter == 0.0 {
            1e-12 * scale
        } else {
            jitter * 100.0
        };
    }
    None
}

/// Objective and gradient of multinomial logistic regression, per sample, for L-BFGS.
struct Multinomial<'a> {
    x: &'a DMatrix<f64>,
    labels: &'a [usize],
    k: usize,
    intercept: bool,
    lam: f64,
}

impl Multinomial<'_> {
    fn unpack(&self, theta: &DVector<f64>) -> (DMatrix<f64>, DVector<f64>) {
        let p = self.x.ncols();
        let kp = self.k * p;
        let w = DMatrix::from_column_slice(self.k, p, &theta.as_slice()[..kp]);
        let b = if self.intercept {
            DVector::from_column_slice(&theta.as_slice()[kp..])
        } else {
            DVector::zeros(self.k)
        };
        (w, b)
    }

    fn eval(&self, theta: &DVector<f64>) -> (f64, DVector<f64>) {
        let n = self.x.nrows();
        let nf = n as f64;
        let (w, b) = self.unpack(theta);
        let mut z = self.x * w.transpose();
        let mut loss = 0.0;
        for i in 0..n {
            let mut row = z.row_mut(i);
            row += b.transpose();
            let m = row.max();
            let lse = m + row.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
            loss += lse - row[self.labels[i]];
            // Overwrite z with (softmax - onehot)/n: the gradient w.r.t. the logits.
            for v in row.iter_mut() {
                *v = (*v - lse).exp() / nf;
            }
            row[self.labels[i]] -= 1.0 / nf;
        }
        let f = loss / nf + 0.5 * self.lam * w.norm_squared();
        let gw = z.tr_mul(self.x) + &w * self.lam;
        let mut g = DVector::from_column_slice(gw.as_slice());
        if self.intercept {
            let gb: Vec<f64> = z.column_iter().map(|c| c.sum()).collect();
            g = g.push_all(&gb);
        }
        (f, g)
    }
}

trait PushAll {
    fn push_all(self, extra: &[f64]) -> Self;
}

impl PushAll for DVector<f64> {
    fn push_all(self, extra: &[f64]) -> Self {
        let mut v = self.as_slice().to_vec();
        v.extend_from_slice(extra);
        DVector::from_vec(v)
    }
}

/// Limited-memory BFGS with a backtracking Armijo line search (the problem is convex and smooth).
fn lbfgs_multinomial(x: &DMatrix<f64>, labels: &[usize], k: usize, s: &LogisticRegression) -> Fit {
    let p = x.ncols();
    let problem = Multinomial {
        x,
        labels,
        k,
        intercept: s.fit_intercept,
        lam: 1.0 / (s.c * x.nrows() as f64),
    };
    let dim = k * p + if s.fit_intercept { k } else { 0 };
    let mut theta = DVector::zeros(dim);
    let (mut f, mut g) = problem.eval(&theta);
    const MEMORY: usize = 10;
    let mut hist: std::collections::VecDeque<(DVector<f64>, DVector<f64>, f64)> =
        std::collections::VecDeque::with_capacity(MEMORY);
    let mut converged = false;
    let mut iters = 0;
    for it in 0..s.max_iter {
        iters = it;
        if g.amax() <= s.tol {
            converged = true;
            break;
        }
        // Two-loop recursion: applies the inverse-Hessian estimate to the gradient.
        let mut q = g.clone();
        let mut alphas = Vec::with_capacity(hist.len());
        for (sv, yv, rho) in hist.iter().rev() {
            let a = rho * sv.dot(&q);
            q.axpy(-a, yv, 1.0);
            alphas.push(a);
        }
        let gamma = match hist.back() {
            Some((sv, yv, _)) => sv.dot(yv) / yv.norm_squared(),
            // No curvature yet: a first step of unit max-norm is a safe scale.
            None => 1.0 / g.amax().max(1.0),
        };
        q *= gamma;
        for ((sv, yv, rho), a) in hist.iter().zip(alphas.iter().rev()) {
            let bcoef = rho * yv.dot(&q);
            q.axpy(a - bcoef, sv, 1.0);
        }
        let mut dir = -q;
        let mut slope = g.dot(&dir);
        if slope >= 0.0 {
            // The estimate lost positive-definiteness (rounding); restart from steepest descent.
            hist.clear();
            dir = -&g;
            slope = g.dot(&dir);
        }
        let mut t = 1.0;
        let mut next = None;
        for _ in 0..60 {
            let cand = &theta + &dir * t;
            let (fc, gc) = problem.eval(&cand);
            if fc <= f + 1e-4 * t * slope {
                next = Some((cand, fc, gc));
                break;
            }
            t *= 0.5;
        }
        let Some((cand, fc, gc)) = next else {
            converged = true;
            break;
        };
        let sv = &cand - &theta;
        let yv = &gc - &g;
        let sy = sv.dot(&yv);
        if sy > 1e-12 * sv.norm() * yv.norm() {
            if hist.len() == MEMORY {
                hist.pop_front();
            }
            hist.push_back((sv, yv, 1.0 / sy));
        }
        let small_change = (f - fc).abs() <= 1e-16 * f.abs().max(1.0);
        theta = cand;
        f = fc;
        g = gc;
        iters = it + 1;
        if small_change {
            converged = g.amax() <= s.tol * 10.0;
            break;
        }
    }
    let (w, b) = problem.unpack(&theta);
    Fit {
        coef: w,
        intercept: b,
        n_iter: iters,
        converged,
    }
}

/// A fitted logistic regression.
#[derive(Debug, Clone, PartialEq)]
pub struct LogisticModel {
    settings: LogisticRegression,
    classes: Vec<usize>,
    class_names: Vec<String>,
    coef: DMatrix<f64>,
    intercept: DVector<f64>,
    threshold: f64,
    fitted: Fitted,
}

impl LogisticModel {
    fitted_accessors!(LogisticRegression, "regression.logistic");

    /// Class labels seen at fit time, ascending; predictions are drawn from these.
    pub fn classes(&self) -> &[usize] {
        &self.classes
    }

    /// Class names, parallel to [`LogisticModel::classes`].
    pub fn class_names(&self) -> &[String] {
        &self.class_names
    }

    /// Number of classes.
    pub fn n_classes(&self) -> usize {
        self.classes.len()
    }

    /// Whether the model has two classes (one coefficient row, a decision threshold).
    pub fn is_binary(&self) -> bool {
        self.classes.len() == 2
    }

    /// Coefficients: one row for binary models (the log-odds of `classes()[1]`), else one row per class.
    pub fn coef(&self) -> &DMatrix<f64> {
        &self.coef
    }

    /// Intercepts, one per row of [`LogisticModel::coef`].
    pub fn intercept(&self) -> &DVector<f64> {
        &self.intercept
    }

    /// The column of coefficients for the feature called `name` (one value per coefficient row).
    pub fn coef_of(&self, name: &str) -> Option<Vec<f64>> {
        let j = self.fitted.column(name)?;
        Some(self.coef.column(j).iter().copied().collect())
    }

    /// The probability above which a binary model predicts `classes()[1]` (default 0.5).
    pub fn threshold(&self) -> f64 {
        self.threshold
    }

    /// Sets the decision threshold used by [`LogisticModel::predict`]; binary models only.
    pub fn set_threshold(&mut self, threshold: f64) -> Result<()> {
        if !self.is_binary() {
            return Err(Error::NotBinary {
                n_classes: self.n_classes(),
            });
        }
        if !(0.0..=1.0).contains(&threshold) {
            return Err(Error::param(
                "threshold",
                format!("must lie in [0, 1], got {threshold}"),
            ));
        }
        self.threshold = threshold;
        Ok(())
    }

    /// Builder form of [`LogisticModel::set_threshold`].
    pub fn with_threshold(mut self, threshold: f64) -> Result<Self> {
        self.set_threshold(threshold)?;
        Ok(self)
    }

    /// Linear scores `xθ + θ0`: one column for binary models (log-odds), else one per class.
    pub fn decision_function(&self, x: &DMatrix<f64>) -> Result<DMatrix<f64>> {
        let mut z = self.fitted.prepare(x)? * self.coef.transpose();
        for mut row in z.row_iter_mut() {
            row += self.intercept.transpose();
        }
        Ok(z)
    }

    /// Class probabilities, one column per class in the order of [`LogisticModel::classes`].
    pub fn predict_proba(&self, x: &DMatrix<f64>) -> Result<DMatrix<f64>> {
        let z = self.decision_function(x)?;
        if self.is_binary() {
            return Ok(DMatrix::from_fn(z.nrows(), 2, |i, j| {
                let p1 = sigmoid(z[(i, 0)]);
                if j == 1 {
                    p1
                } else {
                    1.0 - p1
                }
            }));
        }
        let mut p = z;
        for mut row in p.row_iter_mut() {
            let m = row.max();
            row.iter_mut().for_each(|v| *v = (*v - m).exp());
            let s = row.sum();
            row /= s;
        }
        Ok(p)
    }

    /// Predicted labels; binary models compare P(`classes()[1]`) with the threshold (strictly greater).
    pub fn predict(&self, x: &DMatrix<f64>) -> Result<Vec<usize>> {
        if self.is_binary() {
            return self.predict_with_threshold(x, self.threshold);
        }
        let p = self.predict_proba(x)?;
        Ok(p.row_iter()
            .map(|row| self.classes[row.transpose().argmax().0])
            .collect())
    }

    /// Binary prediction with an explicit threshold on P(`classes()[1]`).
    pub fn predict_with_threshold(&self, x: &DMatrix<f64>, threshold: f64) -> Result<Vec<usize>> {
        if !self.is_binary() {
            return Err(Error::NotBinary {
                n_classes: self.n_classes(),
            });
        }
        let p = self.predict_proba(x)?;
        Ok(p.column(1)
            .iter()
            .map(|&p1| self.classes[usize::from(p1 > threshold)])
            .collect())
    }

    /// Accuracy of [`LogisticModel::predict`] on `(x, labels)`.
    pub fn score(&self, x: &DMatrix<f64>, labels: &[usize]) -> Result<f64> {
        let pred = self.predict(x)?;
        crate::metrics::accuracy(labels, &pred)
    }

    /// The coefficients as a candle tensor of shape `[rows, n_features]`.
    pub fn coef_tensor(&self, device: &Device, dtype: DType) -> Result<Tensor> {
        persist::matrix_tensor(&self.coef, device, dtype)
    }

    /// Parameters as named tensors: `coef` `[rows, n_features]` and `intercept` `[rows]`.
    pub fn to_tensors(&self, device: &Device, dtype: DType) -> Result<HashMap<String, Tensor>> {
        persist::param_map(
            self.coef_tensor(device, dtype)?,
            &self.intercept,
            device,
            dtype,
        )
    }

    /// Rebuilds a model from named tensors (as written by [`LogisticModel::to_tensors`]), e.g. after training elsewhere.
    pub fn from_tensors(
        settings: LogisticRegression,
        classes: Vec<usize>,
        class_names: Vec<String>,
        feature_names: Vec<String>,
        scaler: Option<StandardScaler>,
        tensors: &HashMap<String, Tensor>,
    ) -> Result<Self> {
        let mut sorted = classes.clone();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted != classes || classes.len() < 2 {
            return Err(Error::param(
                "classes",
                format!("need at least two distinct labels in ascending order, got {classes:?}"),
            ));
        }
        check::same_len("class names and classes", class_names.len(), classes.len())?;
        let fitted = Fitted::new(feature_names, scaler)?;
        let rows = if classes.len() == 2 { 1 } else { classes.len() };
        let p = fitted.feature_names.len();
        let coef = persist::tensor_matrix(tensors, "coef", rows, p)?;
        let intercept = persist::tensor_vector(tensors, "intercept", rows)?;
        persist::finite_params(coef.as_slice(), intercept.as_slice())?;
        Ok(LogisticModel {
            settings,
            classes,
            class_names,
            coef,
            intercept,
            threshold: 0.5,
            fitted,
        })
    }
}

/// The logistic model's own settings-file fields.
#[derive(Serialize, Deserialize)]
pub(crate) struct LogisticExtra {
    settings: LogisticRegression,
    classes: Vec<usize>,
    class_names: Vec<String>,
    threshold: f64,
}

impl persist::Persist for LogisticModel {
    const FORMAT: &'static str = "taper-regression/logistic";
    type Extra = LogisticExtra;

    fn parts(&self) -> Result<(&Fitted, HashMap<String, Tensor>, LogisticExtra)> {
        let extra = LogisticExtra {
            settings: self.settings.clone(),
            classes: self.classes.clone(),
            class_names: self.class_names.clone(),
            threshold: self.threshold,
        };
        Ok((
            &self.fitted,
            self.to_tensors(&Device::Cpu, DType::F64)?,
            extra,
        ))
    }

    fn restore(
        e: LogisticExtra,
        fitted: Fitted,
        tensors: &HashMap<String, Tensor>,
    ) -> Result<Self> {
        let (names, scaler) = (fitted.feature_names.clone(), fitted.scaler.clone());
        let mut model =
            Self::from_tensors(e.settings, e.classes, e.class_names, names, scaler, tensors)?;
        model.fitted = fitted;
        if model.is_binary() {
            model.set_threshold(e.threshold)?;
        }
        Ok(model)
    }
}

/// Held-out figures of a fitted [`LogisticModel`], as scikit-learn's
/// `classification_report`, `roc_auc_score`, `log_loss` and
/// `confusion_matrix` compute them.
#[derive(Debug, Clone)]
pub struct ClassificationReport {
    /// Share of rows classified right.
    pub accuracy: f64,
    /// Precision, recall and F1: of the positive class when binary, macro
    /// averages otherwise.
    pub prf: crate::metrics::Prf,
    /// Area under the ROC curve (binary models only).
    pub roc_auc: Option<f64>,
    /// Mean negative log-likelihood of the true classes.
    pub log_loss: f64,
    /// Counts of (true, predicted) class pairs.
    pub confusion: crate::metrics::ConfusionMatrix,
    /// Class names, label order.
    pub class_names: Vec<String>,
}

impl LogisticModel {
    /// [`ClassificationReport`] of the model on the rows `x` with true classes
    /// `labels`.
    ///
    /// # Errors
    /// Rows of another width than the model's, labels of another count, or no
    /// rows.
    pub fn report(&self, x: &DMatrix<f64>, labels: &[usize]) -> Result<ClassificationReport> {
        use crate::metrics::{self, Average};
        let pred = self.predict(x)?;
        let proba = self.predict_proba(x)?;
        let (average, roc_auc) = if self.is_binary() {
            let auc = metrics::roc_auc(labels, proba.column(1).as_slice())?;
            (
                Average::Binary {
                    positive: self.classes()[1],
                },
                Some(auc),
            )
        } else {
            (Average::Macro, None)
        };
        let n_classes = self.classes().iter().max().map_or(0, |m| m + 1);
        Ok(ClassificationReport {
            accuracy: metrics::accuracy(labels, &pred)?,
            prf: metrics::precision_recall_f1(labels, &pred, average)?,
            roc_auc,
            log_loss: metrics::log_loss(labels, &proba)?,
            confusion: metrics::confusion_matrix(labels, &pred, n_classes)?,
            class_names: self.class_names().to_vec(),
        })
    }
}

impl ClassificationReport {
    /// The figures as a JSON object (`accuracy`, `precision`, `recall`, `f1`,
    /// `roc_auc`, `log_loss`, `confusion_matrix`), for an example's final line.
    pub fn figures(&self) -> serde_json::Map<String, serde_json::Value> {
        let v = serde_json::json!({"accuracy": self.accuracy, "precision": self.prf.precision,
            "recall": self.prf.recall, "f1": self.prf.f1, "roc_auc": self.roc_auc,
            "log_loss": self.log_loss, "confusion_matrix": self.confusion.rows()});
        match v {
            serde_json::Value::Object(m) => m,
            _ => serde_json::Map::new(),
        }
    }
}

impl std::fmt::Display for ClassificationReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "  accuracy  {:.4}", self.accuracy)?;
        let kind = if self.roc_auc.is_some() {
            "binary"
        } else {
            "macro"
        };
        let p = &self.prf;
        writeln!(
            f,
            "  precision {:.4}, recall {:.4}, F1 {:.4} ({kind})",
            p.precision, p.recall, p.f1
        )?;
        if let Some(auc) = self.roc_auc {
            writeln!(f, "  ROC-AUC   {auc:.4}")?;
        }
        writeln!(f, "  log-loss  {:.4}", self.log_loss)?;
        writeln!(
            f,
            "confusion matrix (rows: true, columns: predicted; classes {}):",
            self.class_names.join(", ")
        )?;
        write!(f, "{}", self.confusion)
    }
}
