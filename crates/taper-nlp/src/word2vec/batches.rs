//! Training batches for the candle path, drawn as a pure function of
//! `(seed, epoch, corpus position)` so that the trainer's shuffling, resume and
//! prefetching need nothing else.

use super::{Architecture, PreparedCorpus, Rng, Word2VecConfig};
use candle_core::{Device, Tensor};
use std::sync::Arc;
use taper_train::data::{BatchSource, TensorBatch};

/// Items are positions in the corpus's id stream; a batch of positions becomes
/// the (input, target, negatives) examples they generate after subsampling:
///
/// - skip-gram: fields `[inputs (P), targets (P), negatives (P, K)]`, one row per
///   (context word, centre word) pair;
/// - CBOW: fields `[contexts (P, 2·window), context mask (P, 2·window) f32,
///   targets (P), negatives (P, K)]`, one row per centre word.
///
/// A batch whose positions were all subsampled away has `P = 0`.
pub struct PairBatches {
    data: Arc<PreparedCorpus>,
    // Sentence start of each sentence, for locating a position's sentence.
    starts: Vec<usize>,
    arch: Architecture,
    window: usize,
    negative: usize,
    seed: u64,
    device: Device,
}

impl PairBatches {
    /// Batches of `prep`'s corpus with `config`'s window, negatives and seed.
    pub fn new(prep: Arc<PreparedCorpus>, config: &Word2VecConfig, device: &Device) -> Self {
        let starts = prep.sentences.iter().map(|r| r.start).collect();
        Self {
            data: prep,
            starts,
            arch: config.arch,
            window: config.window,
            negative: config.negative,
            seed: config.seed,
            device: device.clone(),
        }
    }

    fn rng(&self, epoch: usize, pos: usize) -> Rng {
        Rng::new(self.seed, &[epoch as u64, pos as u64, 0x5a17])
    }

    /// Whether the occurrence at `pos` survives subsampling in `epoch` (the
    /// first draw of the position's stream, so neighbours can ask too).
    fn kept(&self, epoch: usize, pos: usize) -> bool {
        let k = self.data.keep[self.data.ids[pos] as usize];
        k >= 1.0 || k >= self.rng(epoch, pos).unit()
    }

    /// The kept context positions of `pos`: up to `reduced` on each side within
    /// its sentence, counted over kept words (as after subsampling a sentence).
    fn context(&self, epoch: usize, pos: usize, reduced: usize, out: &mut Vec<usize>) {
        out.clear();
        let s = self
            .starts
            .partition_point(|&st| st <= pos)
            .saturating_sub(1);
        let range = self.data.sentences[s].clone();
        let mut q = pos;
        let mut n = 0;
        while q > range.start && n < reduced {
            q -= 1;
            if self.kept(epoch, q) {
                out.push(q);
                n += 1;
            }
        }
        out.reverse();
        let (mut q, mut n) = (pos + 1, 0);
        while q < range.end && n < reduced {
            if self.kept(epoch, q) {
                out.push(q);
                n += 1;
            }
            q += 1;
        }
    }

    fn negatives(&self, rng: &mut Rng, target: u32, out: &mut Vec<u32>) {
        for _ in 0..self.negative {
            let mut t = self.data.noise.sample(rng);
            // A noise word equal to the target would push it both ways; redraw a
            // few times (a vocabulary of one word has no other choice).
            for _ in 0..8 {
                if t != target {
                    break;
                }
                t = self.data.noise.sample(rng);
            }
            out.push(t);
        }
    }

    fn build(&self, indices: &[usize], epoch: usize) -> taper_train::Result<TensorBatch> {
        let ids = &self.data.ids;
        let k = self.negative;
        let mut ctx = Vec::with_capacity(2 * self.window);
        let mut targets = Vec::new();
        let mut negs = Vec::new();
        let mut inputs = Vec::new();
        let mut mask = Vec::new();
        for &pos in indices {
            if !self.kept(epoch, pos) {
                continue;
            }
            let mut rng = self.rng(epoch, pos);
            rng.unit(); // the subsampling draw
            let reduced = self.window - rng.below(self.window);
            self.context(epoch, pos, reduced, &mut ctx);
            let target = ids[pos];
            match self.arch {
                Architecture::SkipGram => {
                    for &q in &ctx {
                        inputs.push(ids[q]);
                        targets.push(target);
                        self.negatives(&mut rng, target, &mut negs);
                    }
                }
                Architecture::Cbow => {
                    if ctx.is_empty() {
                        continue;
                    }
                    let w = 2 * self.window;
                    for i in 0..w {
                        inputs.push(ctx.get(i).map(|&q| ids[q]).unwrap_or(0));
                        mask.push(if i < ctx.len() { 1f32 } else { 0.0 });
                    }
                    targets.push(target);
                    self.negatives(&mut rng, target, &mut negs);
                }
            }
        }
        let p = targets.len();
        let d = &self.device;
        let fields = match self.arch {
            Architecture::SkipGram => vec![
                Tensor::from_vec(inputs, p, d)?,
                Tensor::from_vec(targets, p, d)?,
                Tensor::from_vec(negs, (p, k), d)?,
            ],
            Architecture::Cbow => {
                let w = 2 * self.window;
                vec![
                    Tensor::from_vec(inputs, (p, w), d)?,
                    Tensor::from_vec(mask, (p, w), d)?,
                    Tensor::from_vec(targets, p, d)?,
                    Tensor::from_vec(negs, (p, k), d)?,
                ]
            }
        };
        TensorBatch::new(fields)
    }
}

impl BatchSource for PairBatches {
    type Batch = TensorBatch;
    fn len(&self) -> usize {
        self.data.ids.len()
    }
    fn batch(&self, indices: &[usize]) -> taper_train::Result<TensorBatch> {
        self.batch_in_epoch(indices, 0)
    }
    fn batch_in_epoch(&self, indices: &[usize], epoch: usize) -> taper_train::Result<TensorBatch> {
        if let Some(&bad) = indices.iter().find(|&&i| i >= self.data.ids.len()) {
            return Err(taper_train::Error::Data(format!(
                "position {bad} out of range for {} words",
                self.data.ids.len()
            )));
        }
        self.build(indices, epoch)
    }
}
