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

    /// Writes the translation section of the run's report
    /// (`RUN/report/translation.json`, see [`taper_train::report`]): BLEU, chrF
    /// and exact matches of both decodings, the first `examples`
    /// source/reference/output triples (`sources` and `references` as text, in
    /// the decoded order) and the attention maps `maps` (PNG files in
    /// `run_dir`, map `i` of source `i`).
    ///
    /// # Errors
    /// A section that cannot be written.
    pub fn report_section(
        &self,
        run_dir: &Path,
        sources: &[String],
        references: &[String],
        maps: &[std::path::PathBuf],
        examples: usize,
    ) -> Result<std::path::PathBuf> {
        use taper_train::report::{Block, Picture, Section};
        let (g, b) = (&self.greedy_scores, &self.beam_scores);
        let figures = vec![
            ("test_bleu".to_string(), b.bleu.into()),
            ("test_chrf".to_string(), b.chrf.into()),
            ("test_exact_match".to_string(), b.exact_match.into()),
            ("test_bleu_greedy".to_string(), g.bleu.into()),
            ("test_chrf_greedy".to_string(), g.chrf.into()),
            ("test_exact_match_greedy".to_string(), g.exact_match.into()),
        ];
        let rows = sources
            .iter()
            .zip(references)
            .zip(self.beam.iter().zip(&self.greedy))
            .take(examples)
            .map(|((s, r), (b, g))| vec![s.clone(), r.clone(), b.clone(), g.clone()])
            .collect();
        let pictures = maps
            .iter()
            .enumerate()
            .map(|(i, m)| Picture {
                file: m
                    .strip_prefix(run_dir)
                    .unwrap_or(m)
                    .to_string_lossy()
                    .into_owned(),
                caption: sources.get(i).cloned().unwrap_or_default(),
            })
            .collect();
        let section = Section::new(
            format!(
                "Translation of the test split ({} sentences)",
                self.beam.len()
            ),
            10,
        )
        .with(Block::Figures { figures })
        .with(Block::Table {
            header: ["source", "reference", "beam search", "greedy"]
                .map(String::from)
                .to_vec(),
            rows,
        })
        .with(Block::Text {
            text: "Attention of each output token (rows) over the source tokens (columns):".into(),
        })
        .with(Block::Images {
            images: pictures,
            slider: false,
        });
        Ok(section.save(run_dir, "translation")?)
    }
}
