//! Word-similarity evaluation (WordSim-353 and files like it).

use crate::corpus::read_text;
use crate::vectors::WordVectors;
use crate::{Error, Result};
use std::path::Path;
pub use taper_train::metrics::{pearson, spearman};

/// Two words and the similarity people gave them.
#[derive(Debug, Clone, PartialEq)]
pub struct WordPair {
    /// First word.
    pub a: String,
    /// Second word.
    pub b: String,
    /// Human score.
    pub score: f64,
}

/// Reads word pairs: `word,word,score` (comma or tab separated), a header line
/// whose score is not a number is skipped, `#` lines are comments.
pub fn load_word_pairs(path: &Path) -> Result<Vec<WordPair>> {
    let text = read_text(path)?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = if line.contains('\t') {
            line.split('\t').collect()
        } else {
            line.split(',').collect()
        };
        let bad = |msg: String| Error::VectorFormat {
            path: path.to_path_buf(),
            line: i + 1,
            msg,
        };
        if fields.len() < 3 {
            return Err(bad(format!("expected 'word,word,score', got '{line}'")));
        }
        match fields[2].trim().parse::<f64>() {
            Ok(score) => out.push(WordPair {
                a: fields[0].trim().to_string(),
                b: fields[1].trim().to_string(),
                score,
            }),
            Err(_) if i == 0 => continue,
            Err(_) => return Err(bad(format!("score '{}' is not a number", fields[2]))),
        }
    }
    if out.is_empty() {
        return Err(Error::EmptyCorpus {
            source_name: path.display().to_string(),
        });
    }
    Ok(out)
}

/// The outcome of a word-similarity evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct SimilarityReport {
    /// Spearman rank correlation between cosine and human scores over the pairs
    /// whose both words are known (NaN when fewer than two are).
    pub spearman: f64,
    /// Pairs evaluated.
    pub pairs: usize,
    /// Pairs skipped because a word is out of vocabulary.
    pub oov: usize,
}

/// Spearman correlation of the vectors' cosines with human scores. With
/// `lowercase`, the pair's words are lower-cased before lookup (as for vectors
/// trained on a lower-cased corpus).
pub fn evaluate_word_pairs(
    vectors: &WordVectors,
    pairs: &[WordPair],
    lowercase: bool,
) -> SimilarityReport {
    let mut model = Vec::new();
    let mut human = Vec::new();
    let mut oov = 0;
    for p in pairs {
        let (a, b) = if lowercase {
            (p.a.to_lowercase(), p.b.to_lowercase())
        } else {
            (p.a.clone(), p.b.clone())
        };
        match vectors.similarity(&a, &b) {
            Ok(s) => {
                model.push(s as f64);
                human.push(p.score);
            }
            Err(_) => oov += 1,
        }
    }
    SimilarityReport {
        spearman: spearman(&model, &human),
        pairs: model.len(),
        oov,
    }
}

impl SimilarityReport {
    /// `wordsim_spearman` (null when not finite), `wordsim_pairs` and
    /// `wordsim_oov`, for an example's final JSON line.
    pub fn figures(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        let rho = self.spearman.is_finite().then_some(self.spearman);
        m.insert("wordsim_spearman".into(), serde_json::json!(rho));
        m.insert("wordsim_pairs".into(), self.pairs.into());
        m.insert("wordsim_oov".into(), self.oov.into());
        m
    }
}

/// The analogies the examples print: `b - a + c` for each `(a, b, c)`.
pub const ANALOGIES: [(&str, &str, &str); 2] =
    [("man", "king", "woman"), ("stock", "stocks", "bond")];

/// One line per word of `words` with its 8 nearest neighbours (or why there
/// are none), then one per analogy `b - a + c` of `analogies` whose words are
/// all known, with the 5 best answers; cosine similarities to 3 decimals.
pub fn neighbour_lines(
    vectors: &WordVectors,
    words: &[String],
    analogies: &[(&str, &str, &str)],
) -> Vec<String> {
    let list = |r: &[(String, f32)]| {
        r.iter()
            .map(|(w, s)| format!("{w} {s:.3}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out: Vec<String> = words
        .iter()
        .map(|w| match vectors.most_similar(w, 8) {
            Ok(nn) => format!("nearest to {w}: {}", list(&nn)),
            Err(e) => e.to_string(),
        })
        .collect();
    for &(a, b, c) in analogies {
        if let Ok(r) = vectors.analogy(a, b, c, 5) {
            out.push(format!("{b} - {a} + {c}: {}", list(&r)));
        }
    }
    out
}
