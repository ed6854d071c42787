//! Inception Score and Fréchet distance with a classifier of our own (the LeNet
//! that `examples/mnist_cnn` trains) in place of Inception-v3: the same formulas,
//! features from the classifier's penultimate layer.
//!
//! - Inception Score: `exp(E_x KL(p(y|x) || p(y)))` over the classifier's softmax,
//!   averaged over splits. Confident predictions spread evenly over 10 classes
//!   score 10; one class for every sample scores 1.
//! - Fréchet distance between the Gaussians fitted to two feature sets:
//!   `|μ1 - μ2|² + tr(S1 + S2 - 2 (S1^½ S2 S1^½)^½)`, the matrix square roots
//!   from symmetric eigendecompositions (nalgebra).

use crate::models::LeNet;
use crate::transforms::Normalize;
use crate::{Error, Result};
use candle_core::{DType, Tensor};
use nalgebra::{DMatrix, DVector, SymmetricEigen};

/// Inception Score of class probabilities `(N, C)` (rows summing to 1), as
/// `(mean, standard deviation)` over `splits` equal parts (the usual 10, or 1).
pub fn inception_score(probs: &Tensor, splits: usize) -> Result<(f64, f64)> {
    let (n, c) = probs.dims2()?;
    if splits == 0 || n < splits {
        return Err(Error::Config(format!(
            "inception score: {n} samples cannot make {splits} splits"
        )));
    }
    if c == 0 {
        return Err(Error::Data("inception score: no classes".into()));
    }
    let p: Vec<f64> = probs.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
    if p.iter().any(|v| !v.is_finite() || *v < 0.0) {
        return Err(Error::Data(
            "inception score: probabilities must be finite and non-negative".into(),
        ));
    }
    let per = n / splits;
    let scores: Vec<f64> = (0..splits)
        .map(|s| {
            let rows = &p[s * per * c..(s + 1) * per * c];
            let mut marginal = vec![0f64; c];
            for r in rows.chunks_exact(c) {
                for (m, v) in marginal.iter_mut().zip(r) {
                    *m += v / per as f64;
                }
            }
            let kl: f64 = rows
                .chunks_exact(c)
                .map(|r| {
                    r.iter()
                        .zip(&marginal)
                        .filter(|(v, _)| **v > 0.0)
                        .map(|(v, m)| v * (v.ln() - m.ln()))
                        .sum::<f64>()
                })
                .sum::<f64>()
                / per as f64;
            kl.exp()
        })
        .collect();
    let mean = scores.iter().sum::<f64>() / splits as f64;
    let var = scores.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / splits as f64;
    Ok((mean, var.sqrt()))
}

/// Mean and covariance (divided by N - 1, as numpy's `cov`) of a feature set.
#[derive(Debug, Clone)]
pub struct GaussianStats {
    /// Mean feature vector.
    pub mean: DVector<f64>,
    /// Covariance matrix.
    pub cov: DMatrix<f64>,
}

impl GaussianStats {
    /// From features `(N, D)`, N ≥ 2.
    pub fn from_features(features: &Tensor) -> Result<Self> {
        let (n, d) = features.dims2()?;
        if n < 2 || d == 0 {
            return Err(Error::Data(format!(
                "Fréchet distance needs at least 2 feature vectors of positive length, got {:?}",
                features.dims()
            )));
        }
        let v: Vec<f64> = features.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
        if v.iter().any(|x| !x.is_finite()) {
            return Err(Error::Data("features hold NaN or infinity".into()));
        }
        let x = DMatrix::from_row_slice(n, d, &v);
        let mean = DVector::from_iterator(d, x.column_iter().map(|c| c.mean()));
        let mut centred = x;
        for mut row in centred.row_iter_mut() {
            row -= mean.transpose();
        }
        let cov = centred.transpose() * &centred / (n as f64 - 1.0);
        Ok(Self { mean, cov })
    }
}

fn sqrt_psd(m: &DMatrix<f64>) -> DMatrix<f64> {
    let e = SymmetricEigen::new(m.clone());
    let s = e.eigenvalues.map(|l| l.max(0.0).sqrt());
    &e.eigenvectors * DMatrix::from_diagonal(&s) * e.eigenvectors.transpose()
}

/// Fréchet distance between two Gaussians.
pub fn frechet_distance(a: &GaussianStats, b: &GaussianStats) -> Result<f64> {
    if a.mean.len() != b.mean.len() {
        return Err(Error::Data(format!(
            "Fréchet distance between {}- and {}-dimensional features",
            a.mean.len(),
            b.mean.len()
        )));
    }
    let diff = (&a.mean - &b.mean).norm_squared();
    let s1h = sqrt_psd(&a.cov);
    let mut m = &s1h * &b.cov * &s1h;
    // Symmetrise: rounding makes the product slightly asymmetric.
    m = (&m + m.transpose()) * 0.5;
    let tr_sqrt: f64 = SymmetricEigen::new(m)
        .eigenvalues
        .iter()
        .map(|l| l.max(0.0).sqrt())
        .sum();
    Ok(diff + a.cov.trace() + b.cov.trace() - 2.0 * tr_sqrt)
}

/// Class probabilities `(N, C)` and penultimate features `(N, hidden)` of `model`
/// for `images` `(N, 1, H, W)` with values in 0..1 (normalised here as the
/// classifier was trained: MNIST statistics), `batch` images at a time.
pub fn classifier_outputs(
    model: &LeNet,
    images: &Tensor,
    batch: usize,
) -> Result<(Tensor, Tensor)> {
    let n = images.dim(0)?;
    if n == 0 || batch == 0 {
        return Err(Error::Data(
            "classifier outputs: no images or batch 0".into(),
        ));
    }
    let norm = Normalize::mnist();
    let dev = model_device(images);
    let mut probs = Vec::new();
    let mut feats = Vec::new();
    for s in (0..n).step_by(batch) {
        let x = norm.apply(&images.narrow(0, s, batch.min(n - s))?.to_device(&dev)?)?;
        let f = model.features(&x)?;
        probs.push(taper_nn::softmax(&model.logits_from_features(&f)?)?);
        feats.push(f);
    }
    Ok((Tensor::cat(&probs, 0)?, Tensor::cat(&feats, 0)?))
}

fn model_device(images: &Tensor) -> candle_core::Device {
    images.device().clone()
}

/// Inception Score and Fréchet distance of one image set against a reference.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GanScores {
    /// Inception Score (mean over splits).
    pub inception_score: f64,
    /// Its standard deviation over splits.
    pub inception_score_std: f64,
    /// Fréchet distance to the reference features.
    pub frechet_distance: f64,
}

impl GanScores {
    /// Scores `images` (0..1) with `model` against reference statistics, IS over `splits`.
    pub fn compute(
        model: &LeNet,
        images: &Tensor,
        reference: &GaussianStats,
        splits: usize,
    ) -> Result<Self> {
        let (p, f) = classifier_outputs(model, images, 500)?;
        let (is, is_std) = inception_score(&p, splits)?;
        let fd = frechet_distance(&GaussianStats::from_features(&f)?, reference)?;
        Ok(Self {
            inception_score: is,
            inception_score_std: is_std,
            frechet_distance: fd,
        })
    }
}

/// The LeNet of an image-classifier run (`mnist_cnn`, `image_classifier`) for
/// scoring generated `side` x `side` grey images, with its kept weights.
///
/// # Errors
/// A missing run, a run of another model than LeNet, or one trained on images
/// of another size or channel count.
pub fn scoring_lenet(
    run: &std::path::Path,
    side: usize,
    device: &candle_core::Device,
) -> Result<LeNet> {
    let (lenet, pre) = crate::classifier::load_lenet(run, device)?;
    if pre.image_size != (side, side) || pre.channels != 1 {
        return Err(Error::Config(format!(
            "{}: a LeNet of {}x{}x{} images; scoring {side}x{side} grey images needs one trained on them",
            run.display(),
            pre.channels,
            pre.image_size.0,
            pre.image_size.1
        )));
    }
    Ok(lenet)
}

/// Scores of a generator beside real images, as a DCGAN paper reports them:
/// `(generated, real)`. `n` samples of `gen` (noise from `seed`, classes in
/// turn when conditional) and the real images `real` `(M, 1, S, S)` (a test
/// split) are each scored against Gaussian statistics of `reference` images
/// (real training images, at most 10,000 used), so the real split's Fréchet
/// distance is the floor a perfect generator would reach. The Inception Score
/// is split 10 ways when a set has at least 1,000 images, else not split.
///
/// # Errors
/// No images, a generator whose images are not the classifier's size, or
/// tensor failures.
pub fn score_generator(
    classifier: &LeNet,
    gen: &crate::models::Generator,
    n: usize,
    seed: u64,
    reference: &Tensor,
    real: &Tensor,
) -> Result<(GanScores, GanScores)> {
    let splits = |m: usize| if m >= 1000 { 10 } else { 1 };
    let n_ref = reference.dim(0)?.min(10_000);
    let (_, ref_f) = classifier_outputs(classifier, &reference.narrow(0, 0, n_ref)?, 500)?;
    let stats = GaussianStats::from_features(&ref_f)?;
    let real_scores = GanScores::compute(classifier, real, &stats, splits(real.dim(0)?))?;
    let fake = gen.sample(n, None, seed)?;
    let fake_scores = GanScores::compute(classifier, &fake, &stats, splits(n))?;
    Ok((fake_scores, real_scores))
}
