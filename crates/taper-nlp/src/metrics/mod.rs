//! Translation metrics equal to sacreBLEU's defaults: corpus BLEU (13a
//! tokenisation, exponential smoothing) and chrF (character 6-grams, β = 2);
//! perplexity.

pub mod bleu;
pub mod chrf;

pub use crate::seq2seq::train::perplexity;
pub use bleu::{corpus_bleu, tokenize_13a, BleuScore};
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
