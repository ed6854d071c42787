//! Attention as modules usable by any model: additive (Bahdanau), multiplicative
//! (Luong dot and general) and scaled dot-product multi-head attention, with
//! padding and causal masks.
//!
//! Masked scores get [`MASK_FILL`] added rather than `-inf`: `exp` of it
//! underflows to exactly 0, and a row whose every key is masked still has a
//! finite (uniform) softmax instead of NaN.
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use candle_nn::VarMap;
//! use taper_nn::{attention::{multi_head, Attention}, init::seeded_var_builder};
//!
//! let varmap = VarMap::new();
//! let mha = multi_head(16, 4, seeded_var_builder(&varmap, 0, DType::F32, &Device::Cpu).pp("attn"))?;
//! let q = Tensor::zeros((2, 3, 16), DType::F32, &Device::Cpu)?; // (batch, queries, features)
//! let kv = Tensor::zeros((2, 5, 16), DType::F32, &Device::Cpu)?; // (batch, keys, features)
//! let mask = Tensor::new(&[[1f32, 1., 1., 0., 0.], [1., 1., 1., 1., 1.]], &Device::Cpu)?;
//! let (context, weights) = mha.forward(&q, &kv, &kv, Some(&mask))?;
//! assert_eq!(context.dims(), &[2, 3, 16]);
//! assert_eq!(weights.dims(), &[2, 3, 5]);
//! // Padding gets no weight.
//! assert_eq!(weights.get(0)?.get(0)?.to_vec1::<f32>()?[3], 0.0);
//! # Ok::<(), candle_core::Error>(())
//! ```

use crate::{linear, linear_no_bias, Linear};
use candle_core::{Device, Module, Result, Tensor};
use candle_nn::VarBuilder;

pub use crate::kernels::attention::{additive_scores, additive_scores_reference};

/// Added to the scores of masked positions.
pub const MASK_FILL: f64 = -1e9;

/// Additive bias `(B, 1, S)` from a key mask `(B, S)` (1 real, 0 padding): 0 on
/// real keys, [`MASK_FILL`] on padding.
pub fn padding_bias(mask: &Tensor) -> Result<Tensor> {
    let (b, s) = mask.dims2()?;
    ((mask.to_dtype(candle_core::DType::F32)? - 1.0)? * (-MASK_FILL))?.reshape((b, 1, s))
}

/// Additive bias `(T, T)` hiding the future: [`MASK_FILL`] where key > query.
pub fn causal_bias(t: usize, device: &Device) -> Result<Tensor> {
    let v: Vec<f32> = (0..t * t)
        .map(|k| if k % t > k / t { MASK_FILL as f32 } else { 0.0 })
        .collect();
    Tensor::from_vec(v, (t, t), device)
}

/// Softmax over the last dimension of `scores + bias` (bias broadcast), with a
/// gradient ([`crate::softmax`], not candle-nn's `softmax_last_dim`).
///
/// In f16, whose largest value is 65504, [`MASK_FILL`] rounds to `-inf` and a row
/// whose every key is masked would give `NaN`: there the biased scores are
/// clamped to [`F16_MASK_FLOOR`], so such a row is uniform, as in f32 and bf16.
pub fn masked_softmax(scores: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    let s = match bias {
        Some(b) => scores.broadcast_add(&b.to_dtype(scores.dtype())?)?,
        None => scores.clone(),
    };
    let s = if s.dtype() == candle_core::DType::F16 {
        s.clamp(F16_MASK_FLOOR, f64::INFINITY)?
    } else {
        s
    };
    crate::softmax(&s)
}

/// The lowest biased score in f16 attention: finite (f16 stops at -65504), and
/// still far enough below any real score that `exp` of the difference is 0.
pub const F16_MASK_FLOOR: f64 = -6.0e4;

/// Keys and values prepared once per source batch (projected as the attention
/// needs), with the padding bias. Every field has the batch first, so
/// [`Memory::select`] reorders them (beam search).
#[derive(Debug, Clone)]
pub struct Memory {
    /// Keys in the form the scoring function reads.
    pub keys: Tensor,
    /// Values.
    pub values: Tensor,
    /// Padding bias (see [`padding_bias`]), `(B, 1, S)`.
    pub bias: Tensor,
}

impl Memory {
    /// The rows `idx` (a `u32` index over the batch).
    pub fn select(&self, idx: &Tensor) -> Result<Self> {
        Ok(Self {
            keys: self.keys.index_select(idx, 0)?,
            values: self.values.index_select(idx, 0)?,
            bias: self.bias.index_select(idx, 0)?,
        })
    }

    /// The fields as a list (for generic decoding states).
    pub fn into_vec(self) -> Vec<Tensor> {
        vec![self.keys, self.values, self.bias]
    }

    /// From three tensors as [`Memory::into_vec`] gave them.
    pub fn from_slice(t: &[Tensor]) -> Result<Self> {
        match t {
            [k, v, b, ..] => Ok(Self {
                keys: k.clone(),
                values: v.clone(),
                bias: b.clone(),
            }),
            _ => candle_core::bail!(
                "a memory needs keys, values and bias, got {} tensors",
                t.len()
            ),
        }
    }
}

/// What every attention module does: prepare keys once, then attend from queries.
pub trait Attention: Send + Sync {
    /// Prepares `keys (B, S, Dk)` and `values (B, S, Dv)` with the key mask
    /// `(B, S)` (1 real, 0 padding; `None`: all real).
    fn prepare(&self, keys: &Tensor, values: &Tensor, mask: Option<&Tensor>) -> Result<Memory>;
    /// Attends from `query (B, Tq, Dq)`: `(context (B, Tq, Dv'), weights (B, Tq, S))`.
    fn attend(&self, query: &Tensor, memory: &Memory) -> Result<(Tensor, Tensor)>;
    /// [`Attention::prepare`] then [`Attention::attend`].
    fn forward(
        &self,
        query: &Tensor,
        keys: &Tensor,
        values: &Tensor,
        mask: Option<&Tensor>,
    ) -> Result<(Tensor, Tensor)> {
        self.attend(query, &self.prepare(keys, values, mask)?)
    }
}

fn bias_or_zero(mask: Option<&Tensor>, keys: &Tensor) -> Result<Tensor> {
    match mask {
        Some(m) => {
            let (b, s) = m.dims2()?;
            let (kb, ks, _) = keys.dims3()?;
            if (b, s) != (kb, ks) {
                candle_core::bail!(
                    "key mask {:?} does not fit keys {:?}",
                    m.dims(),
                    keys.dims()
                );
            }
            padding_bias(m)
        }
        None => {
            let (b, s, _) = keys.dims3()?;
            Tensor::zeros((b, 1, s), candle_core::DType::F32, keys.device())
        }
    }
}

/// Bahdanau's additive attention: `score(q, k) = vᵀ tanh(W_q q + W_k k)`.
#[derive(Debug, Clone)]
pub struct AdditiveAttention {
    wq: Linear,
    wk: Linear,
    v: Linear,
}

/// Additive attention from queries of `query_dim` to keys of `key_dim` through
/// `attn_dim` units: `wq`, `wk`, `v` under `vb`.
pub fn additive(
    query_dim: usize,
    key_dim: usize,
    attn_dim: usize,
    vb: VarBuilder,
) -> Result<AdditiveAttention> {
    Ok(AdditiveAttention {
        wq: linear_no_bias(query_dim, attn_dim, vb.pp("wq"))?,
        wk: linear(key_dim, attn_dim, vb.pp("wk"))?,
        v: linear_no_bias(attn_dim, 1, vb.pp("v"))?,
    })
}

impl Attention for AdditiveAttention {
    fn prepare(&self, keys: &Tensor, values: &Tensor, mask: Option<&Tensor>) -> Result<Memory> {
        Ok(Memory {
            keys: self.wk.forward(keys)?,
            values: values.clone(),
            bias: bias_or_zero(mask, keys)?,
        })
    }

    fn attend(&self, query: &Tensor, memory: &Memory) -> Result<(Tensor, Tensor)> {
        let q = self.wq.forward(query)?; // (B, Tq, A)
        let v = self.v.weight().squeeze(0)?; // (A,)
        let scores = additive_scores(&q, &memory.keys, &v)?; // (B, Tq, S)
        let w = masked_softmax(&scores, Some(&memory.bias))?;
        Ok((w.matmul(&memory.values)?, w))
    }
}

/// Luong's multiplicative scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LuongScore {
    /// `qᵀ k` (query and key of the same size).
    Dot,
    /// `qᵀ W k`.
    General,
}

/// Luong's multiplicative attention.
#[derive(Debug, Clone)]
pub struct LuongAttention {
    w: Option<Linear>,
}

/// Luong attention; `General` has `w` (`key_dim` → `query_dim`) under `vb`.
pub fn luong(
    score: LuongScore,
    query_dim: usize,
    key_dim: usize,
    vb: VarBuilder,
) -> Result<LuongAttention> {
    match score {
        LuongScore::Dot if query_dim != key_dim => candle_core::bail!(
            "dot attention needs queries and keys of one size, got {query_dim} and {key_dim}"
        ),
        LuongScore::Dot => Ok(LuongAttention { w: None }),
        LuongScore::General => Ok(LuongAttention {
            w: Some(linear_no_bias(key_dim, query_dim, vb.pp("w"))?),
        }),
    }
}

impl Attention for LuongAttention {
    fn prepare(&self, keys: &Tensor, values: &Tensor, mask: Option<&Tensor>) -> Result<Memory> {
        let k = match &self.w {
            Some(w) => w.forward(keys)?,
            None => keys.clone(),
        };
        Ok(Memory {
            keys: k.transpose(1, 2)?.contiguous()?, // (B, D, S)
            values: values.clone(),
            bias: bias_or_zero(mask, keys)?,
        })
    }

    fn attend(&self, query: &Tensor, memory: &Memory) -> Result<(Tensor, Tensor)> {
        let scores = query.contiguous()?.matmul(&memory.keys)?;
        let w = masked_softmax(&scores, Some(&memory.bias))?;
        Ok((w.matmul(&memory.values)?, w))
    }
}

/// Scaled dot-product attention over `heads` heads with input and output
/// projections (`wq`, `wk`, `wv`, `wo`).
#[derive(Debug, Clone)]
pub struct MultiHeadAttention {
    wq: Linear,
    wk: Linear,
    wv: Linear,
    wo: Linear,
    heads: usize,
    d_head: usize,
}

/// Multi-head attention of `heads` heads over `d_model` features.
pub fn multi_head(d_model: usize, heads: usize, vb: VarBuilder) -> Result<MultiHeadAttention> {
    if heads == 0 || !d_model.is_multiple_of(heads) {
        candle_core::bail!("{d_model} features cannot be split into {heads} heads");
    }
    Ok(MultiHeadAttention {
        wq: linear(d_model, d_model, vb.pp("wq"))?,
        wk: linear(d_model, d_model, vb.pp("wk"))?,
        wv: linear(d_model, d_model, vb.pp("wv"))?,
        wo: linear(d_model, d_model, vb.pp("wo"))?,
        heads,
        d_head: d_model / heads,
    })
}

impl MultiHeadAttention {
    fn split(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        x.reshape((b, t, self.heads, self.d_head))?
            .transpose(1, 2)?
            .contiguous()
    }

    /// A key/value cache for incremental decoding: `cache` (keys and values of
    /// the positions so far, as [`Attention::prepare`] lays them out; `None` at
    /// the first step) with the new positions `keys (B, T, D)` and `values (B, T,
    /// D)` projected and appended (every new position a real one). Attending from
    /// the newest query to the result equals attending from it, under a causal
    /// mask, to the whole sequence prepared at once; only the new rows are
    /// projected, so a step costs O(T) instead of O(T²) over a sequence.
    ///
    /// # Errors
    /// Shapes that do not fit the cache or the projections.
    pub fn extend(&self, cache: Option<&Memory>, keys: &Tensor, values: &Tensor) -> Result<Memory> {
        let new = self.prepare(keys, values, None)?;
        let Some(c) = cache else { return Ok(new) };
        Ok(Memory {
            keys: Tensor::cat(&[&c.keys, &new.keys], 2)?,
            values: Tensor::cat(&[&c.values, &new.values], 2)?,
            bias: Tensor::cat(&[&c.bias, &new.bias.to_dtype(c.bias.dtype())?], 2)?,
        })
    }

    /// Attends with an extra additive bias `(Tq, S)` on every row (a
    /// [`causal_bias`] for decoder self-attention). Weights are averaged over
    /// heads.
    pub fn attend_with(
        &self,
        query: &Tensor,
        memory: &Memory,
        extra_bias: Option<&Tensor>,
    ) -> Result<(Tensor, Tensor)> {
        let (ctx, w) = self.attend_heads(query, memory, extra_bias)?;
        Ok((ctx, w.mean(1)?))
    }

    /// [`MultiHeadAttention::attend_with`] with each head's weights `(B, h, Tq,
    /// S)`, not averaged: for callers that drop them or use one layer's only (the
    /// average was 3 % of greedy decoding, computed for six attentions a step).
    pub fn attend_heads(
        &self,
        query: &Tensor,
        memory: &Memory,
        extra_bias: Option<&Tensor>,
    ) -> Result<(Tensor, Tensor)> {
        let (b, t, _) = query.dims3()?;
        let q = self.split(&self.wq.forward(query)?)?; // (B, h, Tq, dh)
        let scores = (crate::kernels::bmm_t(&q, &memory.keys)? / (self.d_head as f64).sqrt())?; // (B, h, Tq, S)
        let scores = match extra_bias {
            Some(e) => scores.broadcast_add(&e.to_dtype(scores.dtype())?)?,
            None => scores,
        };
        let w = masked_softmax(&scores, Some(&memory.bias.unsqueeze(1)?))?;
        let ctx = crate::kernels::bmm(&w, &memory.values)? // (B, h, Tq, dh)
            .transpose(1, 2)?
            .reshape((b, t, self.heads * self.d_head))?;
        Ok((self.wo.forward(&ctx)?, w))
    }
}

impl Attention for MultiHeadAttention {
    fn prepare(&self, keys: &Tensor, values: &Tensor, mask: Option<&Tensor>) -> Result<Memory> {
        // A key per row, (B, h, S, dh): scores read it transposed in place, and
        // a decoding cache grows by whole rows (stored (B, h, dh, S), every
        // step's append moved B·h·dh pieces of a few floats each).
        Ok(Memory {
            keys: self.split(&self.wk.forward(keys)?)?,
            values: self.split(&self.wv.forward(values)?)?,
            bias: bias_or_zero(mask, keys)?,
        })
    }

    fn attend(&self, query: &Tensor, memory: &Memory) -> Result<(Tensor, Tensor)> {
        self.attend_with(query, memory, None)
    }
}
