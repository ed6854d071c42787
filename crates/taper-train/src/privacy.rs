//! Differentially private training: DP-SGD (Abadi et al. 2016) and its privacy
//! accountant.
//!
//! [`DpSgd::noisy_grads`] computes each example's gradient, clips it to norm
//! `max_grad_norm`, sums, adds Gaussian noise of standard deviation
//! `noise_multiplier * max_grad_norm` and divides by the batch size; any optimizer
//! then takes the result. [`RdpAccountant`] tracks the Rényi DP of the sampled
//! Gaussian mechanism (Mironov, Talwar and Zhang 2019) over the steps taken and
//! converts it to (ε, δ) with the conversion of Balle et al. 2020, as Opacus does.
//!
//! Sampling: the accountant assumes each example joins a batch independently with
//! probability `q = batch / dataset`. The trainer's loader shuffles and cuts fixed
//! batches instead, the usual practical stand-in (Abadi et al. 2016 do the same);
//! the reported ε is for the Poisson-sampled mechanism.

use crate::{Error, Result};
use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

/// The Rényi orders tried when converting to (ε, δ): those Opacus uses by default.
pub fn default_orders() -> Vec<f64> {
    let mut v: Vec<f64> = (1..100).map(|x| 1.0 + x as f64 / 10.0).collect();
    v.extend((12..64).map(|x| x as f64));
    v
}

/// ln(e^a + e^b) without overflow.
fn log_add(a: f64, b: f64) -> f64 {
    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
    if lo == f64::NEG_INFINITY {
        return hi;
    }
    (lo - hi).exp().ln_1p() + hi
}

/// ln(e^a - e^b) for a >= b.
fn log_sub(a: f64, b: f64) -> f64 {
    if b == f64::NEG_INFINITY {
        return a;
    }
    if a <= b {
        return f64::NEG_INFINITY;
    }
    let d = (a - b).exp_m1();
    if d.is_infinite() {
        a
    } else {
        d.ln() + b
    }
}

/// ln(erfc(x)), accurate far into the tail where erfc itself underflows.
fn log_erfc(x: f64) -> f64 {
    if x < 10.0 {
        return libm::erfc(x).ln();
    }
    // Asymptotic series: erfc(x) = exp(-x²)/(x√π) · (1 - 1/(2x²) + 3/(4x⁴) - ...).
    let x2 = x * x;
    let series = 1.0 - 1.0 / (2.0 * x2) + 3.0 / (4.0 * x2 * x2) - 15.0 / (8.0 * x2 * x2 * x2)
        + 105.0 / (16.0 * x2 * x2 * x2 * x2);
    -x2 - x.ln() - 0.5 * std::f64::consts::PI.ln() + series.ln()
}

fn ln_binom(n: u64, k: u64) -> f64 {
    libm::lgamma(n as f64 + 1.0) - libm::lgamma(k as f64 + 1.0) - libm::lgamma((n - k) as f64 + 1.0)
}

/// ln A_α of the sampled Gaussian mechanism for an integer order: the binomial
/// expansion of E[(μ₁/μ₀)^α].
fn log_a_int(q: f64, sigma: f64, alpha: u64) -> f64 {
    let mut acc = f64::NEG_INFINITY;
    for i in 0..=alpha {
        let t = ln_binom(alpha, i)
            + i as f64 * q.ln()
            + (alpha - i) as f64 * (1.0 - q).ln()
            + (i * i - i) as f64 / (2.0 * sigma * sigma);
        acc = log_add(acc, t);
    }
    acc
}

/// ln A_α for a fractional order: the two-sided series of Mironov et al. (2019),
/// section 3.3, summed until its terms are negligible.
fn log_a_frac(q: f64, sigma: f64, alpha: f64) -> f64 {
    let (mut a0, mut a1) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    let z0 = sigma * sigma * (1.0 / q - 1.0).ln() + 0.5;
    let mut coef = 1.0f64; // generalised binomial (alpha choose i)
    let s2 = std::f64::consts::SQRT_2 * sigma;
    for i in 0..10_000u64 {
        let fi = i as f64;
        let j = alpha - fi;
        let lc = coef.abs().ln();
        let t0 = lc + fi * q.ln() + j * (1.0 - q).ln();
        let t1 = lc + j * q.ln() + fi * (1.0 - q).ln();
        let e0 = 0.5f64.ln() + log_erfc((fi - z0) / s2);
        let e1 = 0.5f64.ln() + log_erfc((z0 - j) / s2);
        let s0 = t0 + (fi * fi - fi) / (2.0 * sigma * sigma) + e0;
        let s1 = t1 + (j * j - j) / (2.0 * sigma * sigma) + e1;
        if coef > 0.0 {
            a0 = log_add(a0, s0);
            a1 = log_add(a1, s1);
        } else {
            a0 = log_sub(a0, s0);
            a1 = log_sub(a1, s1);
        }
        if s0.max(s1) < -30.0 {
            break;
        }
        coef *= (alpha - fi) / (fi + 1.0);
    }
    log_add(a0, a1)
}

/// Rényi DP of order `alpha` of one step of the sampled Gaussian mechanism with
/// sampling rate `q` and noise multiplier `sigma`.
pub fn rdp_step(q: f64, sigma: f64, alpha: f64) -> f64 {
    if q == 0.0 {
        return 0.0;
    }
    if sigma == 0.0 || alpha.is_infinite() {
        return f64::INFINITY;
    }
    if q >= 1.0 {
        return alpha / (2.0 * sigma * sigma);
    }
    let la = if alpha.fract() == 0.0 {
        log_a_int(q, sigma, alpha as u64)
    } else {
        log_a_frac(q, sigma, alpha)
    };
    la / (alpha - 1.0)
}

/// ε at `delta` from the RDP values `rdp[i]` of orders `orders[i]`, with the order
/// that gives it (the conversion of Balle et al. 2020, Theorem 21).
pub fn epsilon_from_rdp(orders: &[f64], rdp: &[f64], delta: f64) -> (f64, f64) {
    let mut best = (f64::INFINITY, f64::NAN);
    for (&a, &r) in orders.iter().zip(rdp) {
        let eps = r - (delta.ln() + a.ln()) / (a - 1.0) + ((a - 1.0) / a).ln();
        if eps.is_finite() && eps < best.0 {
            best = (eps, a);
        }
    }
    best
}

/// Tracks the privacy spent by the steps of DP-SGD.
#[derive(Debug, Clone, Default)]
pub struct RdpAccountant {
    /// (sampling rate, noise multiplier, steps) of each phase so far.
    pub history: Vec<(f64, f64, u64)>,
}

impl RdpAccountant {
    /// An accountant with nothing spent.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `steps` steps at sampling rate `q` with noise multiplier `sigma`.
    pub fn record(&mut self, q: f64, sigma: f64, steps: u64) {
        match self.history.last_mut() {
            Some(last) if last.0 == q && last.1 == sigma => last.2 += steps,
            _ => self.history.push((q, sigma, steps)),
        }
    }

    /// Total steps recorded.
    pub fn steps(&self) -> u64 {
        self.history.iter().map(|h| h.2).sum()
    }

    /// (ε, best order) spent so far at `delta`.
    pub fn epsilon(&self, delta: f64) -> (f64, f64) {
        let orders = default_orders();
        let rdp: Vec<f64> = orders
            .iter()
            .map(|&a| {
                self.history
                    .iter()
                    .map(|&(q, s, n)| rdp_step(q, s, a) * n as f64)
                    .sum()
            })
            .collect();
        epsilon_from_rdp(&orders, &rdp, delta)
    }
}

/// The smallest noise multiplier (to within `tol` in ε) whose ε after `steps`
/// steps at rate `q` stays at or under `target_epsilon` at `delta`.
pub fn noise_for_epsilon(target_epsilon: f64, delta: f64, q: f64, steps: u64) -> Result<f64> {
    if target_epsilon <= 0.0 || !(0.0..1.0).contains(&delta) || !(0.0..=1.0).contains(&q) {
        return Err(Error::Config(format!(
            "noise_for_epsilon: need ε > 0, 0 <= δ < 1, 0 <= q <= 1 (got {target_epsilon}, {delta}, {q})"
        )));
    }
    let eps = |s: f64| {
        let mut a = RdpAccountant::new();
        a.record(q, s, steps);
        a.epsilon(delta).0
    };
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    while eps(hi) > target_epsilon {
        hi *= 2.0;
        if hi > 1e4 {
            return Err(Error::Config(format!(
                "no noise multiplier up to 1e4 reaches ε = {target_epsilon}"
            )));
        }
    }
    while hi - lo > 1e-4 {
        let mid = 0.5 * (lo + hi);
        if eps(mid) > target_epsilon {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(hi)
}

/// DP-SGD's clipping and noise.
#[derive(Debug, Clone)]
pub struct DpSgd {
    /// Each example's gradient is scaled to at most this L2 norm (C).
    pub max_grad_norm: f64,
    /// Noise standard deviation as a multiple of `max_grad_norm` (σ).
    pub noise_multiplier: f64,
    /// Seed of the noise; the step number is mixed in, so runs are reproducible.
    pub seed: u64,
}

impl DpSgd {
    /// Clipped, noised, averaged gradients of `vars` for one batch.
    ///
    /// `example_loss(i)` must return the loss of example `i` alone (its graph
    /// reaching `vars`); `n` is the batch size; `step` numbers the noise draw.
    /// Returns the gradient store for the optimizer and the mean per-example norm
    /// before clipping.
    pub fn noisy_grads<F>(
        &self,
        vars: &[&Var],
        n: usize,
        step: u64,
        example_loss: F,
    ) -> Result<(GradStore, f64)>
    where
        F: Fn(usize) -> Result<Tensor> + Sync,
    {
        if n == 0 {
            return Err(Error::Config("DP-SGD: empty batch".into()));
        }
        if self.max_grad_norm <= 0.0 || self.noise_multiplier < 0.0 {
            return Err(Error::Config(format!(
                "DP-SGD: max_grad_norm must be > 0 and noise_multiplier >= 0 (got {}, {})",
                self.max_grad_norm, self.noise_multiplier
            )));
        }
        // One example's graph is too small to keep the cores busy, so examples run
        // in parallel: one chunk per thread, each summing its clipped gradients.
        let threads = rayon::current_num_threads().clamp(1, n);
        let chunk = n.div_ceil(threads);
        let parts: Vec<Result<ChunkSum>> = {
            use rayon::prelude::*;
            (0..n)
                .step_by(chunk)
                .collect::<Vec<_>>()
                .into_par_iter()
                .map(|start| self.clipped_sum(vars, start..(start + chunk).min(n), &example_loss))
                .collect()
        };
        let mut sums: Vec<Option<Tensor>> = vec![None; vars.len()];
        let mut norms = 0.0;
        let mut store = None;
        for part in parts {
            let part = part?;
            norms += part.norms;
            for (acc, s) in sums.iter_mut().zip(part.sums) {
                if let Some(s) = s {
                    *acc = Some(match acc.take() {
                        None => s,
                        Some(a) => (a + s)?,
                    });
                }
            }
            store = store.or(part.store);
        }
        let mut store =
            store.ok_or_else(|| Error::Config("DP-SGD: no example gave gradients".into()))?;
        let std = self.noise_multiplier * self.max_grad_norm;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(crate::seed::mix(
            &[self.seed, step],
            "dp-sgd noise",
        ));
        let normal = Normal::new(0.0f32, std as f32).map_err(|e| Error::Config(e.to_string()))?;
        for (v, s) in vars.iter().zip(sums) {
            let s = match s {
                Some(s) => s,
                None => v.as_tensor().zeros_like()?,
            };
            let noise: Vec<f32> = (0..s.elem_count())
                .map(|_| normal.sample(&mut rng))
                .collect();
            let noise = Tensor::from_vec(noise, s.shape(), s.device())?.to_dtype(s.dtype())?;
            let g = ((s + noise)? / n as f64)?;
            store.insert(v.as_tensor(), g);
        }
        Ok((store, norms / n as f64))
    }

    fn clipped_sum<F>(
        &self,
        vars: &[&Var],
        range: std::ops::Range<usize>,
        example_loss: &F,
    ) -> Result<ChunkSum>
    where
        F: Fn(usize) -> Result<Tensor> + Sync,
    {
        let mut out = ChunkSum {
            sums: vec![None; vars.len()],
            norms: 0.0,
            store: None,
        };
        for i in range {
            let grads = example_loss(i)?.backward()?;
            let norm = crate::clip::grad_norm(vars, &grads)?;
            if !norm.is_finite() {
                return Err(Error::Config(format!(
                    "DP-SGD: example {i} of the batch has a non-finite gradient"
                )));
            }
            out.norms += norm;
            let scale = (self.max_grad_norm / (norm + 1e-6)).min(1.0);
            for (k, v) in vars.iter().enumerate() {
                if let Some(g) = grads.get(v) {
                    let g = (g * scale)?;
                    out.sums[k] = Some(match out.sums[k].take() {
                        None => g,
                        Some(s) => (s + g)?,
                    });
                }
            }
            out.store = Some(grads);
        }
        Ok(out)
    }
}

struct ChunkSum {
    sums: Vec<Option<Tensor>>,
    norms: f64,
    store: Option<GradStore>,
}

/// A typical δ: below 1 / dataset size, as the DP literature recommends.
pub fn default_delta(dataset_len: usize) -> f64 {
    let d = 1.0 / dataset_len.max(1) as f64;
    let mut p = 1e-5;
    while p >= d {
        p /= 10.0;
    }
    p
}

/// A classifier trained with DP-SGD: each batch's per-example gradients are
/// clipped and noised ([`DpSgd`]) before the update of the only optimizer group,
/// and the accountant records every step.
pub struct DpClassifier<M> {
    /// The network and its variables.
    pub inner: crate::Classifier<M>,
    /// Clipping bound, noise multiplier, noise seed.
    pub dp: DpSgd,
    /// Batch size over data-set size: the accountant's sampling rate.
    pub sample_rate: f64,
    /// Privacy spent so far.
    pub accountant: RdpAccountant,
}

impl<M: candle_core::ModuleT + Sync> crate::TrainStep<crate::data::TensorBatch>
    for DpClassifier<M>
{
    fn train_step(
        &mut self,
        batch: &crate::data::TensorBatch,
        opt: &mut crate::Optimizers,
    ) -> Result<crate::Metrics> {
        use crate::LossModel;
        let (x, y) = (batch.inputs(), batch.targets());
        let n = batch.len();
        let named = crate::optim::named_vars(&self.inner.varmap, "");
        let vars: Vec<&Var> = named.iter().map(|(_, v)| v).collect();
        let model = &self.inner.model;
        // The trainer's step number: after a resume the accountant catches up on
        // the steps the checkpoint already spent, and no noise draw repeats.
        let step = crate::seed::iteration();
        let missing = step.saturating_sub(self.accountant.steps());
        if missing > 0 {
            self.accountant
                .record(self.sample_rate, self.dp.noise_multiplier, missing);
        }
        let (grads, norm) = self.dp.noisy_grads(&vars, n, step, |i| {
            let logits = model.forward_t(&x.narrow(0, i, 1)?, true)?;
            Ok(crate::nn::cross_entropy(&logits, &y.narrow(0, i, 1)?)?)
        })?;
        let group = opt
            .groups()
            .first()
            .map(|g| g.name.clone())
            .ok_or_else(|| Error::Config("DP-SGD needs one optimizer group".into()))?;
        opt.apply_grads(&group, &grads)?;
        self.accountant
            .record(self.sample_rate, self.dp.noise_multiplier, 1);
        // Loss and accuracy of the batch after the update, for the progress line.
        let (_, m) = self.inner.loss(batch, false)?;
        Ok(m.with("grad_norm", norm, n as f64))
    }

    fn valid_step(&mut self, batch: &crate::data::TensorBatch) -> Result<crate::Metrics> {
        use crate::LossModel;
        Ok(self.inner.loss(batch, false)?.1)
    }

    fn varmap(&self) -> &candle_nn::VarMap {
        &self.inner.varmap
    }
}
