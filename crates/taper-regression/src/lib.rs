//! Linear and logistic regression for Taper: exact solvers in f64 on the host
//! with nalgebra, checked against scikit-learn to many digits, and the same
//! objectives fitted by gradient descent through taper-train's `Trainer`.
//!
//! - [`linear`]: OLS and ridge in closed form, lasso and elastic net by coordinate descent, OLS inference.
//! - [`logistic`]: binary (Newton) and multinomial (L-BFGS) logistic regression with L2 penalty.
//! - [`gd`]: the same estimators fitted by mini-batch gradient descent through taper-train's
//!   `Trainer` (`fit_gd`, `fit_tensors_gd`), for data too large to solve at once.
//! - [`preprocessing`]: scalers, one-hot labels, seeded splits, k-fold cross-validation.
//! - [`metrics`]: regression and classification metrics.
//! - [`data`]: CSV loading and the embedded data sets.
//!
//! Fitted models expose their parameters as candle tensors (`to_tensors`,
//! `from_tensors`), save to safetensors plus a JSON settings file, and save into
//! a run directory that loads back in one call (`save_run`, `load_run`).
//!
//! ```
//! use taper_regression::{load_breast_cancer, load_diabetes, train_test_split};
//! use taper_regression::{LinearRegression, LogisticRegression};
//!
//! let ds = load_diabetes()?;
//! let (train, test) = train_test_split(&ds, 0.2, 42)?;
//! let ols = LinearRegression::ols().fit_dataset(&train)?;
//! let p_bmi = ols.summary().map(|s| s.p_values[2]);
//! println!("bmi: {:?} (p = {p_bmi:?}), held-out R² {:.3}", ols.coef_of("bmi"), ols.score(&test.x, &test.y)?);
//!
//! let bc = load_breast_cancer()?;
//! let (train, test) = train_test_split(&bc, 0.2, 42)?;
//! // Standardisation is fitted on the training rows and reapplied when predicting.
//! let clf = LogisticRegression::new().standardize(true).fit_dataset(&train)?;
//! assert!(clf.score(&test.x, &test.labels()?)? > 0.95);
//!
//! // The run directory is the model: later, anywhere, load it and predict.
//! let run = tempfile::tempdir().map_err(|e| taper_regression::Error::Io { path: ".".into(), error: e })?;
//! clf.save_run(run.path())?;
//! let loaded = taper_regression::LogisticModel::load_run(run.path())?;
//! assert_eq!(loaded.predict(&test.x)?, clf.predict(&test.x)?);
//! println!("{}", loaded.report(&test.x, &test.labels()?)?);
//! # Ok::<(), taper_regression::Error>(())
//! ```

#![warn(missing_docs)]

mod check;
pub mod data;
pub mod error;
mod fitted;
pub mod gd;
pub mod linear;
pub mod logistic;
pub mod metrics;
pub mod persist;
pub mod preprocessing;
pub mod report;
mod stats;

pub use data::{
    load_breast_cancer, load_breast_cancer_from, load_csv, load_diabetes, load_diabetes_from,
    load_digits, load_digits_from, load_iris, load_iris_from, load_wine, load_wine_from,
    CsvOptions, Dataset, TargetColumn,
};
pub use error::{Error, Result};
pub use gd::{GdConfig, GdOptimizer, GdSchedule};
pub use linear::{LinearModel, LinearRegression, OlsSummary, Penalty};
pub use logistic::{ClassificationReport, LogisticModel, LogisticRegression};
pub use preprocessing::{train_test_split, KFold, MinMaxScaler, StandardScaler};

/// The nalgebra version this crate's matrices come from, re-exported so callers match it.
pub use nalgebra;
