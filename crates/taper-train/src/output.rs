//! What a step returns, and the metrics the trainer reads from it.
//!
//! A classifier's step returns its loss, logits and targets
//! ([`ClassificationOutput`]); the trainer turns that into `loss` and `accuracy`
//! (and whatever extra figures the step attached), so every classifier (plain,
//! mixed precision, differentially private) reports the same metrics computed in
//! one place. A step with other figures (a GAN's two losses) returns
//! [`Metrics`] directly.

use crate::metrics::{correct, Metrics};
use crate::{Error, Result};
use candle_core::{DType, Tensor};

/// What a training or validation step produced, as the trainer reads it.
pub trait StepOutput {
    /// The batch's metrics: at least `loss`, each weighted by the examples (or
    /// tokens) it covers so epoch means are exact.
    ///
    /// # Errors
    /// A tensor that cannot be read back (device errors).
    fn metrics(&self) -> Result<Metrics>;
}

impl StepOutput for Metrics {
    fn metrics(&self) -> Result<Metrics> {
        Ok(self.clone())
    }
}

/// A classification step's output: burn's `ClassificationOutput`.
#[derive(Debug, Clone)]
pub struct ClassificationOutput {
    /// The mean loss over the batch (a scalar).
    pub loss: Tensor,
    /// Logits `(N, C)`.
    pub logits: Tensor,
    /// Class indices `(N,)`.
    pub targets: Tensor,
    /// Further figures of the step (a gradient norm, a loss scale), reported as
    /// they are.
    pub extra: Metrics,
}

impl ClassificationOutput {
    /// The output of a batch whose mean loss is `loss`.
    pub fn new(loss: Tensor, logits: Tensor, targets: Tensor) -> Self {
        Self {
            loss,
            logits,
            targets,
            extra: Metrics::new(),
        }
    }

    /// Adds the figures of `extra`.
    pub fn with_extra(mut self, extra: Metrics) -> Self {
        self.extra.merge(&extra);
        self
    }
}

impl StepOutput for ClassificationOutput {
    /// `loss` and `accuracy`, weighted by the batch size, and the extra figures.
    fn metrics(&self) -> Result<Metrics> {
        let n = self.targets.elem_count();
        if self.logits.dims().first() != Some(&n) {
            return Err(Error::shape(
                "classification output",
                format!("logits ({n}, C) for {n} targets"),
                format!("{:?}", self.logits.dims()),
            ));
        }
        let loss = self.loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        let w = n as f64;
        let acc = correct(&self.logits, &self.targets)? as f64 / w.max(1.0);
        let mut m = Metrics::new()
            .with("loss", loss, w)
            .with("accuracy", acc, w);
        m.merge(&self.extra);
        Ok(m)
    }
}

/// Checks that every label of `targets (N,)` indexes a column of `logits (N, C)`.
///
/// # Errors
/// [`Error::Label`] naming the first label at or past `C`; [`Error::Shape`] when
/// the batch sizes differ.
pub fn check_labels(logits: &Tensor, targets: &Tensor) -> Result<()> {
    let (n, c) = logits.dims2()?;
    if targets.dims() != [n] {
        return Err(Error::shape(
            "class labels",
            format!("({n},) for logits ({n}, {c})"),
            format!("{:?}", targets.dims()),
        ));
    }
    let labels: Vec<u32> = targets.to_dtype(DType::U32)?.to_vec1()?;
    match labels.into_iter().find(|&l| l as usize >= c) {
        Some(label) => Err(Error::Label {
            label: label as u64,
            classes: c,
        }),
        None => Ok(()),
    }
}
