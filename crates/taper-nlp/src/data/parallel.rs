//! Parallel corpora: one sentence pair a line, source TAB target (Tatoeba's
//! `eng-fra.txt` layout; further columns, such as attribution, are ignored).

use crate::corpus::read_text;
use crate::{Error, Result};
use std::path::Path;

/// English sentence starts of the classic small translation setup (PyTorch's
/// seq2seq tutorial): "i am", "he is", ... with contractions spelt out.
pub const ENG_PREFIXES: &[&str] = &[
    "i am ", "i m ", "he is", "he s ", "she is", "she s ", "you are", "you re ", "we are",
    "we re ", "they are", "they re ",
];

/// Which pairs to keep.
#[derive(Debug, Clone, Default)]
pub struct PairFilter {
    /// Keep pairs whose two sides have at most this many white-space separated words.
    pub max_words: Option<usize>,
    /// Keep pairs whose source, lower-cased with apostrophes read as spaces,
    /// starts with one of these (empty: keep all).
    pub prefixes: Vec<String>,
    /// Keep at most this many pairs (the first ones in file order).
    pub max_pairs: Option<usize>,
}

impl PairFilter {
    fn keeps(&self, src: &str, tgt: &str) -> bool {
        if let Some(m) = self.max_words {
            if src.split_whitespace().count() > m || tgt.split_whitespace().count() > m {
                return false;
            }
        }
        if !self.prefixes.is_empty() {
            let s = src.to_lowercase().replace(['\'', '’'], " ");
            if !self.prefixes.iter().any(|p| s.starts_with(p.as_str())) {
                return false;
            }
        }
        true
    }
}

/// Sentence pairs read from a file or made in memory.
#[derive(Debug, Clone)]
pub struct ParallelCorpus {
    /// Where they come from (a file name or a task name).
    pub name: String,
    /// (source, target) pairs, trimmed.
    pub pairs: Vec<(String, String)>,
}

impl ParallelCorpus {
    /// Reads `path` (UTF-8, `source TAB target` a line; blank lines are skipped).
    /// A line without a tab or with an empty side is an error naming the line; a
    /// filter that leaves nothing is an error too.
    pub fn read(path: &Path, filter: &PairFilter) -> Result<Self> {
        let text = read_text(path)?;
        Self::parse(path, &text, filter)
    }

    /// Parses text already in memory; `path` names it in errors.
    pub fn parse(path: &Path, text: &str, filter: &PairFilter) -> Result<Self> {
        let mut pairs = Vec::new();
        let mut lines = 0usize;
        for (i, line) in text.lines().enumerate() {
            let bad = |msg: &str| Error::Parse {
                path: path.to_path_buf(),
                line: i + 1,
                msg: msg.to_string(),
            };
            if line.trim().is_empty() {
                continue;
            }
            lines += 1;
            let mut cols = line.split('\t');
            let src = cols.next().unwrap_or("").trim();
            let tgt = cols
                .next()
                .ok_or_else(|| bad("no tab: expected 'source<TAB>target'"))?
                .trim();
            if src.is_empty() {
                return Err(bad("empty source side"));
            }
            if tgt.is_empty() {
                return Err(bad("empty target side"));
            }
            if filter.max_pairs.is_some_and(|m| pairs.len() >= m) {
                continue;
            }
            if filter.keeps(src, tgt) {
                pairs.push((src.to_string(), tgt.to_string()));
            }
        }
        if pairs.is_empty() {
            return Err(Error::NoData(format!(
                "{}: none of its {lines} sentence pairs passes the filters \
                 (max words {:?}, {} prefixes)",
                path.display(),
                filter.max_words,
                filter.prefixes.len()
            )));
        }
        Ok(Self {
            name: path.display().to_string(),
            pairs,
        })
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// True when there are no pairs (never, by construction).
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}
