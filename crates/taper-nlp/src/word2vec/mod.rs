//! word2vec: skip-gram and CBOW with negative sampling, frequent-word subsampling
//! and a linearly decaying learning rate.
//!
//! Two ways to train, both giving [`WordVectors`]:
//!
//! - [`train_native`]: hand-written loops over `f32` rows, one update per
//!   (word, context) pair like the original word2vec and gensim, run Hogwild-style
//!   (lock-free, shared rows) on a rayon pool. This is the fast path.
//! - [`train_candle`]: a candle-nn `Embedding` model ([`Word2VecNet`]) trained by
//!   taper-train's `Trainer` over batches of (input, target, negatives), so it
//!   checkpoints and resumes like any model. Each batch costs a dense gradient
//!   and update of both `vocab × dim` tables, which makes it several times slower.

mod batches;
mod native;
mod net;

pub use batches::PairBatches;
pub use native::train_native;
pub use net::{train_candle, CandleOptimizer, CandleOptions, LinearDecay, Word2VecNet};

use crate::corpus::Corpus;
use crate::vectors::WordVectors;
use crate::vocab::{Vocab, VocabConfig};
use crate::{Error, Result};
use std::ops::Range;

/// Which word predicts which.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Architecture {
    /// Each context word predicts the centre word, one pair at a time.
    SkipGram,
    /// The mean of the context words predicts the centre word.
    Cbow,
}

impl std::str::FromStr for Architecture {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "sg" | "skipgram" | "skip-gram" => Ok(Self::SkipGram),
            "cbow" => Ok(Self::Cbow),
            other => Err(Error::Config(format!(
                "unknown architecture '{other}' (sg or cbow)"
            ))),
        }
    }
}

/// Settings of word2vec training. The defaults are gensim's `Word2Vec` defaults
/// (with skip-gram), so the two can be compared setting for setting.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Word2VecConfig {
    /// Skip-gram or CBOW.
    pub arch: Architecture,
    /// Vector dimension.
    pub dim: usize,
    /// Largest distance between the centre word and a context word; each centre
    /// word draws its own window in `1..=window`.
    pub window: usize,
    /// Noise words per positive pair.
    pub negative: usize,
    /// Passes over the corpus.
    pub epochs: usize,
    /// Words seen fewer times are dropped from the corpus.
    pub min_count: u64,
    /// Keep only the most frequent words.
    pub max_vocab: Option<usize>,
    /// Subsampling threshold for frequent words (0: off).
    pub sample: f64,
    /// Learning rate at the start; it decays linearly to `min_alpha`.
    pub alpha: f64,
    /// Learning rate at the end.
    pub min_alpha: f64,
    /// Worker threads of the native path (0: all cores).
    pub threads: usize,
    /// Seed of initialisation, subsampling, windows and noise words.
    pub seed: u64,
    /// Print one line per epoch to stderr.
    pub verbose: bool,
}

impl Default for Word2VecConfig {
    fn default() -> Self {
        Self {
            arch: Architecture::SkipGram,
            dim: 100,
            window: 5,
            negative: 5,
            epochs: 5,
            min_count: 5,
            max_vocab: None,
            sample: 1e-3,
            alpha: 0.025,
            min_alpha: 1e-4,
            threads: 0,
            seed: 1,
            verbose: false,
        }
    }
}

impl Word2VecConfig {
    pub(crate) fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::Config(m.into()));
        if self.dim == 0 {
            return bad("dim must be positive");
        }
        if self.window == 0 {
            return bad("window must be positive");
        }
        if self.negative == 0 {
            return bad("negative must be positive (only negative sampling is implemented)");
        }
        if self.epochs == 0 {
            return bad("epochs must be positive");
        }
        let positive = |x: f64| x.is_finite() && x > 0.0;
        if !positive(self.alpha) || !(positive(self.min_alpha) || self.min_alpha == 0.0) {
            return bad("alpha must be positive and min_alpha non-negative");
        }
        if !(positive(self.sample) || self.sample == 0.0) {
            return bad("sample must be non-negative");
        }
        Ok(())
    }
}

/// A corpus made ready for training: its vocabulary, the ids of its kept words,
/// sentence boundaries, each word's keep probability and the noise distribution.
#[derive(Debug, Clone)]
pub struct PreparedCorpus {
    /// The vocabulary (by decreasing count).
    pub vocab: Vocab,
    /// Ids of the corpus words that are in the vocabulary, in order.
    pub ids: Vec<u32>,
    /// Sentences as ranges of `ids`.
    pub sentences: Vec<Range<usize>>,
    /// Probability of keeping each word at each occurrence (subsampling).
    pub keep: Vec<f32>,
    /// Noise distribution (unigram counts to the power 0.75).
    pub noise: AliasTable,
    /// Words of the corpus, those under `min_count` included (what words per second
    /// counts, as gensim does).
    pub raw_words: usize,
}

impl PreparedCorpus {
    /// Builds the vocabulary and the id stream of `corpus`.
    pub fn new(corpus: &Corpus, config: &Word2VecConfig) -> Result<Self> {
        let vcfg = VocabConfig {
            max_size: config.max_vocab,
            ..VocabConfig::plain(config.min_count.max(1))
        };
        let vocab = Vocab::from_corpus(corpus, &vcfg)?;
        let mut ids = Vec::with_capacity(corpus.num_words());
        let mut sentences = Vec::with_capacity(corpus.num_sentences());
        for sentence in corpus.sentences() {
            let start = ids.len();
            ids.extend(sentence.filter_map(|w| vocab.get(w)));
            if ids.len() > start {
                sentences.push(start..ids.len());
            }
        }
        let total: u64 = vocab.counts().iter().sum();
        let keep = keep_probabilities(vocab.counts(), total, config.sample);
        let weights: Vec<f64> = vocab
            .counts()
            .iter()
            .map(|&c| (c as f64).powf(0.75))
            .collect();
        let noise = AliasTable::new(&weights)?;
        Ok(Self {
            vocab,
            ids,
            sentences,
            keep,
            noise,
            raw_words: corpus.num_words(),
        })
    }
}

/// Mikolov et al.'s subsampling, in the form word2vec.c and gensim use: a word of
/// count `c` is kept with probability `(sqrt(c / t) + 1) · t / c`, `t = sample · total`.
fn keep_probabilities(counts: &[u64], total: u64, sample: f64) -> Vec<f32> {
    if sample <= 0.0 {
        return vec![1.0; counts.len()];
    }
    let t = sample * total as f64;
    counts
        .iter()
        .map(|&c| {
            let c = c.max(1) as f64;
            (((c / t).sqrt() + 1.0) * t / c).min(1.0) as f32
        })
        .collect()
}

/// Walker's alias method: draws an index with probability proportional to its
/// weight in O(1), from two arrays the size of the vocabulary (a cumulative
/// table with binary search costs a log factor, a 10⁸-entry table its memory).
#[derive(Debug, Clone)]
pub struct AliasTable {
    prob: Vec<f32>,
    alias: Vec<u32>,
}

impl AliasTable {
    /// Table for non-negative weights, at least one positive.
    pub fn new(weights: &[f64]) -> Result<Self> {
        let n = weights.len();
        let sum: f64 = weights.iter().sum();
        let valid = |w: f64| w.is_finite() && w >= 0.0;
        if n == 0 || !valid(sum) || sum == 0.0 || weights.iter().any(|&w| !valid(w)) {
            return Err(Error::Config(
                "noise distribution needs non-negative weights with a positive sum".into(),
            ));
        }
        let mut scaled: Vec<f64> = weights.iter().map(|w| w * n as f64 / sum).collect();
        let mut prob = vec![1f32; n];
        let mut alias: Vec<u32> = (0..n as u32).collect();
        let (mut small, mut large): (Vec<usize>, Vec<usize>) =
            (0..n).partition(|&i| scaled[i] < 1.0);
        while let (Some(s), Some(&l)) = (small.pop(), large.last()) {
            prob[s] = scaled[s] as f32;
            alias[s] = l as u32;
            scaled[l] -= 1.0 - scaled[s];
            if scaled[l] < 1.0 {
                large.pop();
                small.push(l);
            }
        }
        // What is left is 1 up to rounding.
        Ok(Self { prob, alias })
    }

    /// Draws an index.
    #[inline]
    pub fn sample(&self, rng: &mut Rng) -> u32 {
        let r = rng.next_u64();
        let i = (((r >> 32) * self.prob.len() as u64) >> 32) as usize;
        let coin = (r & 0xff_ffff) as f32 / (1u32 << 24) as f32;
        if coin < self.prob[i] {
            i as u32
        } else {
            self.alias[i]
        }
    }
}

/// SplitMix64: tiny, fast, and good enough for windows, subsampling and noise
/// draws; seeded per work unit so draws do not depend on thread scheduling.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `(seed, parts...)`.
    /// At most seven `parts` are used.
    pub fn new(seed: u64, parts: &[u64]) -> Self {
        // On the stack: the candle path seeds one generator per corpus position.
        let mut all = [0u64; 8];
        all[0] = seed;
        let n = parts.len().min(7);
        all[1..=n].copy_from_slice(&parts[..n]);
        Self(taper_nn::init::mix(&all[..=n], "word2vec"))
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    #[inline]
    pub fn below(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 32) * n as u64) >> 32) as usize
    }

    /// Uniform in `[0, 1)`.
    #[inline]
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// How a training run went.
#[derive(Debug, Clone)]
pub struct TrainStats {
    /// Corpus words times epochs (those under `min_count` included).
    pub words: u64,
    /// Words trained on after subsampling, all epochs (the candle path reports
    /// the expected number).
    pub effective_words: u64,
    /// Training time (vocabulary building excluded).
    pub seconds: f64,
}

impl TrainStats {
    /// Corpus words per second, gensim's measure.
    pub fn words_per_second(&self) -> f64 {
        self.words as f64 / self.seconds.max(1e-9)
    }
}

/// Initial input vectors: uniform in `±1 / dim` as gensim 4 (word2vec.c uses
/// `±0.5 / dim`), drawn from the seed; output vectors start at zero.
pub(crate) fn initial_input(vocab_size: usize, dim: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed, &[0x1a2b]);
    (0..vocab_size * dim)
        .map(|_| (2.0 * rng.unit() - 1.0) / dim as f32)
        .collect()
}

/// The learning rate after `done` of `total` words.
pub(crate) fn alpha_at(config: &Word2VecConfig, done: f64, total: f64) -> f32 {
    let p = (done / total.max(1.0)).clamp(0.0, 1.0);
    (config.alpha - (config.alpha - config.min_alpha) * p).max(config.min_alpha) as f32
}

/// The corpus's vectors after training (shared by both paths).
pub(crate) fn vectors_of(prep: &PreparedCorpus, dim: usize, data: Vec<f32>) -> Result<WordVectors> {
    WordVectors::new(prep.vocab.clone(), dim, data)
}
