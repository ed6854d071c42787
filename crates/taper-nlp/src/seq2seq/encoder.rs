//! The recurrent encoder: embedding, dropout, stacked (bidirectional) RNN.

use super::Source;
use crate::Result;
use candle_core::{Module, Tensor};
use candle_nn::{Embedding, Init, VarBuilder};
use taper_nn::rnn::{final_states, rnn, CellKind, Rnn, RnnConfig};
use taper_nn::{Dropout, Forward, Mode};

/// Embedding → dropout → RNN. Outputs `(B, S, hidden)` (both directions
/// concatenated when bidirectional, each of `hidden / 2` units).
#[derive(Debug, Clone)]
pub struct RnnEncoder {
    embedding: Embedding,
    rnn: Rnn,
    dropout: Dropout,
}

/// Settings of an [`RnnEncoder`].
#[derive(Debug, Clone, Copy)]
pub struct EncoderConfig {
    /// LSTM or GRU.
    pub cell: CellKind,
    /// Source vocabulary.
    pub vocab: usize,
    /// Embedding size.
    pub emb: usize,
    /// Output features (per direction: half of it when bidirectional).
    pub hidden: usize,
    /// Stacked layers.
    pub layers: usize,
    /// Read the source in both directions.
    pub bidirectional: bool,
    /// Dropout on the embeddings and between layers.
    pub dropout: f32,
}

/// An encoder with `embedding.weight` and `rnn.*` under `vb`.
pub fn rnn_encoder(cfg: EncoderConfig, vb: VarBuilder) -> Result<RnnEncoder> {
    let hidden = if cfg.bidirectional {
        cfg.hidden / 2
    } else {
        cfg.hidden
    };
    let w = vb.pp("embedding").get_with_hints(
        (cfg.vocab, cfg.emb),
        "weight",
        Init::Randn {
            mean: 0.0,
            stdev: 1.0,
        },
    )?;
    Ok(RnnEncoder {
        embedding: Embedding::new(w, cfg.emb),
        rnn: rnn(
            RnnConfig {
                cell: cfg.cell,
                input: cfg.emb,
                hidden,
                layers: cfg.layers,
                bidirectional: cfg.bidirectional,
                dropout: cfg.dropout,
            },
            vb.pp("rnn"),
        )?,
        dropout: Dropout::new(cfg.dropout, &format!("{}.drop", vb.prefix()))?,
    })
}

impl RnnEncoder {
    /// `(outputs (B, S, hidden), final state (B, hidden))`: the final state is
    /// read at each sequence's own last token.
    pub fn forward(&self, src: Source, mode: &Mode) -> Result<(Tensor, Tensor)> {
        let x = self
            .dropout
            .forward_t(&self.embedding.forward(src.ids)?, mode)?;
        let (out, _) = self.rnn.forward(&x, Some(src.lens), None, mode)?;
        let last = final_states(&out, src.lens, self.rnn.config().bidirectional)?;
        Ok((out, last))
    }

    /// Output features.
    pub fn output_size(&self) -> usize {
        self.rnn.output_size()
    }
}
