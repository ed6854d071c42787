//! Learning-rate schedules, following PyTorch's `lr_scheduler` formulas.
//!
//! A schedule maps the index of the coming optimizer step (0 for the first) to a
//! learning rate, so step-based schedules carry no state; reduce-on-plateau reacts
//! to a metric at each epoch's end and saves its state in the checkpoint.

use crate::{Error, Result};
use serde_json::{json, Value};
use std::f64::consts::PI;

/// A learning-rate schedule.
pub trait LrSchedule: Send {
    /// Learning rate for the optimizer step with 0-based index `step`.
    fn learning_rate(&self, step: usize) -> f64;
    /// Called at each epoch's end with the monitored metric, when there is one.
    fn on_epoch_end(&mut self, _metric: Option<f64>) {}
    /// State to save (stateless schedules return `null`).
    fn state(&self) -> Value {
        Value::Null
    }
    /// Restores a saved state.
    fn load_state(&mut self, _state: &Value) -> Result<()> {
        Ok(())
    }
}

/// A fixed learning rate.
#[derive(Debug, Clone, Copy)]
pub struct Constant(pub f64);

impl LrSchedule for Constant {
    fn learning_rate(&self, _step: usize) -> f64 {
        self.0
    }
}

/// `lr · gamma^⌊step / step_size⌋` (PyTorch `StepLR`).
#[derive(Debug, Clone, Copy)]
pub struct StepDecay {
    /// Initial learning rate.
    pub lr: f64,
    /// Steps between decays.
    pub step_size: usize,
    /// Factor applied at each decay.
    pub gamma: f64,
}

impl LrSchedule for StepDecay {
    fn learning_rate(&self, step: usize) -> f64 {
        self.lr * self.gamma.powi((step / self.step_size.max(1)) as i32)
    }
}

/// `lr · gamma^step` (PyTorch `ExponentialLR`).
#[derive(Debug, Clone, Copy)]
pub struct Exponential {
    /// Initial learning rate.
    pub lr: f64,
    /// Factor per step.
    pub gamma: f64,
}

impl LrSchedule for Exponential {
    fn learning_rate(&self, step: usize) -> f64 {
        self.lr * self.gamma.powi(step as i32)
    }
}

/// Linear warm-up from `lr · warmup_start` to `lr` over `warmup_steps`, then cosine
/// annealing to `min_lr` at `total_steps` (PyTorch `LinearLR` then
/// `CosineAnnealingLR` in a `SequentialLR`).
#[derive(Debug, Clone, Copy)]
pub struct WarmupCosine {
    /// Peak learning rate.
    pub lr: f64,
    /// Learning rate at the end of the cosine.
    pub min_lr: f64,
    /// Steps of linear warm-up (0 for none).
    pub warmup_steps: usize,
    /// Fraction of `lr` the warm-up starts from.
    pub warmup_start: f64,
    /// Total steps (warm-up included).
    pub total_steps: usize,
}

impl WarmupCosine {
    /// Cosine from `lr` to `min_lr` over `total_steps`, no warm-up.
    pub fn cosine(lr: f64, min_lr: f64, total_steps: usize) -> Self {
        Self {
            lr,
            min_lr,
            warmup_steps: 0,
            warmup_start: 1.0,
            total_steps,
        }
    }
}

impl LrSchedule for WarmupCosine {
    fn learning_rate(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            let f = self.warmup_start
                + (1.0 - self.warmup_start) * step as f64 / self.warmup_steps as f64;
            return self.lr * f;
        }
        let span = self.total_steps.saturating_sub(self.warmup_steps).max(1) as f64;
        let t = ((step - self.warmup_steps) as f64).min(span);
        self.min_lr + (self.lr - self.min_lr) * (1.0 + (PI * t / span).cos()) / 2.0
    }
}

/// The one-cycle policy with cosine annealing (PyTorch `OneCycleLR`, two phases).
#[derive(Debug, Clone, Copy)]
pub struct OneCycle {
    /// Peak learning rate.
    pub max_lr: f64,
    /// Total steps of the cycle.
    pub total_steps: usize,
    /// Fraction of the cycle spent rising.
    pub pct_start: f64,
    /// Initial learning rate is `max_lr / div_factor`.
    pub div_factor: f64,
    /// Final learning rate is the initial one divided by this.
    pub final_div_factor: f64,
}

impl OneCycle {
    /// PyTorch's defaults: pct_start 0.3, div_factor 25, final_div_factor 1e4.
    pub fn new(max_lr: f64, total_steps: usize) -> Self {
        Self {
            max_lr,
            total_steps,
            pct_start: 0.3,
            div_factor: 25.0,
            final_div_factor: 1e4,
        }
    }
}

fn cos_anneal(start: f64, end: f64, pct: f64) -> f64 {
    end + (start - end) / 2.0 * ((PI * pct).cos() + 1.0)
}

/// `num / den` as the fraction of a phase done: a phase of no length (a warm-up
/// of one step, a cycle of one or two steps) is done at once, where PyTorch's
/// formula divides zero by zero.
fn phase_fraction(num: f64, den: f64) -> f64 {
    if den > 0.0 {
        (num / den).clamp(0.0, 1.0)
    } else {
        1.0
    }
}

impl LrSchedule for OneCycle {
    /// PyTorch's two phases; finite at every step for any positive `max_lr`, also
    /// when a phase is shorter than one step (PyTorch divides by zero there).
    fn learning_rate(&self, step: usize) -> f64 {
        let initial = self.max_lr / self.div_factor;
        let min = initial / self.final_div_factor;
        let end2 = self.total_steps as f64 - 1.0;
        let end1 = (self.pct_start * self.total_steps as f64 - 1.0).min(end2);
        let s = (step as f64).min(end2.max(0.0));
        if s <= end1 {
            cos_anneal(initial, self.max_lr, phase_fraction(s, end1))
        } else {
            cos_anneal(self.max_lr, min, phase_fraction(s - end1, end2 - end1))
        }
    }
}

/// Whether a monitored metric should go down (loss) or up (accuracy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Direction {
    /// Lower is better.
    Min,
    /// Higher is better.
    Max,
}

impl Direction {
    /// True when `a` improves on `best` by more than the relative `threshold`.
    pub fn improves(self, a: f64, best: f64, threshold: f64) -> bool {
        match self {
            Direction::Min => a < best * (1.0 - threshold.copysign(best)),
            Direction::Max => a > best * (1.0 + threshold.copysign(best)),
        }
    }
    /// The worst possible value.
    pub fn worst(self) -> f64 {
        match self {
            Direction::Min => f64::INFINITY,
            Direction::Max => f64::NEG_INFINITY,
        }
    }
}

/// Multiplies the learning rate by `factor` when the monitored metric has not
/// improved for more than `patience` epochs (PyTorch `ReduceLROnPlateau`,
/// relative threshold).
#[derive(Debug, Clone)]
pub struct ReduceOnPlateau {
    /// Current learning rate.
    pub lr: f64,
    /// Direction of improvement.
    pub mode: Direction,
    /// Factor applied on a plateau.
    pub factor: f64,
    /// Epochs without improvement tolerated.
    pub patience: usize,
    /// Relative improvement that counts.
    pub threshold: f64,
    /// Epochs to wait after a reduction.
    pub cooldown: usize,
    /// Floor of the learning rate.
    pub min_lr: f64,
    best: f64,
    bad_epochs: usize,
    cooldown_left: usize,
}

impl ReduceOnPlateau {
    /// PyTorch's defaults (factor 0.1, patience 10, threshold 1e-4).
    pub fn new(lr: f64, mode: Direction) -> Self {
        Self {
            lr,
            mode,
            factor: 0.1,
            patience: 10,
            threshold: 1e-4,
            cooldown: 0,
            min_lr: 0.0,
            best: mode.worst(),
            bad_epochs: 0,
            cooldown_left: 0,
        }
    }
}

impl LrSchedule for ReduceOnPlateau {
    fn learning_rate(&self, _step: usize) -> f64 {
        self.lr
    }
    fn on_epoch_end(&mut self, metric: Option<f64>) {
        let Some(m) = metric else { return };
        if self.mode.improves(m, self.best, self.threshold) {
            self.best = m;
            self.bad_epochs = 0;
        } else {
            self.bad_epochs += 1;
        }
        if self.cooldown_left > 0 {
            self.cooldown_left -= 1;
            self.bad_epochs = 0;
        }
        if self.bad_epochs > self.patience {
            let new = (self.lr * self.factor).max(self.min_lr);
            if self.lr - new > 1e-8 {
                self.lr = new;
            }
            self.cooldown_left = self.cooldown;
            self.bad_epochs = 0;
        }
    }
    fn state(&self) -> Value {
        json!({"lr": self.lr, "best": self.best, "bad_epochs": self.bad_epochs,
               "cooldown_left": self.cooldown_left})
    }
    fn load_state(&mut self, s: &Value) -> Result<()> {
        let f = |k: &str| {
            s.get(k)
                .and_then(Value::as_f64)
                .ok_or_else(|| Error::Config(format!("plateau schedule state lacks '{k}'")))
        };
        self.lr = f("lr")?;
        // JSON has no infinity: a never-set best is stored as null.
        self.best = s
            .get("best")
            .and_then(Value::as_f64)
            .unwrap_or(self.mode.worst());
        self.bad_epochs = f("bad_epochs")? as usize;
        self.cooldown_left = f("cooldown_left")? as usize;
        Ok(())
    }
}
