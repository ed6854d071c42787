//! BERT-family encoders (Devlin et al. 2019) built from a Hugging Face
//! `config.json` and loaded by Hugging Face's tensor names from
//! `model.safetensors`, on `taper-nn`'s layers and kernels: fused linear, layer
//! norm and softmax, GELU in its exact erf form.
//!
//! Loading is strict: a missing, unknown or mis-shaped tensor is an error
//! naming it and the file. Accepted beside the weights: the `position_ids`
//! buffer older exports carry, the unused `pooler.*`, a `bert.` prefix, and the
//! `gamma`/`beta` spelling of layer-norm weights in old files.
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use taper_nlp::bert::{BertConfig, BertEncoder};
//! use taper_nn::Mode;
//!
//! let cfg = BertConfig::tiny(50); // 2 layers, width 16, 2 heads
//! let varmap = candle_nn::VarMap::new();
//! let enc = BertEncoder::new(&cfg, taper_nn::init::seeded_var_builder(&varmap, 1, candle_core::DType::F32, &Device::Cpu))?;
//! let ids = Tensor::new(&[[2u32, 7, 9, 3, 0]], &Device::Cpu)?;
//! let mask = Tensor::new(&[[1u32, 1, 1, 1, 0]], &Device::Cpu)?;
//! let h = enc.forward_t(&ids, None, &mask, &Mode::eval())?;
//! assert_eq!(h.dims(), &[1, 5, 16]);
//! # Ok::<(), taper_nlp::Error>(())
//! ```

use crate::{Error, Result};
use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{VarBuilder, VarMap};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;
use taper_nn::attention::{masked_softmax, padding_bias};
use taper_nn::kernels::sdpa;
use taper_nn::{
    embedding, gelu, layer_norm, linear, Dropout, Embedding, Forward, LayerNorm, Linear, Mode,
};

/// A Hugging Face BERT `config.json` (the fields the encoder reads; others are
/// ignored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BertConfig {
    /// Ids of the word-piece vocabulary.
    pub vocab_size: usize,
    /// Width of every layer.
    pub hidden_size: usize,
    /// Encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads (`hidden_size` must divide by it).
    pub num_attention_heads: usize,
    /// Width of the feed-forward layer.
    pub intermediate_size: usize,
    /// Feed-forward activation: `gelu` (exact), `relu`.
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Longest input, in tokens.
    #[serde(default = "default_positions")]
    pub max_position_embeddings: usize,
    /// Segment ids.
    #[serde(default = "default_types")]
    pub type_vocab_size: usize,
    /// ε of every layer norm.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// Dropout of the hidden states in training.
    #[serde(default = "default_dropout")]
    pub hidden_dropout_prob: f32,
    /// Dropout of the attention weights in training.
    #[serde(default = "default_dropout")]
    pub attention_probs_dropout_prob: f32,
    /// `bert` (checked when loading).
    #[serde(default)]
    pub model_type: Option<String>,
    /// `absolute` (the only kind supported).
    #[serde(default)]
    pub position_embedding_type: Option<String>,
}

fn default_act() -> String {
    "gelu".into()
}
fn default_positions() -> usize {
    512
}
fn default_types() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_dropout() -> f32 {
    0.1
}

impl BertConfig {
    /// A tiny configuration for tests: 2 layers of width 16, 2 heads,
    /// feed-forward 32, 64 positions.
    pub fn tiny(vocab_size: usize) -> Self {
        Self {
            vocab_size,
            hidden_size: 16,
            num_hidden_layers: 2,
            num_attention_heads: 2,
            intermediate_size: 32,
            hidden_act: default_act(),
            max_position_embeddings: 64,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            hidden_dropout_prob: 0.1,
            attention_probs_dropout_prob: 0.1,
            model_type: Some("bert".into()),
            position_embedding_type: None,
        }
    }

    /// Reads and checks a `config.json`.
    ///
    /// # Errors
    /// [`Error::ModelFile`] naming the file: unreadable, not JSON, a model of
    /// another architecture (say `gpt2`), or sizes that do not fit together.
    pub fn load(path: &Path) -> Result<Self> {
        let bad = |msg: String| Error::ModelFile {
            path: path.to_path_buf(),
            msg,
        };
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let raw: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| bad(format!("not a JSON config: {e}")))?;
        let kind = raw["model_type"].as_str().unwrap_or("");
        if kind != "bert" {
            return Err(bad(format!(
                "a config of model type '{kind}': only BERT-family encoders (model_type \"bert\") load here"
            )));
        }
        let cfg: Self =
            serde_json::from_value(raw).map_err(|e| bad(format!("not a BERT config: {e}")))?;
        cfg.check().map_err(bad)?;
        Ok(cfg)
    }

    fn check(&self) -> std::result::Result<(), String> {
        if self.hidden_size == 0 || self.num_attention_heads == 0 {
            return Err("hidden_size and num_attention_heads must be positive".into());
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(format!(
                "hidden_size {} does not split into {} heads",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if !matches!(self.hidden_act.as_str(), "gelu" | "relu") {
            return Err(format!(
                "activation '{}' is not supported (gelu, relu)",
                self.hidden_act
            ));
        }
        match self.position_embedding_type.as_deref() {
            None | Some("absolute") => Ok(()),
            Some(other) => Err(format!(
                "position embeddings '{other}' are not supported (absolute)"
            )),
        }
    }
}

/// One encoder layer: self-attention with the padding mask, then the
/// feed-forward block, each followed by a residual connection and a layer norm
/// (post-norm, as BERT).
struct BertLayer {
    query: Linear,
    key: Linear,
    value: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    ffn_in: Linear,
    ffn_out: Linear,
    ffn_norm: LayerNorm,
    attn_drop: Dropout,
    hidden_drop: Dropout,
}

/// A BERT encoder: embeddings (word + position + segment, layer norm) and
/// `num_hidden_layers` encoder layers. Variables carry Hugging Face's names
/// (`embeddings.word_embeddings.weight`, `encoder.layer.0.attention.self.query.weight`, ...).
pub struct BertEncoder {
    words: Embedding,
    positions: Embedding,
    segments: Embedding,
    emb_norm: LayerNorm,
    emb_drop: Dropout,
    layers: Vec<BertLayer>,
    cfg: BertConfig,
}

impl BertEncoder {
    /// A fresh encoder of shape `cfg` under `vb` (random weights: load real
    /// ones with [`BertEncoder::load`] or [`load_hf_weights`]).
    ///
    /// # Errors
    /// A configuration whose sizes do not fit together.
    pub fn new(cfg: &BertConfig, vb: VarBuilder) -> Result<Self> {
        cfg.check().map_err(Error::Config)?;
        let (h, eps) = (cfg.hidden_size, cfg.layer_norm_eps);
        let e = vb.pp("embeddings");
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let l = vb.pp(format!("encoder.layer.{i}"));
            let a = l.pp("attention");
            layers.push(BertLayer {
                query: linear(h, h, a.pp("self.query"))?,
                key: linear(h, h, a.pp("self.key"))?,
                value: linear(h, h, a.pp("self.value"))?,
                attn_out: linear(h, h, a.pp("output.dense"))?,
                attn_norm: layer_norm(h, eps, a.pp("output.LayerNorm"))?,
                ffn_in: linear(h, cfg.intermediate_size, l.pp("intermediate.dense"))?,
                ffn_out: linear(cfg.intermediate_size, h, l.pp("output.dense"))?,
                ffn_norm: layer_norm(h, eps, l.pp("output.LayerNorm"))?,
                attn_drop: Dropout::new(
                    cfg.attention_probs_dropout_prob,
                    &format!("bert.{i}.attn"),
                )?,
                hidden_drop: Dropout::new(cfg.hidden_dropout_prob, &format!("bert.{i}.hidden"))?,
            });
        }
        Ok(Self {
            words: embedding(cfg.vocab_size, h, e.pp("word_embeddings"))?,
            positions: embedding(cfg.max_position_embeddings, h, e.pp("position_embeddings"))?,
            segments: embedding(cfg.type_vocab_size, h, e.pp("token_type_embeddings"))?,
            emb_norm: layer_norm(h, eps, e.pp("LayerNorm"))?,
            emb_drop: Dropout::new(cfg.hidden_dropout_prob, "bert.embeddings")?,
            layers,
            cfg: cfg.clone(),
        })
    }

    /// The encoder stored in a Hugging Face model folder (`config.json`,
    /// `model.safetensors`), its variables in `varmap` (trainable: fine-tuning
    /// starts from them).
    ///
    /// # Errors
    /// As [`BertConfig::load`] and [`load_hf_weights`].
    pub fn load(dir: &Path, varmap: &VarMap, device: &Device) -> Result<Self> {
        let cfg = BertConfig::load(&dir.join("config.json"))?;
        let vb = taper_nn::init::seeded_var_builder(varmap, 0, DType::F32, device);
        let enc = Self::new(&cfg, vb)?;
        load_hf_weights(varmap, &dir.join("model.safetensors"), device)?;
        Ok(enc)
    }

    /// The configuration.
    pub fn config(&self) -> &BertConfig {
        &self.cfg
    }

    /// Hidden states `(B, T, hidden)` of token ids `(B, T)` (`u32`), segment
    /// ids `(B, T)` (zeros when `None`) and the attention mask `(B, T)` (1 for
    /// a token, 0 for padding: padded keys get weight 0).
    ///
    /// # Errors
    /// Inputs longer than `max_position_embeddings`, ids past the vocabulary,
    /// or shapes that disagree.
    pub fn forward_t(
        &self,
        ids: &Tensor,
        type_ids: Option<&Tensor>,
        mask: &Tensor,
        mode: &Mode,
    ) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        if t > self.cfg.max_position_embeddings {
            return Err(Error::Config(format!(
                "{t} tokens: the encoder takes at most {} (truncate the input)",
                self.cfg.max_position_embeddings
            )));
        }
        let dev = ids.device();
        let pos = Tensor::arange(0u32, t as u32, dev)?.unsqueeze(0)?;
        let seg = match type_ids {
            Some(s) => self.segments.forward(s)?,
            None => self
                .segments
                .forward(&Tensor::zeros((b, t), DType::U32, dev)?)?,
        };
        let x = self
            .words
            .forward(ids)?
            .add(&seg)?
            .broadcast_add(&self.positions.forward(&pos)?)?;
        let mut x = self.emb_drop.forward_t(&self.emb_norm.forward(&x)?, mode)?;
        // (B, 1, T), and (B, 1, 1, T) for the scores: 0 for a token, a large
        // negative number for padding.
        let key_bias = padding_bias(mask)?;
        let bias = key_bias.unsqueeze(1)?;
        let (heads, dh) = (
            self.cfg.num_attention_heads,
            self.cfg.hidden_size / self.cfg.num_attention_heads,
        );
        let split = |y: Tensor| -> Result<Tensor> {
            Ok(y.reshape((b, t, heads, dh))?
                .transpose(1, 2)?
                .contiguous()?)
        };
        for l in &self.layers {
            let (q, k, v) = (
                l.query.forward(&x)?,
                l.key.forward(&x)?,
                l.value.forward(&x)?,
            );
            // Evaluation with no graph recorded (the sentence encoder's weights):
            // one fused pass, no (B, heads, T, T) tensor (taper_nn::kernels::sdpa).
            let ctx = if !mode.is_train() && sdpa::fusable(&q, &k, &v) {
                sdpa::sdpa(&q, &k, &v, Some(&key_bias), heads, false)?
            } else {
                let (q, k, v) = (split(q)?, split(k)?, split(v)?);
                let scores = (q.matmul(&k.transpose(2, 3)?.contiguous()?)? / (dh as f64).sqrt())?;
                let w = l
                    .attn_drop
                    .forward_t(&masked_softmax(&scores, Some(&bias))?, mode)?;
                w.matmul(&v)?.transpose(1, 2)?.reshape((b, t, heads * dh))?
            };
            let a = l.hidden_drop.forward_t(&l.attn_out.forward(&ctx)?, mode)?;
            x = l.attn_norm.forward(&(x + a)?)?;
            let f = l.ffn_in.forward(&x)?;
            let f = match self.cfg.hidden_act.as_str() {
                "relu" => f.relu()?,
                _ => gelu(&f)?,
            };
            let f = l.hidden_drop.forward_t(&l.ffn_out.forward(&f)?, mode)?;
            x = l.ffn_norm.forward(&(x + f)?)?;
        }
        Ok(x)
    }
}

/// The Hugging Face name `name` as the encoder's variables spell it, or `None`
/// for a tensor that is not a weight of the encoder (the `position_ids`
/// buffer, the pooler).
fn canonical(name: &str) -> Option<String> {
    let n = name.strip_prefix("bert.").unwrap_or(name);
    if n == "embeddings.position_ids" || n.starts_with("pooler.") {
        return None;
    }
    let n = if let Some(s) = n.strip_suffix(".gamma") {
        format!("{s}.weight")
    } else if let Some(s) = n.strip_suffix(".beta") {
        format!("{s}.bias")
    } else {
        n.to_string()
    };
    Some(n)
}

/// Loads a Hugging Face `model.safetensors` into `varmap` by name, strictly:
/// every variable must be in the file with its shape, and every tensor of the
/// file must be a variable (or a known non-weight: see the module docs).
/// Nothing is changed when the file does not fit.
///
/// # Errors
/// [`Error::ModelFile`] naming the file and the tensor: unreadable or
/// truncated, missing, unknown, or of another shape.
pub fn load_hf_weights(varmap: &VarMap, path: &Path, device: &Device) -> Result<()> {
    let bad = |msg: String| Error::ModelFile {
        path: path.to_path_buf(),
        msg,
    };
    let file = candle_core::safetensors::load(path, device)
        .map_err(|e| bad(format!("not a readable safetensors file: {e}")))?;
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    for (name, t) in file {
        if let Some(c) = canonical(&name) {
            tensors.insert(c, t);
        }
    }
    let vars = varmap
        .data()
        .lock()
        .map_err(|_| bad("variables poisoned".into()))?;
    let mut assign = Vec::with_capacity(vars.len());
    for (name, var) in vars.iter() {
        let t = tensors
            .remove(name)
            .ok_or_else(|| bad(format!("tensor '{name}' is missing")))?;
        if t.dims() != var.dims() {
            return Err(bad(format!(
                "tensor '{name}' has shape {:?}, the config gives {:?}",
                t.dims(),
                var.dims()
            )));
        }
        assign.push((var.clone(), t));
    }
    if let Some(extra) = tensors.keys().min() {
        return Err(bad(format!(
            "tensor '{extra}' is not part of a BERT encoder of this config"
        )));
    }
    for (var, t) in assign {
        var.set(&t.to_dtype(var.dtype())?)?;
    }
    Ok(())
}

/// How token states become one sentence vector (sentence-transformers'
/// `Pooling` module).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Pooling {
    /// The mean of the token states under the mask.
    Mean,
    /// The first token's state (`[CLS]`).
    Cls,
    /// The element-wise maximum over the tokens under the mask.
    Max,
}

impl Pooling {
    /// Reads sentence-transformers' `1_Pooling/config.json`.
    ///
    /// # Errors
    /// [`Error::ModelFile`]: unreadable, or not exactly one of mean, CLS, max.
    pub fn load(path: &Path) -> Result<Self> {
        let bad = |msg: String| Error::ModelFile {
            path: path.to_path_buf(),
            msg,
        };
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
        let on = |k: &str| v[k].as_bool().unwrap_or(false);
        match (
            on("pooling_mode_mean_tokens"),
            on("pooling_mode_cls_token"),
            on("pooling_mode_max_tokens"),
        ) {
            (true, false, false) => Ok(Pooling::Mean),
            (false, true, false) => Ok(Pooling::Cls),
            (false, false, true) => Ok(Pooling::Max),
            _ => Err(bad(
                "exactly one of mean, CLS and max pooling must be on (others are not supported)"
                    .into(),
            )),
        }
    }

    /// One vector `(B, H)` from states `(B, T, H)` under `mask` `(B, T)`.
    ///
    /// # Errors
    /// Shapes that disagree.
    pub fn apply(&self, states: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let m = mask.to_dtype(states.dtype())?.unsqueeze(D::Minus1)?; // (B, T, 1)
        Ok(match self {
            Pooling::Cls => states.narrow(1, 0, 1)?.squeeze(1)?,
            Pooling::Mean => {
                // An all-padding row (an empty text) divides by 1e-9, as
                // sentence-transformers' clamp, giving zeros.
                let sum = states.broadcast_mul(&m)?.sum(1)?;
                let count = m.sum(1)?.clamp(1e-9, f64::MAX)?;
                sum.broadcast_div(&count)?
            }
            Pooling::Max => {
                let neg = ((m.ones_like()? - &m)? * -1e9)?;
                states.broadcast_add(&neg)?.max(1)?
            }
        })
    }
}

/// Rows scaled to unit length `x / max(‖x‖₂, 1e-12)` (PyTorch's
/// `F.normalize`, what sentence-transformers' `Normalize` applies).
///
/// # Errors
/// Tensor failures.
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let norm = x
        .sqr()?
        .sum_keepdim(D::Minus1)?
        .sqrt()?
        .clamp(1e-12, f64::MAX)?;
    Ok(x.broadcast_div(&norm)?)
}
