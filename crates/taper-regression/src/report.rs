//! What regression runs add to their `report.html` ([`taper_train::report`]):
//! predicted against true values with their residuals, and a classifier's
//! confusion matrix.

use crate::metrics::ConfusionMatrix;
use crate::{Error, Result};
use std::path::{Path, PathBuf};
use taper_train::report::{Block, Section};

/// Writes a regression's section of its run report
/// (`RUN/report/regression.json`): `y_pred` against `y_true` with the `y = x`
/// diagonal, and the residuals (`true - predicted`) against the predictions,
/// on the split named `split`.
///
/// # Errors
/// Predictions of another count than the true values, or a section that
/// cannot be written.
pub fn regression_section(
    run_dir: &Path,
    split: &str,
    y_true: &[f64],
    y_pred: &[f64],
) -> Result<PathBuf> {
    if y_true.len() != y_pred.len() {
        return Err(Error::LengthMismatch {
            what: "report: true values and predictions",
            left: y_true.len(),
            right: y_pred.len(),
        });
    }
    let fit: Vec<(f64, f64)> = y_true.iter().copied().zip(y_pred.iter().copied()).collect();
    let residuals: Vec<(f64, f64)> = fit.iter().map(|&(t, p)| (p, t - p)).collect();
    Ok(Section::new(format!("Fit on the {split} split"), 10)
        .with(Block::Scatter {
            title: format!("predicted vs true ({split})"),
            x_label: "true".into(),
            y_label: "predicted".into(),
            points: fit,
            diagonal: true,
        })
        .with(Block::Scatter {
            title: format!("residuals ({split})"),
            x_label: "predicted".into(),
            y_label: "true - predicted".into(),
            points: residuals,
            diagonal: false,
        })
        .save(run_dir, "regression")?)
}

/// Writes a classifier's confusion matrix (rows true, columns predicted,
/// classes named `names`) on `split` as `RUN/report/classifier.json`.
///
/// # Errors
/// Names of another count than the matrix's classes, or a section that
/// cannot be written.
pub fn confusion_section(
    run_dir: &Path,
    split: &str,
    confusion: &ConfusionMatrix,
    names: &[String],
) -> Result<PathBuf> {
    let rows = confusion.rows();
    if rows.len() != names.len() {
        return Err(Error::LengthMismatch {
            what: "report: classes and class names",
            left: rows.len(),
            right: names.len(),
        });
    }
    Ok(Section::new(format!("Classifier on the {split} split"), 10)
        .with(Block::Matrix {
            title: format!("confusion ({split})"),
            rows: names.to_vec(),
            columns: names.to_vec(),
            values: rows
                .iter()
                .map(|r| r.iter().map(|&c| c as f64).collect())
                .collect(),
            x_label: "predicted".into(),
            y_label: "true".into(),
        })
        .save(run_dir, "classifier")?)
}
