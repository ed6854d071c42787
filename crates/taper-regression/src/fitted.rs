//! What every fitted model keeps besides its parameters, and the accessors
//! both model kinds expose over it, written once.

use crate::check;
use crate::error::Result;
use crate::preprocessing::StandardScaler;
use nalgebra::DMatrix;

/// Feature names, the optional scaler and how the fit went.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Fitted {
    pub(crate) feature_names: Vec<String>,
    pub(crate) scaler: Option<StandardScaler>,
    pub(crate) n_iter: usize,
    pub(crate) converged: bool,
}

impl Fitted {
    /// A model rebuilt from parameters: no iterations of ours, nothing left to converge.
    pub(crate) fn new(feature_names: Vec<String>, scaler: Option<StandardScaler>) -> Result<Self> {
        if let Some(s) = &scaler {
            check::n_features(feature_names.len(), s.n_features())?;
        }
        Ok(Fitted {
            feature_names,
            scaler,
            n_iter: 0,
            converged: true,
        })
    }

    /// Column of the feature called `name`.
    pub(crate) fn column(&self, name: &str) -> Option<usize> {
        self.feature_names.iter().position(|n| n == name)
    }

    /// Checks the width of `x` and applies the scaling learned at fit time.
    pub(crate) fn prepare(&self, x: &DMatrix<f64>) -> Result<DMatrix<f64>> {
        check::predict_input(x, self.feature_names.len())?;
        match &self.scaler {
            Some(s) => s.transform(x),
            None => Ok(x.clone()),
        }
    }
}

/// Validates a design matrix against its target length and feature names, then
/// standardises it on its own rows when `standardize` is on; returns the scaler to
/// keep with the model and the matrix the solver sees.
pub(crate) fn fit_matrix(
    x: &DMatrix<f64>,
    n_targets: usize,
    feature_names: &[String],
    standardize: bool,
) -> Result<(Option<StandardScaler>, DMatrix<f64>)> {
    check::fit_inputs(x, n_targets)?;
    check::same_len(
        "feature names and columns of x",
        feature_names.len(),
        x.ncols(),
    )?;
    if standardize {
        let (s, t) = StandardScaler::fit_transform(x)?;
        Ok((Some(s), t))
    } else {
        Ok((None, x.clone()))
    }
}

/// The accessors shared by [`crate::LinearModel`] and [`crate::LogisticModel`]; both
/// hold a `fitted: Fitted` and a `settings` field of type `$settings`.
macro_rules! fitted_accessors {
    ($settings:ty, $family:expr) => {
        /// The model family in `model.json`.
        pub const FAMILY: &'static str = $family;

        /// Saves the model into the run directory `run` as one that
        /// [`Self::load_run`] reads back: `model.json` (this family, the
        /// settings) and `weights.safetensors` with its settings beside it
        /// (`weights.json`), each atomically.
        ///
        /// # Errors
        /// A file that cannot be written, naming it.
        pub fn save_run(&self, run: impl AsRef<std::path::Path>) -> $crate::Result<()> {
            let run = run.as_ref();
            std::fs::create_dir_all(run).map_err(|e| $crate::Error::Io {
                path: run.to_path_buf(),
                error: e,
            })?;
            self.save(run.join("weights.safetensors"))?;
            taper_train::card::ModelCard::new(
                Self::FAMILY,
                env!("CARGO_PKG_NAME"),
                env!("CARGO_PKG_VERSION"),
                &self.settings,
                &serde_json::json!({"weights": "weights.safetensors"}),
            )?
            .save(run)?;
            Ok(())
        }

        /// The model of a run saved by [`Self::save_run`].
        ///
        /// # Errors
        /// A missing run or file, another family's card (say a logistic
        /// model loaded as a linear one), a newer format, or malformed
        /// weights: each naming the file.
        pub fn load_run(run: impl AsRef<std::path::Path>) -> $crate::Result<Self> {
            let run = run.as_ref();
            taper_train::card::ModelCard::load(run, Self::FAMILY)?;
            Self::load(run.join("weights.safetensors"))
        }

        /// Feature names, one per column the model expects.
        pub fn feature_names(&self) -> &[String] {
            &self.fitted.feature_names
        }

        /// The settings the model was fitted with.
        pub fn settings(&self) -> &$settings {
            &self.settings
        }

        /// The scaler applied to inputs before the coefficients, if `standardize` was on.
        pub fn scaler(&self) -> Option<&$crate::preprocessing::StandardScaler> {
            self.fitted.scaler.as_ref()
        }

        /// Iterations the fit used: Newton, L-BFGS or coordinate-descent steps, optimizer
        /// updates for gradient-descent fits, 1 for closed forms, 0 after `from_tensors`.
        pub fn n_iter(&self) -> usize {
            self.fitted.n_iter
        }

        /// False when the solver stopped before its tolerance `tol` was met (for
        /// gradient-descent fits: when the full-data gradient at the result exceeds it).
        pub fn converged(&self) -> bool {
            self.fitted.converged
        }

        /// Saves the parameters to `path` (safetensors) and the settings beside it (`.json`), each atomically.
        pub fn save(&self, path: impl AsRef<std::path::Path>) -> $crate::Result<()> {
            $crate::persist::save(self, path.as_ref())
        }

        /// Loads a model written by `save`.
        pub fn load(path: impl AsRef<std::path::Path>) -> $crate::Result<Self> {
            $crate::persist::load(path.as_ref())
        }
    };
}
pub(crate) use fitted_accessors;

/// The builder setters shared by [`crate::LinearRegression`] and [`crate::LogisticRegression`].
macro_rules! solver_setters {
    () => {
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

        /// Sets the iteration limit `max_iter` of the iterative solvers.
        pub fn max_iter(mut self, n: usize) -> Self {
            self.max_iter = n;
            self
        }

        /// Sets the stopping tolerance `tol` of the iterative solvers.
        pub fn tol(mut self, tol: f64) -> Self {
            self.tol = tol;
            self
        }
    };
}
pub(crate) use solver_setters;
