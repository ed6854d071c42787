//! The Transformer encoder–decoder (Vaswani et al. 2017) with pre-norm layers
//! (layer norm before each sub-layer, as in most later implementations: it
//! trains without a long warm-up), sinusoidal or learned positions, built on
//! [`MultiHeadAttention`] and taper-train's differentiable layer norm.

use super::attention::{
    causal_bias, linear, multi_head, Attention, Linear, Memory, MultiHeadAttention,
};
use super::{DecodeState, Seq2Seq, Source};
use crate::{Error, Result};
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Embedding, Init, VarBuilder};
use taper_nn::{layer_norm, LayerNorm};
use taper_nn::{Dropout, Forward, Mode};

/// How positions are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Positions {
    /// Fixed sines and cosines of geometrically spaced frequencies.
    Sinusoidal,
    /// A learned embedding per position.
    Learned,
}

impl std::str::FromStr for Positions {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "sinusoidal" => Ok(Self::Sinusoidal),
            "learned" => Ok(Self::Learned),
            o => Err(Error::Config(format!(
                "unknown positions '{o}' (sinusoidal or learned)"
            ))),
        }
    }
}

/// Settings of a [`Transformer`].
#[derive(Debug, Clone, Copy)]
pub struct TransformerConfig {
    /// Source vocabulary.
    pub src_vocab: usize,
    /// Target vocabulary.
    pub tgt_vocab: usize,
    /// Model width.
    pub d_model: usize,
    /// Attention heads.
    pub heads: usize,
    /// Feed-forward width.
    pub ffn: usize,
    /// Encoder layers.
    pub enc_layers: usize,
    /// Decoder layers.
    pub dec_layers: usize,
    /// Dropout after embeddings, attention and feed-forward blocks.
    pub dropout: f32,
    /// Longest sequence (positions) on either side, end marker included.
    pub max_len: usize,
    /// Position encoding.
    pub positions: Positions,
}

/// Sinusoidal position table `(max_len, d)`.
pub fn sinusoidal_table(max_len: usize, d: usize, device: &Device) -> Result<Tensor> {
    let mut v = vec![0f32; max_len * d];
    for p in 0..max_len {
        for i in 0..d {
            let k = (i / 2 * 2) as f64 / d as f64;
            let a = p as f64 / 10000f64.powf(k);
            v[p * d + i] = if i % 2 == 0 { a.sin() } else { a.cos() } as f32;
        }
    }
    Ok(Tensor::from_vec(v, (max_len, d), device)?)
}

#[derive(Debug, Clone)]
struct FeedForward {
    l1: Linear,
    l2: Linear,
    drop: Dropout,
}

impl FeedForward {
    fn new(d: usize, ffn: usize, p: f32, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            l1: linear(d, ffn, vb.pp("l1"))?,
            l2: linear(ffn, d, vb.pp("l2"))?,
            drop: Dropout::new(p, &format!("{}.drop", vb.prefix()))?,
        })
    }
    fn forward(&self, x: &Tensor, mode: &Mode) -> Result<Tensor> {
        let h = taper_nn::relu(&self.l1.forward(x)?)?;
        Ok(self.l2.forward(&self.drop.forward_t(&h, mode)?)?)
    }
}

#[derive(Debug, Clone)]
struct EncoderLayer {
    ln1: LayerNorm,
    attn: MultiHeadAttention,
    ln2: LayerNorm,
    ff: FeedForward,
    drop: Dropout,
}

impl EncoderLayer {
    fn forward(&self, x: &Tensor, mask: &Tensor, mode: &Mode) -> Result<Tensor> {
        let xn = self.ln1.forward(x)?;
        let m = self.attn.prepare(&xn, &xn, Some(mask))?;
        let (a, _) = self.attn.attend_heads(&xn, &m, None)?;
        let x = (x + self.drop.forward_t(&a, mode)?)?;
        let f = self.ff.forward(&self.ln2.forward(&x)?, mode)?;
        Ok((&x + self.drop.forward_t(&f, mode)?)?)
    }
}

#[derive(Debug, Clone)]
struct DecoderLayer {
    ln1: LayerNorm,
    self_attn: MultiHeadAttention,
    ln2: LayerNorm,
    cross: MultiHeadAttention,
    ln3: LayerNorm,
    ff: FeedForward,
    drop: Dropout,
}

impl DecoderLayer {
    fn forward(&self, y: &Tensor, causal: &Tensor, memory: &Memory, mode: &Mode) -> Result<Tensor> {
        let yn = self.ln1.forward(y)?;
        // No target padding mask: a real position only sees earlier positions,
        // which are real; padded positions are never scored.
        let m = self.self_attn.prepare(&yn, &yn, None)?;
        let (a, _) = self.self_attn.attend_heads(&yn, &m, Some(causal))?;
        let y = (y + self.drop.forward_t(&a, mode)?)?;
        let (c, _) = self
            .cross
            .attend_heads(&self.ln2.forward(&y)?, memory, None)?;
        let y = (&y + self.drop.forward_t(&c, mode)?)?;
        let f = self.ff.forward(&self.ln3.forward(&y)?, mode)?;
        Ok((&y + self.drop.forward_t(&f, mode)?)?)
    }
}

impl DecoderLayer {
    /// One new position `y (B, 1, D)` in evaluation mode, with the self-attention
    /// key/value `cache` of the earlier positions (`None` at the first):
    /// `(output (B, 1, D), the cache with this position, each head's
    /// cross-attention weights (B, h, 1, S))`. Equal to the last row of [`DecoderLayer::forward`] over the
    /// whole prefix: a position only attends to itself and earlier ones, and
    /// every other sub-layer works position by position.
    fn step(
        &self,
        y: &Tensor,
        cache: Option<&Memory>,
        memory: &Memory,
    ) -> Result<(Tensor, Memory, Tensor)> {
        let yn = self.ln1.forward(y)?;
        let cache = self.self_attn.extend(cache, &yn, &yn)?;
        let (a, _) = self.self_attn.attend_heads(&yn, &cache, None)?;
        let y = (y + a)?;
        let (c, w) = self
            .cross
            .attend_heads(&self.ln2.forward(&y)?, memory, None)?;
        let y = (&y + c)?;
        let f = self.ff.forward(&self.ln3.forward(&y)?, &Mode::eval())?;
        Ok(((&y + f)?, cache, w))
    }
}

/// Embeddings (scaled by √d) plus positions, pre-norm encoder and decoder stacks
/// with final layer norms, and the output layer.
pub struct Transformer {
    cfg: TransformerConfig,
    src_emb: Embedding,
    tgt_emb: Embedding,
    pos_src: Tensor,
    pos_tgt: Tensor,
    enc: Vec<EncoderLayer>,
    dec: Vec<DecoderLayer>,
    enc_norm: LayerNorm,
    dec_norm: LayerNorm,
    out: Linear,
    drop: Dropout,
}

/// A [`Transformer`] with parameters under `vb`.
pub fn transformer(cfg: TransformerConfig, vb: VarBuilder) -> Result<Transformer> {
    let d = cfg.d_model;
    if cfg.max_len == 0 || cfg.enc_layers == 0 || cfg.dec_layers == 0 {
        return Err(Error::Config(format!(
            "a Transformer needs layers and a positive max_len: {cfg:?}"
        )));
    }
    let emb = |vocab: usize, vb: VarBuilder| -> Result<Embedding> {
        let w = vb.get_with_hints(
            (vocab, d),
            "weight",
            Init::Randn {
                mean: 0.0,
                stdev: 1.0 / (d as f64).sqrt(),
            },
        )?;
        Ok(Embedding::new(w, d))
    };
    let (pos_src, pos_tgt) = match cfg.positions {
        Positions::Sinusoidal => {
            let t = sinusoidal_table(cfg.max_len, d, vb.device())?.to_dtype(vb.dtype())?;
            (t.clone(), t)
        }
        Positions::Learned => {
            let init = Init::Randn {
                mean: 0.0,
                stdev: 0.02,
            };
            (
                vb.get_with_hints((cfg.max_len, d), "pos_src", init)?,
                vb.get_with_hints((cfg.max_len, d), "pos_tgt", init)?,
            )
        }
    };
    let ln = |vb: VarBuilder| -> Result<LayerNorm> { Ok(layer_norm(d, 1e-5, vb)?) };
    let mut enc = Vec::new();
    for l in 0..cfg.enc_layers {
        let v = vb.pp(format!("encoder.{l}"));
        enc.push(EncoderLayer {
            ln1: ln(v.pp("ln1"))?,
            attn: multi_head(d, cfg.heads, v.pp("attn"))?,
            ln2: ln(v.pp("ln2"))?,
            ff: FeedForward::new(d, cfg.ffn, cfg.dropout, v.pp("ff"))?,
            drop: Dropout::new(cfg.dropout, &format!("encoder.{l}.drop"))?,
        });
    }
    let mut dec = Vec::new();
    for l in 0..cfg.dec_layers {
        let v = vb.pp(format!("decoder.{l}"));
        dec.push(DecoderLayer {
            ln1: ln(v.pp("ln1"))?,
            self_attn: multi_head(d, cfg.heads, v.pp("self_attn"))?,
            ln2: ln(v.pp("ln2"))?,
            cross: multi_head(d, cfg.heads, v.pp("cross"))?,
            ln3: ln(v.pp("ln3"))?,
            ff: FeedForward::new(d, cfg.ffn, cfg.dropout, v.pp("ff"))?,
            drop: Dropout::new(cfg.dropout, &format!("decoder.{l}.drop"))?,
        });
    }
    Ok(Transformer {
        src_emb: emb(cfg.src_vocab, vb.pp("src_embedding"))?,
        tgt_emb: emb(cfg.tgt_vocab, vb.pp("tgt_embedding"))?,
        pos_src,
        pos_tgt,
        enc,
        dec,
        enc_norm: ln(vb.pp("encoder_norm"))?,
        dec_norm: ln(vb.pp("decoder_norm"))?,
        out: linear(d, cfg.tgt_vocab, vb.pp("out"))?,
        drop: Dropout::new(cfg.dropout, "embedding.drop")?,
        cfg,
    })
}

impl Transformer {
    /// The settings.
    pub fn config(&self) -> &TransformerConfig {
        &self.cfg
    }

    fn embed(&self, emb: &Embedding, pos: &Tensor, ids: &Tensor, mode: &Mode) -> Result<Tensor> {
        let t = ids.dim(1)?;
        if t > self.cfg.max_len {
            return Err(Error::Config(format!(
                "sequence of {t} ids is longer than the model's {} positions",
                self.cfg.max_len
            )));
        }
        let x = (emb.forward(ids)? * (self.cfg.d_model as f64).sqrt())?
            .broadcast_add(&pos.narrow(0, 0, t)?)?;
        Ok(self.drop.forward_t(&x, mode)?)
    }

    fn encode(&self, src: Source, mode: &Mode) -> Result<Vec<Memory>> {
        let mut x = self.embed(&self.src_emb, &self.pos_src, src.ids, mode)?;
        for l in &self.enc {
            x = l.forward(&x, src.mask, mode)?;
        }
        let x = self.enc_norm.forward(&x)?;
        self.dec
            .iter()
            .map(|l| Ok(l.cross.prepare(&x, &x, Some(src.mask))?))
            .collect()
    }

    /// The normalised decoder output `(B, T, D)` the projection reads.
    fn decode_features(&self, tgt_in: &Tensor, memories: &[Memory], mode: &Mode) -> Result<Tensor> {
        let t = tgt_in.dim(1)?;
        let causal = causal_bias(t, tgt_in.device())?;
        let mut y = self.embed(&self.tgt_emb, &self.pos_tgt, tgt_in, mode)?;
        for (l, m) in self.dec.iter().zip(memories) {
            y = l.forward(&y, &causal, m, mode)?;
        }
        Ok(self.dec_norm.forward(&y)?)
    }
}

impl Seq2Seq for Transformer {
    fn logits(&self, src: Source, tgt_in: &Tensor, mode: &Mode) -> Result<Tensor> {
        let memories = self.encode(src, mode)?;
        Ok(self
            .out
            .forward(&self.decode_features(tgt_in, &memories, mode)?)?)
    }

    fn token_losses(
        &self,
        src: Source,
        tgt_in: &Tensor,
        targets: &[u32],
        label_smoothing: f64,
        mode: &Mode,
    ) -> Result<Tensor> {
        let memories = self.encode(src, mode)?;
        let features = self.decode_features(tgt_in, &memories, mode)?;
        super::head_losses(&self.out, &features, targets, label_smoothing)
    }

    /// The decoding state: each decoder layer's cross-attention memory (3
    /// tensors, the source side), then the ids so far `(B, t)`, then each layer's
    /// self-attention key/value cache (3 tensors; `(B, 0)` placeholders before
    /// the first step).
    fn start(&self, src: Source) -> Result<DecodeState> {
        let memories = self.encode(src, &Mode::eval())?;
        let b = src.ids.dim(0)?;
        let device = src.ids.device();
        let mut tensors = Vec::with_capacity(1 + 6 * self.dec.len());
        for m in memories {
            tensors.extend(m.into_vec());
        }
        tensors.push(Tensor::zeros((b, 0), DType::U32, device)?);
        let empty = Tensor::zeros((b, 0), DType::F32, device)?;
        tensors.extend(std::iter::repeat_n(empty, 3 * self.dec.len()));
        Ok(DecodeState {
            tensors,
            source_side: 3 * self.dec.len(),
        })
    }

    /// One step through the key/value caches: only the new position is embedded,
    /// projected and attended from, so greedy decoding of a sentence of `T` ids
    /// costs O(T) layer passes of one position instead of O(T²) positions.
    fn step(&self, state: &DecodeState, prev: &Tensor) -> Result<(Tensor, DecodeState, Tensor)> {
        let layers = self.dec.len();
        if state.tensors.len() != 1 + 6 * layers {
            return Err(Error::Config(format!(
                "a Transformer decoding state has {} tensors, not {}",
                state.tensors.len(),
                1 + 6 * layers
            )));
        }
        let (memories, rest) = state.tensors.split_at(3 * layers);
        let (prefix, caches) = (&rest[0], &rest[1..]);
        let t = prefix.dim(1)?;
        let prev = prev.unsqueeze(1)?;
        let prefix = Tensor::cat(&[prefix, &prev], 1)?;
        if t + 1 > self.cfg.max_len {
            return Err(Error::Config(format!(
                "sequence of {} ids is longer than the model's {} positions",
                t + 1,
                self.cfg.max_len
            )));
        }
        let mut y = (self.tgt_emb.forward(&prev)? * (self.cfg.d_model as f64).sqrt())?
            .broadcast_add(&self.pos_tgt.narrow(0, t, 1)?)?;
        let mut next_caches = Vec::with_capacity(3 * layers);
        let mut w = None;
        for ((layer, m), c) in self
            .dec
            .iter()
            .zip(memories.chunks(3))
            .zip(caches.chunks(3))
        {
            let cache = if t == 0 {
                None
            } else {
                Some(Memory::from_slice(c)?)
            };
            let (ny, nc, nw) = layer.step(&y, cache.as_ref(), &Memory::from_slice(m)?)?;
            y = ny;
            next_caches.extend(nc.into_vec());
            w = Some(nw);
        }
        let w = w.ok_or_else(|| Error::Config("no decoder layer".into()))?;
        let logits = self.out.forward(&self.dec_norm.forward(&y)?)?.squeeze(1)?;
        let logp = taper_nn::log_softmax(&logits)?;
        let mut tensors = Vec::with_capacity(state.tensors.len());
        tensors.extend(memories.iter().cloned());
        tensors.push(prefix);
        tensors.extend(next_caches);
        let state = DecodeState {
            tensors,
            source_side: state.source_side,
        };
        // The last layer's weights averaged over heads: (B, h, 1, S) -> (B, S).
        Ok((logp, state, w.mean(1)?.squeeze(1)?))
    }

    fn max_source_len(&self) -> usize {
        self.cfg.max_len
    }

    fn max_target_len(&self) -> usize {
        self.cfg.max_len
    }

    fn target_vocab(&self) -> usize {
        self.cfg.tgt_vocab
    }
}
