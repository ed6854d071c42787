//! `taper-nlp`: text for Taper models.
//!
//! - [`tokenizer`]: BPE, WordPiece and word-level tokenizers trained from text
//!   files on Hugging Face's `tokenizers`, saved and loaded as `tokenizer.json`,
//!   encoding batches into candle tensors with attention masks;
//! - [`vocab`]: a word-level [`Vocab`] (counts, minimum count, maximum size,
//!   unknown and padding tokens); [`corpus`]: reading plain-text corpora;
//! - [`word2vec`]: skip-gram and CBOW with negative sampling, trained either by
//!   fast native loops or as a candle model through taper-train's `Trainer`;
//! - [`vectors`]: [`WordVectors`] with nearest neighbours, analogies, similarity
//!   and the word2vec text format; [`eval`]: WordSim-style Spearman evaluation;
//! - [`seq2seq`]: attention modules, LSTM/GRU encoder–decoders, the Transformer,
//!   greedy and beam-search decoding, training through taper-train's `Trainer`;
//! - [`data`]: parallel corpora, the generated date task, padded and bucketed
//!   batches; [`metrics`]: corpus BLEU and chrF equal to sacreBLEU's, perplexity.

pub mod corpus;
pub mod data;
mod error;
pub mod eval;
pub mod metrics;
pub mod seq2seq;
pub mod tokenizer;
pub mod vectors;
pub mod vocab;
pub mod word2vec;

pub use corpus::{Corpus, CorpusOptions};
pub use error::{Error, Result};
pub use tokenizer::{EncodedBatch, Tokenizer, TokenizerConfig, TokenizerKind};
pub use vectors::WordVectors;
pub use vocab::{Vocab, VocabConfig};
pub use word2vec::{Architecture, Word2VecConfig};
