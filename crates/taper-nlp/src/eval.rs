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
    let (points, oov) = scored_pairs(vectors, pairs, lowercase);
    SimilarityReport::of(&points, oov)
}

/// `(human score, cosine)` of each pair whose both words are known (lower-cased
/// first with `lowercase`), and how many pairs were left out.
pub fn scored_pairs(
    vectors: &WordVectors,
    pairs: &[WordPair],
    lowercase: bool,
) -> (Vec<(f64, f64)>, usize) {
    let mut points = Vec::new();
    let mut oov = 0;
    for p in pairs {
        let (a, b) = if lowercase {
            (p.a.to_lowercase(), p.b.to_lowercase())
        } else {
            (p.a.clone(), p.b.clone())
        };
        match vectors.similarity(&a, &b) {
            Ok(s) => points.push((p.score, s as f64)),
            Err(_) => oov += 1,
        }
    }
    (points, oov)
}

impl SimilarityReport {
    /// The report of `(human score, cosine)` points and `oov` pairs left out.
    fn of(points: &[(f64, f64)], oov: usize) -> Self {
        let (human, model): (Vec<f64>, Vec<f64>) = points.iter().copied().unzip();
        Self {
            spearman: spearman(&model, &human),
            pairs: points.len(),
            oov,
        }
    }

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

/// `word 0.123, word 0.100, ...`: words with their cosine to 3 decimals.
fn cosine_list(r: &[(String, f32)]) -> String {
    r.iter()
        .map(|(w, s)| format!("{w} {s:.3}"))
        .collect::<Vec<_>>()
        .join(", ")
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
    let list = cosine_list;
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

/// Writes the word-vector section of a run's report (`RUN/report/word2vec.json`):
/// a table of the 8 nearest neighbours of each known word of `words`, the 5
/// best answers of each analogy `b - a + c` of `analogies` whose words are all
/// known, and with `pairs` (a word-similarity file and whether to lower-case
/// its words) the Spearman correlation and a scatter plot of the model's
/// cosine against the human score, one point a known pair.
///
/// # Errors
/// A section that cannot be written.
pub fn word2vec_section(
    run_dir: &Path,
    vectors: &WordVectors,
    words: &[String],
    analogies: &[(&str, &str, &str)],
    pairs: Option<(&[WordPair], bool)>,
) -> Result<std::path::PathBuf> {
    use taper_train::report::{Block, Section};
    let list = cosine_list;
    let mut rows: Vec<Vec<String>> = words
        .iter()
        .filter_map(|w| {
            vectors
                .most_similar(w, 8)
                .ok()
                .map(|nn| vec![w.clone(), list(&nn)])
        })
        .collect();
    rows.extend(analogies.iter().filter_map(|&(a, b, c)| {
        vectors
            .analogy(a, b, c, 5)
            .ok()
            .map(|r| vec![format!("{b} - {a} + {c}"), list(&r)])
    }));
    let mut section = Section::new(
        format!(
            "Word vectors ({} words of dimension {})",
            vectors.len(),
            vectors.dim()
        ),
        10,
    )
    .with(Block::Table {
        header: vec!["word or analogy".into(), "nearest (cosine)".into()],
        rows,
    });
    if let Some((pairs, lowercase)) = pairs {
        let (points, oov) = scored_pairs(vectors, pairs, lowercase);
        let report = SimilarityReport::of(&points, oov);
        section = section
            .with(Block::Figures {
                figures: report.figures().into_iter().collect(),
            })
            .with(Block::Scatter {
                title: "Word similarity: model against people".into(),
                x_label: "human score".into(),
                y_label: "cosine similarity".into(),
                points,
                diagonal: false,
            });
    }
    Ok(section.save(run_dir, "word2vec")?)
}
