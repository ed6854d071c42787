//! Gradient-descent fits through taper-train's [`Trainer`], for data too large
//! to solve at once: mini-batches from a [`DataLoader`], any optimizer of
//! [`taper_train::optim`], checkpoints and metrics in a run directory if asked.
//!
//! The estimators' own objectives are kept, divided by the number of training rows
//! `N` so that a batch's loss is an unbiased estimate of them:
//! - linear: `MSE + (α/N)||w||²` (ridge's `||y - Xw - b||² + α||w||²` over `N`);
//! - logistic: `mean log-loss + ||W||²/(2CN)` (scikit-learn's `C·Σ loss + ½||W||²` over `CN`).
//!
//! Each batch adds the whole penalty, so every step follows the full objective's
//! gradient in expectation and the fit converges to the closed-form / Newton
//! optimum as the learning rate decays. See `LinearRegression::fit_gd` and
//! `LogisticRegression::fit_gd`.

use crate::error::{Error, Result};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{Init, VarBuilder, VarMap};
use std::collections::HashMap;
use std::path::PathBuf;
use taper_train::clip::Clip;
use taper_train::data::{DataLoader, LoaderConfig, TensorBatch, TensorDataset};
use taper_train::optim::{named_vars, Adam, AdamConfig, RmsProp, RmsPropConfig, Sgd, SgdConfig};
use taper_train::schedule::{Constant, WarmupCosine};
use taper_train::{LossModel, Metrics, Optimizers, Supervised, Trainer, TrainerConfig};

/// The optimizer of a gradient-descent fit (PyTorch's update rules, from [`taper_train::optim`]).
///
/// AdamW is left out on purpose: its decoupled weight decay would add a second
/// penalty besides the estimator's own, so the fit would no longer match `fit`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GdOptimizer {
    /// Stochastic gradient descent, with optional (Nesterov) momentum.
    Sgd {
        /// Momentum factor in `[0, 1)`; 0 for plain SGD.
        momentum: f64,
        /// Nesterov momentum (needs `momentum > 0`).
        nesterov: bool,
    },
    /// Adam with β = (0.9, 0.999), ε = 1e-8.
    Adam,
    /// RMSprop with α = 0.99, ε = 1e-8.
    RmsProp,
}

/// How the learning rate moves over the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GdSchedule {
    /// The same rate throughout.
    Constant,
    /// Cosine decay from `lr` to 0 over all steps: the mini-batch noise dies out with
    /// the rate, so the iterate settles on the optimum instead of circling it.
    Cosine,
}

/// Settings of a gradient-descent fit; the penalty comes from the estimator.
#[derive(Debug, Clone)]
pub struct GdConfig {
    /// Passes over the training rows (> 0).
    pub epochs: usize,
    /// Rows per mini-batch; `None` for full-batch gradient descent.
    pub batch_size: Option<usize>,
    /// The optimizer.
    pub optimizer: GdOptimizer,
    /// Peak learning rate (> 0).
    pub lr: f64,
    /// Learning-rate schedule.
    pub schedule: GdSchedule,
    /// Seed of the batch order.
    pub seed: u64,
    /// Precision of the parameters and batches: F64 (default, to match the exact
    /// solvers closely) or F32 (faster on large data).
    pub dtype: DType,
    /// Where the batches and parameters live.
    pub device: Device,
    /// Run directory for checkpoints, `metrics.jsonl` and `loss.png`; none keeps nothing.
    pub run_dir: Option<PathBuf>,
    /// Continue from `run_dir`'s latest checkpoint (weights, optimizer state, epoch);
    /// with the same settings the result equals an uninterrupted run's bit for bit.
    pub resume: bool,
    /// Start afresh in a `run_dir` that holds an earlier run's checkpoints,
    /// deleting them (without it such a directory is refused).
    pub overwrite: bool,
    /// Progress bar and one line per epoch on stderr.
    pub verbose: bool,
}

impl Default for GdConfig {
    fn default() -> Self {
        GdConfig {
            epochs: 100,
            batch_size: Some(32),
            optimizer: GdOptimizer::Adam,
            lr: 0.01,
            schedule: GdSchedule::Cosine,
            seed: 0,
            dtype: DType::F64,
            device: Device::Cpu,
            run_dir: None,
            resume: false,
            overwrite: false,
            verbose: false,
        }
    }
}

impl GdConfig {
    fn validate(&self) -> Result<()> {
        if self.epochs == 0 {
            return Err(Error::param("epochs", "must be at least 1"));
        }
        if self.batch_size == Some(0) {
            return Err(Error::param(
                "batch_size",
                "must be at least 1 (None for full batch)",
            ));
        }
        crate::check::positive("lr", self.lr)?;
        if self.resume && self.run_dir.is_none() {
            return Err(Error::param("resume", "needs a run_dir to resume from"));
        }
        if let GdOptimizer::Sgd { momentum, nesterov } = self.optimizer {
            if !(0.0..1.0).contains(&momentum) {
                return Err(Error::param(
                    "momentum",
                    format!("must lie in [0, 1), got {momentum}"),
                ));
            }
            if nesterov && momentum == 0.0 {
                return Err(Error::param("nesterov", "needs momentum > 0"));
            }
        }
        if !matches!(self.dtype, DType::F32 | DType::F64) {
            return Err(Error::param(
                "dtype",
                format!("must be F32 or F64, got {:?}", self.dtype),
            ));
        }
        Ok(())
    }
}

/// The loss of the model's linear scores `z = x·coefᵀ + intercept` against the targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Loss {
    /// Mean squared error; targets are floats `(N,)`.
    Squared,
    /// Mean binary log-loss on one score column; targets are 0/1 floats `(N,)`.
    Logistic,
    /// Mean softmax cross-entropy; targets are class indices `(N,)` (u32).
    Softmax,
}

/// What to fit: host tensors in the fit's dtype and the parameters' shapes.
pub(crate) struct Problem {
    /// Features `(N, p)`.
    pub x: Tensor,
    /// Targets `(N,)`, as [`Loss`] describes.
    pub y: Tensor,
    /// What the scores are scored against the targets with.
    pub loss: Loss,
    /// Shape of `coef`: `[p]` for linear, `[rows, p]` for logistic.
    pub coef_shape: Vec<usize>,
    /// Length of `intercept`, and its starting value; `None` fits no intercept.
    pub intercept: Option<(usize, f64)>,
    /// Multiplies `||coef||²` in the per-row objective.
    pub l2: f64,
}

/// The result of [`train`].
pub(crate) struct Trained {
    /// `coef` and `intercept` (zeros when none was fitted), on the fit's device and dtype.
    pub tensors: HashMap<String, Tensor>,
    /// Optimizer updates applied.
    pub steps: usize,
    /// Max-norm of the full-data gradient of the objective at the result.
    pub grad_max: f64,
}

/// The estimator as a [`LossModel`]: scores, loss plus penalty, and metrics.
struct GdModel {
    varmap: VarMap,
    coef: Tensor,
    intercept: Option<Tensor>,
    loss: Loss,
    l2: f64,
}

impl GdModel {
    fn scores(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        // A linear model's coef is `[p]`; as a `[1, p]` row every loss shares one product.
        let w = if self.coef.rank() == 1 {
            self.coef.unsqueeze(0)?
        } else {
            self.coef.clone()
        };
        let z = x.matmul(&w.t()?)?;
        match &self.intercept {
            Some(b) => z.broadcast_add(b),
            None => Ok(z),
        }
    }

    fn objective(&self, batch: &TensorBatch) -> taper_train::Result<(Tensor, Metrics)> {
        let (x, y) = (batch.inputs(), batch.targets());
        let z = self.scores(x)?;
        let n = batch.len() as f64;
        let (data_loss, extra) = match self.loss {
            Loss::Squared => {
                let l = taper_nn::mse(&z.squeeze(1)?, y)?;
                let mse = scalar(&l)?;
                (l, ("mse", mse))
            }
            Loss::Logistic => {
                let z = z.squeeze(1)?;
                let l = taper_nn::binary_cross_entropy_with_logits(&z, y)?;
                // The exact solvers predict the positive class when P > 0.5, i.e. z > 0.
                let hits = z.gt(0.0)?.to_dtype(y.dtype())?.eq(y)?;
                let acc = scalar(&hits.to_dtype(DType::F64)?.mean_all()?)?;
                (l, ("accuracy", acc))
            }
            Loss::Softmax => {
                let l = taper_nn::cross_entropy(&z, y)?;
                (l, ("accuracy", taper_train::metrics::accuracy(&z, y)?))
            }
        };
        let loss = if self.l2 > 0.0 {
            (data_loss + (self.coef.sqr()?.sum_all()? * self.l2)?)?
        } else {
            data_loss
        };
        let metrics = Metrics::new()
            .with("loss", scalar(&loss)?, n)
            .with(extra.0, extra.1, n);
        Ok((loss, metrics))
    }
}

fn scalar(t: &Tensor) -> candle_core::Result<f64> {
    t.to_dtype(DType::F64)?.to_scalar::<f64>()
}

impl LossModel<TensorBatch> for GdModel {
    fn loss(
        &self,
        batch: &TensorBatch,
        _mode: &taper_nn::Mode,
    ) -> taper_train::Result<(Tensor, Metrics)> {
        self.objective(batch)
    }
    fn varmap(&self) -> &VarMap {
        &self.varmap
    }
}

/// Fails with the position of the first NaN or infinity in `t` (a 1-D or 2-D host tensor).
pub(crate) fn finite_tensor(t: &Tensor, what: &'static str) -> Result<()> {
    // A sum is finite when every term is, so only a suspect tensor pays for a host
    // copy; a sum that merely overflowed finds nothing there and passes.
    if scalar(&t.sum_all()?)?.is_finite() {
        return Ok(());
    }
    let cols = if t.rank() == 2 { t.dim(1)? } else { 1 };
    let values: Vec<f64> = t.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
    match values.iter().position(|v| !v.is_finite()) {
        Some(at) => Err(Error::NonFiniteInput {
            what,
            row: at / cols,
            column: at % cols,
        }),
        None => Ok(()),
    }
}

/// Checks a feature tensor for a tensor fit and returns it on the host in `dtype`.
pub(crate) fn host_features(x: &Tensor, standardize: bool, dtype: DType) -> Result<Tensor> {
    if standardize {
        // The scaler is fitted on a host matrix, which is what tensor fits avoid building.
        return Err(Error::param(
            "standardize",
            "tensor fits take the features as they are: standardise them first, or use fit_gd on a matrix",
        ));
    }
    if x.rank() != 2 || x.elem_count() == 0 {
        return Err(Error::param(
            "x",
            format!(
                "must be a non-empty matrix (N, p), got shape {:?}",
                x.dims()
            ),
        ));
    }
    finite_tensor(x, "x")?;
    Ok(x.to_device(&Device::Cpu)?.to_dtype(dtype)?)
}

/// Trains `problem` with `cfg` through the [`Trainer`].
pub(crate) fn train(problem: Problem, cfg: &GdConfig) -> Result<Trained> {
    cfg.validate()?;
    let n = problem.x.dim(0)?;
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, cfg.dtype, &cfg.device);
    // Zeros are the exact solvers' starting point; a linear intercept starts at the
    // mean target instead, so the slopes need not first carry a large offset.
    let coef = vb.get_with_hints(problem.coef_shape.clone(), "coef", Init::Const(0.0))?;
    let intercept = match problem.intercept {
        Some((len, start)) => Some(vb.get_with_hints(len, "intercept", Init::Const(start))?),
        None => None,
    };
    let intercept_len = problem.intercept.map_or(1, |(len, _)| len);
    let model = GdModel {
        varmap: varmap.clone(),
        coef,
        intercept,
        loss: problem.loss,
        l2: problem.l2,
    };
    let full = TensorBatch::new(vec![
        problem.x.to_device(&cfg.device)?,
        problem.y.to_device(&cfg.device)?,
    ])?;
    let dataset = TensorDataset::new(vec![problem.x, problem.y], &cfg.device)?;
    let batch_size = cfg.batch_size.unwrap_or(n).min(n);
    let loader = DataLoader::new(
        dataset,
        LoaderConfig {
            batch_size,
            shuffle: batch_size < n,
            drop_last: false,
            seed: cfg.seed,
            // The full batch is the same every epoch: a thread to prepare it buys nothing.
            prefetch: if batch_size < n { 2 } else { 0 },
        },
    )?;
    let total_steps = cfg.epochs * loader.num_batches();
    let mut opt = optimizers(named_vars(&varmap, ""), cfg, total_steps);
    let mut trainer = Trainer::new(TrainerConfig {
        epochs: cfg.epochs,
        run_dir: cfg.run_dir.clone(),
        resume: cfg.resume,
        overwrite: cfg.overwrite,
        seed: cfg.seed,
        progress: cfg.verbose,
        verbose: cfg.verbose,
        config: serde_json::json!({
            "loss": format!("{:?}", problem.loss),
            "l2": problem.l2,
            "optimizer": format!("{:?}", cfg.optimizer),
            "lr": cfg.lr,
            "schedule": format!("{:?}", cfg.schedule),
            "batch_size": batch_size,
            "epochs": cfg.epochs,
        }),
        ..TrainerConfig::default()
    });
    let mut step = Supervised(model);
    trainer.fit(&mut step, &mut opt, &loader, None)?;
    let steps = opt.groups().iter().map(|g| g.steps()).sum();
    let model = step.0;

    let (loss, _) = model.objective(&full)?;
    let grads = loss.backward()?;
    let mut grad_max: f64 = 0.0;
    for (_, var) in named_vars(&varmap, "") {
        if let Some(g) = grads.get(var.as_tensor()) {
            grad_max = grad_max.max(scalar(&g.abs()?.max_all()?)?);
        }
    }
    let intercept = match &model.intercept {
        Some(b) => b.detach(),
        None => Tensor::zeros(intercept_len, cfg.dtype, &cfg.device)?,
    };
    let tensors = HashMap::from([
        ("coef".to_string(), model.coef.detach()),
        ("intercept".to_string(), intercept),
    ]);
    Ok(Trained {
        tensors,
        steps,
        grad_max,
    })
}

/// One optimizer group named `model` over `vars`, with the configured schedule.
fn optimizers(vars: Vec<(String, Var)>, cfg: &GdConfig, total_steps: usize) -> Optimizers {
    fn group(
        opt: impl taper_train::optim::Optim + 'static,
        cfg: &GdConfig,
        total_steps: usize,
    ) -> Optimizers {
        match cfg.schedule {
            GdSchedule::Constant => {
                Optimizers::new().with_group("model", opt, Constant(cfg.lr), Clip::None)
            }
            GdSchedule::Cosine => Optimizers::new().with_group(
                "model",
                opt,
                WarmupCosine::cosine(cfg.lr, 0.0, total_steps),
                Clip::None,
            ),
        }
    }
    match cfg.optimizer {
        GdOptimizer::Sgd { momentum, nesterov } => {
            let c = SgdConfig {
                lr: cfg.lr,
                momentum,
                nesterov,
                ..SgdConfig::default()
            };
            group(Sgd::new(vars, c), cfg, total_steps)
        }
        GdOptimizer::Adam => {
            let c = AdamConfig {
                lr: cfg.lr,
                ..AdamConfig::default()
            };
            group(Adam::new(vars, c), cfg, total_steps)
        }
        GdOptimizer::RmsProp => {
            let c = RmsPropConfig {
                lr: cfg.lr,
                ..RmsPropConfig::default()
            };
            group(RmsProp::new(vars, c), cfg, total_steps)
        }
    }
}
