//! Named optimizer groups: what a model's train step updates.

use crate::clip::{self, Clip};
use crate::optim::{OptimState, Optimizer};
use crate::schedule::{Constant, LrSchedule};
use crate::{Error, Result};
use candle_core::{Tensor, Var};

/// One group: its optimizer (which holds the parameters), its schedule, its
/// clipping rule and its step count.
pub struct Group {
    /// The group's name (`"model"`, `"generator"`, ...).
    pub name: String,
    /// The optimizer.
    pub optimizer: Box<dyn Optimizer>,
    /// The learning-rate schedule, read before each update.
    pub schedule: Box<dyn LrSchedule>,
    /// Gradient clipping before each update.
    pub clip: Clip,
    /// Updates applied so far.
    pub steps: usize,
    /// Gradient norm before clipping at the last update (when clipping by norm).
    pub last_grad_norm: Option<f64>,
    pending: Option<Pending>,
    pending_count: usize,
}

/// The optimizer groups of a model. A classifier has one (`"model"`); a GAN has
/// two, stepped in the order its train step chooses.
#[derive(Default)]
pub struct Optimizers {
    groups: Vec<Group>,
    accumulate: usize,
}

/// Gradient sums per variable (in the optimizer's order) and the latest gradient
/// store, reused to hand the averages to the optimizer.
type Pending = (Vec<Option<Tensor>>, candle_core::backprop::GradStore);

impl Group {
    /// Clipping, the finiteness check, the schedule and the update, from gradients
    /// summed over `count` backward passes.
    fn update(&mut self, mut grads: candle_core::backprop::GradStore, count: usize) -> Result<()> {
        let vars: Vec<&Var> = self.optimizer.vars().iter().map(|(_, v)| v).collect();
        if count > 1 {
            for v in &vars {
                if let Some(gr) = grads.get(v) {
                    let avg = (gr / count as f64)?;
                    grads.insert(v, avg);
                }
            }
        }
        // A finite loss does not imply finite gradients: ReLU maps a NaN input to 0
        // in the forward pass while the weight gradient still multiplies by it.
        let finite = if let Clip::GlobalNorm(max) = self.clip {
            let norm = clip::clip_grad_norm(&vars, &mut grads, max)?;
            self.last_grad_norm = Some(norm);
            norm.is_finite()
        } else {
            let ok = clip::grads_finite(&vars, &grads)?;
            clip::apply(self.clip, &vars, &mut grads)?;
            ok
        };
        if !finite {
            let param = clip::first_non_finite(self.optimizer.vars(), &grads)?.unwrap_or_default();
            return Err(Error::NonFiniteGradient {
                step: self.steps,
                epoch: 0,
                group: self.name.clone(),
                param,
            });
        }
        let lr = self.schedule.lr(self.steps);
        self.optimizer.set_lr(lr);
        self.optimizer.step(&grads)?;
        self.steps += 1;
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        let count = std::mem::take(&mut self.pending_count);
        let Some((sums, mut store)) = self.pending.take() else {
            return Ok(());
        };
        for ((_, v), s) in self.optimizer.vars().iter().zip(sums) {
            match s {
                Some(s) => {
                    store.insert(v.as_tensor(), s);
                }
                None => {
                    store.remove(v.as_tensor());
                }
            }
        }
        self.update(store, count)
    }
}

impl Optimizers {
    /// No groups yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// One group named `"model"` with a constant learning rate.
    pub fn single(optimizer: impl Optimizer + 'static) -> Self {
        let lr = optimizer.lr();
        Self::new().with_group("model", optimizer, Constant(lr), Clip::None)
    }

    /// Adds a group.
    pub fn with_group(
        mut self,
        name: &str,
        optimizer: impl Optimizer + 'static,
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
            pending_count: 0,
        });
        self
    }

    /// Replaces the schedule of group `name`.
    pub fn set_schedule(&mut self, name: &str, schedule: impl LrSchedule + 'static) -> Result<()> {
        self.group_mut(name)?.schedule = Box::new(schedule);
        Ok(())
    }

    /// Replaces the clipping rule of group `name`.
    pub fn set_clip(&mut self, name: &str, clip: Clip) -> Result<()> {
        self.group_mut(name)?.clip = clip;
        Ok(())
    }

    /// The groups.
    pub fn groups(&self) -> &[Group] {
        &self.groups
    }

    /// Group `name`, or an error naming the groups there are.
    pub fn group_mut(&mut self, name: &str) -> Result<&mut Group> {
        let names: Vec<String> = self.groups.iter().map(|g| g.name.clone()).collect();
        self.groups
            .iter_mut()
            .find(|g| g.name == name)
            .ok_or_else(|| {
                Error::Config(format!("no optimizer group '{name}' (groups: {names:?})"))
            })
    }

    /// Backward pass of `loss`, then clipping, the update and the schedule of group
    /// `name`. Only that group's parameters change. A non-finite loss is refused
    /// before anything is updated.
    ///
    /// With [`Optimizers::with_accumulation`]`(k)` the gradients of `k` calls are
    /// averaged and applied on the `k`-th (PyTorch's accumulation idiom, Lightning's
    /// `accumulate_grad_batches`): an effective batch `k` times the loader's.
    pub fn step(&mut self, name: &str, loss: &Tensor) -> Result<()> {
        let value = loss
            .to_dtype(candle_core::DType::F64)?
            .sum_all()?
            .to_scalar::<f64>()?;
        let k = self.accumulate;
        let g = self.group_mut(name)?;
        if !value.is_finite() {
            return Err(Error::NonFinite {
                step: g.steps,
                epoch: 0,
                group: g.name.clone(),
                value,
            });
        }
        let grads = loss.backward()?;
        if k <= 1 {
            return g.update(grads, 1);
        }
        let sums = {
            let vars = g.optimizer.vars();
            let old = g.pending.take().map(|p| p.0);
            let mut sums = Vec::with_capacity(vars.len());
            for (i, (_, v)) in vars.iter().enumerate() {
                let prev = old.as_ref().and_then(|o| o[i].clone());
                sums.push(match (prev, grads.get(v)) {
                    (Some(p), Some(n)) => Some((p + n)?),
                    (p, n) => p.or(n.cloned()),
                });
            }
            sums
        };
        let count = g.pending_count + 1;
        g.pending = Some((sums, grads));
        g.pending_count = count;
        if count == k {
            g.flush()?;
        }
        Ok(())
    }

    /// Applies the gradients still accumulated in every group (averaged over the
    /// calls they came from); the trainer calls this at the end of each epoch.
    pub fn flush(&mut self) -> Result<()> {
        for g in &mut self.groups {
            g.flush()?;
        }
        Ok(())
    }

    /// True when some group holds accumulated gradients not yet applied.
    pub fn pending(&self) -> bool {
        self.groups.iter().any(|g| g.pending_count > 0)
    }

    /// Averages the gradients of `k` consecutive [`Optimizers::step`] calls per update.
    pub fn with_accumulation(mut self, k: usize) -> Self {
        self.accumulate = k.max(1);
        self
    }

    /// The update of group `name` from gradients computed elsewhere (DP-SGD's
    /// noisy ones, accumulated ones): its schedule, then its optimizer; no clipping.
    pub fn apply_grads(
        &mut self,
        name: &str,
        grads: &candle_core::backprop::GradStore,
    ) -> Result<()> {
        let g = self.group_mut(name)?;
        let lr = g.schedule.lr(g.steps);
        g.optimizer.set_lr(lr);
        g.optimizer.step(grads)?;
        g.steps += 1;
        Ok(())
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
    pub fn lrs(&self) -> Vec<(String, f64)> {
        self.groups
            .iter()
            .map(|g| (g.name.clone(), g.schedule.lr(g.steps)))
            .collect()
    }

    /// State of each group: optimizer state plus step count and schedule state.
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
        let g = self.group_mut(name)?;
        g.optimizer.load_state(state)?;
        g.steps = crate::optim::scalar_of(state, "group_steps")? as usize;
        g.schedule.load_state(schedule)?;
        Ok(())
    }
}
