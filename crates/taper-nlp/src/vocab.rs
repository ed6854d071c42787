//! A word-level vocabulary: counting, minimum count, maximum size, unknown and
//! padding tokens.

use crate::corpus::Corpus;
use crate::{Error, Result};
use std::collections::HashMap;

/// Sequences of ids, one `Vec` per sequence.
pub type IdRows = Vec<Vec<u32>>;

/// Settings of a [`Vocab`].
#[derive(Debug, Clone)]
pub struct VocabConfig {
    /// Words seen fewer times are left out.
    pub min_count: u64,
    /// Keep at most this many words besides the special tokens (the most frequent).
    pub max_size: Option<usize>,
    /// Token that stands for any word left out (`None`: such words have no id).
    pub unk_token: Option<String>,
    /// Padding token (`None`: no padding id).
    pub pad_token: Option<String>,
}

impl Default for VocabConfig {
    fn default() -> Self {
        Self {
            min_count: 1,
            max_size: None,
            unk_token: Some("<unk>".into()),
            pad_token: Some("<pad>".into()),
        }
    }
}

impl VocabConfig {
    /// No special tokens, only words with at least `min_count` occurrences (what
    /// word2vec wants: a left-out word is dropped, not mapped to a shared id).
    pub fn plain(min_count: u64) -> Self {
        Self {
            min_count,
            max_size: None,
            unk_token: None,
            pad_token: None,
        }
    }
}

/// Words and their ids: padding first, then unknown, then words by decreasing
/// count (ties in byte order, so the same counts always give the same ids).
#[derive(Debug, Clone, PartialEq)]
pub struct Vocab {
    words: Vec<String>,
    counts: Vec<u64>,
    index: HashMap<String, u32>,
    unk: Option<u32>,
    pad: Option<u32>,
}

impl Vocab {
    /// Builds a vocabulary from word counts; `source_name` appears in errors.
    pub fn from_counts<'a>(
        counts: impl IntoIterator<Item = (&'a str, u64)>,
        config: &VocabConfig,
        source_name: &str,
    ) -> Result<Self> {
        let mut all: Vec<(&str, u64)> = counts.into_iter().filter(|(_, c)| *c > 0).collect();
        if all.is_empty() {
            return Err(Error::EmptyCorpus {
                source_name: source_name.to_string(),
            });
        }
        all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        let specials: Vec<&str> = [&config.pad_token, &config.unk_token]
            .into_iter()
            .flatten()
            .map(|s| s.as_str())
            .collect();
        let distinct = all.len();
        let (top_word, top_count) = (all[0].0.to_string(), all[0].1);
        let mut kept: Vec<(&str, u64)> = all
            .into_iter()
            .filter(|(w, c)| *c >= config.min_count && !specials.contains(w))
            .collect();
        if let Some(m) = config.max_size {
            kept.truncate(m);
        }
        if kept.is_empty() {
            return Err(Error::AllBelowMinCount {
                source_name: source_name.to_string(),
                min_count: config.min_count,
                distinct,
                top_word,
                top_count,
            });
        }
        let mut v = Self {
            words: Vec::with_capacity(kept.len() + 2),
            counts: Vec::with_capacity(kept.len() + 2),
            index: HashMap::with_capacity(kept.len() + 2),
            unk: None,
            pad: None,
        };
        if let Some(p) = &config.pad_token {
            v.pad = Some(v.push(p, 0));
        }
        if let Some(u) = &config.unk_token {
            v.unk = Some(v.push(u, 0));
        }
        for (w, c) in kept {
            v.push(w, c);
        }
        Ok(v)
    }

    /// Counts the words of a corpus and builds the vocabulary.
    pub fn from_corpus(corpus: &Corpus, config: &VocabConfig) -> Result<Self> {
        Self::from_counts(corpus.counts(), config, corpus.name())
    }

    /// A vocabulary of the given words in this order (counts all 1, no special
    /// tokens), e.g. for vectors read from a file. Duplicates are an error.
    pub fn from_words(words: impl IntoIterator<Item = String>) -> Result<Self> {
        let mut v = Self {
            words: Vec::new(),
            counts: Vec::new(),
            index: HashMap::new(),
            unk: None,
            pad: None,
        };
        for w in words {
            if v.index.contains_key(&w) {
                return Err(Error::Config(format!("word '{w}' appears twice")));
            }
            v.push(&w, 1);
        }
        Ok(v)
    }

    /// Replaces the counts (same length as the vocabulary).
    pub fn with_counts(mut self, counts: Vec<u64>) -> Result<Self> {
        if counts.len() != self.words.len() {
            return Err(Error::Config(format!(
                "{} counts for {} words",
                counts.len(),
                self.words.len()
            )));
        }
        self.counts = counts;
        Ok(self)
    }

    fn push(&mut self, w: &str, c: u64) -> u32 {
        let id = self.words.len() as u32;
        self.words.push(w.to_string());
        self.counts.push(c);
        self.index.insert(w.to_string(), id);
        id
    }

    /// Number of entries, special tokens included.
    pub fn len(&self) -> usize {
        self.words.len()
    }

    /// True when empty (never, by construction).
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// The id of `word`, if it is in the vocabulary.
    pub fn get(&self, word: &str) -> Option<u32> {
        self.index.get(word).copied()
    }

    /// The id of `word`, or an error naming it.
    pub fn id(&self, word: &str) -> Result<u32> {
        self.get(word)
            .ok_or_else(|| Error::UnknownWord(word.to_string()))
    }

    /// The id of `word`, or the unknown token's id (`None` when there is neither).
    pub fn id_or_unk(&self, word: &str) -> Option<u32> {
        self.get(word).or(self.unk)
    }

    /// The word of `id`.
    pub fn word(&self, id: u32) -> Option<&str> {
        self.words.get(id as usize).map(|s| s.as_str())
    }

    /// All words, by id.
    pub fn words(&self) -> &[String] {
        &self.words
    }

    /// Occurrences of each word in the corpus it was built from (0 for special tokens).
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// The unknown token's id.
    pub fn unk_id(&self) -> Option<u32> {
        self.unk
    }

    /// The padding token's id.
    pub fn pad_id(&self) -> Option<u32> {
        self.pad
    }

    /// Ids of a sequence of words; left-out words become the unknown id, or are
    /// dropped when there is no unknown token.
    pub fn encode<'a>(&self, words: impl IntoIterator<Item = &'a str>) -> Vec<u32> {
        words
            .into_iter()
            .filter_map(|w| self.id_or_unk(w))
            .collect()
    }

    /// Words of a sequence of ids (unknown ids are skipped).
    pub fn decode(&self, ids: &[u32]) -> Vec<&str> {
        ids.iter().filter_map(|&i| self.word(i)).collect()
    }

    /// Encodes sentences into a `(batch, len)` id matrix padded with the padding id
    /// (longest sentence, or cut at `max_len`) and its 0/1 mask.
    pub fn encode_padded<'a, S>(
        &self,
        sentences: &[S],
        max_len: Option<usize>,
    ) -> Result<(IdRows, IdRows)>
    where
        S: AsRef<[&'a str]>,
    {
        let pad = self.pad.ok_or_else(|| {
            Error::Config("padding needs a vocabulary with a padding token".into())
        })?;
        let mut ids: Vec<Vec<u32>> = sentences
            .iter()
            .map(|s| self.encode(s.as_ref().iter().copied()))
            .collect();
        if let Some(m) = max_len {
            ids.iter_mut().for_each(|v| v.truncate(m));
        }
        let len = ids.iter().map(|v| v.len()).max().unwrap_or(0);
        let masks = ids
            .iter_mut()
            .map(|v| {
                let n = v.len();
                v.resize(len, pad);
                (0..len).map(|i| u32::from(i < n)).collect()
            })
            .collect();
        Ok((ids, masks))
    }
}
