//! Metrics: running means per name, and helpers computed from logits.

use crate::Result;
use candle_core::{DType, Tensor, D};
use std::collections::BTreeMap;

/// Named running means: each entry is a (weighted sum, weight) pair, so batch
/// metrics combine into exact epoch means whatever the batch sizes.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Metrics {
    sums: BTreeMap<String, (f64, f64)>,
}

impl Metrics {
    /// No entries.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `value` with `weight` (usually the batch size) to `name`.
    pub fn add(&mut self, name: &str, value: f64, weight: f64) {
        let e = self.sums.entry(name.to_string()).or_insert((0.0, 0.0));
        e.0 += value * weight;
        e.1 += weight;
    }

    /// Builder form of [`Metrics::add`].
    pub fn with(mut self, name: &str, value: f64, weight: f64) -> Self {
        self.add(name, value, weight);
        self
    }

    /// Adds every entry of `other`.
    pub fn merge(&mut self, other: &Metrics) {
        for (k, (s, w)) in &other.sums {
            let e = self.sums.entry(k.clone()).or_insert((0.0, 0.0));
            e.0 += s;
            e.1 += w;
        }
    }

    /// The mean of `name`.
    pub fn mean(&self, name: &str) -> Option<f64> {
        self.sums
            .get(name)
            .filter(|(_, w)| *w > 0.0)
            .map(|(s, w)| s / w)
    }

    /// All means, by name.
    pub fn means(&self) -> BTreeMap<String, f64> {
        self.sums
            .iter()
            .filter(|(_, (_, w))| *w > 0.0)
            .map(|(k, (s, w))| (k.clone(), s / w))
            .collect()
    }

    /// Total weight added to `name` (for a per-example metric, the example count).
    pub fn weight(&self, name: &str) -> f64 {
        self.sums.get(name).map(|e| e.1).unwrap_or(0.0)
    }

    /// Every entry as (name, weighted sum, weight), by name.
    pub fn entries(&self) -> Vec<(String, f64, f64)> {
        self.sums
            .iter()
            .map(|(k, (s, w))| (k.clone(), *s, *w))
            .collect()
    }

    /// Adds an already weighted `sum` and its `weight` to `name` (the inverse of
    /// [`Metrics::entries`]: sums from other ranks).
    pub fn add_sum(&mut self, name: &str, sum: f64, weight: f64) {
        let e = self.sums.entry(name.to_string()).or_insert((0.0, 0.0));
        e.0 += sum;
        e.1 += weight;
    }

    /// Removes `name`, returning its (weighted sum, weight): how a step's summed
    /// statistics leave the log once [`crate::TrainStep::compute_metrics`] has
    /// turned them into a metric.
    pub fn remove(&mut self, name: &str) -> Option<(f64, f64)> {
        self.sums.remove(name)
    }

    /// True when nothing was added.
    pub fn is_empty(&self) -> bool {
        self.sums.is_empty()
    }
}

/// A metric accumulated over batches (for metrics that are not means of batch
/// values, such as BLEU or ROC-AUC).
pub trait Metric {
    /// Its name in logs.
    fn name(&self) -> &str;
    /// Accumulates one batch of predictions and targets.
    fn update(&mut self, predictions: &Tensor, targets: &Tensor) -> Result<()>;
    /// The value over everything accumulated since the last reset.
    fn compute(&self) -> f64;
    /// Forgets everything accumulated.
    fn reset(&mut self);
}

/// Number of rows of `logits` (N, C) whose arg-max equals `targets` (N,).
pub fn correct(logits: &Tensor, targets: &Tensor) -> Result<usize> {
    let pred = logits.argmax(D::Minus1)?;
    let t = targets.to_dtype(pred.dtype())?;
    Ok(pred
        .eq(&t)?
        .to_dtype(DType::F32)?
        .sum_all()?
        .to_scalar::<f32>()? as usize)
}

/// Fraction of rows whose arg-max equals the target.
pub fn accuracy(logits: &Tensor, targets: &Tensor) -> Result<f64> {
    let n = targets.elem_count().max(1);
    Ok(correct(logits, targets)? as f64 / n as f64)
}

/// Fraction of rows whose target is among the `k` highest logits. Ties count in
/// the target's favour only when strictly fewer than `k` logits exceed it.
pub fn topk_accuracy(logits: &Tensor, targets: &Tensor, k: usize) -> Result<f64> {
    let n = targets.elem_count();
    if n == 0 {
        return Ok(0.0);
    }
    let t = targets.to_dtype(DType::U32)?.unsqueeze(1)?;
    let target_logit = logits.gather(&t, 1)?;
    let above = logits
        .broadcast_gt(&target_logit)?
        .to_dtype(DType::F32)?
        .sum(1)?;
    let hits = above
        .lt(k as f64)?
        .to_dtype(DType::F32)?
        .sum_all()?
        .to_scalar::<f32>()?;
    Ok(hits as f64 / n as f64)
}

/// Accuracy as a [`Metric`].
#[derive(Debug, Default, Clone)]
pub struct Accuracy {
    correct: usize,
    total: usize,
}

impl Metric for Accuracy {
    fn name(&self) -> &str {
        "accuracy"
    }
    fn update(&mut self, logits: &Tensor, targets: &Tensor) -> Result<()> {
        self.correct += correct(logits, targets)?;
        self.total += targets.elem_count();
        Ok(())
    }
    fn compute(&self) -> f64 {
        self.correct as f64 / self.total.max(1) as f64
    }
    fn reset(&mut self) {
        *self = Self::default();
    }
}

/// Top-k accuracy as a [`Metric`].
#[derive(Debug, Clone)]
pub struct TopK {
    k: usize,
    hits: f64,
    total: usize,
    name: String,
}

impl TopK {
    /// Top-`k` accuracy, logged as `top<k>_accuracy`.
    pub fn new(k: usize) -> Self {
        Self {
            k,
            hits: 0.0,
            total: 0,
            name: format!("top{k}_accuracy"),
        }
    }
}

impl Metric for TopK {
    fn name(&self) -> &str {
        &self.name
    }
    fn update(&mut self, logits: &Tensor, targets: &Tensor) -> Result<()> {
        let n = targets.elem_count();
        self.hits += topk_accuracy(logits, targets, self.k)? * n as f64;
        self.total += n;
        Ok(())
    }
    fn compute(&self) -> f64 {
        self.hits / self.total.max(1) as f64
    }
    fn reset(&mut self) {
        self.hits = 0.0;
        self.total = 0;
    }
}

/// Spearman's rank correlation (ties get their average rank); NaN for fewer than
/// two values or a constant input.
pub fn spearman(x: &[f64], y: &[f64]) -> f64 {
    if x.len() != y.len() || x.len() < 2 {
        return f64::NAN;
    }
    pearson(&ranks(x), &ranks(y))
}

/// Pearson's correlation; NaN when an input is constant (as scipy's `pearsonr`).
///
/// Constancy is tested on the values themselves: the mean of a constant column
/// is not always that constant after rounding (1448 times 1.81), and the tiny
/// variance left over turned a constant input into a correlation of ±1.
pub fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len().min(y.len());
    let (x, y) = (&x[..n], &y[..n]);
    if n < 2 || x.iter().all(|v| *v == x[0]) || y.iter().all(|v| *v == y[0]) {
        return f64::NAN;
    }
    let n = n as f64;
    let mx = x.iter().sum::<f64>() / n;
    let my = y.iter().sum::<f64>() / n;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    if sxx == 0.0 || syy == 0.0 {
        return f64::NAN;
    }
    sxy / (sxx * syy).sqrt()
}

fn ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            r[k] = avg;
        }
        i = j + 1;
    }
    r
}
