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
//!
//! A translator of the generated dates, trained for one epoch, saved as a run
//! and loaded back from it (any seq2seq kind loads the same way; word vectors
//! load with [`WordVectors::load`]):
//!
//! ```
//! use candle_core::Device;
//! use taper_nlp::data::{generate_dates, BucketedPairs};
//! use taper_nlp::seq2seq::{save_run, BeamConfig, ModelSpec, PairSplits, Seq2SeqTrainer};
//! use taper_nlp::seq2seq::{TeacherForcing, Translator};
//! use taper_train::data::{DataLoader, LoaderConfig};
//! use taper_train::optim::{named_vars, Adam, AdamConfig};
//! use taper_train::{Optimizers, Trainer, TrainerConfig};
//!
//! let pairs = generate_dates(2000, 1); // ("14 March 2015", "2015-03-14"), ...
//! let splits = PairSplits::new(&pairs, 0.1, 0.1, 1)?;
//! let (src, tgt) = splits.codecs(true, 0, 1)?; // characters
//! let (ls, lt) = splits.longest(&src, &tgt)?;
//! let spec = ModelSpec {
//!     task: "dates".into(), model: "lstm".into(), cell: "gru".into(), attention: "additive".into(),
//!     bidirectional: true, emb: 16, hidden: 48, layers: 1, heads: 1, ffn: 0,
//!     positions: "sinusoidal".into(), dropout: 0.0, max_src_len: ls + 8, max_tgt_len: lt + 9,
//!     src_vocab: src.len(), tgt_vocab: tgt.len(),
//!     src_fingerprint: src.fingerprint(), tgt_fingerprint: tgt.fingerprint(), reversed: false,
//! };
//! let run = tempfile::tempdir()?;
//! save_run(run.path(), &spec, &src, &tgt)?; // model.json and the vocabularies
//! let enc = splits.encode(&src, &tgt, spec.max_src_len, spec.max_tgt_len - 1)?;
//! let varmap = candle_nn::VarMap::new();
//! let mut task = Seq2SeqTrainer {
//!     model: spec.build(&varmap, 1, &Device::Cpu)?, varmap: varmap.clone(), label_smoothing: 0.0,
//!     teacher_forcing: TeacherForcing { start: 1.0, end: 1.0, steps: 1 }, seed: 1,
//!     valid_bleu: false,
//! };
//! let batches = BucketedPairs::new(enc.train.clone(), 32, 1, &Device::Cpu);
//! let train = DataLoader::new(batches, LoaderConfig::train(1, 1))?;
//! let mut opt = Optimizers::single(Adam::new(named_vars(&varmap, ""), AdamConfig::adamw(1e-2)));
//! let cfg = TrainerConfig { epochs: 1, run_dir: Some(run.path().into()), progress: false, ..Default::default() };
//! Trainer::new(cfg).fit(&mut task, &mut opt, &train, None)?;
//!
//! // Later, anywhere: the run directory is the model.
//! let translator = Translator::load(run.path(), &Device::Cpu)?;
//! let beam = BeamConfig { width: 3, alpha: 1.0, max_len: spec.max_tgt_len };
//! let out = translator.translate("7 June 2020", &beam)?;
//! assert!(out.len() <= spec.max_tgt_len);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod bert;
pub mod corpus;
pub mod data;
mod error;
pub mod eval;
pub mod finetune;
pub mod metrics;
pub mod search;
pub mod sentence;
pub mod seq2seq;
pub mod tokenizer;
pub mod vectors;
pub mod vocab;
pub mod word2vec;

pub use bert::{BertConfig, BertEncoder, Pooling};
pub use corpus::{Corpus, CorpusOptions};
pub use error::{Error, Result};
pub use sentence::SentenceEncoder;
pub use tokenizer::{EncodedBatch, Tokenizer, TokenizerConfig, TokenizerKind};
pub use vectors::WordVectors;
pub use vocab::{Vocab, VocabConfig};
pub use word2vec::{Architecture, Word2VecConfig};
