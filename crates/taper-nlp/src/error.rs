//! The error type of `taper-nlp`.

use std::path::PathBuf;

/// Errors of tokenizers, vocabularies, corpora and word vectors. Each names the
/// file, line or word at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{}: {error}", path.display())]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error (in the message, so not also a `source()`:
        /// a chain printer would say it twice).
        error: std::io::Error,
    },

    /// A text file is not valid UTF-8.
    #[error("{}: not valid UTF-8 at line {line} (byte {byte})", path.display())]
    NotUtf8 {
        /// The file.
        path: PathBuf,
        /// 1-based line of the first invalid byte.
        line: usize,
        /// 0-based offset of the first invalid byte in the file.
        byte: usize,
    },

    /// A corpus holds no word at all.
    #[error("empty corpus {source_name}: no word to learn from")]
    EmptyCorpus {
        /// The file (or `<memory>`).
        source_name: String,
    },

    /// Every word of a corpus falls under the minimum count.
    #[error("corpus {source_name}: all {distinct} distinct words occur fewer than min_count = {min_count} times (the most frequent, '{top_word}', {top_count} times)")]
    AllBelowMinCount {
        /// The file (or `<memory>`).
        source_name: String,
        /// The threshold.
        min_count: u64,
        /// Distinct words seen.
        distinct: usize,
        /// The most frequent word.
        top_word: String,
        /// Its count.
        top_count: u64,
    },

    /// A word is not in the vocabulary.
    #[error("unknown word '{0}' (not in the vocabulary)")]
    UnknownWord(String),

    /// A tokenizer could not be trained, loaded, saved or applied.
    #[error("tokenizer {context}: {msg}")]
    Tokenizer {
        /// The file (for load/save) or the operation.
        context: String,
        /// What went wrong.
        msg: String,
    },

    /// A word-vector file is malformed.
    #[error("{}: line {line}: {msg}", path.display())]
    VectorFormat {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong with it.
        msg: String,
    },

    /// A line of a data file is malformed (a parallel corpus line without a tab,
    /// an empty side).
    #[error("{}: line {line}: {msg}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong with it.
        msg: String,
    },

    /// Nothing is left to train or evaluate on (every pair filtered out).
    #[error("no data: {0}")]
    NoData(String),

    /// A checkpoint does not fit the vocabulary it is loaded with.
    #[error("vocabulary mismatch: {0}")]
    VocabMismatch(String),

    /// A setting is invalid.
    #[error("config: {0}")]
    Config(String),

    /// A model file (a pretrained model's config, weights, tokenizer or
    /// pooling settings) that cannot be used as it is.
    #[error("{}: {msg}", path.display())]
    ModelFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        msg: String,
    },

    /// An id at or past the size of the table it indexes.
    #[error("id {id} is out of range for {len} entries")]
    IdOutOfRange {
        /// The id.
        id: u64,
        /// Entries in the table.
        len: usize,
    },

    /// An error of the trainer or of a checkpoint.
    #[error(transparent)]
    Train(#[from] taper_train::Error),

    /// An error of candle (shapes, dtypes, devices).
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            error: source,
        }
    }

    pub(crate) fn tokenizer(context: impl Into<String>, msg: impl ToString) -> Self {
        Error::Tokenizer {
            context: context.into(),
            msg: msg.to_string(),
        }
    }
}

/// Result alias of `taper-nlp`.
pub type Result<T> = std::result::Result<T, Error>;

// The trainer's traits return taper_train::Result: errors raised inside a
// TrainStep travel as the trainer's data error, keeping their message.
impl From<Error> for taper_train::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Train(t) => t,
            Error::Candle(c) => taper_train::Error::Candle(c),
            Error::Io { path, error } => taper_train::Error::Io { path, error },
            other => taper_train::Error::Data(other.to_string()),
        }
    }
}
