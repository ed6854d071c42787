//! The recurrent decoder with attention, and [`RnnSeq2Seq`], the encoder–decoder
//! built from it.
//!
//! Attention comes after the recurrence (Luong et al. 2015, without input
//! feeding): the decoder RNN reads the target prefix alone, so with teacher
//! forcing it runs over the whole target at once, and attention and the output
//! layer are one batched product each instead of one per step.

use super::attention::{self, Attention, AttentionKind, Linear, Memory};
use super::encoder::{rnn_encoder, EncoderConfig, RnnEncoder};
use super::{DecodeState, Seq2Seq, Source};
use crate::{Error, Result};
use candle_core::{Module, Tensor, D};
use candle_nn::{Embedding, Init, VarBuilder};
use taper_nn::rnn::{rnn, CellKind, Rnn, RnnConfig, RnnState};
use taper_nn::{Dropout, Forward, Mode};

/// Settings of an [`RnnSeq2Seq`].
#[derive(Debug, Clone, Copy)]
pub struct RnnSeq2SeqConfig {
    /// LSTM or GRU (encoder and decoder).
    pub cell: CellKind,
    /// Source vocabulary.
    pub src_vocab: usize,
    /// Target vocabulary.
    pub tgt_vocab: usize,
    /// Embedding size (both sides).
    pub emb: usize,
    /// Hidden size of the decoder and of the encoder's output.
    pub hidden: usize,
    /// Encoder layers.
    pub enc_layers: usize,
    /// Decoder layers.
    pub dec_layers: usize,
    /// Bidirectional encoder.
    pub bidirectional: bool,
    /// Attention scoring.
    pub attention: AttentionKind,
    /// Dropout on embeddings, between layers and before the output layer.
    pub dropout: f32,
    /// Longest source (ids) accepted; longer ones are cut by the caller.
    pub max_src_len: usize,
    /// Longest output (ids, end marker included).
    pub max_tgt_len: usize,
}

/// Encoder, bridge (encoder final state → decoder initial `h`), target embedding,
/// decoder RNN, attention, `combine` (`tanh(W [h; context])`) and `out`.
pub struct RnnSeq2Seq {
    cfg: RnnSeq2SeqConfig,
    encoder: RnnEncoder,
    bridge: Linear,
    embedding: Embedding,
    rnn: Rnn,
    attention: Box<dyn Attention>,
    combine: Linear,
    out: Linear,
    drop_emb: Dropout,
    drop_out: Dropout,
}

/// An [`RnnSeq2Seq`] with parameters `encoder.*`, `bridge.*`, `decoder.*` under `vb`.
pub fn rnn_seq2seq(cfg: RnnSeq2SeqConfig, vb: VarBuilder) -> Result<RnnSeq2Seq> {
    if cfg.bidirectional && !cfg.hidden.is_multiple_of(2) {
        return Err(Error::Config(format!(
            "a bidirectional encoder needs an even hidden size, got {}",
            cfg.hidden
        )));
    }
    let encoder = rnn_encoder(
        EncoderConfig {
            cell: cfg.cell,
            vocab: cfg.src_vocab,
            emb: cfg.emb,
            hidden: cfg.hidden,
            layers: cfg.enc_layers,
            bidirectional: cfg.bidirectional,
            dropout: cfg.dropout,
        },
        vb.pp("encoder"),
    )?;
    let d = vb.pp("decoder");
    let w = d.pp("embedding").get_with_hints(
        (cfg.tgt_vocab, cfg.emb),
        "weight",
        Init::Randn {
            mean: 0.0,
            stdev: 1.0,
        },
    )?;
    Ok(RnnSeq2Seq {
        bridge: attention::linear(
            encoder.output_size(),
            cfg.dec_layers * cfg.hidden,
            vb.pp("bridge"),
        )?,
        encoder,
        embedding: Embedding::new(w, cfg.emb),
        rnn: rnn(
            RnnConfig {
                cell: cfg.cell,
                input: cfg.emb,
                hidden: cfg.hidden,
                layers: cfg.dec_layers,
                bidirectional: false,
                dropout: cfg.dropout,
            },
            d.pp("rnn"),
        )?,
        attention: attention::build(cfg.attention, cfg.hidden, d.pp("attention"))?,
        combine: attention::linear(2 * cfg.hidden, cfg.hidden, d.pp("combine"))?,
        out: attention::linear(cfg.hidden, cfg.tgt_vocab, d.pp("out"))?,
        drop_emb: Dropout::new(cfg.dropout, "decoder.drop_emb")?,
        drop_out: Dropout::new(cfg.dropout, "decoder.drop_out")?,
        cfg,
    })
}

impl RnnSeq2Seq {
    /// The settings.
    pub fn config(&self) -> &RnnSeq2SeqConfig {
        &self.cfg
    }

    fn encode(&self, src: Source, mode: &Mode) -> Result<(Memory, Vec<RnnState>)> {
        let (out, last) = self.encoder.forward(src, mode)?;
        let memory = self.attention.prepare(&out, &out, Some(src.mask))?;
        let h0 = taper_nn::tanh(&self.bridge.forward(&last)?)?;
        let hd = self.cfg.hidden;
        let states = (0..self.cfg.dec_layers)
            .map(|l| {
                let h = h0.narrow(1, l * hd, hd)?.contiguous()?;
                let c = match self.cfg.cell {
                    CellKind::Lstm => Some(h.zeros_like()?),
                    CellKind::Gru => None,
                };
                Ok(RnnState { h, c })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((memory, states))
    }

    /// Logits `(B, T, V)`, the states after the last step, attention `(B, T, S)`.
    fn decode(
        &self,
        tgt_in: &Tensor,
        states: &[RnnState],
        memory: &Memory,
        mode: &Mode,
    ) -> Result<(Tensor, Vec<RnnState>, Tensor)> {
        let (features, states, w) = self.decode_features(tgt_in, states, memory, mode)?;
        Ok((self.out.forward(&features)?, states, w))
    }

    /// What the output projection reads `(B, T, H)`, the states after the last
    /// step, attention `(B, T, S)`.
    fn decode_features(
        &self,
        tgt_in: &Tensor,
        states: &[RnnState],
        memory: &Memory,
        mode: &Mode,
    ) -> Result<(Tensor, Vec<RnnState>, Tensor)> {
        let x = self
            .drop_emb
            .forward_t(&self.embedding.forward(tgt_in)?, mode)?;
        let (h, states) = self.rnn.forward(&x, None, Some(states), mode)?;
        let (ctx, w) = self.attention.attend(&h, memory)?;
        let comb = taper_nn::tanh(
            &self
                .combine
                .forward(&Tensor::cat(&[&h, &ctx], D::Minus1)?)?,
        )?;
        Ok((self.drop_out.forward_t(&comb, mode)?, states, w))
    }

    fn pack(&self, memory: Memory, states: &[RnnState]) -> DecodeState {
        let mut t = memory.into_vec();
        for s in states {
            t.push(s.h.clone());
            if let Some(c) = &s.c {
                t.push(c.clone());
            }
        }
        DecodeState {
            tensors: t,
            source_side: 3,
        }
    }

    fn unpack(&self, state: &DecodeState) -> Result<(Memory, Vec<RnnState>)> {
        let memory = Memory::from_slice(&state.tensors)?;
        let per = match self.cfg.cell {
            CellKind::Lstm => 2,
            CellKind::Gru => 1,
        };
        let rest = &state.tensors[3..];
        if rest.len() != per * self.cfg.dec_layers {
            return Err(Error::Config(format!(
                "decoding state holds {} tensors, expected {}",
                state.tensors.len(),
                3 + per * self.cfg.dec_layers
            )));
        }
        let states = rest
            .chunks(per)
            .map(|c| RnnState {
                h: c[0].clone(),
                c: c.get(1).cloned(),
            })
            .collect();
        Ok((memory, states))
    }
}

impl Seq2Seq for RnnSeq2Seq {
    fn logits(&self, src: Source, tgt_in: &Tensor, mode: &Mode) -> Result<Tensor> {
        let (memory, states) = self.encode(src, mode)?;
        Ok(self.decode(tgt_in, &states, &memory, mode)?.0)
    }

    fn token_losses(
        &self,
        src: Source,
        tgt_in: &Tensor,
        targets: &[u32],
        label_smoothing: f64,
        mode: &Mode,
    ) -> Result<Tensor> {
        let (memory, states) = self.encode(src, mode)?;
        let (features, _, _) = self.decode_features(tgt_in, &states, &memory, mode)?;
        super::head_losses(&self.out, &features, targets, label_smoothing)
    }

    fn start(&self, src: Source) -> Result<DecodeState> {
        let (memory, states) = self.encode(src, &Mode::eval())?;
        Ok(self.pack(memory, &states))
    }

    fn step(&self, state: &DecodeState, prev: &Tensor) -> Result<(Tensor, DecodeState, Tensor)> {
        let (memory, states) = self.unpack(state)?;
        let (logits, states, w) =
            self.decode(&prev.unsqueeze(1)?, &states, &memory, &Mode::eval())?;
        let logp = taper_nn::log_softmax(&logits.squeeze(1)?)?;
        Ok((logp, self.pack(memory, &states), w.squeeze(1)?))
    }

    fn max_source_len(&self) -> usize {
        self.cfg.max_src_len
    }

    fn max_target_len(&self) -> usize {
        self.cfg.max_tgt_len
    }

    fn target_vocab(&self) -> usize {
        self.cfg.tgt_vocab
    }
}
