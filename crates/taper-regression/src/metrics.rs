//! Regression and classification metrics, following scikit-learn's
//! definitions so figures can be compared with published results.

use crate::check;
use crate::error::{Error, Result};
use nalgebra::DMatrix;
use std::fmt;

fn paired(y_true: &[f64], y_pred: &[f64]) -> Result<()> {
    check::same_len("y_true and y_pred", y_true.len(), y_pred.len())?;
    if y_true.is_empty() {
        return Err(Error::EmptyInput { what: "y_true" });
    }
    check::finite_slice(y_true, "y_true")?;
    check::finite_slice(y_pred, "y_pred")
}

/// Mean squared error.
pub fn mse(y_true: &[f64], y_pred: &[f64]) -> Result<f64> {
    paired(y_true, y_pred)?;
    let s: f64 = y_true
        .iter()
        .zip(y_pred)
        .map(|(t, p)| (t - p) * (t - p))
        .sum();
    Ok(s / y_true.len() as f64)
}

/// Root mean squared error, in the target's units.
pub fn rmse(y_true: &[f64], y_pred: &[f64]) -> Result<f64> {
    Ok(mse(y_true, y_pred)?.sqrt())
}

/// Mean absolute error.
pub fn mae(y_true: &[f64], y_pred: &[f64]) -> Result<f64> {
    paired(y_true, y_pred)?;
    let s: f64 = y_true.iter().zip(y_pred).map(|(t, p)| (t - p).abs()).sum();
    Ok(s / y_true.len() as f64)
}

/// Coefficient of determination `1 - SS_res / SS_tot`; 1.0 or 0.0 when `y_true` is constant.
pub fn r2(y_true: &[f64], y_pred: &[f64]) -> Result<f64> {
    paired(y_true, y_pred)?;
    let mean = y_true.iter().sum::<f64>() / y_true.len() as f64;
    let ss_tot: f64 = y_true.iter().map(|t| (t - mean) * (t - mean)).sum();
    let ss_res: f64 = y_true
        .iter()
        .zip(y_pred)
        .map(|(t, p)| (t - p) * (t - p))
        .sum();
    // Constancy is tested on the values: the mean of a constant column is not
    // always that constant after rounding, and the tiny SS_tot left over made R²
    // a huge negative number.
    if ss_tot == 0.0 || y_true.iter().all(|t| *t == y_true[0]) {
        // The ratio is undefined; scikit-learn's convention rewards only a perfect fit.
        return Ok(if ss_res == 0.0 { 1.0 } else { 0.0 });
    }
    Ok(1.0 - ss_res / ss_tot)
}

fn paired_labels(y_true: &[usize], y_pred: &[usize]) -> Result<()> {
    check::same_len("y_true and y_pred", y_true.len(), y_pred.len())?;
    if y_true.is_empty() {
        return Err(Error::EmptyInput { what: "y_true" });
    }
    Ok(())
}

/// Fraction of labels predicted exactly.
pub fn accuracy(y_true: &[usize], y_pred: &[usize]) -> Result<f64> {
    paired_labels(y_true, y_pred)?;
    let hits = y_true.iter().zip(y_pred).filter(|(t, p)| t == p).count();
    Ok(hits as f64 / y_true.len() as f64)
}

/// How per-class precision, recall and F1 are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Average {
    /// Score only the given positive class.
    Binary {
        /// The label counted as positive.
        positive: usize,
    },
    /// Unweighted mean over every label seen in `y_true` or `y_pred`.
    Macro,
}

/// Precision, recall and F1 of one averaging scheme.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prf {
    /// Share of predicted positives that are right.
    pub precision: f64,
    /// Share of actual positives that are found.
    pub recall: f64,
    /// Harmonic mean of precision and recall.
    pub f1: f64,
}

fn ratio(num: usize, den: usize) -> f64 {
    // An undefined ratio (no predicted or no actual positives) counts as 0, as in scikit-learn.
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

fn prf_of_class(y_true: &[usize], y_pred: &[usize], c: usize) -> Prf {
    let mut tp = 0;
    let mut pred_pos = 0;
    let mut true_pos = 0;
    for (&t, &p) in y_true.iter().zip(y_pred) {
        tp += usize::from(t == c && p == c);
        pred_pos += usize::from(p == c);
        true_pos += usize::from(t == c);
    }
    let precision = ratio(tp, pred_pos);
    let recall = ratio(tp, true_pos);
    // F1 from counts, so it stays defined when precision and recall are both zero.
    let f1 = ratio(2 * tp, pred_pos + true_pos);
    Prf {
        precision,
        recall,
        f1,
    }
}

/// Precision, recall and F1 together (one pass over the labels per class).
pub fn precision_recall_f1(y_true: &[usize], y_pred: &[usize], average: Average) -> Result<Prf> {
    paired_labels(y_true, y_pred)?;
    match average {
        Average::Binary { positive } => Ok(prf_of_class(y_true, y_pred, positive)),
        Average::Macro => {
            let mut labels: Vec<usize> = y_true.iter().chain(y_pred).copied().collect();
            labels.sort_unstable();
            labels.dedup();
            let k = labels.len() as f64;
            let mut sum = Prf {
                precision: 0.0,
                recall: 0.0,
                f1: 0.0,
            };
            for &c in &labels {
                let s = prf_of_class(y_true, y_pred, c);
                sum.precision += s.precision / k;
                sum.recall += s.recall / k;
                sum.f1 += s.f1 / k;
            }
            Ok(sum)
        }
    }
}

/// Precision under the given averaging.
pub fn precision(y_true: &[usize], y_pred: &[usize], average: Average) -> Result<f64> {
    Ok(precision_recall_f1(y_true, y_pred, average)?.precision)
}

/// Recall under the given averaging.
pub fn recall(y_true: &[usize], y_pred: &[usize], average: Average) -> Result<f64> {
    Ok(precision_recall_f1(y_true, y_pred, average)?.recall)
}

/// F1 score under the given averaging.
pub fn f1(y_true: &[usize], y_pred: &[usize], average: Average) -> Result<f64> {
    Ok(precision_recall_f1(y_true, y_pred, average)?.f1)
}

/// Counts of (true class, predicted class) pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfusionMatrix {
    counts: Vec<Vec<usize>>,
}

impl ConfusionMatrix {
    /// Number of samples of true class `t` predicted as `p`.
    pub fn get(&self, t: usize, p: usize) -> usize {
        self.counts
            .get(t)
            .and_then(|r| r.get(p))
            .copied()
            .unwrap_or(0)
    }

    /// Number of classes (rows and columns).
    pub fn n_classes(&self) -> usize {
        self.counts.len()
    }

    /// Rows indexed by true class, columns by predicted class.
    pub fn rows(&self) -> &[Vec<usize>] {
        &self.counts
    }
}

impl fmt::Display for ConfusionMatrix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self
            .counts
            .iter()
            .flatten()
            .map(|c| c.to_string().len())
            .max()
            .unwrap_or(1);
        for row in &self.counts {
            let cells: Vec<String> = row.iter().map(|c| format!("{c:>width$}")).collect();
            writeln!(f, "[{}]", cells.join(" "))?;
        }
        Ok(())
    }
}

/// Confusion matrix over classes `0..n_classes` (rows: truth, columns: prediction).
pub fn confusion_matrix(
    y_true: &[usize],
    y_pred: &[usize],
    n_classes: usize,
) -> Result<ConfusionMatrix> {
    paired_labels(y_true, y_pred)?;
    let mut counts = vec![vec![0usize; n_classes]; n_classes];
    for (index, (&t, &p)) in y_true.iter().zip(y_pred).enumerate() {
        if t >= n_classes || p >= n_classes {
            return Err(Error::InvalidLabel {
                index,
                message: format!("pair ({t}, {p}) outside 0..{n_classes}"),
            });
        }
        counts[t][p] += 1;
    }
    Ok(ConfusionMatrix { counts })
}

/// Area under the ROC curve for 0/1 labels and real scores (ties count one half).
pub fn roc_auc(y_true: &[usize], scores: &[f64]) -> Result<f64> {
    check::same_len("y_true and scores", y_true.len(), scores.len())?;
    check::finite_slice(scores, "scores")?;
    if let Some(index) = y_true.iter().position(|&t| t > 1) {
        return Err(Error::InvalidLabel {
            index,
            message: format!("ROC-AUC needs 0/1 labels, got {}", y_true[index]),
        });
    }
    let n_pos = y_true.iter().filter(|&&t| t == 1).count();
    let n_neg = y_true.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        // The curve needs both classes; with one, every threshold gives the same point.
        return Err(Error::NotBinary {
            n_classes: usize::from(n_pos > 0) + usize::from(n_neg > 0),
        });
    }
    // Mann-Whitney: AUC is the probability a random positive outranks a random negative.
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut rank_sum_pos = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        // Tied scores share the mean of the ranks they span (ranks are 1-based).
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            if y_true[k] == 1 {
                rank_sum_pos += avg_rank;
            }
        }
        i = j + 1;
    }
    let np = n_pos as f64;
    Ok((rank_sum_pos - np * (np + 1.0) / 2.0) / (np * n_neg as f64))
}

/// Mean negative log-likelihood of the true class; probabilities are clipped to `[eps, 1-eps]`.
pub fn log_loss(y_true: &[usize], proba: &DMatrix<f64>) -> Result<f64> {
    check::same_len("y_true and rows of proba", y_true.len(), proba.nrows())?;
    if y_true.is_empty() {
        return Err(Error::EmptyInput { what: "y_true" });
    }
    check::finite_matrix(proba, "proba")?;
    let eps = f64::EPSILON;
    let mut total = 0.0;
    for (i, &t) in y_true.iter().enumerate() {
        if t >= proba.ncols() {
            return Err(Error::InvalidLabel {
                index: i,
                message: format!("label {t} but proba has {} columns", proba.ncols()),
            });
        }
        // Rows are renormalised first so slightly-off probabilities are not penalised twice.
        let row_sum: f64 = proba.row(i).iter().map(|p| p.clamp(eps, 1.0 - eps)).sum();
        let p = proba[(i, t)].clamp(eps, 1.0 - eps) / row_sum;
        total -= p.ln();
    }
    Ok(total / y_true.len() as f64)
}

/// Log-loss for 0/1 labels given the probability of class 1.
pub fn log_loss_binary(y_true: &[usize], p1: &[f64]) -> Result<f64> {
    check::same_len("y_true and p1", y_true.len(), p1.len())?;
    let proba = DMatrix::from_fn(p1.len(), 2, |i, j| if j == 1 { p1[i] } else { 1.0 - p1[i] });
    log_loss(y_true, &proba)
}
