//! The training loop, shared by every domain.

use crate::card::ModelCard;
use crate::checkpoint::{self, DataOrder, TrainerState};
use crate::context::StepContext;
use crate::data::{DataLoader, TensorBatch};
use crate::distributed;
use crate::metrics::Metrics;
use crate::optimizers::Optimizers;
use crate::output::{check_labels, ClassificationOutput, StepOutput};
use crate::record::EpochRecord;
use crate::report::{self, RunInfo, StepRates};
use crate::runlog::{append_jsonl, epoch_line, plot_loss, write_history, Progress};
use crate::schedule::Direction;
use crate::{Error, Result};
use candle_core::{DType, Tensor};
use candle_nn::VarMap;
use std::path::PathBuf;
use std::time::Instant;
use taper_nn::{cross_entropy, Forward, Mode};

/// What a model implements to be trained: one training step per batch (which
/// calls [`Optimizers::step`] once per group it updates, in its own order) and an
/// evaluation step. Both receive the [`StepContext`]: every random draw of a step
/// comes from it.
pub trait TrainStep<B> {
    /// What a step returns; the trainer reads the batch's metrics from it
    /// ([`ClassificationOutput`] for classifiers, [`Metrics`] for anything else).
    type Output: StepOutput;
    /// Trains on one batch.
    ///
    /// # Errors
    /// Whatever the forward pass or the update raises; the trainer adds the
    /// epoch and step to non-finite-value errors.
    fn train_step(
        &mut self,
        batch: &B,
        ctx: &StepContext,
        opt: &mut Optimizers,
    ) -> Result<Self::Output>;
    /// Evaluates one batch in evaluation mode, without updating anything.
    ///
    /// # Errors
    /// Whatever the forward pass raises.
    fn valid_step(&mut self, batch: &B, ctx: &StepContext) -> Result<Self::Output>;
    /// All the model's variables, under their checkpoint names.
    fn varmap(&self) -> &VarMap;
    /// Turns statistics the validation steps summed (with
    /// [`Metrics::add_sum`]) into metrics that are not means of batch values,
    /// such as corpus BLEU or F1 (torchmetrics' `compute`, Keras' `result`).
    /// Called on the validation metrics once every batch, and every rank, is
    /// combined, before they are logged, monitored or returned by
    /// [`Trainer::evaluate`]. Default: nothing.
    ///
    /// # Errors
    /// Whatever computing the metric raises.
    fn compute_metrics(&self, _metrics: &mut Metrics) -> Result<()> {
        Ok(())
    }
    /// What rebuilds the model from its run directory, written there as
    /// `model.json` when training starts ([`crate::card`]); `None`: nothing.
    fn model_card(&self) -> Option<ModelCard> {
        None
    }
}

/// The common case: a model that computes a loss and metrics for a batch.
pub trait LossModel<B> {
    /// Loss (a scalar tensor) and metrics; `mode` selects training (dropout,
    /// batch statistics, with the step's random stream) or evaluation.
    ///
    /// # Errors
    /// Whatever the forward pass raises.
    fn loss(&self, batch: &B, mode: &Mode) -> Result<(Tensor, Metrics)>;
    /// All the model's variables.
    fn varmap(&self) -> &VarMap;
}

/// Adapts a [`LossModel`] to [`TrainStep`] with its single optimizer group.
pub struct Supervised<M>(pub M);

impl<B, M: LossModel<B>> TrainStep<B> for Supervised<M> {
    type Output = Metrics;
    fn train_step(
        &mut self,
        batch: &B,
        ctx: &StepContext,
        opt: &mut Optimizers,
    ) -> Result<Metrics> {
        let (loss, metrics) = self.0.loss(batch, &ctx.mode())?;
        opt.step_single(&loss)?;
        Ok(metrics)
    }
    fn valid_step(&mut self, batch: &B, _ctx: &StepContext) -> Result<Metrics> {
        Ok(self.0.loss(batch, &Mode::eval())?.1)
    }
    fn varmap(&self) -> &VarMap {
        self.0.varmap()
    }
}

/// A classifier over [`TensorBatch`]es (inputs, class indices) with a
/// cross-entropy loss, for any network mapping inputs to logits `(N, C)`.
///
/// One classifier for every strategy of the [`Optimizers`] it trains with:
/// under mixed precision its inputs are cast to the working dtype and the loss
/// is computed in f32; under DP-SGD it hands the optimizers per-example losses.
/// A label outside `0..C` is [`Error::Label`].
pub struct Classifier<M> {
    /// The network, mapping inputs to logits (N, C).
    pub model: M,
    /// Its variables (the f32 masters under mixed precision): what checkpoints hold.
    pub varmap: VarMap,
    /// The dtype inputs are cast to before the network (`None`: as they come).
    /// Set from the optimizers' working dtype at each training step.
    pub input_dtype: Option<DType>,
}

impl<M: Forward> Classifier<M> {
    /// Wraps a network and its variables.
    pub fn new(model: M, varmap: VarMap) -> Self {
        Self {
            model,
            varmap,
            input_dtype: None,
        }
    }

    /// Casts inputs to `dtype` before the network (a half-precision model
    /// evaluated without its optimizers).
    pub fn with_input_dtype(mut self, dtype: DType) -> Self {
        self.input_dtype = Some(dtype);
        self
    }

    fn inputs(&self, x: &Tensor) -> Result<Tensor> {
        Ok(match self.input_dtype {
            Some(d) if d != x.dtype() => x.to_dtype(d)?,
            _ => x.clone(),
        })
    }

    /// Logits in f32 (the loss is computed in f32, as autocast does).
    fn logits(&self, x: &Tensor, mode: &Mode) -> Result<Tensor> {
        Ok(self.model.forward_t(x, mode)?.to_dtype(DType::F32)?)
    }
}

fn only_group(opt: &Optimizers) -> Result<String> {
    match opt.groups() {
        [g] => Ok(g.name().to_string()),
        gs => Err(Error::Config(format!(
            "a classifier trains one optimizer group, there are {}",
            gs.len()
        ))),
    }
}

impl<M: Forward + Sync> TrainStep<TensorBatch> for Classifier<M> {
    type Output = ClassificationOutput;

    fn train_step(
        &mut self,
        batch: &TensorBatch,
        ctx: &StepContext,
        opt: &mut Optimizers,
    ) -> Result<ClassificationOutput> {
        if let Some(d) = opt.compute_dtype() {
            self.input_dtype = Some(d);
        }
        let x = self.inputs(batch.inputs())?;
        let y = batch.targets();
        let mode = ctx.mode();
        let group = only_group(opt)?;
        let mut extra = Metrics::new();
        let n = batch.len();
        let (loss, logits) = if opt.needs_per_example() {
            let this = &*self;
            let norm = opt.step_per_example(&group, n, &mode, |i, m| {
                let logits = this.logits(&x.narrow(0, i, 1)?, m)?;
                check_labels(&logits, &y.narrow(0, i, 1)?)?;
                Ok(cross_entropy(&logits, &y.narrow(0, i, 1)?)?)
            })?;
            extra.add("grad_norm", norm, n as f64);
            // The batch's figures after the update, in evaluation mode.
            let logits = self.logits(&x, &Mode::eval())?;
            (cross_entropy(&logits, y)?, logits)
        } else {
            let logits = self.logits(&x, &mode)?;
            check_labels(&logits, y)?;
            let loss = cross_entropy(&logits, y)?;
            opt.step(&group, &loss)?;
            (loss.detach(), logits.detach())
        };
        if let Some(p) = opt.precision() {
            extra.add("loss_scale", p.scaler.scale, 1.0);
        }
        Ok(ClassificationOutput::new(loss, logits, y.clone()).with_extra(extra))
    }

    fn valid_step(
        &mut self,
        batch: &TensorBatch,
        _ctx: &StepContext,
    ) -> Result<ClassificationOutput> {
        let x = self.inputs(batch.inputs())?;
        let logits = self.logits(&x, &Mode::eval())?;
        check_labels(&logits, batch.targets())?;
        let loss = cross_entropy(&logits, batch.targets())?;
        Ok(ClassificationOutput::new(
            loss,
            logits,
            batch.targets().clone(),
        ))
    }

    fn varmap(&self) -> &VarMap {
        &self.varmap
    }
}

/// What a callback may ask of the trainer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Go on.
    Continue,
    /// Stop after this epoch (the checkpoint is written first).
    Stop,
}

/// Where training stands after a batch.
#[derive(Debug)]
pub struct StepInfo<'a> {
    /// Epoch (0-based).
    pub epoch: usize,
    /// Batch within the epoch (0-based).
    pub batch: usize,
    /// Batches since the run started.
    pub iteration: u64,
    /// The batch's metrics.
    pub metrics: &'a Metrics,
}

/// Hooks into the loop.
pub trait Callback {
    /// After each training batch.
    fn on_step_end(&mut self, _info: &StepInfo) -> Result<()> {
        Ok(())
    }
    /// After each epoch (validation done, checkpoint written).
    fn on_epoch_end(&mut self, _record: &EpochRecord) -> Result<Control> {
        Ok(Control::Continue)
    }
}

/// Settings of a [`Trainer`].
#[derive(Debug, Clone)]
pub struct TrainerConfig {
    /// Epochs to train (in all, counting those before a resume).
    pub epochs: usize,
    /// Run directory for checkpoints, `metrics.jsonl`, `loss.png` and `report.html`
    /// ([`crate::report`]); none: keep nothing.
    pub run_dir: Option<PathBuf>,
    /// Seed of dropout and other per-step draws (weights and shuffling take theirs
    /// from the model builder and the loader).
    pub seed: u64,
    /// Metric to monitor, as `valid.<name>` or `train.<name>`, and its direction.
    /// Defaults to `valid.loss` (min) when there is validation data.
    pub monitor: Option<(String, Direction)>,
    /// Stop when the monitored metric has not improved for this many epochs.
    pub early_stopping_patience: Option<usize>,
    /// Keep the checkpoint of the best monitored value as `best`.
    pub keep_best: bool,
    /// Also checkpoint every this many batches (besides each epoch's end).
    pub checkpoint_every: Option<usize>,
    /// Continue from the run directory's latest checkpoint.
    pub resume: bool,
    /// Start afresh in a run directory that holds another run's checkpoints,
    /// deleting them (without it, such a directory is refused).
    pub overwrite: bool,
    /// Show a progress bar (plain lines when stderr is not a terminal).
    pub progress: bool,
    /// Print one line per epoch to stderr.
    pub verbose: bool,
    /// The caller's configuration, saved with each checkpoint.
    pub config: serde_json::Value,
}

impl Default for TrainerConfig {
    fn default() -> Self {
        Self {
            epochs: 1,
            run_dir: None,
            seed: 0,
            monitor: None,
            early_stopping_patience: None,
            keep_best: true,
            checkpoint_every: None,
            resume: false,
            overwrite: false,
            progress: true,
            verbose: true,
            config: serde_json::Value::Null,
        }
    }
}

/// What [`Trainer::fit`] reports.
#[derive(Debug, Clone)]
pub struct FitReport {
    /// One record per epoch, including those before a resume.
    pub history: Vec<EpochRecord>,
    /// Best monitored value.
    pub best_metric: Option<f64>,
    /// True when early stopping or a callback ended training.
    pub stopped_early: bool,
    /// Seconds spent in this call.
    pub seconds: f64,
    /// The epoch training resumed at (0 for a fresh run).
    pub resumed_at: usize,
}

impl FitReport {
    /// The last epoch's record.
    pub fn last(&self) -> Option<&EpochRecord> {
        self.history.last()
    }
}

/// What [`Trainer::fit_and_test`] reports: the fit, the checkpoint kept, and
/// its mean metrics on the validation and test splits.
#[derive(Debug, Clone)]
pub struct TestReport {
    /// The training run.
    pub fit: FitReport,
    /// The checkpoint evaluated (`None` without a run directory: the final weights).
    pub kept: Option<std::path::PathBuf>,
    /// Mean metrics of the kept weights on the validation split.
    pub valid: Metrics,
    /// Mean metrics of the kept weights on the test split (its only evaluation).
    pub test: Metrics,
}

impl TestReport {
    /// `{"valid_<metric>": .., "test_<metric>": ..}` for every metric measured,
    /// for an example's final JSON line.
    pub fn figures(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut out = serde_json::Map::new();
        for (split, m) in [("valid", &self.valid), ("test", &self.test)] {
            for (k, v) in m.means() {
                out.insert(format!("{split}_{k}"), v.into());
            }
        }
        out
    }
}

/// Runs epochs of a [`TrainStep`] over a [`DataLoader`]: validation, metrics,
/// callbacks, early stopping, checkpoints, resume and the non-finite-loss guard.
pub struct Trainer {
    config: TrainerConfig,
    callbacks: Vec<Box<dyn Callback>>,
}

impl Trainer {
    /// A trainer with `config`.
    pub fn new(config: TrainerConfig) -> Self {
        Self {
            config,
            callbacks: Vec::new(),
        }
    }

    /// Adds a callback.
    pub fn with_callback(mut self, cb: impl Callback + 'static) -> Self {
        self.callbacks.push(Box::new(cb));
        self
    }

    /// The settings.
    pub fn config(&self) -> &TrainerConfig {
        &self.config
    }

    fn resume_from(
        &self,
        model: &impl TrainStepVars,
        opt: &mut Optimizers,
        state: &mut TrainerState,
        order: &DataOrder,
    ) -> Result<usize> {
        let Some(dir) = &self.config.run_dir else {
            return Err(Error::Config("resume needs a run directory".into()));
        };
        let Some(ck) = checkpoint::read(dir, "latest")? else {
            return Err(Error::checkpoint(
                checkpoint::checkpoints_dir(dir),
                "no checkpoint to resume from (latest.json missing)",
            ));
        };
        if ck.state.seed != self.config.seed {
            return Err(Error::checkpoint(
                &ck.dir,
                format!(
                    "was trained with seed {}, this run has seed {}",
                    ck.state.seed, self.config.seed
                ),
            ));
        }
        if let Some(saved) = &ck.state.data {
            let changed = saved.differences(order);
            if !changed.is_empty() && ck.state.batch_in_epoch > 0 {
                return Err(Error::checkpoint(
                    &ck.dir,
                    format!(
                        "was written after batch {} of epoch {} and the data order changed \
                         since ({}): resuming mid-epoch would train some items twice and \
                         others not at all; resume with the saved settings, or from an \
                         epoch's last checkpoint",
                        ck.state.batch_in_epoch,
                        ck.state.epoch + 1,
                        changed.join(", ")
                    ),
                ));
            }
            if !changed.is_empty() && self.config.verbose && crate::distributed::is_primary() {
                eprintln!(
                    "resume: {} since the checkpoint; the next epoch uses the new settings",
                    changed.join(", ")
                );
            }
        }
        let changed = config_changes(&ck.state.config, &self.config.config);
        let (done, finished) = (ck.state.epoch, ck.state.epoch >= self.config.epochs);
        ck.load_weights(model.vars())?;
        opt.load_strategy_state(&ck.state.strategies)?;
        opt.after_weights_loaded()?;
        let device = crate::optim::named_vars(model.vars(), "")
            .first()
            .map(|(_, v)| v.device().clone())
            .unwrap_or(candle_core::Device::Cpu);
        let names: Vec<String> = opt.groups().iter().map(|g| g.name().to_string()).collect();
        for name in names {
            let (os, sched) = ck.optim_state(&name, &device)?;
            opt.load_group_state(&name, &os, &sched)?;
        }
        // Said once the checkpoint has loaded, so that a refused one says only why.
        if self.config.verbose && crate::distributed::is_primary() {
            if finished {
                eprintln!(
                    "resume: the run has trained {done} epochs, and {} are asked for: nothing left to train (ask for more epochs to go on)",
                    self.config.epochs
                );
            } else if !changed.is_empty() {
                eprintln!(
                    "resume: {} changed since the checkpoint; training continues with the new \
                     values and the saved optimizer state",
                    changed.join(", ")
                );
            }
        }
        *state = ck.state;
        state.config = self.config.config.clone();
        state.data = Some(order.clone());
        if crate::distributed::is_primary() {
            write_history(&dir.join("metrics.jsonl"), &state.history)?;
        } else {
            // The saved partial epoch holds every rank's sums: rank 0 carries
            // them, so the epoch's all-reduce counts them once.
            state.epoch_train = Metrics::new();
        }
        Ok(state.epoch)
    }

    /// Trains `model` with `opt` on `train`, validating on `valid` after each epoch.
    pub fn fit<B, M>(
        &mut self,
        model: &mut M,
        opt: &mut Optimizers,
        train: &DataLoader<B>,
        valid: Option<&DataLoader<B>>,
    ) -> Result<FitReport>
    where
        B: Send + Sync + 'static,
        M: TrainStep<B> + Send,
    {
        let start = Instant::now();
        let mut cfg = self.config.clone();
        let world = match opt.collective() {
            Some(c) => c.clone(),
            None => {
                let c = distributed::init()?;
                opt.set_collective(c.clone());
                c
            }
        };
        let (rank, ranks) = (world.rank(), world.world_size());
        let primary = rank == 0;
        // Only rank 0 speaks and writes; every rank reads (resume, the kept
        // checkpoint) from the run directory, which must be shared by the ranks.
        cfg.verbose &= primary;
        cfg.progress &= primary;
        let out_dir = cfg.run_dir.clone().filter(|_| primary);
        let (train_shard, valid_shard);
        let (train, valid) = if ranks > 1 {
            // A loader made before the collective was chosen is still whole.
            train_shard = match train.shard_of() {
                Some(_) => train.clone(),
                None => train.shard(rank, ranks)?,
            };
            valid_shard = valid.map(|v| v.shard_unpadded(rank, ranks)).transpose()?;
            (&train_shard, valid_shard.as_ref())
        } else {
            (train, valid)
        };
        if let Some(dir) = &out_dir {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let lc = train.config();
        let order = DataOrder {
            items: train.num_items(),
            batch_size: lc.batch_size,
            shuffle: lc.shuffle,
            drop_last: lc.drop_last,
            seed: lc.seed,
            world_size: ranks,
        };
        let mut state = TrainerState {
            version: 1,
            seed: cfg.seed,
            config: cfg.config.clone(),
            data: Some(order.clone()),
            ..Default::default()
        };
        let resumed_at = if cfg.resume {
            // Another example's run would otherwise fail on missing tensors after
            // a list of "changed" settings that are really another model's.
            if let (Some(dir), Some(card)) = (&cfg.run_dir, model.model_card()) {
                if crate::card::ModelCard::path(dir).exists() {
                    crate::card::ModelCard::load(dir, &card.family)?;
                }
            }
            self.resume_from(&VarsOf(model.varmap()), opt, &mut state, &order)?
        } else {
            if let Some(dir) = &out_dir {
                let ck = checkpoint::checkpoints_dir(dir);
                if ck.join("latest.json").exists() {
                    // A fresh run's pruning would delete the earlier run's best
                    // checkpoint without a word.
                    if !cfg.overwrite {
                        return Err(Error::Config(format!(
                            "{} holds an earlier run's checkpoints: resume it, overwrite it, or choose another run directory",
                            dir.display()
                        )));
                    }
                    std::fs::remove_dir_all(&ck).map_err(|e| Error::io(&ck, e))?;
                    if cfg.verbose {
                        eprintln!("overwriting the earlier run in {}", dir.display());
                    }
                }
                // Files of those names that no Taper run wrote (no `run.json`
                // beside them) are somebody else's: refuse rather than delete them.
                let ours = [
                    "metrics.jsonl",
                    report::LR_FILE,
                    report::FINAL_FILE,
                    report::SECTION_DIR,
                ];
                if !dir.join(report::RUN_FILE).exists() {
                    if let Some(f) = ours.iter().find(|f| dir.join(f).exists()) {
                        return Err(Error::Config(format!(
                            "{} holds {f}, which a run would replace, but no Taper run ({}): choose another run directory",
                            dir.display(),
                            report::RUN_FILE
                        )));
                    }
                }
                // A fresh run must not mix its lines (or its report's figures
                // and sections) with an earlier run's.
                let _ = std::fs::remove_file(dir.join("metrics.jsonl"));
                let _ = std::fs::remove_file(dir.join(report::LR_FILE));
                let _ = std::fs::remove_file(dir.join(report::FINAL_FILE));
                let _ = std::fs::remove_dir_all(dir.join(report::SECTION_DIR));
            }
            // The other ranks must not read the run directory before rank 0
            // has cleared it.
            world.barrier()?;
            0
        };
        if let (Some(dir), Some(card)) = (&out_dir, model.model_card()) {
            card.save(dir)?;
        }
        let mut run_info = match &out_dir {
            Some(dir) => {
                let device = crate::optim::named_vars(model.varmap(), "")
                    .first()
                    .map(|(_, v)| v.device().clone())
                    .unwrap_or(candle_core::Device::Cpu);
                let mut info = RunInfo::new(cfg.seed, &device);
                if cfg.resume {
                    // The run started when it first started, not at this resume.
                    if let Some(old) = RunInfo::load(dir)? {
                        info.started = old.started;
                    }
                }
                info.train_items = Some(train.num_items());
                info.valid_items = valid.map(|v| v.num_items());
                info.ranks = (ranks > 1).then_some(ranks);
                info.batch_size = Some(lc.batch_size);
                info.epochs = Some(cfg.epochs);
                info.config = cfg.config.clone();
                info.save(dir)?;
                Some(info)
            }
            None => None,
        };
        let monitor = cfg
            .monitor
            .clone()
            .or_else(|| valid.map(|_| ("valid.loss".to_string(), Direction::Min)));
        // A monitored metric that no step produces would turn early stopping,
        // keep-best and the plateau schedule off without a word: check the name
        // against the first validation batch now, and against the first training
        // batch's metrics below.
        let mut train_monitor = None;
        if let Some((key, _)) = &cfg.monitor {
            let first_valid = |v: &DataLoader<B>, model: &mut M| -> Result<Option<Metrics>> {
                match v.epoch(0, 0).next() {
                    None => Ok(None),
                    Some(batch) => {
                        let ctx = StepContext::new(cfg.seed, state.epoch, 0, state.iteration)
                            .on_rank(rank, ranks);
                        let mut m = valid_metrics(model, &batch?, &ctx)?;
                        model.compute_metrics(&mut m)?;
                        Ok(Some(m))
                    }
                }
            };
            match (key.split_once('.'), valid) {
                (Some(("valid", _)), None) => {
                    return Err(Error::Config(format!(
                        "the monitored metric '{key}' needs validation data, and none was given"
                    )))
                }
                (Some(("valid", name)), Some(v)) => {
                    if let Some(m) = first_valid(v, model)? {
                        check_monitored(key, name, &m)?;
                    }
                }
                (Some(("train", name)), _) => train_monitor = Some((key.clone(), name.to_string())),
                (Some(_), _) => {
                    return Err(Error::Config(format!(
                        "the monitored metric '{key}' must be 'valid.<name>', 'train.<name>' or a bare name"
                    )))
                }
                // A bare name is looked up in the validation metrics, then the
                // training ones.
                (None, v) => {
                    let in_valid = match v {
                        Some(v) => first_valid(v, model)?.is_some_and(|m| m.mean(key).is_some()),
                        None => false,
                    };
                    if !in_valid {
                        train_monitor = Some((key.clone(), key.clone()));
                    }
                }
            }
        }
        let mut stopped_early = false;
        let nb = train.num_batches();
        while state.epoch < cfg.epochs {
            let epoch = state.epoch;
            let t0 = Instant::now();
            let mut progress = Progress::new(
                format!("epoch {}/{}", epoch + 1, cfg.epochs),
                nb.saturating_sub(state.batch_in_epoch),
                cfg.progress,
            );
            // The learning rate of each step, and the samples seen, for the report.
            let first_step = state.iteration;
            let mut step_lr: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
            let mut samples = 0.0;
            for batch in train.epoch(epoch, state.batch_in_epoch) {
                let batch = batch?;
                let ctx = StepContext::new(cfg.seed, epoch, state.batch_in_epoch, state.iteration)
                    .on_rank(rank, ranks);
                let m = crate::device::in_pool(|| {
                    model
                        .train_step(&batch, &ctx, opt)
                        .and_then(|out| out.metrics())
                })
                .map_err(|e| match e {
                    Error::NonFinite { group, value, .. } => Error::NonFinite {
                        step: state.iteration as usize,
                        epoch,
                        group,
                        value,
                    },
                    Error::NonFiniteGradient { group, param, .. } => Error::NonFiniteGradient {
                        step: state.iteration as usize,
                        epoch,
                        group,
                        param,
                    },
                    other => other,
                })?;
                if let Some((key, name)) = train_monitor.take() {
                    check_monitored(&key, &name, &m)?;
                }
                state.epoch_train.merge(&m);
                state.iteration += 1;
                state.batch_in_epoch += 1;
                let w = m.weight("loss");
                samples += w;
                if out_dir.is_some() {
                    for (g, lr) in opt.learning_rates() {
                        step_lr.entry(g).or_default().push(lr);
                    }
                }
                progress.update(w as usize, m.mean("loss"));
                let info = StepInfo {
                    epoch,
                    batch: state.batch_in_epoch - 1,
                    iteration: state.iteration,
                    metrics: &m,
                };
                for cb in &mut self.callbacks {
                    cb.on_step_end(&info)?;
                }
                if let (Some(k), Some(dir)) = (cfg.checkpoint_every, &cfg.run_dir) {
                    // Accumulated gradients are not part of a checkpoint: write
                    // mid-epoch ones only between updates.
                    if k > 0
                        && state.iteration.is_multiple_of(k as u64)
                        && state.batch_in_epoch < nb
                        && !opt.pending()
                    {
                        let tag = format!("step-{:09}", state.iteration);
                        state.strategies = opt.strategy_state();
                        if ranks > 1 {
                            // The checkpoint holds every rank's partial epoch; rank 0
                            // carries the sum from here on (see resume_from).
                            let all = distributed::all_reduce_metrics(
                                world.as_ref(),
                                &state.epoch_train,
                            )?;
                            state.epoch_train = if primary { all } else { Metrics::new() };
                        }
                        if primary {
                            checkpoint::save(
                                dir,
                                &tag,
                                model.varmap(),
                                &opt.states(),
                                &state,
                                false,
                            )?;
                        }
                        // No rank runs ahead of a checkpoint being written.
                        world.barrier()?;
                    }
                }
            }
            progress.finish();
            opt.flush()?;
            let train_seconds = t0.elapsed().as_secs_f64();
            let mut vm = Metrics::new();
            if let Some(v) = valid {
                for (i, batch) in v.epoch(0, 0).enumerate() {
                    let ctx =
                        StepContext::new(cfg.seed, epoch, i, state.iteration).on_rank(rank, ranks);
                    vm.merge(&valid_metrics(model, &batch?, &ctx)?);
                }
            }
            if ranks > 1 {
                // Every rank logs, monitors and stops on the whole data's figures.
                state.epoch_train =
                    distributed::all_reduce_metrics(world.as_ref(), &state.epoch_train)?;
                vm = distributed::all_reduce_metrics(world.as_ref(), &vm)?;
                let mut n = [samples];
                world.all_reduce_sum_f64(&mut n)?;
                samples = n[0];
            }
            model.compute_metrics(&mut vm)?;
            let record = EpochRecord {
                epoch,
                train: state.epoch_train.means(),
                valid: vm.means(),
                lr: opt.learning_rates().into_iter().collect(),
                seconds: t0.elapsed().as_secs_f64(),
                memory_mib: crate::record::memory_use(),
                samples_per_second: (samples > 0.0 && train_seconds > 0.0)
                    .then(|| samples / train_seconds),
                train_seconds: Some(train_seconds),
            };
            let monitored = monitor.as_ref().and_then(|(key, _)| lookup(&record, key));
            opt.on_epoch_end(monitored);
            let mut improved = false;
            if let (Some((_, mode)), Some(v)) = (&monitor, monitored) {
                let better = match state.best_metric {
                    None => true,
                    Some(b) => mode.improves(v, b, 0.0),
                };
                if better {
                    state.best_metric = Some(v);
                    state.epochs_without_improvement = 0;
                    improved = true;
                } else {
                    state.epochs_without_improvement += 1;
                }
            }
            if cfg.verbose {
                eprintln!("{}", epoch_line(&record));
            }
            state.history.push(record.clone());
            state.epoch += 1;
            state.batch_in_epoch = 0;
            state.epoch_train = Metrics::new();
            if let Some(dir) = &cfg.run_dir {
                let tag = format!("epoch-{:05}", epoch + 1);
                let best = cfg.keep_best && (improved || monitor.is_none());
                state.strategies = opt.strategy_state();
                if primary {
                    append_jsonl(&dir.join("metrics.jsonl"), &record)?;
                    let rates = StepRates {
                        epoch,
                        first_step,
                        lr: step_lr,
                    };
                    append_jsonl(&dir.join(report::LR_FILE), &rates)?;
                    checkpoint::save(dir, &tag, model.varmap(), &opt.states(), &state, best)?;
                }
                world.barrier()?;
            }
            let mut stop = false;
            for cb in &mut self.callbacks {
                if cb.on_epoch_end(&record)? == Control::Stop {
                    stop = true;
                }
            }
            // After the callbacks: what they wrote for this epoch (a GAN's
            // sample grid) is on the page.
            if let Some(dir) = &out_dir {
                report::write(dir)?;
            }
            if let Some(p) = cfg.early_stopping_patience {
                if state.epochs_without_improvement >= p {
                    if cfg.verbose {
                        eprintln!(
                            "early stopping: no improvement of {} for {p} epochs",
                            monitor.as_ref().map(|m| m.0.as_str()).unwrap_or("?")
                        );
                    }
                    stop = true;
                }
            }
            if stop {
                stopped_early = state.epoch < cfg.epochs;
                break;
            }
        }
        if ranks > 1 && cfg.verbose {
            let c = distributed::comm_stats();
            eprintln!(
                "{} ranks ({}): {} collective calls on rank 0, {:.1} MB, {:.2} s in them of {:.2} s",
                ranks,
                world.backend(),
                c.calls,
                c.bytes as f64 / 1e6,
                c.seconds,
                start.elapsed().as_secs_f64()
            );
        }
        if let Some(dir) = &out_dir {
            plot_loss(&dir.join("loss.png"), &state.history, "loss")?;
        }
        if let (Some(dir), Some(info)) = (&out_dir, &mut run_info) {
            info.end();
            info.save(dir)?;
            report::write(dir)?;
        }
        Ok(FitReport {
            history: state.history,
            best_metric: state.best_metric,
            stopped_early,
            seconds: start.elapsed().as_secs_f64(),
            resumed_at,
        })
    }

    /// Honest evaluation in one call: [`Trainer::fit`] with `valid` watched
    /// (keep-best, early stopping, plateau schedules), then the kept checkpoint
    /// (the best on the monitored metric, else the latest) loaded back into
    /// `model` and evaluated once on `valid` and once on `test`. The test split
    /// is seen only here, after every choice was made. Without a run directory
    /// the final weights are evaluated; with no epoch trained, the initial ones.
    ///
    /// # Errors
    /// As [`Trainer::fit`], [`crate::checkpoint::kept`] and evaluation.
    pub fn fit_and_test<B, M>(
        &mut self,
        model: &mut M,
        opt: &mut Optimizers,
        train: &DataLoader<B>,
        valid: &DataLoader<B>,
        test: &DataLoader<B>,
    ) -> Result<TestReport>
    where
        B: Send + Sync + 'static,
        M: TrainStep<B> + Send,
    {
        let fit = self.fit(model, opt, train, Some(valid))?;
        // With no epoch trained (`epochs` 0, Keras' baseline evaluation) there is no
        // checkpoint: the initial weights are evaluated.
        let kept = match &self.config.run_dir {
            Some(dir) if !fit.history.is_empty() => {
                let ck = crate::checkpoint::kept(dir)?;
                ck.load_weights(model.varmap())?;
                Some(ck.dir)
            }
            _ => None,
        };
        if let Some(dir) = self
            .config
            .run_dir
            .as_ref()
            .filter(|_| distributed::is_primary())
        {
            if let Some(mut info) = RunInfo::load(dir)? {
                info.test_items = Some(test.num_items());
                info.save(dir)?;
            }
        }
        let valid = Self::evaluate(model, valid)?;
        let test = Self::evaluate(model, test)?;
        Ok(TestReport {
            fit,
            kept,
            valid,
            test,
        })
    }

    /// Evaluates `model` on every batch of `loader`; returns the mean metrics.
    pub fn evaluate<B, M>(model: &mut M, loader: &DataLoader<B>) -> Result<Metrics>
    where
        B: Send + Sync + 'static,
        M: TrainStep<B> + Send,
    {
        let world = distributed::init()?;
        let (rank, ranks) = (world.rank(), world.world_size());
        let shard;
        let loader = if ranks > 1 && loader.shard_of().is_none() {
            shard = loader.shard_unpadded(rank, ranks)?;
            &shard
        } else {
            loader
        };
        let mut m = Metrics::new();
        for (i, batch) in loader.epoch(0, 0).enumerate() {
            let ctx = StepContext::new(0, 0, i, 0).on_rank(rank, ranks);
            m.merge(&valid_metrics(model, &batch?, &ctx)?);
        }
        let mut m = distributed::all_reduce_metrics(world.as_ref(), &m)?;
        model.compute_metrics(&mut m)?;
        Ok(m)
    }
}

/// One validation step's metrics, run on the CPU pool ([`crate::device::in_pool`]).
fn valid_metrics<B: Sync, M: TrainStep<B> + Send>(
    model: &mut M,
    batch: &B,
    ctx: &StepContext,
) -> Result<Metrics> {
    crate::device::in_pool(|| model.valid_step(batch, ctx)?.metrics())
}

trait TrainStepVars {
    fn vars(&self) -> &VarMap;
}

struct VarsOf<'a>(&'a VarMap);

impl TrainStepVars for VarsOf<'_> {
    fn vars(&self) -> &VarMap {
        self.0
    }
}

fn lookup(r: &EpochRecord, key: &str) -> Option<f64> {
    match key.split_once('.') {
        Some(("valid", k)) => r.valid.get(k).copied(),
        Some(("train", k)) => r.train.get(k).copied(),
        _ => r.valid.get(key).or_else(|| r.train.get(key)).copied(),
    }
}

/// The top-level entries of the caller's configuration that differ between a
/// checkpoint and this run, as `key saved → now` phrases.
fn config_changes(saved: &serde_json::Value, now: &serde_json::Value) -> Vec<String> {
    let (Some(a), Some(b)) = (saved.as_object(), now.as_object()) else {
        return Vec::new();
    };
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|k| {
            let (x, y) = (a.get(k), b.get(k));
            (x != y).then(|| {
                let show = |v: Option<&serde_json::Value>| {
                    v.map_or_else(|| "unset".to_string(), |v| v.to_string())
                };
                format!("{k} {} → {}", show(x), show(y))
            })
        })
        .collect()
}

/// An error naming the metrics there are when `name` (monitored as `key`) is
/// not among a step's metrics.
fn check_monitored(key: &str, name: &str, m: &Metrics) -> Result<()> {
    let names: Vec<String> = m.means().into_keys().collect();
    if names.iter().any(|n| n == name) {
        return Ok(());
    }
    Err(Error::Config(format!(
        "the monitored metric '{key}' is not produced by the model's steps (they give: {})",
        names.join(", ")
    )))
}
