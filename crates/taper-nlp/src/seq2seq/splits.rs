//! Honest splits of a parallel corpus and the single decoding of its test split:
//! test pairs held out from everything, validation pairs drawn from the rest for
//! keep-best and early stopping, vocabularies learnt from the training pairs only.

use super::beam::{decode_corpus, BeamConfig};
use super::Seq2Seq;
use crate::data::{EncodedPairs, TextCodec};
use crate::metrics::{score_translations, TranslationScores};
use crate::{Error, Result};
use candle_core::Device;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// A parallel corpus split three ways, `(source, target)` pairs each.
#[derive(Debug, Clone)]
pub struct PairSplits {
    /// Training pairs.
    pub train: Vec<(String, String)>,
    /// Validation pairs (drawn from what the test split leaves).
    pub valid: Vec<(String, String)>,
    /// Test pairs, decoded once at the end.
    pub test: Vec<(String, String)>,
}

/// The three splits encoded for a model, with the test references normalised
/// the way the target codec sees text (what BLEU and chrF compare with).
#[derive(Debug, Clone)]
pub struct EncodedSplits {
    /// Training ids.
    pub train: Arc<EncodedPairs>,
    /// Validation ids.
    pub valid: Arc<EncodedPairs>,
    /// Test ids.
    pub test: Arc<EncodedPairs>,
    /// Normalised test references, one per test pair.
    pub references: Vec<String>,
}

impl PairSplits {
    /// `test_fraction` of `pairs` held out (seeded by `seed`), then
    /// `valid_fraction` of the rest (seeded by `seed + 1`).
    ///
    /// # Errors
    /// Fractions outside [0, 1), or a split left empty.
    pub fn new(
        pairs: &[(String, String)],
        test_fraction: f64,
        valid_fraction: f64,
        seed: u64,
    ) -> Result<Self> {
        use taper_train::data::split_indices;
        let (rest, test) = split_indices(pairs.len(), test_fraction, seed)?;
        let (train, valid) = split_indices(rest.len(), valid_fraction, seed.wrapping_add(1))?;
        let pick = |idx: &[usize]| idx.iter().map(|&i| pairs[i].clone()).collect::<Vec<_>>();
        let of_rest = |idx: &[usize]| idx.iter().map(|&i| pairs[rest[i]].clone()).collect();
        let s = Self {
            train: of_rest(&train),
            valid: of_rest(&valid),
            test: pick(&test),
        };
        if s.train.is_empty() || s.valid.is_empty() || s.test.is_empty() {
            return Err(Error::Config(format!(
                "{} pairs leave an empty train, validation or test split",
                pairs.len()
            )));
        }
        Ok(s)
    }

    /// The sources (`side` 0) or targets (1) of the training pairs.
    pub fn train_side(&self, side: usize) -> impl Iterator<Item = &str> {
        self.train.iter().map(move |p| {
            if side == 0 {
                p.0.as_str()
            } else {
                p.1.as_str()
            }
        })
    }

    /// Source and target codecs learnt from the training pairs only: characters,
    /// or words (at most `vocab_size`, each seen `min_freq` times).
    ///
    /// # Errors
    /// No text to learn from.
    pub fn codecs(
        &self,
        chars: bool,
        vocab_size: usize,
        min_freq: u64,
    ) -> Result<(TextCodec, TextCodec)> {
        let codec = |side| {
            if chars {
                TextCodec::chars(self.train_side(side))
            } else {
                TextCodec::train_words(
                    &self.train_side(side).collect::<Vec<_>>(),
                    vocab_size,
                    min_freq,
                )
            }
        };
        Ok((codec(0)?, codec(1)?))
    }

    /// The longest training source and target in tokens of `src` and `tgt`.
    ///
    /// # Errors
    /// Text a codec cannot encode.
    pub fn longest(&self, src: &TextCodec, tgt: &TextCodec) -> Result<(usize, usize)> {
        let max = |codec: &TextCodec, side| -> Result<usize> {
            let mut m = 0;
            for t in self.train_side(side) {
                m = m.max(codec.encode(t)?.len());
            }
            Ok(m)
        };
        Ok((max(src, 0)?, max(tgt, 1)?))
    }

    /// The three splits as ids, sources cut to `max_src` tokens and targets to
    /// `max_tgt` (a warning line counts the pairs cut).
    ///
    /// # Errors
    /// Text a codec cannot encode.
    pub fn encode(
        &self,
        src: &TextCodec,
        tgt: &TextCodec,
        max_src: usize,
        max_tgt: usize,
    ) -> Result<EncodedSplits> {
        let encode = |p: &[(String, String)]| -> Result<Arc<EncodedPairs>> {
            let (e, cut) = EncodedPairs::encode(p, src, tgt, max_src, max_tgt)?;
            if cut > 0 {
                eprintln!("warning: {cut} pairs cut to the model's maximum length");
            }
            Ok(Arc::new(e))
        };
        Ok(EncodedSplits {
            train: encode(&self.train)?,
            valid: encode(&self.valid)?,
            test: encode(&self.test)?,
            references: self
                .test
                .iter()
                .map(|p| tgt.normalize(&p.1))
                .collect::<Result<_>>()?,
        })
    }
}

/// Greedy and beam-search translations of a test split with their scores.
#[derive(Debug, Clone)]
pub struct TestDecoding {
    /// Greedy translations.
    pub greedy: Vec<String>,
    /// Beam-search translations.
    pub beam: Vec<String>,
    /// Scores of the greedy translations.
    pub greedy_scores: TranslationScores,
    /// Scores of the beam-search translations.
    pub beam_scores: TranslationScores,
    /// Seconds each decoding took (greedy, beam).
    pub seconds: (f64, f64),
}

impl TestDecoding {
    /// Decodes `sources` greedily and with `beam` (up to `beam.max_len` ids)
    /// and scores both against `references` (one each, normalised).
    ///
    /// # Errors
    /// A failing decoding step, or sources and references of different counts.
    pub fn run(
        model: &dyn Seq2Seq,
        sources: &[Vec<u32>],
        references: &[String],
        tgt: &TextCodec,
        beam: &BeamConfig,
        device: &Device,
    ) -> Result<Self> {
        let timed = |b: Option<&BeamConfig>| -> Result<(Vec<String>, f64)> {
            let t0 = Instant::now();
            let out = decode_corpus(model, sources, b, beam.max_len, device)?;
            Ok((
                out.iter().map(|ids| tgt.decode(ids)).collect(),
                t0.elapsed().as_secs_f64(),
            ))
        };
        let ((greedy, sg), (beamed, sb)) = (timed(None)?, timed(Some(beam))?);
        Ok(Self {
            greedy_scores: score_translations(&greedy, references)?,
            beam_scores: score_translations(&beamed, references)?,
            greedy,
            beam: beamed,
            seconds: (sg, sb),
        })
    }

    /// Writes `hypotheses.greedy.txt`, `hypotheses.beam.txt` and
    /// `references.txt` (one sentence a line) into `dir`, atomically each.
    ///
    /// # Errors
    /// A file that cannot be written, naming it.
    pub fn write(&self, dir: &Path, references: &[String]) -> Result<()> {
        for (name, text) in [
            ("hypotheses.greedy.txt", &self.greedy),
            ("hypotheses.beam.txt", &self.beam),
            ("references.txt", &references.to_vec()),
        ] {
            taper_train::fs::atomic_write(&dir.join(name), (text.join("\n") + "\n").as_bytes())?;
        }
        Ok(())
    }
}
