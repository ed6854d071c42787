//! Named optimizer groups and the one path by which weights change.
//!
//! [`Optimizers::step`] (and, for per-example gradients,
//! [`Optimizers::step_per_example`]) is the only way an update happens:
//!
//! ```text
//! loss ─▶ refuse non-finite ─▶ backward (× loss scale) ─▶ the group's gradients
//!      ─▶ [per example: clip each (DP-SGD), sum] ─▶ accumulate k calls
//!      ─▶ [DP-SGD: noise once] average ─▶ clip ─▶ non-finite guard
//!      ─▶ learning rate from the schedule ─▶ optimizer ─▶ [masters → working]
//! ```
//!
//! Mixed precision ([`crate::amp`]) and DP-SGD ([`crate::privacy`]) are
//! strategies installed on this path, so clipping, the non-finite guard,
//! accumulation and checkpoints apply to them as to any run.
//!
//! ```
//! use candle_core::{DType, Device, Module, Tensor};
//! use candle_nn::VarMap;
//! use taper_nn::init::seeded_var_builder;
//! use taper_train::optim::{named_vars, Sgd, SgdConfig};
//! use taper_train::Optimizers;
//!
//! let varmap = VarMap::new();
//! let fc = taper_nn::linear(2, 1, seeded_var_builder(&varmap, 0, DType::F32, &Device::Cpu).pp("fc"))?;
//! let mut opt = Optimizers::single(Sgd::new(named_vars(&varmap, ""), SgdConfig { lr: 0.1, ..Default::default() }))
//!     .with_accumulation(2);
//! let x = Tensor::ones((4, 2), DType::F32, &Device::Cpu)?;
//! let before = fc.weight().to_vec2::<f32>()?;
//! opt.step("model", &fc.forward(&x)?.sum_all()?)?;
//! assert_eq!(fc.weight().to_vec2::<f32>()?, before); // one of two accumulated
//! opt.step("model", &fc.forward(&x)?.sum_all()?)?;
//! assert_ne!(fc.weight().to_vec2::<f32>()?, before); // the update
//! assert_eq!(opt.groups()[0].steps(), 1);
//! # Ok::<(), taper_train::Error>(())
//! ```

use crate::amp::MixedPrecision;
use crate::clip::{self, Clip};
use crate::distributed::{self, Collective};
use crate::optim::{NamedVar, Optim, OptimState};
use crate::privacy::DpSgd;
use crate::schedule::{Constant, LrSchedule};
use crate::{Error, Result};
use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};
use std::sync::Arc;
use taper_nn::Mode;

/// Gradients gathered since the last update.
struct Pending {
    /// Per variable of the group (in the optimizer's order): the sum of batch-mean
    /// gradients, or of clipped per-example gradients under DP-SGD.
    sums: Vec<Option<Tensor>>,
    /// `step` calls summed.
    calls: usize,
    /// Examples summed (DP-SGD's divisor).
    examples: usize,
    /// The latest backward pass's store, reused to hand gradients to the optimizer.
    store: GradStore,
}

/// One group: its optimizer (which holds the parameters), its schedule, its
/// clipping rule and its update count.
pub struct Group {
    name: String,
    optimizer: Box<dyn Optim>,
    schedule: Box<dyn LrSchedule>,
    clip: Clip,
    steps: usize,
    last_grad_norm: Option<f64>,
    pending: Option<Pending>,
}

impl Group {
    /// The group's name (`"model"`, `"g"`, ...).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The optimizer (read only: updates go through [`Optimizers::step`]).
    pub fn optimizer(&self) -> &dyn Optim {
        self.optimizer.as_ref()
    }

    /// Updates applied so far.
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// The clipping rule.
    pub fn clip(&self) -> Clip {
        self.clip
    }

    /// The learning rate of the next update.
    pub fn learning_rate(&self) -> f64 {
        self.schedule.learning_rate(self.steps)
    }

    /// Gradient norm before clipping at the last update (when clipping by norm).
    pub fn last_grad_norm(&self) -> Option<f64> {
        self.last_grad_norm
    }
}

/// The optimizer groups of a model, with the strategies on their update path. A
/// classifier has one group (`"model"`); a GAN has two, stepped in the order its
/// train step chooses.
#[derive(Default)]
pub struct Optimizers {
    groups: Vec<Group>,
    accumulate: usize,
    precision: Option<MixedPrecision>,
    privacy: Option<DpSgd>,
    /// Data-parallel ranks whose gradients are summed before each update.
    collective: Option<Arc<dyn Collective>>,
}

fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?.sum_all()?.to_scalar::<f64>()?)
}

fn add(acc: Option<Tensor>, g: Option<Tensor>) -> Result<Option<Tensor>> {
    Ok(match (acc, g) {
        (Some(a), Some(g)) => Some((a + g)?),
        (a, g) => a.or(g),
    })
}

/// Per-example gradients: their sums (clipped when `clip` is set), the sum of
/// their norms before clipping, and one gradient store.
struct ExampleSums {
    sums: Vec<Option<Tensor>>,
    norms: f64,
    store: Option<GradStore>,
}

/// Examples per unit of work: fixed, so the order of the sums (and so every
/// rounding) is the same on any number of threads.
const EXAMPLE_CHUNK: usize = 8;
/// Chunks computed at once: bounds the partial sums alive together.
const CHUNK_WAVE: usize = 16;

/// What the per-example passes of one step share across threads.
struct ExampleCtx<'a> {
    precision: Option<&'a MixedPrecision>,
    scale: f64,
    group: &'a str,
    steps: usize,
    vars: &'a [NamedVar],
    clip: Option<f64>,
}

impl ExampleCtx<'_> {
    fn sums<F>(
        &self,
        range: std::ops::Range<usize>,
        mode: &Mode,
        loss_of: &F,
    ) -> Result<ExampleSums>
    where
        F: Fn(usize, &Mode) -> Result<Tensor> + Sync,
    {
        let (scale, vars, clip) = (self.scale, self.vars, self.clip);
        let mut out = ExampleSums {
            sums: vec![None; vars.len()],
            norms: 0.0,
            store: None,
        };
        for i in range {
            let loss = loss_of(i, &mode.fork(i as u64))?;
            let value = scalar(&loss)?;
            if !value.is_finite() {
                return Err(Error::NonFinite {
                    step: self.steps,
                    epoch: 0,
                    group: self.group.to_string(),
                    value,
                });
            }
            let store = if scale == 1.0 {
                loss.backward()?
            } else {
                (loss * scale)?.backward()?
            };
            let grads = vars
                .iter()
                .map(|(_, v)| Optimizers::grad_of(self.precision, &store, v))
                .collect::<Result<Vec<_>>>()?;
            let mut sq = 0f64;
            for g in grads.iter().flatten() {
                sq += g
                    .to_dtype(DType::F64)?
                    .sqr()?
                    .sum_all()?
                    .to_scalar::<f64>()?;
            }
            let norm = sq.sqrt();
            if !norm.is_finite() {
                let param = vars
                    .iter()
                    .zip(&grads)
                    .find(|(_, g)| {
                        g.as_ref()
                            .and_then(|g| scalar(&g.abs().ok()?).ok())
                            .is_some_and(|s| !s.is_finite())
                    })
                    .map(|((n, _), _)| n.clone())
                    .unwrap_or_default();
                return Err(Error::NonFiniteGradient {
                    step: self.steps,
                    epoch: 0,
                    group: self.group.to_string(),
                    param: format!("{param} (example {i} of the batch)"),
                });
            }
            out.norms += norm;
            let factor = clip.map_or(1.0, |c| (c / (norm + 1e-6)).min(1.0));
            for (acc, g) in out.sums.iter_mut().zip(grads) {
                let g = match g {
                    Some(g) if factor < 1.0 => Some((g * factor)?),
                    g => g,
                };
                *acc = add(acc.take(), g)?;
            }
            out.store = Some(store);
        }
        Ok(out)
    }
}

impl Optimizers {
    /// No groups yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// One group named `"model"` with a constant learning rate.
    pub fn single(optimizer: impl Optim + 'static) -> Self {
        let lr = optimizer.learning_rate();
        Self::new().with_group("model", optimizer, Constant(lr), Clip::None)
    }

    /// The classifier recipe the examples share: AdamW (peak rate `lr`, decoupled
    /// weight decay `weight_decay`) over every variable of `varmap`, a one-cycle schedule (Smith &
    /// Topin 2019) over `epochs` epochs of `batches_per_epoch` batches, clipping
    /// at global norm 5, and the gradients of `accumulate` batches averaged per
    /// update (the schedule counts updates: `ceil(batches / accumulate)` an epoch).
    pub fn adamw_one_cycle(
        varmap: &candle_nn::VarMap,
        lr: f64,
        weight_decay: f64,
        epochs: usize,
        batches_per_epoch: usize,
        accumulate: usize,
    ) -> Self {
        let updates = epochs * batches_per_epoch.div_ceil(accumulate.max(1));
        let config = crate::optim::AdamConfig {
            weight_decay,
            ..crate::optim::AdamConfig::adamw(lr)
        };
        let adam = crate::optim::Adam::new(crate::optim::named_vars(varmap, ""), config);
        let schedule = crate::schedule::OneCycle::new(lr, updates);
        Self::new()
            .with_group("model", adam, schedule, Clip::GlobalNorm(5.0))
            .with_accumulation(accumulate)
    }

    /// Adds a group.
    pub fn with_group(
        mut self,
        name: &str,
        optimizer: impl Optim + 'static,
        schedule: impl LrSchedule + 'static,
        clip: Clip,
    ) -> Self {
        self.groups.push(Group {
            name: name.to_string(),
            optimizer: Box::new(optimizer),
            schedule: Box::new(schedule),
            clip,
            steps: 0,
            last_grad_norm: None,
            pending: None,
        });
        self
    }

    /// Averages the gradients of `k` consecutive step calls per update
    /// (PyTorch's accumulation idiom, Lightning's `accumulate_grad_batches`): an
    /// effective batch `k` times the loader's.
    pub fn with_accumulation(mut self, k: usize) -> Self {
        self.accumulate = k.max(1);
        self
    }

    /// Trains in mixed precision ([`crate::amp`]); the groups' optimizers must
    /// hold the strategy's masters ([`MixedPrecision::trainable`]).
    pub fn with_mixed_precision(mut self, amp: MixedPrecision) -> Self {
        self.precision = Some(amp);
        self
    }

    /// Trains with DP-SGD ([`crate::privacy`]): updates come from clipped,
    /// noised per-example gradients only.
    pub fn with_privacy(mut self, dp: DpSgd) -> Self {
        self.privacy = Some(dp);
        self
    }

    /// Sums each update's gradients across the ranks of `collective` (after
    /// accumulation, before clipping and the non-finite guard; under DP-SGD
    /// rank 0's noise is added before the sum), then divides by the world size
    /// (by the examples of all ranks under DP-SGD): every rank applies the same
    /// update to the same weights. The [`crate::Trainer`] installs the process's
    /// collective ([`distributed::init`]) when none was set.
    pub fn with_collective(mut self, collective: Arc<dyn Collective>) -> Self {
        self.collective = Some(collective);
        self
    }

    /// [`Optimizers::with_collective`] in place.
    pub fn set_collective(&mut self, collective: Arc<dyn Collective>) {
        self.collective = Some(collective);
    }

    /// The collective gradients are summed over, if one was set.
    pub fn collective(&self) -> Option<&Arc<dyn Collective>> {
        self.collective.as_ref()
    }

    /// The mixed-precision strategy, if installed.
    pub fn precision(&self) -> Option<&MixedPrecision> {
        self.precision.as_ref()
    }

    /// The DP-SGD strategy (with its accountant), if installed.
    pub fn privacy(&self) -> Option<&DpSgd> {
        self.privacy.as_ref()
    }

    /// The dtype the model's inputs must have: the working dtype under mixed
    /// precision, `None` otherwise.
    pub fn compute_dtype(&self) -> Option<DType> {
        self.precision.as_ref().map(|p| p.dtype())
    }

    /// True when updates need per-example gradients (DP-SGD):
    /// [`Optimizers::step_per_example`] instead of [`Optimizers::step`].
    pub fn needs_per_example(&self) -> bool {
        self.privacy.is_some()
    }

    /// Replaces the schedule of group `name`.
    pub fn set_schedule(&mut self, name: &str, schedule: impl LrSchedule + 'static) -> Result<()> {
        let i = self.index(name)?;
        self.groups[i].schedule = Box::new(schedule);
        Ok(())
    }

    /// Replaces the clipping rule of group `name`.
    pub fn set_clip(&mut self, name: &str, clip: Clip) -> Result<()> {
        let i = self.index(name)?;
        self.groups[i].clip = clip;
        Ok(())
    }

    /// The groups.
    pub fn groups(&self) -> &[Group] {
        &self.groups
    }

    fn index(&self, name: &str) -> Result<usize> {
        self.groups
            .iter()
            .position(|g| g.name == name)
            .ok_or_else(|| {
                let names: Vec<&str> = self.groups.iter().map(|g| g.name.as_str()).collect();
                Error::Config(format!("no optimizer group '{name}' (groups: {names:?})"))
            })
    }

    fn loss_scale(&self) -> f64 {
        self.precision.as_ref().map_or(1.0, |p| p.scaler.scale)
    }

    /// The gradient of `var` in `store`, unscaled and in f32 under mixed precision.
    fn grad_of(
        precision: Option<&MixedPrecision>,
        store: &GradStore,
        var: &Var,
    ) -> Result<Option<Tensor>> {
        match precision {
            Some(p) => p.grad_of(store, var),
            None => Ok(store.get(var).cloned()),
        }
    }

    /// Backward pass of `loss` (a scalar, or summed), then, once `k` calls are
    /// accumulated, clipping, the non-finite guard, the schedule and the update
    /// of group `name`. Only that group's parameters change. A non-finite loss is
    /// refused before anything is computed.
    ///
    /// # Errors
    /// An unknown group, a non-finite loss ([`Error::NonFinite`]) or gradient
    /// ([`Error::NonFiniteGradient`]; under mixed precision the update is skipped
    /// and the loss scale halved instead), a learning rate that is negative or not
    /// finite ([`Error::Config`]), or DP-SGD installed (it needs
    /// [`Optimizers::step_per_example`]).
    pub fn step(&mut self, name: &str, loss: &Tensor) -> Result<()> {
        let gi = self.index(name)?;
        if self.privacy.is_some() {
            return Err(Error::Config(
                "DP-SGD updates from per-example gradients: call Optimizers::step_per_example \
                 (Classifier does)"
                    .into(),
            ));
        }
        let value = scalar(loss)?;
        if !value.is_finite() {
            return Err(self.non_finite_loss(gi, value));
        }
        let scale = self.loss_scale();
        let store = if scale == 1.0 {
            loss.backward()?
        } else {
            (loss * scale)?.backward()?
        };
        let grads = self.groups[gi]
            .optimizer
            .vars()
            .iter()
            .map(|(_, v)| Self::grad_of(self.precision.as_ref(), &store, v))
            .collect::<Result<Vec<_>>>()?;
        self.accumulate(gi, grads, store, 0)
    }

    fn non_finite_loss(&self, gi: usize, value: f64) -> Error {
        Error::NonFinite {
            step: self.groups[gi].steps,
            epoch: 0,
            group: self.groups[gi].name.clone(),
            value,
        }
    }

    /// The update of group `name` from the per-example losses of a batch of `n`:
    /// `loss_of(i, mode)` must return example `i`'s loss alone, its forward pass
    /// drawing from `mode` (a fork of the step's `mode` for that example, so
    /// dropout is the same on any thread). Examples run in parallel on the thread
    /// pool, in fixed chunks summed in index order.
    ///
    /// Under DP-SGD each example's gradient is clipped to the bound and the noise
    /// is added at the update; otherwise the gradients are averaged, which equals
    /// [`Optimizers::step`] on the batch's mean loss. Returns the mean gradient
    /// norm of the examples before clipping.
    ///
    /// # Errors
    /// As [`Optimizers::step`]; an empty batch; an example with a non-finite loss
    /// or gradient.
    pub fn step_per_example<F>(
        &mut self,
        name: &str,
        n: usize,
        mode: &Mode,
        loss_of: F,
    ) -> Result<f64>
    where
        F: Fn(usize, &Mode) -> Result<Tensor> + Sync,
    {
        let gi = self.index(name)?;
        if n == 0 {
            return Err(Error::Data("per-example step on an empty batch".into()));
        }
        let clip = self.privacy.as_ref().map(|d| d.max_grad_norm);
        let vars: Vec<NamedVar> = self.groups[gi].optimizer.vars().to_vec();
        let chunks: Vec<std::ops::Range<usize>> = (0..n)
            .step_by(EXAMPLE_CHUNK)
            .map(|s| s..(s + EXAMPLE_CHUNK).min(n))
            .collect();
        let mut total = ExampleSums {
            sums: vec![None; vars.len()],
            norms: 0.0,
            store: None,
        };
        for wave in chunks.chunks(CHUNK_WAVE) {
            let parts: Vec<Result<ExampleSums>> = {
                use rayon::prelude::*;
                let ctx = ExampleCtx {
                    precision: self.precision.as_ref(),
                    scale: self.loss_scale(),
                    group: &self.groups[gi].name,
                    steps: self.groups[gi].steps,
                    vars: &vars,
                    clip,
                };
                wave.par_iter()
                    .map(|r| ctx.sums(r.clone(), mode, &loss_of))
                    .collect()
            };
            for part in parts {
                let part = part?;
                total.norms += part.norms;
                for (acc, s) in total.sums.iter_mut().zip(part.sums) {
                    *acc = add(acc.take(), s)?;
                }
                total.store = part.store.or(total.store);
            }
        }
        let store = total
            .store
            .ok_or_else(|| Error::Data("per-example step: no example gave gradients".into()))?;
        let sums = if self.privacy.is_some() {
            total.sums
        } else {
            total
                .sums
                .into_iter()
                .map(|s| s.map(|s| s / n as f64).transpose())
                .collect::<candle_core::Result<_>>()?
        };
        self.accumulate(gi, sums, store, n)?;
        Ok(total.norms / n as f64)
    }

    /// Adds one call's gradients to group `gi`'s pending sums and updates when
    /// `k` calls are in.
    fn accumulate(
        &mut self,
        gi: usize,
        grads: Vec<Option<Tensor>>,
        store: GradStore,
        examples: usize,
    ) -> Result<()> {
        let k = self.accumulate.max(1);
        let g = &mut self.groups[gi];
        let p = match g.pending.take() {
            None => Pending {
                sums: grads,
                calls: 1,
                examples,
                store,
            },
            Some(p) => Pending {
                sums: p
                    .sums
                    .into_iter()
                    .zip(grads)
                    .map(|(a, b)| add(a, b))
                    .collect::<Result<_>>()?,
                calls: p.calls + 1,
                examples: p.examples + examples,
                store,
            },
        };
        let full = p.calls >= k;
        g.pending = Some(p);
        if full {
            self.update(gi)?;
        }
        Ok(())
    }

    /// The update of group `gi` from its pending gradients.
    fn update(&mut self, gi: usize) -> Result<()> {
        let Some(p) = self.groups[gi].pending.take() else {
            return Ok(());
        };
        let vars: Vec<NamedVar> = self.groups[gi].optimizer.vars().to_vec();
        let update = self.groups[gi].steps as u64;
        let ranks = self.collective.clone().filter(|c| c.world_size() > 1);
        let grads = match (&self.privacy, &ranks) {
            (Some(dp), None) => dp.privatize(&vars, p.sums, p.examples, update)?,
            (Some(dp), Some(c)) => {
                let noisy = dp.noisy_sums(&vars, p.sums, update, c.rank() == 0)?;
                let mut sums: Vec<Option<Tensor>> = noisy.into_iter().map(Some).collect();
                distributed::all_reduce_grads(c.as_ref(), &mut sums, distributed::BUCKET_BYTES)?;
                let mut examples = [p.examples as f64];
                c.all_reduce_sum_f64(&mut examples)?;
                let n = examples[0].max(1.0);
                sums.into_iter()
                    .map(|s| s.map(|s| s / n).transpose())
                    .collect::<candle_core::Result<_>>()?
            }
            (None, _) => {
                let mut sums = p.sums;
                if let Some(c) = &ranks {
                    distributed::all_reduce_grads(
                        c.as_ref(),
                        &mut sums,
                        distributed::BUCKET_BYTES,
                    )?;
                }
                // The mean over the accumulated calls and the ranks.
                let div = p.calls * ranks.as_ref().map_or(1, |c| c.world_size());
                if div > 1 {
                    sums.into_iter()
                        .map(|s| s.map(|s| s / div as f64).transpose())
                        .collect::<candle_core::Result<_>>()?
                } else {
                    sums
                }
            }
        };
        let mut store = p.store;
        for ((_, v), g) in vars.iter().zip(grads) {
            match g {
                Some(g) => {
                    store.insert(v.as_tensor(), g);
                }
                None => {
                    store.remove(v.as_tensor());
                }
            }
        }
        let refs: Vec<&Var> = vars.iter().map(|(_, v)| v).collect();
        let g = &mut self.groups[gi];
        // A finite loss does not imply finite gradients: ReLU maps a NaN input to 0
        // in the forward pass while the weight gradient still multiplies by it.
        let finite = if let Clip::GlobalNorm(max) = g.clip {
            let norm = clip::clip_grad_norm(&refs, &mut store, max)?;
            g.last_grad_norm = Some(norm);
            norm.is_finite()
        } else {
            let ok = clip::grads_finite(&refs, &store)?;
            clip::apply(g.clip, &refs, &mut store)?;
            ok
        };
        if !finite {
            if let Some(amp) = &mut self.precision {
                // An overflow of the scaled half-precision gradients: skip this
                // update and try a smaller scale (GradScaler's rule).
                amp.scaler.overflowed();
                return Ok(());
            }
            let param = clip::first_non_finite(&vars, &store)?.unwrap_or_default();
            return Err(Error::NonFiniteGradient {
                step: g.steps,
                epoch: 0,
                group: g.name.clone(),
                param,
            });
        }
        let lr = g.schedule.learning_rate(g.steps);
        if !(lr.is_finite() && lr >= 0.0) {
            // A NaN or negative rate turns every weight into NaN (or climbs the
            // loss) with no word until a later loss; PyTorch's optimizers refuse it.
            return Err(Error::Config(format!(
                "group '{}': learning rate {lr} at step {} is not a finite number at or above 0",
                g.name, g.steps
            )));
        }
        g.optimizer.set_learning_rate(lr);
        g.optimizer.step(&store)?;
        g.steps += 1;
        if let Some(amp) = &mut self.precision {
            amp.scaler.succeeded();
            let updated: Vec<&Var> = refs
                .iter()
                .copied()
                .filter(|v| store.get(v).is_some())
                .collect();
            amp.sync_after_update(&updated)?;
        }
        if let Some(dp) = &mut self.privacy {
            // Every rank's batch is part of the update's sample.
            let world = ranks.as_ref().map_or(1, |c| c.world_size());
            dp.record_update(p.calls * world);
        }
        Ok(())
    }

    /// Applies the gradients still accumulated in every group; the trainer calls
    /// this at the end of each epoch.
    pub fn flush(&mut self) -> Result<()> {
        for gi in 0..self.groups.len() {
            self.update(gi)?;
        }
        Ok(())
    }

    /// True when some group holds accumulated gradients not yet applied.
    pub fn pending(&self) -> bool {
        self.groups.iter().any(|g| g.pending.is_some())
    }

    /// [`Optimizers::step`] on the only group; an error when there are several.
    pub fn step_single(&mut self, loss: &Tensor) -> Result<()> {
        match self.groups.len() {
            1 => {
                let name = self.groups[0].name.clone();
                self.step(&name, loss)
            }
            n => Err(Error::Config(format!(
                "step_single needs exactly one optimizer group, there are {n}"
            ))),
        }
    }

    /// Tells every schedule an epoch ended (reduce-on-plateau reacts here).
    pub fn on_epoch_end(&mut self, metric: Option<f64>) {
        for g in &mut self.groups {
            g.schedule.on_epoch_end(metric);
        }
    }

    /// The learning rate each group will use next.
    pub fn learning_rates(&self) -> Vec<(String, f64)> {
        self.groups
            .iter()
            .map(|g| (g.name.clone(), g.learning_rate()))
            .collect()
    }

    /// State of each group: optimizer state plus update count and schedule state.
    pub fn states(&self) -> Vec<(String, OptimState, serde_json::Value)> {
        self.groups
            .iter()
            .map(|g| {
                let mut s = g.optimizer.state();
                s.scalars.insert("group_steps".into(), g.steps as f64);
                (g.name.clone(), s, g.schedule.state())
            })
            .collect()
    }

    /// Restores the state of group `name`.
    pub fn load_group_state(
        &mut self,
        name: &str,
        state: &OptimState,
        schedule: &serde_json::Value,
    ) -> Result<()> {
        let i = self.index(name)?;
        let g = &mut self.groups[i];
        g.optimizer.load_state(state)?;
        g.steps = crate::optim::scalar_of(state, "group_steps")? as usize;
        g.schedule.load_state(schedule)?;
        Ok(())
    }

    /// The strategies' state (the loss scaler, the privacy accountant), saved
    /// with each checkpoint.
    pub fn strategy_state(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        if let Some(p) = &self.precision {
            m.insert("loss_scaler".into(), serde_json::json!(p.scaler));
        }
        if let Some(d) = &self.privacy {
            m.insert("accountant".into(), serde_json::json!(d.accountant));
        }
        serde_json::Value::Object(m)
    }

    /// Restores [`Optimizers::strategy_state`]; a strategy whose state is absent
    /// (a checkpoint from a run without it) keeps its own.
    ///
    /// # Errors
    /// A state that does not parse.
    pub fn load_strategy_state(&mut self, state: &serde_json::Value) -> Result<()> {
        let bad = |what: &str, e: serde_json::Error| {
            Error::Config(format!("saved {what} state is unreadable: {e}"))
        };
        if let (Some(p), Some(v)) = (&mut self.precision, state.get("loss_scaler")) {
            p.scaler = serde_json::from_value(v.clone()).map_err(|e| bad("loss scaler", e))?;
        }
        if let (Some(d), Some(v)) = (&mut self.privacy, state.get("accountant")) {
            d.accountant = serde_json::from_value(v.clone()).map_err(|e| bad("accountant", e))?;
        }
        Ok(())
    }

    /// Called after the model's (master) weights were loaded from a checkpoint:
    /// refreshes what derives from them (the half-precision working weights).
    pub fn after_weights_loaded(&self) -> Result<()> {
        match &self.precision {
            Some(p) => p.sync_from_masters(),
            None => Ok(()),
        }
    }
}
