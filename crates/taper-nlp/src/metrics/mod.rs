//! Translation metrics equal to sacreBLEU's defaults: corpus BLEU (13a
//! tokenisation, exponential smoothing) and chrF (character 6-grams, β = 2);
//! perplexity.

pub mod bleu;
pub mod chrf;

pub use crate::seq2seq::train::perplexity;
pub use bleu::{corpus_bleu, tokenize_13a, BleuScore, BleuStats};
pub use chrf::{corpus_chrf, ChrfScore};

/// Python's `str.isspace`: Unicode white space plus the ASCII separators
/// U+001C–U+001F, which Rust's `char::is_whitespace` leaves out.
pub(crate) fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `s.split()`: words between runs of white space.
pub(crate) fn py_split(s: &str) -> Vec<&str> {
    s.split(is_py_space).filter(|w| !w.is_empty()).collect()
}

/// Corpus figures of a set of translations against one reference each.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct TranslationScores {
    /// Corpus BLEU (sacreBLEU's default), 0..100.
    pub bleu: f64,
    /// Corpus chrF (sacreBLEU's default), 0..100.
    pub chrf: f64,
    /// Fraction of hypotheses equal to their reference.
    pub exact_match: f64,
}

/// [`TranslationScores`] of `hypotheses` against `references` (one each).
///
/// # Errors
/// Lists of different lengths.
pub fn score_translations<H: AsRef<str>, R: AsRef<str>>(
    hypotheses: &[H],
    references: &[R],
) -> crate::Result<TranslationScores> {
    let refs = vec![references.iter().map(|r| r.as_ref()).collect::<Vec<_>>()];
    let exact = hypotheses
        .iter()
        .zip(references)
        .filter(|(h, r)| h.as_ref() == r.as_ref())
        .count();
    Ok(TranslationScores {
        bleu: corpus_bleu(hypotheses, &refs)?.score,
        chrf: corpus_chrf(hypotheses, &refs)?.score,
        exact_match: exact as f64 / hypotheses.len().max(1) as f64,
    })
}
