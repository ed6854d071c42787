//! Mixed precision as a strategy of [`Optimizers`](crate::Optimizers):
//! half-precision (bf16 or f16) weights and activations for the forward and
//! backward passes, f32 master weights for the update, and dynamic loss scaling
//! so that small f16 gradients do not flush to zero (Micikevicius et al. 2018;
//! PyTorch's `autocast` + `GradScaler`).
//!
//! The model is built on a half-precision [`VarMap`] (the working weights);
//! [`MixedPrecision::new`] makes the f32 masters the optimizer updates and
//! checkpoints store. Inside [`Optimizers::step`](crate::Optimizers::step) the
//! loss is scaled before the backward pass, the gradients are unscaled into f32,
//! accumulated, clipped and checked like any other run's; a non-finite gradient
//! skips the update and halves the scale instead of stopping training. After an
//! update the new masters are copied into the working weights.
//!
//! Buffers that are not parameters (batch-norm running statistics) move in the
//! working weights during the forward pass; after every update they are copied
//! into the masters, so checkpoints and evaluation see the statistics training
//! produced. The scaler's state is part of the checkpoint, so a resumed run
//! continues bit for bit.
//!
//! ```
//! use candle_core::{DType, Device};
//! use candle_nn::VarMap;
//! use taper_nn::init::seeded_var_builder;
//! use taper_train::amp::{LossScaler, MixedPrecision};
//! use taper_train::optim::{Sgd, SgdConfig};
//! use taper_train::Optimizers;
//!
//! let working = VarMap::new();
//! let _fc = taper_nn::linear(4, 2, seeded_var_builder(&working, 0, DType::BF16, &Device::Cpu).pp("fc"))?;
//! let amp = MixedPrecision::new(&working, LossScaler::none())?;
//! let master = amp.master().clone(); // checkpoint these
//! let opt = Optimizers::single(Sgd::new(amp.trainable(""), SgdConfig::default()))
//!     .with_mixed_precision(amp);
//! assert_eq!(opt.compute_dtype(), Some(DType::BF16));
//! assert_eq!(master.all_vars()[0].dtype(), DType::F32);
//! # Ok::<(), taper_train::Error>(())
//! ```

use crate::optim::{named_vars, NamedVar};
use crate::{Error, Result};
use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, TensorId, Var};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};

/// Dynamic loss scaling: multiply the loss by `scale`; halve it and skip the
/// update when a gradient overflows; double it after `growth_interval` good
/// updates (PyTorch's `GradScaler` with backoff 0.5 and growth 2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LossScaler {
    /// Current scale.
    pub scale: f64,
    /// Good updates between doublings.
    pub growth_interval: usize,
    /// Good updates since the last change of scale.
    pub good_steps: usize,
    /// Updates skipped because of overflow so far.
    pub skipped: usize,
}

impl Default for LossScaler {
    fn default() -> Self {
        Self {
            scale: 65536.0,
            growth_interval: 2000,
            good_steps: 0,
            skipped: 0,
        }
    }
}

impl LossScaler {
    /// Starting at `scale`, doubling after `growth_interval` good updates.
    pub fn new(scale: f64, growth_interval: usize) -> Self {
        Self {
            scale,
            growth_interval,
            ..Self::default()
        }
    }

    /// No scaling at all (bf16 has f32's range and rarely needs it).
    pub fn none() -> Self {
        Self {
            scale: 1.0,
            growth_interval: usize::MAX,
            ..Self::default()
        }
    }

    pub(crate) fn overflowed(&mut self) {
        self.scale = (self.scale / 2.0).max(1.0);
        self.good_steps = 0;
        self.skipped += 1;
    }

    pub(crate) fn succeeded(&mut self) {
        self.good_steps += 1;
        if self.good_steps >= self.growth_interval {
            self.scale *= 2.0;
            self.good_steps = 0;
        }
    }
}

/// One variable in both precisions.
#[derive(Debug, Clone)]
struct Pair {
    name: String,
    working: Var,
    master: Var,
    buffer: bool,
}

/// The mixed-precision strategy: working weights, f32 masters and the loss
/// scaler. Install it with [`Optimizers::with_mixed_precision`](crate::Optimizers::with_mixed_precision).
#[derive(Clone)]
pub struct MixedPrecision {
    master: VarMap,
    dtype: DType,
    pairs: Vec<Pair>,
    by_master: HashMap<TensorId, usize>,
    /// The loss scale.
    pub scaler: LossScaler,
}

impl std::fmt::Debug for MixedPrecision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MixedPrecision")
            .field("dtype", &self.dtype)
            .field("variables", &self.pairs.len())
            .field("scaler", &self.scaler)
            .finish()
    }
}

fn poisoned() -> Error {
    Error::Config("a variable map's lock was poisoned by a panic".into())
}

impl MixedPrecision {
    /// Masters (f32 copies) of every variable of `working`, which must be bf16 or
    /// f16. Batch-norm running statistics ([`taper_nn::is_running_stat`]) are
    /// treated as buffers; [`MixedPrecision::with_buffers`] names others.
    ///
    /// # Errors
    /// A working map that is empty or not in half precision.
    pub fn new(working: &VarMap, scaler: LossScaler) -> Result<Self> {
        let vars = named_vars(working, "");
        let dtype = vars
            .first()
            .map(|(_, v)| v.dtype())
            .ok_or_else(|| Error::Config("mixed precision: the model has no variables".into()))?;
        if !matches!(dtype, DType::BF16 | DType::F16) {
            return Err(Error::Config(format!(
                "mixed precision: the working weights must be bf16 or f16, found {dtype:?}"
            )));
        }
        let master = VarMap::new();
        let mut pairs = Vec::with_capacity(vars.len());
        {
            let mut dst = master.data().lock().map_err(|_| poisoned())?;
            for (name, w) in vars {
                let m = Var::from_tensor(&w.as_tensor().to_dtype(DType::F32)?)?;
                dst.insert(name.clone(), m.clone());
                pairs.push(Pair {
                    buffer: taper_nn::is_running_stat(&name),
                    name,
                    working: w,
                    master: m,
                });
            }
        }
        let by_master = pairs
            .iter()
            .enumerate()
            .map(|(i, p)| (p.master.as_tensor().id(), i))
            .collect();
        Ok(Self {
            master,
            dtype,
            pairs,
            by_master,
            scaler,
        })
    }

    /// Marks the variables whose name satisfies `is_buffer` as buffers (moved by
    /// the forward pass, copied from the working weights into the masters).
    pub fn with_buffers(mut self, is_buffer: impl Fn(&str) -> bool) -> Self {
        for p in &mut self.pairs {
            p.buffer = is_buffer(&p.name);
        }
        self
    }

    /// The f32 masters: the variables to checkpoint.
    pub fn master(&self) -> &VarMap {
        &self.master
    }

    /// The working dtype (bf16 or f16): inputs are cast to it.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The master parameters under `prefix` (buffers excluded): what the
    /// optimizer updates.
    pub fn trainable(&self, prefix: &str) -> Vec<NamedVar> {
        let mut v: Vec<NamedVar> = self
            .pairs
            .iter()
            .filter(|p| !p.buffer && p.name.starts_with(prefix))
            .map(|p| (p.name.clone(), p.master.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// The f32 gradient for `master` (unscaled) from a backward pass over the
    /// working weights; `None` when it got none. Variables that are not masters
    /// of this strategy are read directly.
    pub(crate) fn grad_of(&self, store: &GradStore, master: &Var) -> Result<Option<Tensor>> {
        let Some(&i) = self.by_master.get(&master.as_tensor().id()) else {
            return Ok(store.get(master).cloned());
        };
        match store.get(&self.pairs[i].working) {
            None => Ok(None),
            Some(g) => {
                let g = g.to_dtype(DType::F32)?;
                Ok(Some(if self.scaler.scale == 1.0 {
                    g
                } else {
                    (g / self.scaler.scale)?
                }))
            }
        }
    }

    /// After an update of `updated` (masters): their new values into the working
    /// weights, and every buffer's working value into its master.
    pub(crate) fn sync_after_update(&self, updated: &[&Var]) -> Result<()> {
        let ids: HashSet<TensorId> = updated.iter().map(|v| v.as_tensor().id()).collect();
        for p in &self.pairs {
            if p.buffer {
                p.master.set(&p.working.as_tensor().to_dtype(DType::F32)?)?;
            } else if ids.contains(&p.master.as_tensor().id()) {
                p.working.set(&p.master.as_tensor().to_dtype(self.dtype)?)?;
            }
        }
        Ok(())
    }

    /// Every master (parameters and buffers) into the working weights: after
    /// masters were loaded from a checkpoint.
    pub fn sync_from_masters(&self) -> Result<()> {
        for p in &self.pairs {
            p.working.set(&p.master.as_tensor().to_dtype(self.dtype)?)?;
        }
        Ok(())
    }
}
