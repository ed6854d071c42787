//! The candle path: word2vec as a model of two candle-nn `Embedding`s trained by
//! taper-train's `Trainer` (checkpoints, resume, metrics, run logs).

use super::{Architecture, PairBatches, PreparedCorpus, TrainStats, Word2VecConfig};
use crate::vectors::WordVectors;
use crate::{Error, Result};
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Embedding, Init, VarBuilder, VarMap};
use std::path::PathBuf;
use std::sync::Arc;
use taper_nn::init::seeded_var_builder;
use taper_nn::Mode;
use taper_train::clip::Clip;
use taper_train::data::{DataLoader, LoaderConfig, TensorBatch};
use taper_train::optim::{named_vars, Adam, AdamConfig, Sgd, SgdConfig};
use taper_train::record::EpochRecord;
use taper_train::schedule::LrSchedule;
use taper_train::{
    Callback, Control, FitReport, LossModel, Metrics, Optimizers, Supervised, Trainer,
    TrainerConfig,
};

/// Input and output embeddings (`input.weight`, `output.weight`, both
/// `vocab × dim`) with the negative-sampling loss.
pub struct Word2VecNet {
    input: Embedding,
    output: Embedding,
    arch: Architecture,
    varmap: VarMap,
}

impl Word2VecNet {
    /// A model whose variables live in `varmap` (which `vb` must write to): input
    /// vectors uniform in `±1 / dim`, output vectors zero, as gensim.
    pub fn new(
        vocab_size: usize,
        dim: usize,
        arch: Architecture,
        vb: VarBuilder,
        varmap: VarMap,
    ) -> Result<Self> {
        let b = 1.0 / dim as f64;
        let input = vb.pp("input").get_with_hints(
            (vocab_size, dim),
            "weight",
            Init::Uniform { lo: -b, up: b },
        )?;
        let output =
            vb.pp("output")
                .get_with_hints((vocab_size, dim), "weight", Init::Const(0.0))?;
        Ok(Self {
            input: Embedding::new(input, dim),
            output: Embedding::new(output, dim),
            arch,
            varmap,
        })
    }

    /// The input vectors (what word2vec calls the word vectors).
    pub fn input_weights(&self) -> &Tensor {
        self.input.embeddings()
    }

    /// The output (context) vectors.
    pub fn output_weights(&self) -> &Tensor {
        self.output.embeddings()
    }

    /// Sum over the batch of the negative-sampling loss
    /// `softplus(−h·u_target) + Σ_k softplus(h·u_noise_k)` and the number of rows.
    pub fn batch_loss(&self, batch: &TensorBatch) -> Result<(Tensor, usize)> {
        let f = batch.fields();
        let want = match self.arch {
            Architecture::SkipGram => 3,
            Architecture::Cbow => 4,
        };
        if f.len() != want {
            return Err(Error::Config(format!(
                "a {:?} batch has {want} fields, got {}",
                self.arch,
                f.len()
            )));
        }
        let (h, targets, negs) = match self.arch {
            Architecture::SkipGram => (self.input.forward(&f[0])?, &f[1], &f[2]),
            Architecture::Cbow => {
                let mask = &f[1];
                let e = self
                    .input
                    .forward(&f[0])?
                    .broadcast_mul(&mask.unsqueeze(2)?)?;
                let sum = e.sum(1)?;
                let mean = sum.detach().broadcast_div(&mask.sum_keepdim(1)?)?;
                // Forward: the mean of the context vectors. Backward: that of the
                // sum, so every context word gets the whole error as in word2vec.c
                // and gensim (cbow_mean=1), rather than error / count.
                let h = (mean + (&sum - sum.detach())?)?;
                (h, &f[2], &f[3])
            }
        };
        let p = targets.dim(0)?;
        if p == 0 {
            return Ok((Tensor::new(0f32, h.device())?, 0));
        }
        let pos = (&h * self.output.forward(targets)?)?.sum(1)?;
        // Broadcast product and sum rather than P tiny (K, D) x (D, 1) matmuls.
        let neg = self
            .output
            .forward(negs)?
            .broadcast_mul(&h.unsqueeze(1)?)?
            .sum(2)?;
        let loss = (softplus(&pos.neg()?)?.sum_all()? + softplus(&neg)?.sum_all()?)?;
        Ok((loss, p))
    }

    /// The trained input vectors as [`WordVectors`] of `prep`'s vocabulary.
    pub fn vectors(&self, prep: &PreparedCorpus) -> Result<WordVectors> {
        WordVectors::from_tensor(prep.vocab.clone(), self.input.embeddings())
    }
}

/// `log(1 + e^x)` in a form that neither overflows nor loses its gradient:
/// `relu(x) + log(1 + e^−|x|)`.
pub(crate) fn softplus(x: &Tensor) -> candle_core::Result<Tensor> {
    let tail = x.abs()?.neg()?.exp()?.affine(1.0, 1.0)?.log()?;
    x.relu()? + tail
}

impl LossModel<TensorBatch> for Word2VecNet {
    /// The loss is a sum over pairs, so that SGD with word2vec's learning rate
    /// moves each pair as much as one word2vec update; `loss` is reported per pair.
    fn loss(&self, batch: &TensorBatch, _mode: &Mode) -> taper_train::Result<(Tensor, Metrics)> {
        let (loss, p) = self.batch_loss(batch)?;
        let mut m = Metrics::new();
        if p > 0 {
            let l = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            m.add("loss", l / p as f64, p as f64);
        }
        Ok((loss, m))
    }
    fn varmap(&self) -> &VarMap {
        &self.varmap
    }
}

/// A learning rate falling linearly from `lr` to `min_lr` over `total_steps`
/// (word2vec's schedule), then staying at `min_lr`.
#[derive(Debug, Clone, Copy)]
pub struct LinearDecay {
    /// Rate of the first step.
    pub lr: f64,
    /// Rate at the end.
    pub min_lr: f64,
    /// Steps of the whole run.
    pub total_steps: usize,
}

impl LrSchedule for LinearDecay {
    fn learning_rate(&self, step: usize) -> f64 {
        let p = (step as f64 / self.total_steps.max(1) as f64).min(1.0);
        (self.lr - (self.lr - self.min_lr) * p).max(self.min_lr)
    }
}

/// The optimizer of the candle path.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CandleOptimizer {
    /// Plain SGD on the summed loss at word2vec's learning rate (`alpha`), as
    /// word2vec itself; fine for small batches.
    Sgd,
    /// Adam at this initial learning rate. Its per-coordinate scale keeps
    /// frequent words, hit many times in one batch, from overshooting, so it
    /// suits the large batches that make the dense updates affordable.
    Adam(f64),
}

/// Settings of [`train_candle`] beyond the word2vec ones.
#[derive(Debug, Clone)]
pub struct CandleOptions {
    /// The optimizer (its rate decays linearly to `min_alpha` times its start
    /// over `alpha`).
    pub optimizer: CandleOptimizer,
    /// Corpus positions per batch (each gives up to `2·window` skip-gram pairs).
    pub batch_size: usize,
    /// Where the tables live.
    pub device: Device,
    /// Run directory for checkpoints and `metrics.jsonl` (none: keep nothing).
    pub run_dir: Option<PathBuf>,
    /// Continue the run in `run_dir`.
    pub resume: bool,
    /// Start afresh in a `run_dir` that holds an earlier run's checkpoints,
    /// deleting them (without it such a directory is refused).
    pub overwrite: bool,
    /// Progress bar.
    pub progress: bool,
    /// Also checkpoint every this many batches.
    pub checkpoint_every: Option<usize>,
    /// End this call after this many epochs (counting those of the run before a
    /// resume); the schedule still spans `epochs`, so a later `resume` carries on
    /// exactly. Splits a long run over several sessions.
    pub stop_after: Option<usize>,
}

impl Default for CandleOptions {
    fn default() -> Self {
        Self {
            optimizer: CandleOptimizer::Adam(0.005),
            batch_size: 1024,
            device: Device::Cpu,
            run_dir: None,
            resume: false,
            overwrite: false,
            progress: false,
            checkpoint_every: None,
            stop_after: None,
        }
    }
}

/// Trains [`Word2VecNet`] with taper-train's `Trainer` and plain SGD under
/// [`LinearDecay`]. Batches are drawn from `(seed, epoch, position)`, so a run
/// resumed from a checkpoint ends with the same vectors as an uninterrupted one.
pub fn train_candle(
    prep: &PreparedCorpus,
    cfg: &Word2VecConfig,
    opts: &CandleOptions,
) -> Result<(WordVectors, TrainStats, FitReport)> {
    cfg.validate()?;
    if opts.batch_size == 0 {
        return Err(Error::Config("batch size must be positive".into()));
    }
    let varmap = VarMap::new();
    let vb = seeded_var_builder(&varmap, cfg.seed, DType::F32, &opts.device);
    let net = Word2VecNet::new(prep.vocab.len(), cfg.dim, cfg.arch, vb, varmap.clone())?;
    let source = PairBatches::new(Arc::new(prep.clone()), cfg, &opts.device);
    let loader = DataLoader::new(source, LoaderConfig::train(opts.batch_size, cfg.seed))?;
    let total_steps = cfg.epochs * loader.num_batches();
    let vars = named_vars(&varmap, "");
    let lr = match opts.optimizer {
        CandleOptimizer::Sgd => cfg.alpha,
        CandleOptimizer::Adam(lr) => lr,
    };
    let schedule = LinearDecay {
        lr,
        min_lr: lr * cfg.min_alpha / cfg.alpha,
        total_steps,
    };
    let mut opt = match opts.optimizer {
        CandleOptimizer::Sgd => {
            let sgd = Sgd::new(
                vars,
                SgdConfig {
                    lr,
                    ..Default::default()
                },
            );
            Optimizers::new().with_group("model", sgd, schedule, Clip::None)
        }
        CandleOptimizer::Adam(_) => {
            let adam = Adam::new(
                vars,
                AdamConfig {
                    lr,
                    ..Default::default()
                },
            );
            Optimizers::new().with_group("model", adam, schedule, Clip::None)
        }
    };
    let mut trainer = Trainer::new(TrainerConfig {
        epochs: cfg.epochs,
        run_dir: opts.run_dir.clone(),
        seed: cfg.seed,
        resume: opts.resume,
        overwrite: opts.overwrite,
        progress: opts.progress,
        verbose: cfg.verbose,
        checkpoint_every: opts.checkpoint_every,
        config: serde_json::json!({"model": "word2vec", "arch": format!("{:?}", cfg.arch),
            "dim": cfg.dim, "window": cfg.window, "negative": cfg.negative,
            "epochs": cfg.epochs, "min_count": cfg.min_count, "sample": cfg.sample,
            "alpha": cfg.alpha, "min_alpha": cfg.min_alpha, "batch_size": opts.batch_size,
            "optimizer": format!("{:?}", opts.optimizer),
            "vocab_size": prep.vocab.len()}),
        ..Default::default()
    });
    if let Some(n) = opts.stop_after {
        trainer = trainer.with_callback(StopAfter(n));
    }
    let mut model = Supervised(net);
    let report = trainer.fit(&mut model, &mut opt, &loader, None)?;
    let epochs_run = report.history.len().saturating_sub(report.resumed_at);
    let stats = TrainStats {
        words: (prep.raw_words * epochs_run) as u64,
        effective_words: expected_kept(prep) * epochs_run as u64,
        seconds: report.seconds,
    };
    Ok((model.0.vectors(prep)?, stats, report))
}

struct StopAfter(usize);

impl Callback for StopAfter {
    fn on_epoch_end(&mut self, record: &EpochRecord) -> taper_train::Result<Control> {
        Ok(if record.epoch + 1 >= self.0 {
            Control::Stop
        } else {
            Control::Continue
        })
    }
}

/// Words expected to survive subsampling in one epoch.
fn expected_kept(prep: &PreparedCorpus) -> u64 {
    prep.vocab
        .counts()
        .iter()
        .zip(&prep.keep)
        .map(|(&c, &k)| c as f64 * k as f64)
        .sum::<f64>() as u64
}
