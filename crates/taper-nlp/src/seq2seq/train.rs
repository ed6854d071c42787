//! Training a [`Seq2Seq`] model through taper-train's `Trainer`: the masked,
//! label-smoothed loss and scheduled teacher forcing.

use super::{Seq2Seq, Source};
use crate::data::codec::EOS;
use crate::data::Seq2SeqBatch;
use crate::metrics::BleuStats;
use crate::Result;
use candle_core::{DType, Tensor, D};
use candle_nn::VarMap;
use rand::Rng;
use taper_nn::loss::token_losses;
use taper_nn::Mode;
use taper_train::{Metrics, Optimizers, StepContext, TrainStep};

/// Token counts behind a batch's loss.
#[derive(Debug, Clone, Copy, Default)]
pub struct LossStats {
    /// Real target tokens.
    pub tokens: usize,
    /// Sum of their negative log-likelihoods (no smoothing).
    pub nll_sum: f64,
    /// Tokens whose arg-max is the target.
    pub correct: usize,
}

/// Mean over real target tokens of the label-smoothed cross-entropy of `logits
/// (B, T, V)`: padded positions contribute nothing, to the value or the gradient.
pub fn sequence_loss(
    logits: &Tensor,
    batch: &Seq2SeqBatch,
    label_smoothing: f64,
) -> Result<(Tensor, LossStats)> {
    let (b, t, v) = logits.dims3()?;
    let per = token_losses(
        &logits.reshape((b * t, v))?,
        &batch.tgt_out_host,
        label_smoothing,
    )?; // (B·T, 3)
    masked_loss(&per, batch)
}

/// [`sequence_loss`] from per-token losses `(B·T, 3)` (as
/// [`super::Seq2Seq::token_losses`] returns them): padding masked out, the mean
/// over real tokens.
pub fn masked_loss(per: &Tensor, batch: &Seq2SeqBatch) -> Result<(Tensor, LossStats)> {
    let (b, t) = batch.tgt_mask.dims2()?;
    let mask = batch.tgt_mask.reshape((b * t, 1))?.to_dtype(per.dtype())?;
    let masked = per.broadcast_mul(&mask)?;
    let tokens = batch.tokens.max(1);
    let loss = (masked.narrow(1, 0, 1)?.sum_all()? / tokens as f64)?;
    let sums: Vec<f64> = masked.detach().sum(0)?.to_dtype(DType::F64)?.to_vec1()?;
    Ok((
        loss,
        LossStats {
            tokens: batch.tokens,
            nll_sum: sums[1],
            correct: sums[2].round() as usize,
        },
    ))
}

/// Perplexity from a mean negative log-likelihood per token.
pub fn perplexity(mean_nll: f64) -> f64 {
    mean_nll.exp()
}

/// The probability of feeding the gold previous token rather than the model's
/// own prediction, falling linearly from `start` to `end` over `steps` batches.
#[derive(Debug, Clone, Copy)]
pub struct TeacherForcing {
    /// Ratio at the first batch.
    pub start: f64,
    /// Ratio from batch `steps` on.
    pub end: f64,
    /// Batches over which it falls.
    pub steps: u64,
}

impl TeacherForcing {
    /// Always the gold token.
    pub fn always() -> Self {
        Self {
            start: 1.0,
            end: 1.0,
            steps: 1,
        }
    }

    /// The ratio at training iteration `it`.
    pub fn ratio(&self, it: u64) -> f64 {
        let f = (it as f64 / self.steps.max(1) as f64).min(1.0);
        self.start + (self.end - self.start) * f
    }
}

/// A [`Seq2Seq`] model, its variables and its training settings, as a
/// [`TrainStep`] over [`Seq2SeqBatch`]es.
///
/// Scheduled sampling is done in parallel (Duckworth et al. 2019): a first,
/// gradient-free teacher-forced pass predicts every position; each decoder input
/// after the first is then the gold token with probability `ratio`, else that
/// prediction; the second pass trains on the mixed inputs. It keeps the
/// recurrence over whole sequences instead of one step at a time.
pub struct Seq2SeqTrainer {
    /// The model.
    pub model: Box<dyn Seq2Seq>,
    /// Its variables.
    pub varmap: VarMap,
    /// Label smoothing of the training loss (0: plain cross-entropy).
    pub label_smoothing: f64,
    /// Teacher-forcing schedule.
    pub teacher_forcing: TeacherForcing,
    /// Seed of the teacher-forcing draws.
    pub seed: u64,
    /// Also greedy-decode each validation batch and report its corpus BLEU
    /// (`valid.token_bleu`, 0–100) per epoch. It is counted on the vocabulary's
    /// tokens (an unknown word is one token that can match), not on detokenised
    /// text as the test scores are, hence its name: a figure to choose settings
    /// and epochs on, close to sacreBLEU's on word vocabularies, far from it on
    /// character ones (the dates task), where a token is a character. Costs one
    /// greedy decoding of the validation split per epoch.
    pub valid_bleu: bool,
}

/// Names of the summed BLEU statistics a validation step reports.
const BLEU_STATS: [&str; 10] = [
    "_bleu_correct1",
    "_bleu_correct2",
    "_bleu_correct3",
    "_bleu_correct4",
    "_bleu_total1",
    "_bleu_total2",
    "_bleu_total3",
    "_bleu_total4",
    "_bleu_sys_len",
    "_bleu_ref_len",
];

impl Seq2SeqTrainer {
    fn metrics(loss: &Tensor, stats: &LossStats) -> Result<Metrics> {
        let n = stats.tokens.max(1) as f64;
        let l = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        Ok(Metrics::new()
            .with("loss", l, n)
            .with("nll", stats.nll_sum / n, n)
            .with("token_accuracy", stats.correct as f64 / n, n))
    }

    fn mixed_inputs(
        &self,
        batch: &Seq2SeqBatch,
        src: Source,
        ratio: f64,
        ctx: &StepContext,
    ) -> Result<Tensor> {
        let logits = self
            .model
            .logits(src, &batch.tgt_in, &Mode::eval())?
            .detach();
        let pred: Vec<u32> = logits
            .argmax(D::Minus1)?
            .to_dtype(DType::U32)?
            .flatten_all()?
            .to_vec1()?;
        let (b, t) = batch.tgt_in.dims2()?;
        let mut rng = taper_nn::init::rng_for(
            taper_nn::init::mix(&[self.seed, ctx.iteration], "teacher-forcing"),
            "",
        );
        let mut mixed = batch.tgt_in_host.clone();
        for r in 0..b {
            for s in 1..t {
                if rng.random::<f64>() >= ratio {
                    mixed[r * t + s] = pred[r * t + s - 1];
                }
            }
        }
        Ok(Tensor::from_vec(mixed, (b, t), batch.tgt_in.device())?)
    }
}

impl TrainStep<Seq2SeqBatch> for Seq2SeqTrainer {
    type Output = Metrics;

    fn train_step(
        &mut self,
        batch: &Seq2SeqBatch,
        ctx: &StepContext,
        opt: &mut Optimizers,
    ) -> taper_train::Result<Metrics> {
        let src = Source {
            ids: &batch.src,
            mask: &batch.src_mask,
            lens: &batch.src_lens,
        };
        let ratio = self.teacher_forcing.ratio(ctx.iteration);
        let tgt_in = if ratio < 1.0 {
            self.mixed_inputs(batch, src, ratio, ctx)?
        } else {
            batch.tgt_in.clone()
        };
        let per = self.model.token_losses(
            src,
            &tgt_in,
            &batch.tgt_out_host,
            self.label_smoothing,
            &ctx.mode(),
        )?;
        let (loss, stats) = masked_loss(&per, batch)?;
        opt.step_single(&loss)?;
        Ok(Self::metrics(&loss, &stats)?)
    }

    fn valid_step(
        &mut self,
        batch: &Seq2SeqBatch,
        _ctx: &StepContext,
    ) -> taper_train::Result<Metrics> {
        let src = Source {
            ids: &batch.src,
            mask: &batch.src_mask,
            lens: &batch.src_lens,
        };
        let per = self.model.token_losses(
            src,
            &batch.tgt_in,
            &batch.tgt_out_host,
            self.label_smoothing,
            &Mode::eval(),
        )?;
        let (loss, stats) = masked_loss(&per, batch)?;
        let mut m = Self::metrics(&loss, &stats)?;
        if self.valid_bleu {
            let max_len = self.model.max_target_len();
            let hyps = super::beam::greedy(self.model.as_ref(), src, max_len, false)?.ids;
            let t = batch.tgt_out.dim(1)?;
            let mut bleu = BleuStats::default();
            for (h, row) in hyps.iter().zip(batch.tgt_out_host.chunks(t)) {
                let end = row.iter().position(|&id| id == EOS).unwrap_or(row.len());
                bleu.add_sentence(h, &[&row[..end]]);
            }
            let counts = bleu.correct.iter().chain(&bleu.total);
            let values = counts.chain([&bleu.sys_len, &bleu.ref_len]);
            for (name, &v) in BLEU_STATS.iter().zip(values) {
                m.add_sum(name, v as f64, 1.0);
            }
        }
        Ok(m)
    }

    fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    fn compute_metrics(&self, metrics: &mut Metrics) -> taper_train::Result<()> {
        let sums: Vec<Option<(f64, f64)>> = BLEU_STATS.iter().map(|n| metrics.remove(n)).collect();
        if sums.iter().all(Option::is_some) {
            let v: Vec<u64> = sums.iter().flatten().map(|s| s.0.round() as u64).collect();
            let stats = BleuStats {
                correct: [v[0], v[1], v[2], v[3]],
                total: [v[4], v[5], v[6], v[7]],
                sys_len: v[8],
                ref_len: v[9],
            };
            metrics.add("token_bleu", stats.score().score, 1.0);
        }
        Ok(())
    }
}
