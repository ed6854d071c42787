//! Optimizers whose state can be saved and restored, for exact resume.
//!
//! candle-nn's `AdamW` keeps its moments private; these keep theirs as named
//! tensors. Each follows PyTorch's update rule of the same name, checked against
//! PyTorch trajectories in `tests/optim_reference.rs`.

mod adam;
mod fused;
mod rmsprop;
mod sgd;

pub use adam::{Adam, AdamConfig};
pub use rmsprop::{RmsProp, RmsPropConfig};
pub use sgd::{Sgd, SgdConfig};

use crate::{Error, Result};
use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use std::collections::{BTreeMap, HashMap};

/// A named parameter.
pub type NamedVar = (String, Var);

/// An optimizer's state: named tensors (moments, buffers) and scalars (step count).
#[derive(Debug, Clone, Default)]
pub struct OptimState {
    /// Per-parameter buffers, named `<param>.<buffer>`.
    pub tensors: HashMap<String, Tensor>,
    /// Scalars such as the step count and the learning rate.
    pub scalars: BTreeMap<String, f64>,
}

/// What every optimizer offers, so the trainer and users can swap them freely.
///
/// Named `Optim` (as in `torch.optim`) so it never shadows candle-nn's
/// `Optimizer` trait, which each of ours also implements. Inside an
/// [`Optimizers`](crate::Optimizers) its `step` is only called by
/// `Optimizers::step`, which clips, guards against non-finite values, schedules
/// and accumulates first.
pub trait Optim: Send {
    /// A short name (`"sgd"`, `"adam"`, `"adamw"`, `"rmsprop"`).
    fn name(&self) -> &'static str;
    /// The parameters it updates.
    fn vars(&self) -> &[NamedVar];
    /// Applies one update from `grads`; parameters without a gradient are left alone.
    fn step(&mut self, grads: &GradStore) -> Result<()>;
    /// Current learning rate.
    fn learning_rate(&self) -> f64;
    /// Sets the learning rate (schedules call this).
    fn set_learning_rate(&mut self, lr: f64);
    /// Saves the state.
    fn state(&self) -> OptimState;
    /// Restores a state saved by [`Optim::state`] of the same optimizer and parameters.
    fn load_state(&mut self, state: &OptimState) -> Result<()>;
}

/// Named variables of a `VarMap`, sorted by name (stable across runs), optionally
/// only those whose name starts with `prefix`.
pub fn named_vars(varmap: &candle_nn::VarMap, prefix: &str) -> Vec<NamedVar> {
    let data = match varmap.data().lock() {
        Ok(d) => d,
        Err(p) => p.into_inner(),
    };
    let mut v: Vec<NamedVar> = data
        .iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Per-parameter buffers, created lazily, in the order of the parameters.
#[derive(Debug, Clone, Default)]
pub(crate) struct Buffers {
    pub(crate) slots: Vec<Option<Tensor>>,
}

impl Buffers {
    pub(crate) fn new(n: usize) -> Self {
        Self {
            slots: vec![None; n],
        }
    }

    /// Copies, not shares: the fused updates rewrite the buffers in place, and a
    /// saved state must not change after it was taken.
    pub(crate) fn save(&self, vars: &[NamedVar], suffix: &str, out: &mut OptimState) {
        for ((name, _), t) in vars.iter().zip(&self.slots) {
            if let Some(t) = t {
                // A copy only fails where memory is exhausted; sharing is then the
                // lesser harm.
                let t = t.copy().unwrap_or_else(|_| t.clone());
                out.tensors.insert(format!("{name}.{suffix}"), t);
            }
        }
    }

    pub(crate) fn load(&mut self, vars: &[NamedVar], suffix: &str, st: &OptimState) -> Result<()> {
        for (i, (name, var)) in vars.iter().enumerate() {
            let key = format!("{name}.{suffix}");
            self.slots[i] = match st.tensors.get(&key) {
                None => None,
                Some(t) if t.shape() != var.shape() => {
                    return Err(Error::shape(
                        format!("optimizer state '{key}'"),
                        format!("{:?} (the parameter's shape)", var.dims()),
                        format!("{:?}", t.dims()),
                    ))
                }
                // A copy: the state handed in may be loaded elsewhere too.
                Some(t) => Some(t.to_device(var.device())?.to_dtype(var.dtype())?.copy()?),
            };
        }
        Ok(())
    }
}

pub(crate) fn scalar(st: &OptimState, key: &str) -> Result<f64> {
    st.scalars
        .get(key)
        .copied()
        .ok_or_else(|| Error::Config(format!("optimizer state lacks '{key}'")))
}

/// Implements candle-nn's `Optimizer` trait for one of ours, so code written for
/// candle-nn's optimizers can use it unchanged.
macro_rules! candle_optimizer {
    ($t:ty, $cfg:ty) => {
        impl candle_nn::Optimizer for $t {
            type Config = $cfg;
            fn new(vars: Vec<candle_core::Var>, config: $cfg) -> candle_core::Result<Self> {
                let named = vars
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| (format!("p{i}"), v))
                    .collect();
                Ok(<$t>::new(named, config))
            }
            fn step(
                &mut self,
                grads: &candle_core::backprop::GradStore,
            ) -> candle_core::Result<()> {
                crate::optim::Optim::step(self, grads)
                    .map_err(|e| candle_core::Error::Msg(e.to_string()))
            }
            fn learning_rate(&self) -> f64 {
                crate::optim::Optim::learning_rate(self)
            }
            fn set_learning_rate(&mut self, lr: f64) {
                crate::optim::Optim::set_learning_rate(self, lr)
            }
        }
    };
}
pub(crate) use candle_optimizer;

/// A scalar of a saved state, or an error naming the missing key.
pub fn scalar_of(st: &OptimState, key: &str) -> Result<f64> {
    scalar(st, key)
}
