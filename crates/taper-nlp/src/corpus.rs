//! Plain-text corpora: one sentence a line, words separated by white space.

use crate::{Error, Result};
use std::collections::HashMap;
use std::path::Path;

/// Reads a whole file as UTF-8; an invalid byte is reported with its line.
pub fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    String::from_utf8(bytes).map_err(|e| {
        let byte = e.utf8_error().valid_up_to();
        let line = 1 + e.as_bytes()[..byte].iter().filter(|&&b| b == b'\n').count();
        Error::NotUtf8 {
            path: path.to_path_buf(),
            line,
            byte,
        }
    })
}

/// How a corpus is read.
#[derive(Debug, Clone)]
pub struct CorpusOptions {
    /// Lower-case the text before splitting it.
    pub lowercase: bool,
    /// Longer lines are cut into sentences of at most this many words, so that a
    /// corpus on one line (text8) still gives windows and work units of sane size.
    pub max_sentence_len: usize,
}

impl Default for CorpusOptions {
    fn default() -> Self {
        Self {
            lowercase: false,
            max_sentence_len: 10_000,
        }
    }
}

/// A tokenised corpus kept as one string plus word spans, so that a million
/// words cost two allocations rather than a million.
#[derive(Debug, Clone)]
pub struct Corpus {
    name: String,
    text: String,
    spans: Vec<(u32, u32)>,
    // Index into `spans` where each sentence ends (exclusive).
    ends: Vec<usize>,
}

impl Corpus {
    /// Reads `path` (UTF-8, one sentence a line).
    pub fn from_file(path: &Path, opts: &CorpusOptions) -> Result<Self> {
        let text = read_text(path)?;
        Self::from_text(&path.display().to_string(), text, opts)
    }

    /// Splits `text` already in memory; `name` appears in errors.
    pub fn from_text(name: &str, text: String, opts: &CorpusOptions) -> Result<Self> {
        let text = if opts.lowercase {
            text.to_lowercase()
        } else {
            text
        };
        if text.len() > u32::MAX as usize {
            return Err(Error::Config(format!(
                "corpus {name} is larger than 4 GiB; split it into several files"
            )));
        }
        let max_len = opts.max_sentence_len.max(1);
        let mut spans = Vec::new();
        let mut ends = Vec::new();
        for line in text.split_inclusive('\n') {
            let mut in_sentence = 0usize;
            for word in line.split_whitespace() {
                let start = word.as_ptr() as usize - text.as_ptr() as usize;
                spans.push((start as u32, (start + word.len()) as u32));
                in_sentence += 1;
                if in_sentence == max_len {
                    ends.push(spans.len());
                    in_sentence = 0;
                }
            }
            if in_sentence > 0 {
                ends.push(spans.len());
            }
        }
        if spans.is_empty() {
            return Err(Error::EmptyCorpus {
                source_name: name.to_string(),
            });
        }
        Ok(Self {
            name: name.to_string(),
            text,
            spans,
            ends,
        })
    }

    /// The file name (or the name given to [`Corpus::from_text`]).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of words.
    pub fn num_words(&self) -> usize {
        self.spans.len()
    }

    /// Number of sentences (non-empty lines, long ones cut).
    pub fn num_sentences(&self) -> usize {
        self.ends.len()
    }

    /// Word `i` of the corpus; `None` past the last word.
    pub fn word(&self, i: usize) -> Option<&str> {
        self.spans.get(i).map(|&(a, b)| self.span(a, b))
    }

    fn span(&self, a: u32, b: u32) -> &str {
        &self.text[a as usize..b as usize]
    }

    /// All words in order.
    pub fn words(&self) -> impl Iterator<Item = &str> + '_ {
        self.spans.iter().map(move |&(a, b)| self.span(a, b))
    }

    /// The sentences, each an iterator over its words.
    pub fn sentences(&self) -> impl Iterator<Item = impl Iterator<Item = &str> + '_> + '_ {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let range = start..end;
            start = end;
            self.spans[range].iter().map(move |&(a, b)| self.span(a, b))
        })
    }

    /// Sentence boundaries as word-index ranges.
    pub fn sentence_ranges(&self) -> Vec<std::ops::Range<usize>> {
        let mut start = 0;
        self.ends
            .iter()
            .map(|&end| {
                let r = start..end;
                start = end;
                r
            })
            .collect()
    }

    /// How often each word occurs.
    pub fn counts(&self) -> HashMap<&str, u64> {
        let mut m: HashMap<&str, u64> = HashMap::new();
        for w in self.words() {
            *m.entry(w).or_insert(0) += 1;
        }
        m
    }
}
