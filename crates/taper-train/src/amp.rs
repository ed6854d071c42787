//! Mixed precision: half-precision (bf16 or f16) weights and activations for the
//! forward and backward passes, f32 master weights for the update, and dynamic
//! loss scaling so that small f16 gradients do not flush to zero (Micikevicius et
//! al. 2018; PyTorch's `autocast` + `GradScaler`).
//!
//! The model is built on a half-precision [`VarMap`] (`working`); [`master_copy`]
//! makes the f32 [`VarMap`] the optimizer updates and checkpoints store. Before
//! each pass the working weights are refreshed from the masters, so a resumed run
//! needs nothing more than its f32 checkpoint. The loss scale itself is not
//! checkpointed: a resumed run starts again from the initial scale.

use crate::data::TensorBatch;
use crate::metrics::{accuracy, Metrics};
use crate::{Error, Optimizers, Result, TrainStep};
use candle_core::{DType, ModuleT, Tensor, Var};
use candle_nn::VarMap;

/// Dynamic loss scaling: multiply the loss by `scale`; halve it and skip the
/// update when a gradient overflows; double it after `growth_interval` good steps.
#[derive(Debug, Clone)]
pub struct LossScaler {
    /// Current scale.
    pub scale: f64,
    /// Good steps between doublings.
    pub growth_interval: usize,
    good_steps: usize,
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
    /// Starting at `scale`, doubling after `growth_interval` good steps.
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

    fn overflowed(&mut self) {
        self.scale = (self.scale / 2.0).max(1.0);
        self.good_steps = 0;
        self.skipped += 1;
    }

    fn succeeded(&mut self) {
        self.good_steps += 1;
        if self.good_steps >= self.growth_interval {
            self.scale *= 2.0;
            self.good_steps = 0;
        }
    }
}

/// An f32 copy of every variable of `working`, under the same names.
pub fn master_copy(working: &VarMap) -> Result<VarMap> {
    let master = VarMap::new();
    {
        let src = working.data().lock().map_err(|_| poisoned())?;
        let mut dst = master.data().lock().map_err(|_| poisoned())?;
        for (name, v) in src.iter() {
            dst.insert(
                name.clone(),
                Var::from_tensor(&v.as_tensor().to_dtype(DType::F32)?)?,
            );
        }
    }
    Ok(master)
}

fn poisoned() -> Error {
    Error::Config("a variable map's lock was poisoned by a panic".into())
}

/// A classifier trained in mixed precision (see the module documentation).
pub struct MixedPrecision<M> {
    /// The network, built on `working`.
    pub model: M,
    /// Half-precision weights the passes use.
    pub working: VarMap,
    /// f32 weights the optimizer updates (build the optimizer on these).
    pub master: VarMap,
    /// bf16 or f16.
    pub dtype: DType,
    /// The loss scale.
    pub scaler: LossScaler,
}

impl<M: ModuleT> MixedPrecision<M> {
    /// Wraps `model` built on the half-precision `working` map.
    pub fn new(model: M, working: VarMap, scaler: LossScaler) -> Result<Self> {
        let dtype = working
            .all_vars()
            .first()
            .map(|v| v.dtype())
            .ok_or_else(|| Error::Config("mixed precision: the model has no variables".into()))?;
        if !matches!(dtype, DType::BF16 | DType::F16) {
            return Err(Error::Config(format!(
                "mixed precision: the working weights must be bf16 or f16, found {dtype:?}"
            )));
        }
        let master = master_copy(&working)?;
        Ok(Self {
            model,
            working,
            master,
            dtype,
            scaler,
        })
    }

    fn pairs(&self) -> Result<Vec<(Var, Var)>> {
        let w = self.working.data().lock().map_err(|_| poisoned())?;
        let m = self.master.data().lock().map_err(|_| poisoned())?;
        let mut out = Vec::with_capacity(w.len());
        for (name, wv) in w.iter() {
            let mv = m.get(name).ok_or_else(|| {
                Error::Config(format!("mixed precision: no master weight for '{name}'"))
            })?;
            out.push((wv.clone(), mv.clone()));
        }
        Ok(out)
    }

    fn sync(&self) -> Result<Vec<(Var, Var)>> {
        let pairs = self.pairs()?;
        for (w, m) in &pairs {
            w.set(&m.as_tensor().to_dtype(self.dtype)?)?;
        }
        Ok(pairs)
    }

    fn logits(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        Ok(self
            .model
            .forward_t(&x.to_dtype(self.dtype)?, train)?
            .to_dtype(DType::F32)?)
    }
}

impl<M: ModuleT> TrainStep<TensorBatch> for MixedPrecision<M> {
    fn train_step(&mut self, batch: &TensorBatch, opt: &mut Optimizers) -> Result<Metrics> {
        let pairs = self.sync()?;
        let logits = self.logits(batch.inputs(), true)?;
        // The loss is computed in f32, as autocast does.
        let loss = crate::nn::cross_entropy(&logits, batch.targets())?;
        let value = loss.to_scalar::<f32>()? as f64;
        let n = batch.len() as f64;
        if !value.is_finite() {
            return Err(Error::NonFinite {
                step: 0,
                epoch: 0,
                group: "model".into(),
                value,
            });
        }
        let scale = self.scaler.scale;
        let mut grads = (&loss * scale)?.backward()?;
        let mut finite = true;
        for (w, m) in &pairs {
            if let Some(g) = grads.remove(w.as_tensor()) {
                let g = (g.to_dtype(DType::F32)? / scale)?;
                finite &= g.sum_all()?.to_scalar::<f32>()?.is_finite();
                grads.insert(m.as_tensor(), g);
            }
        }
        let acc = accuracy(&logits, batch.targets())?;
        let mut metrics = Metrics::new()
            .with("loss", value, n)
            .with("accuracy", acc, n);
        if finite {
            let group = opt
                .groups()
                .first()
                .map(|g| g.name.clone())
                .ok_or_else(|| Error::Config("mixed precision needs an optimizer group".into()))?;
            opt.apply_grads(&group, &grads)?;
            self.scaler.succeeded();
        } else {
            self.scaler.overflowed();
        }
        metrics = metrics.with("loss_scale", self.scaler.scale, 1.0);
        Ok(metrics)
    }

    fn valid_step(&mut self, batch: &TensorBatch) -> Result<Metrics> {
        self.sync()?;
        let logits = self.logits(batch.inputs(), false)?;
        let loss = crate::nn::cross_entropy(&logits, batch.targets())?;
        let n = batch.len() as f64;
        Ok(Metrics::new()
            .with("loss", loss.to_scalar::<f32>()? as f64, n)
            .with("accuracy", accuracy(&logits, batch.targets())?, n))
    }

    fn varmap(&self) -> &VarMap {
        // Checkpoints hold the f32 masters.
        &self.master
    }
}
