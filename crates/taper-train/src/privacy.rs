//! Differentially private training: DP-SGD (Abadi et al. 2016) as a strategy of
//! [`Optimizers`](crate::Optimizers), and its privacy accountant.
//!
//! With [`DpSgd`] installed ([`Optimizers::with_privacy`](crate::Optimizers::with_privacy)),
//! a step computes each example's gradient
//! ([`Optimizers::step_per_example`](crate::Optimizers::step_per_example), which
//! [`Classifier`](crate::Classifier) calls), clips it to norm `max_grad_norm` and
//! sums; at the update the sum gets Gaussian noise of standard deviation
//! `noise_multiplier * max_grad_norm` once and is divided by the number of
//! examples. Accumulation over `k` batches therefore adds the noise once per
//! logical batch of `k` batches (Opacus's virtual steps), and group clipping, the
//! non-finite guard, schedules and checkpoints apply as in any run.
//! [`RdpAccountant`] tracks the Rényi DP of the sampled Gaussian mechanism
//! (Mironov, Talwar and Zhang 2019) over the updates taken and converts it to
//! (ε, δ) with the conversion of Balle et al. 2020, as Opacus does; its history
//! is saved with every checkpoint.
//!
//! The noise comes from the operating system's secure generator by default, as
//! Opacus's secure mode: noise drawn from a seed saved with the run could be
//! regenerated and subtracted by anyone holding the run, which voids the
//! guarantee. [`DpSgd::with_seeded_noise`] gives a reproducible stream for tests
//! and exact resume, at that cost.
//!
//! Sampling: the accountant assumes each example joins a batch independently with
//! probability `q = batch / dataset`. The trainer's loader shuffles and cuts fixed
//! batches instead, the usual practical stand-in (Abadi et al. 2016 do the same);
//! the reported ε is for the Poisson-sampled mechanism.

use crate::optim::NamedVar;
use crate::{Error, Result};
use candle_core::Tensor;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};

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
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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

/// Where DP-SGD's noise comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoiseSource {
    /// The operating system's secure generator (through `rand`'s thread-local
    /// ChaCha, reseeded from it): nothing saved with the run predicts the noise.
    Secure,
    /// A ChaCha8 stream seeded by `(seed, update)`: reproducible, so a resumed
    /// run repeats an uninterrupted one, but anyone who knows the seed can remove
    /// the noise. For tests and experiments, not for releasing a model.
    Seeded(u64),
}

/// DP-SGD's settings, noise and accountant: the privacy strategy of
/// [`Optimizers`](crate::Optimizers).
#[derive(Debug, Clone)]
pub struct DpSgd {
    /// Each example's gradient is scaled to at most this L2 norm (C).
    pub max_grad_norm: f64,
    /// Noise standard deviation as a multiple of `max_grad_norm` (σ).
    pub noise_multiplier: f64,
    /// Loader batch size over data-set size: the accountant's sampling rate per
    /// batch (an update over `k` accumulated batches samples at `k` times it).
    pub sample_rate: f64,
    /// Where the noise comes from.
    pub noise: NoiseSource,
    /// Privacy spent so far.
    pub accountant: RdpAccountant,
}

impl DpSgd {
    /// DP-SGD with clipping bound `max_grad_norm` (C), noise multiplier σ and
    /// sampling rate `batch / dataset`, noise from the secure generator.
    ///
    /// # Errors
    /// `max_grad_norm <= 0`, `noise_multiplier < 0`, or a rate outside (0, 1].
    pub fn new(max_grad_norm: f64, noise_multiplier: f64, sample_rate: f64) -> Result<Self> {
        // Written so that NaN fails every check.
        let valid = max_grad_norm > 0.0 && noise_multiplier >= 0.0;
        if !valid {
            return Err(Error::Config(format!(
                "DP-SGD: max_grad_norm must be > 0 and noise_multiplier >= 0 (got {max_grad_norm}, {noise_multiplier})"
            )));
        }
        if !(0.0 < sample_rate && sample_rate <= 1.0) {
            return Err(Error::Config(format!(
                "DP-SGD: the sampling rate batch/dataset must be in (0, 1], got {sample_rate}"
            )));
        }
        Ok(Self {
            max_grad_norm,
            noise_multiplier,
            sample_rate,
            noise: NoiseSource::Secure,
            accountant: RdpAccountant::new(),
        })
    }

    /// Draws the noise from a stream seeded by `seed` (see [`NoiseSource::Seeded`]).
    pub fn with_seeded_noise(mut self, seed: u64) -> Self {
        self.noise = NoiseSource::Seeded(seed);
        self
    }

    /// (ε, best Rényi order) spent so far at `delta`.
    pub fn epsilon(&self, delta: f64) -> (f64, f64) {
        self.accountant.epsilon(delta)
    }

    /// The noisy mean gradient of each of `vars` from the sums of clipped
    /// per-example gradients `sums` over `examples` examples; `update` numbers the
    /// draw of a seeded stream. Every variable gets noise, with or without a sum.
    pub(crate) fn privatize(
        &self,
        vars: &[NamedVar],
        sums: Vec<Option<Tensor>>,
        examples: usize,
        update: u64,
    ) -> Result<Vec<Option<Tensor>>> {
        self.noisy_sums(vars, sums, update, true)?
            .into_iter()
            .map(|s| Ok(Some((s / examples.max(1) as f64)?)))
            .collect()
    }

    /// Each variable's sum (zeros where `sums` has none), plus the noise when
    /// `draw` is set. Data-parallel ranks draw on rank 0 only, before the sums
    /// are added up across ranks, so the mechanism's noise is added once.
    pub(crate) fn noisy_sums(
        &self,
        vars: &[NamedVar],
        sums: Vec<Option<Tensor>>,
        update: u64,
        draw: bool,
    ) -> Result<Vec<Tensor>> {
        let std = self.noise_multiplier * self.max_grad_norm;
        let normal = Normal::new(0.0f32, std as f32).map_err(|e| Error::Config(e.to_string()))?;
        let mut seeded = match self.noise {
            NoiseSource::Seeded(seed) => Some(rand_chacha::ChaCha8Rng::seed_from_u64(
                taper_nn::init::mix(&[seed, update], "dp-sgd noise"),
            )),
            NoiseSource::Secure => None,
        };
        let mut secure = rand::rng();
        let mut out = Vec::with_capacity(vars.len());
        for ((_, v), s) in vars.iter().zip(sums) {
            let s = match s {
                Some(s) => s,
                None => v
                    .as_tensor()
                    .zeros_like()?
                    .to_dtype(candle_core::DType::F32)?,
            };
            if !draw {
                out.push(s);
                continue;
            }
            let n = s.elem_count();
            let noise: Vec<f32> = match seeded.as_mut() {
                Some(rng) => (0..n).map(|_| normal.sample(rng)).collect(),
                None => (0..n).map(|_| normal.sample(&mut secure)).collect(),
            };
            let noise = Tensor::from_vec(noise, s.shape(), s.device())?.to_dtype(s.dtype())?;
            out.push((s + noise)?);
        }
        Ok(out)
    }

    /// Records one update over `batches` loader batches.
    pub(crate) fn record_update(&mut self, batches: usize) {
        let q = (self.sample_rate * batches as f64).min(1.0);
        self.accountant.record(q, self.noise_multiplier, 1);
    }
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

/// A [`crate::Callback`] that prints the privacy spent after each epoch (ε at
/// `delta`, Rényi DP accounting of `updates_per_epoch` noisy updates at
/// sampling rate `q` and noise multiplier `sigma` per epoch) and stops
/// training once ε exceeds `target` (by more than 0.1 %, the accountant's
/// rounding).
#[derive(Debug, Clone)]
pub struct BudgetStop {
    /// Sampling rate of one update.
    pub q: f64,
    /// Noise multiplier σ.
    pub sigma: f64,
    /// δ of (ε, δ)-DP.
    pub delta: f64,
    /// The budget; `None`: report only.
    pub target: Option<f64>,
    /// Noisy updates an epoch makes.
    pub updates_per_epoch: u64,
}

impl crate::Callback for BudgetStop {
    fn on_epoch_end(&mut self, record: &crate::record::EpochRecord) -> Result<crate::Control> {
        let mut a = RdpAccountant::new();
        a.record(
            self.q,
            self.sigma,
            (record.epoch as u64 + 1) * self.updates_per_epoch,
        );
        let (eps, order) = a.epsilon(self.delta);
        println!(
            "epoch {}: ε = {eps:.3} at δ = {} (Rényi order {order})",
            record.epoch + 1,
            self.delta
        );
        Ok(match self.target {
            Some(t) if eps > t * 1.001 => crate::Control::Stop,
            _ => crate::Control::Continue,
        })
    }
}
