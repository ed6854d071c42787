//! Fine-tuning a sentence encoder through the `Trainer` with the
//! multiple-negatives ranking loss (Henderson et al. 2017; sentence-transformers'
//! `MultipleNegativesRankingLoss`): for a batch of `(anchor, positive)` pairs,
//! the cross-entropy of `scale · cos(aᵢ, pⱼ)` over `j` with target `i`, so
//! every other positive in the batch is a negative.
//!
//! The run directory is a model like any other: [`save_run`] copies what
//! feeding the encoder needs (config, tokenizer, pooling) beside the
//! checkpoints and writes `model.json`; [`SentenceEncoder::load_run`] loads it
//! with the kept checkpoint's weights.

use crate::sentence::SentenceEncoder;
use crate::{Error, Result};
use candle_core::{Tensor, D};
use candle_nn::VarMap;
use std::path::Path;
use taper_nn::Mode;
use taper_train::card::ModelCard;
use taper_train::data::{Batcher, Dataset};
use taper_train::{Metrics, Optimizers, StepContext, TrainStep};

/// The model family in `model.json`.
pub const FAMILY: &str = "nlp.sentence_encoder";

/// The files of a sentence-transformers folder copied into a fine-tuning run.
pub const MODEL_FILES: [&str; 5] = [
    "config.json",
    "tokenizer.json",
    "modules.json",
    "sentence_bert_config.json",
    "1_Pooling/config.json",
];

/// sentence-transformers' fine-tuning recipe for `model`'s variables: AdamW
/// at peak rate `lr` (2e-5 is its default), warmed up linearly from 0 over the
/// first 10 % of `steps` (optimizer steps in the whole run), then a cosine decay
/// to 0; gradients clipped to global norm 1.
pub fn optimizers(model: &SentenceEncoder, lr: f64, steps: usize) -> Optimizers {
    use taper_train::optim::{named_vars, Adam, AdamConfig};
    use taper_train::schedule::WarmupCosine;
    let schedule = WarmupCosine {
        warmup_steps: steps / 10,
        warmup_start: 0.0,
        ..WarmupCosine::cosine(lr, 0.0, steps)
    };
    let adam = Adam::new(named_vars(model.varmap(), ""), AdamConfig::adamw(lr));
    Optimizers::new().with_group(
        "model",
        adam,
        schedule,
        taper_train::clip::Clip::GlobalNorm(1.0),
    )
}

/// `(anchor, positive)` text pairs as a data set.
pub struct TextPairs(pub Vec<(String, String)>);

impl Dataset for TextPairs {
    type Item = (String, String);
    fn len(&self) -> usize {
        self.0.len()
    }
    fn get(&self, index: usize) -> taper_train::Result<(String, String)> {
        self.0
            .get(index)
            .cloned()
            .ok_or_else(|| taper_train::Error::Data(format!("pair {index} of {}", self.0.len())))
    }
}

/// A batch of pairs: anchors and positives, in the same order.
pub struct PairBatch {
    /// The anchors.
    pub anchors: Vec<String>,
    /// Their positives.
    pub positives: Vec<String>,
}

/// Collects pairs into a [`PairBatch`].
pub struct PairBatcher;

impl Batcher<(String, String)> for PairBatcher {
    type Batch = PairBatch;
    fn batch(&self, items: Vec<(String, String)>) -> taper_train::Result<PairBatch> {
        let (anchors, positives) = items.into_iter().unzip();
        Ok(PairBatch { anchors, positives })
    }
}

/// A sentence encoder trained with the multiple-negatives ranking loss.
pub struct MultipleNegativesRanking {
    /// The encoder being fine-tuned.
    pub model: SentenceEncoder,
    /// Cosine similarities are multiplied by this before the softmax
    /// (sentence-transformers' default: 20).
    pub scale: f64,
}

impl MultipleNegativesRanking {
    /// The loss `(scalar)` and metrics (`loss`, `accuracy`: the share of
    /// anchors whose own positive scores highest) of a batch.
    ///
    /// # Errors
    /// A batch of fewer than two pairs (no negative), or a forward failure.
    pub fn loss(&self, batch: &PairBatch, mode: &Mode) -> Result<(Tensor, Metrics)> {
        let n = batch.anchors.len();
        if n < 2 || batch.positives.len() != n {
            return Err(Error::Config(format!(
                "a contrastive batch needs two pairs or more (got {n})"
            )));
        }
        let a: Vec<&str> = batch.anchors.iter().map(String::as_str).collect();
        let p: Vec<&str> = batch.positives.iter().map(String::as_str).collect();
        let ea = crate::bert::l2_normalize(&self.model.embed_batch(&a, &mode.fork(0))?)?;
        let ep = crate::bert::l2_normalize(&self.model.embed_batch(&p, &mode.fork(1))?)?;
        let sim = (ea.matmul(&ep.t()?)? * self.scale)?;
        let targets = Tensor::arange(0u32, n as u32, sim.device())?;
        let loss = taper_nn::cross_entropy(&sim, &targets)?;
        let right: Vec<u32> = sim.argmax(D::Minus1)?.to_vec1()?;
        let correct = right
            .iter()
            .enumerate()
            .filter(|(i, &j)| *i as u32 == j)
            .count();
        let m = Metrics::new()
            .with("loss", loss.to_scalar::<f32>()? as f64, n as f64)
            .with("accuracy", correct as f64 / n as f64, n as f64);
        Ok((loss, m))
    }
}

impl TrainStep<PairBatch> for MultipleNegativesRanking {
    type Output = Metrics;
    fn train_step(
        &mut self,
        batch: &PairBatch,
        ctx: &StepContext,
        opt: &mut Optimizers,
    ) -> taper_train::Result<Metrics> {
        let (loss, m) = self.loss(batch, &ctx.mode())?;
        opt.step_single(&loss)?;
        Ok(m)
    }
    fn valid_step(
        &mut self,
        batch: &PairBatch,
        _ctx: &StepContext,
    ) -> taper_train::Result<Metrics> {
        Ok(self.loss(batch, &Mode::eval())?.1)
    }
    fn varmap(&self) -> &VarMap {
        self.model.varmap()
    }
    fn model_card(&self) -> Option<ModelCard> {
        let cfg = self.model.encoder().config();
        let data = serde_json::json!({"base": self.model.dir(), "files": MODEL_FILES});
        ModelCard::new(
            FAMILY,
            env!("CARGO_PKG_NAME"),
            env!("CARGO_PKG_VERSION"),
            cfg,
            &data,
        )
        .ok()
    }
}

/// Copies what feeding `model` needs (config, tokenizer, modules, pooling)
/// into the run directory `run`, so that [`SentenceEncoder::load_run`] needs
/// nothing else once training has written a checkpoint.
///
/// # Errors
/// A file that cannot be read or written, naming it.
pub fn save_run(model: &SentenceEncoder, run: &Path) -> Result<()> {
    for f in MODEL_FILES {
        let from = model.dir().join(f);
        if !from.is_file() {
            continue;
        }
        let to = run.join(f);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        let bytes = std::fs::read(&from).map_err(|e| Error::io(&from, e))?;
        taper_train::fs::atomic_write(&to, &bytes)?;
    }
    Ok(())
}
