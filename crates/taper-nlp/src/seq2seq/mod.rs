//! Sequence-to-sequence models: recurrent encoder–decoders with attention, the
//! Transformer, greedy and beam-search decoding, and their training step.
//!
//! - [`attention`]: which of `taper-nn`'s attention modules (additive, Luong dot
//!   and general, multi-head) a decoder uses; the recurrent layers are
//!   `taper-nn`'s stacked, bidirectional LSTM/GRU ([`taper_nn::rnn`]);
//! - [`encoder`] + [`decoder`]: [`RnnSeq2Seq`]; [`transformer`]: [`Transformer`];
//! - [`beam`]: batched greedy and beam-search decoding over any [`Seq2Seq`];
//! - [`train`]: masked, label-smoothed loss, scheduled teacher forcing and the
//!   [`taper_train::TrainStep`] implementation;
//! - [`saved`]: runs that load back as a [`Translator`]; [`splits`]: honest
//!   train/validation/test splits of a corpus and the one decoding of its test split;
//!
//! The fused CPU ops these models run on (whole-sequence LSTM, additive scores,
//! token losses with the output projection) are `taper-nn`'s [`taper_nn::kernels`].

pub mod attention;
pub mod beam;
pub mod decoder;
pub mod encoder;
pub mod saved;
pub mod splits;
pub mod train;
pub mod transformer;

pub use attention::{Attention, AttentionKind, Memory};
pub use beam::{beam_search, decode_corpus, greedy, BeamConfig, Decoded};
pub use decoder::{rnn_seq2seq, RnnSeq2Seq, RnnSeq2SeqConfig};
pub use saved::{
    attention_rgb, export_split, save_run, step_tokens, write_attention_maps, Alignment, ModelSpec,
    Translator,
};
pub use splits::{EncodedSplits, PairSplits, TestDecoding};
pub use taper_nn::rnn::{CellKind, Rnn, RnnConfig, RnnState};
pub use train::{Seq2SeqTrainer, TeacherForcing};
pub use transformer::{transformer, Positions, Transformer, TransformerConfig};

use crate::Result;
use candle_core::Tensor;
use taper_nn::loss::{linear_token_losses, token_losses};
use taper_nn::Mode;

/// What decoding carries from step to step: tensors whose first dimension is the
/// batch (encoder memory, recurrent state, the prefix so far), so that beam
/// search can reorder them all with one index.
#[derive(Debug, Clone)]
pub struct DecodeState {
    /// The tensors, each batch-first.
    pub tensors: Vec<Tensor>,
    /// How many of the first tensors depend on the source only (the encoder's
    /// memory): equal for every hypothesis of a sentence, so reordering the
    /// hypotheses within each sentence leaves them as they are
    /// ([`DecodeState::select_within_sources`]).
    pub source_side: usize,
}

impl DecodeState {
    /// The rows `rows` of every tensor.
    ///
    /// # Errors
    /// A row out of range.
    pub fn select(&self, rows: &[u32]) -> Result<Self> {
        Ok(Self {
            tensors: self
                .tensors
                .iter()
                .map(|t| taper_nn::kernels::select_rows(t, rows))
                .collect::<candle_core::Result<_>>()?,
            source_side: self.source_side,
        })
    }

    /// [`DecodeState::select`] for `rows` that map every row to a row of the
    /// same sentence (beam search when no sentence has finished): the
    /// source-side tensors are kept, and only the others are copied. Beam search
    /// spent more time copying the encoder's keys and values than in the steps'
    /// attention.
    ///
    /// # Errors
    /// A row out of range.
    pub fn select_within_sources(&self, rows: &[u32]) -> Result<Self> {
        let n = self.source_side.min(self.tensors.len());
        let mut tensors = self.tensors[..n].to_vec();
        for t in &self.tensors[n..] {
            tensors.push(taper_nn::kernels::select_rows(t, rows)?);
        }
        Ok(Self {
            tensors,
            source_side: self.source_side,
        })
    }

    /// The same tensors cut from the graph that computed them. Decoding never
    /// takes a gradient; without this each step's state kept every earlier
    /// step's activations alive through its graph until the batch finished.
    pub fn detach(self) -> Self {
        Self {
            tensors: self.tensors.into_iter().map(|t| t.detach()).collect(),
            source_side: self.source_side,
        }
    }
}

/// A source batch: ids `(B, S)` (`u32`), mask `(B, S)` (`f32`, 1 real, 0
/// padding) and real lengths.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    /// Ids.
    pub ids: &'a Tensor,
    /// Mask.
    pub mask: &'a Tensor,
    /// Lengths.
    pub lens: &'a [usize],
}

/// Per-token losses of `features (…, H)` through the output projection `out`:
/// one fused op when it has a bias (the models' heads do).
pub(crate) fn head_losses(
    out: &taper_nn::Linear,
    features: &Tensor,
    targets: &[u32],
    label_smoothing: f64,
) -> Result<Tensor> {
    Ok(match out.bias() {
        Some(b) => linear_token_losses(features, out.weight(), b, targets, label_smoothing)?,
        None => {
            let logits = candle_core::Module::forward(out, features)?;
            let v = logits.dim(candle_core::D::Minus1)?;
            token_losses(&logits.reshape(((), v))?, targets, label_smoothing)?
        }
    })
}

/// An encoder–decoder that can be trained with teacher forcing and decoded one
/// step at a time. `Sync`: [`decode_corpus`] decodes batches on several threads
/// at once.
pub trait Seq2Seq: Send + Sync {
    /// Logits `(B, T, V)` for decoder inputs `tgt_in (B, T)` (teacher forcing).
    fn logits(&self, src: Source, tgt_in: &Tensor, mode: &Mode) -> Result<Tensor>;
    /// Per-token losses `(B·T, 3)` against `targets` (`B·T` ids, row-major), as
    /// [`taper_nn::loss::token_losses`] of the logits. Models override it to fuse their
    /// output projection with the loss ([`taper_nn::loss::linear_token_losses`]), so the
    /// logits never become a graph node.
    fn token_losses(
        &self,
        src: Source,
        tgt_in: &Tensor,
        targets: &[u32],
        label_smoothing: f64,
        mode: &Mode,
    ) -> Result<Tensor> {
        let logits = self.logits(src, tgt_in, mode)?;
        let (b, t, v) = logits.dims3()?;
        Ok(token_losses(
            &logits.reshape((b * t, v))?,
            targets,
            label_smoothing,
        )?)
    }
    /// Encodes a source batch into the initial decoding state.
    fn start(&self, src: Source) -> Result<DecodeState>;
    /// One decoding step from the previous tokens `prev (B,)` (`u32`):
    /// `(log-probabilities (B, V), next state, attention weights (B, S))`.
    fn step(&self, state: &DecodeState, prev: &Tensor) -> Result<(Tensor, DecodeState, Tensor)>;
    /// Source ids the model accepts at most (positions, for a Transformer).
    fn max_source_len(&self) -> usize;
    /// Target ids (end marker included) the model produces at most.
    fn max_target_len(&self) -> usize;
    /// Target vocabulary size.
    fn target_vocab(&self) -> usize;
}
