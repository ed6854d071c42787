//! Data for sequence-to-sequence models: parallel corpora, the generated date
//! task, text codecs with special ids, padded batches and length buckets.

pub mod batch;
pub mod codec;
pub mod dates;
pub mod parallel;

pub use batch::{length_buckets, source_batch, BucketedPairs, EncodedPairs, Seq2SeqBatch};
pub use codec::{TextCodec, BOS, EOS, PAD, UNK};
pub use dates::generate_dates;
pub use parallel::{PairFilter, ParallelCorpus, ENG_PREFIXES};
