//! Feature scaling, label encoding, seeded train/test splits and k-fold
//! cross-validation. Scalers are fitted on training rows only and then
//! applied unchanged to test rows, so no test information leaks into a fit.

use crate::check;
use crate::data::Dataset;
use crate::error::{Error, Result};
use nalgebra::DMatrix;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Centres each feature to mean 0 and scales it to (population) standard deviation 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StandardScaler {
    mean: Vec<f64>,
    scale: Vec<f64>,
}

impl StandardScaler {
    /// Learns per-column means and standard deviations from `x`.
    pub fn fit(x: &DMatrix<f64>) -> Result<Self> {
        check::non_empty(x, "x")?;
        check::finite_matrix(x, "x")?;
        let n = x.nrows() as f64;
        let mut mean = Vec::with_capacity(x.ncols());
        let mut scale = Vec::with_capacity(x.ncols());
        for col in x.column_iter() {
            let m = col.sum() / n;
            // Two passes: the textbook E[x²]-E[x]² loses all precision on large-offset columns.
            let var = col.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / n;
            // A column whose variance is rounding noise is constant; dividing by that noise
            // would blow it up, so it is left unscaled (as scikit-learn does).
            let noise = n * f64::EPSILON * var + (n * m * f64::EPSILON).powi(2);
            mean.push(m);
            scale.push(if var <= noise { 1.0 } else { var.sqrt() });
        }
        Ok(StandardScaler { mean, scale })
    }

    /// Fits on `x` and returns the scaler with `x` transformed.
    pub fn fit_transform(x: &DMatrix<f64>) -> Result<(Self, DMatrix<f64>)> {
        let s = Self::fit(x)?;
        let t = s.transform(x)?;
        Ok((s, t))
    }

    /// Rebuilds a scaler from stored means and scales (e.g. read back from a model file).
    pub fn from_parts(mean: Vec<f64>, scale: Vec<f64>) -> Result<Self> {
        check::same_len("scaler mean and scale", mean.len(), scale.len())?;
        check::finite_slice(&mean, "scaler mean")?;
        check::finite_slice(&scale, "scaler scale")?;
        if let Some(j) = scale.iter().position(|&s| s <= 0.0) {
            return Err(Error::param(
                "scale",
                format!("feature {j} has non-positive scale {}", scale[j]),
            ));
        }
        Ok(StandardScaler { mean, scale })
    }

    /// Applies the learned centring and scaling to `x`.
    pub fn transform(&self, x: &DMatrix<f64>) -> Result<DMatrix<f64>> {
        check::predict_input(x, self.mean.len())?;
        Ok(DMatrix::from_fn(x.nrows(), x.ncols(), |i, j| {
            (x[(i, j)] - self.mean[j]) / self.scale[j]
        }))
    }

    /// Maps standardised values back to the original units.
    pub fn inverse_transform(&self, z: &DMatrix<f64>) -> Result<DMatrix<f64>> {
        check::predict_input(z, self.mean.len())?;
        Ok(DMatrix::from_fn(z.nrows(), z.ncols(), |i, j| {
            z[(i, j)] * self.scale[j] + self.mean[j]
        }))
    }

    /// Per-feature means learned at fit time.
    pub fn mean(&self) -> &[f64] {
        &self.mean
    }

    /// Per-feature standard deviations (1 for constant features).
    pub fn scale(&self) -> &[f64] {
        &self.scale
    }

    /// Number of features the scaler was fitted on.
    pub fn n_features(&self) -> usize {
        self.mean.len()
    }
}

/// Maps each feature linearly onto a range, by default `[0, 1]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MinMaxScaler {
    min: Vec<f64>,
    max: Vec<f64>,
    range: (f64, f64),
}

impl MinMaxScaler {
    /// Learns per-column minima and maxima, mapping them onto `[0, 1]`.
    pub fn fit(x: &DMatrix<f64>) -> Result<Self> {
        Self::fit_range(x, (0.0, 1.0))
    }

    /// Learns per-column minima and maxima, mapping them onto `range`.
    pub fn fit_range(x: &DMatrix<f64>, range: (f64, f64)) -> Result<Self> {
        if !(range.0.is_finite() && range.1.is_finite() && range.0 < range.1) {
            return Err(Error::param(
                "range",
                format!("need finite lo < hi, got {range:?}"),
            ));
        }
        check::non_empty(x, "x")?;
        check::finite_matrix(x, "x")?;
        let min = x.column_iter().map(|c| c.min()).collect();
        let max = x.column_iter().map(|c| c.max()).collect();
        Ok(MinMaxScaler { min, max, range })
    }

    fn width(&self, j: usize) -> f64 {
        let w = self.max[j] - self.min[j];
        // A constant column maps to the low end of the range rather than to NaN.
        if w == 0.0 {
            1.0
        } else {
            w
        }
    }

    /// Applies the learned mapping; test values outside the training range land outside `range`.
    pub fn transform(&self, x: &DMatrix<f64>) -> Result<DMatrix<f64>> {
        check::predict_input(x, self.min.len())?;
        let (lo, hi) = self.range;
        Ok(DMatrix::from_fn(x.nrows(), x.ncols(), |i, j| {
            lo + (x[(i, j)] - self.min[j]) / self.width(j) * (hi - lo)
        }))
    }

    /// Maps scaled values back to the original units.
    pub fn inverse_transform(&self, z: &DMatrix<f64>) -> Result<DMatrix<f64>> {
        check::predict_input(z, self.min.len())?;
        let (lo, hi) = self.range;
        Ok(DMatrix::from_fn(z.nrows(), z.ncols(), |i, j| {
            self.min[j] + (z[(i, j)] - lo) / (hi - lo) * self.width(j)
        }))
    }

    /// Per-feature minima learned at fit time.
    pub fn data_min(&self) -> &[f64] {
        &self.min
    }

    /// Per-feature maxima learned at fit time.
    pub fn data_max(&self) -> &[f64] {
        &self.max
    }
}

/// Encodes labels `0..n_classes` as rows of a 0/1 indicator matrix.
pub fn one_hot(labels: &[usize], n_classes: usize) -> Result<DMatrix<f64>> {
    if let Some((index, &label)) = labels.iter().enumerate().find(|(_, &l)| l >= n_classes) {
        return Err(Error::InvalidLabel {
            index,
            message: format!("label {label} is not below n_classes = {n_classes}"),
        });
    }
    let mut m = DMatrix::zeros(labels.len(), n_classes);
    for (i, &l) in labels.iter().enumerate() {
        m[(i, l)] = 1.0;
    }
    Ok(m)
}

/// A permutation of `0..n` that depends only on `seed` (ChaCha8, stable across platforms).
pub fn shuffled_indices(n: usize, seed: u64) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    idx.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    idx
}

/// Row indices of a seeded random split: `ceil(n * test_fraction)` rows go to the test side.
pub fn train_test_indices(
    n: usize,
    test_fraction: f64,
    seed: u64,
) -> Result<(Vec<usize>, Vec<usize>)> {
    if !(test_fraction > 0.0 && test_fraction < 1.0) {
        return Err(Error::param(
            "test_fraction",
            format!("must lie strictly between 0 and 1, got {test_fraction}"),
        ));
    }
    let n_test = (n as f64 * test_fraction).ceil() as usize;
    if n_test == 0 || n_test >= n {
        return Err(Error::param(
            "test_fraction",
            format!("{test_fraction} of {n} samples leaves one side empty"),
        ));
    }
    let idx = shuffled_indices(n, seed);
    let (test, train) = idx.split_at(n_test);
    Ok((train.to_vec(), test.to_vec()))
}

/// Splits a dataset into (train, test) with a seeded shuffle.
pub fn train_test_split(ds: &Dataset, test_fraction: f64, seed: u64) -> Result<(Dataset, Dataset)> {
    let (train, test) = train_test_indices(ds.n_samples(), test_fraction, seed)?;
    Ok((ds.select(&train)?, ds.select(&test)?))
}

/// One cross-validation fold: the rows to fit on and the rows to score on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fold {
    /// Rows used for fitting.
    pub train: Vec<usize>,
    /// Rows held out.
    pub test: Vec<usize>,
}

/// K-fold cross-validation: `k` contiguous blocks of a (optionally shuffled) row order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KFold {
    /// Number of folds, at least 2.
    pub k: usize,
    /// Shuffle rows with this seed first; `None` keeps file order.
    pub seed: Option<u64>,
}

impl KFold {
    /// `k` folds in file order.
    pub fn new(k: usize) -> Self {
        KFold { k, seed: None }
    }

    /// `k` folds after a seeded shuffle (needed when the file is sorted by class).
    pub fn shuffled(k: usize, seed: u64) -> Self {
        KFold {
            k,
            seed: Some(seed),
        }
    }

    /// The folds for `n` rows; the first `n % k` folds hold one extra row.
    pub fn split(&self, n: usize) -> Result<Vec<Fold>> {
        if self.k < 2 || self.k > n {
            return Err(Error::param(
                "k",
                format!("need 2 <= k <= n_samples = {n}, got {}", self.k),
            ));
        }
        let order = match self.seed {
            Some(seed) => shuffled_indices(n, seed),
            None => (0..n).collect(),
        };
        let (base, extra) = (n / self.k, n % self.k);
        let mut start = 0;
        Ok((0..self.k)
            .map(|f| {
                let len = base + usize::from(f < extra);
                let test = order[start..start + len].to_vec();
                let train = order[..start]
                    .iter()
                    .chain(&order[start + len..])
                    .copied()
                    .collect();
                start += len;
                Fold { train, test }
            })
            .collect())
    }
}

/// Runs `score(train, test)` on every fold and returns the per-fold scores.
pub fn cross_val_score<F>(ds: &Dataset, folds: KFold, mut score: F) -> Result<Vec<f64>>
where
    F: FnMut(&Dataset, &Dataset) -> Result<f64>,
{
    folds
        .split(ds.n_samples())?
        .iter()
        .map(|fold| score(&ds.select(&fold.train)?, &ds.select(&fold.test)?))
        .collect()
}
