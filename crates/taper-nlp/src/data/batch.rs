//! Encoded sentence pairs, padded batches with masks, and length buckets.

use super::codec::{TextCodec, BOS, EOS, PAD};
use crate::{Error, Result};
use candle_core::{Device, Tensor};
use rand::seq::SliceRandom;
use std::sync::Arc;
use taper_train::data::BatchSource;

/// Sentence pairs as ids (no start or end markers).
#[derive(Debug, Clone, Default)]
pub struct EncodedPairs {
    /// Source ids.
    pub src: Vec<Vec<u32>>,
    /// Target ids.
    pub tgt: Vec<Vec<u32>>,
}

impl EncodedPairs {
    /// Encodes `pairs`, cutting sources to `max_src` and targets to `max_tgt` ids
    /// (the end marker comes on top); returns the pairs and how many were cut.
    pub fn encode(
        pairs: &[(String, String)],
        src: &TextCodec,
        tgt: &TextCodec,
        max_src: usize,
        max_tgt: usize,
    ) -> Result<(Self, usize)> {
        let mut out = Self::default();
        let mut cut = 0;
        for (s, t) in pairs {
            let (mut a, mut b) = (src.encode(s)?, tgt.encode(t)?);
            if a.len() > max_src || b.len() > max_tgt {
                cut += 1;
                a.truncate(max_src);
                b.truncate(max_tgt);
            }
            if a.is_empty() {
                a.push(super::codec::UNK);
            }
            out.src.push(a);
            out.tgt.push(b);
        }
        Ok((out, cut))
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.src.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.src.is_empty()
    }

    /// The pairs at `indices`.
    ///
    /// # Errors
    /// [`Error::IdOutOfRange`] naming the first index past the last pair.
    pub fn subset(&self, indices: &[usize]) -> Result<Self> {
        if let Some(&bad) = indices.iter().find(|&&i| i >= self.src.len()) {
            return Err(Error::IdOutOfRange {
                id: bad as u64,
                len: self.src.len(),
            });
        }
        Ok(Self {
            src: indices.iter().map(|&i| self.src[i].clone()).collect(),
            tgt: indices.iter().map(|&i| self.tgt[i].clone()).collect(),
        })
    }
}

/// A padded batch. Sources `(B, S)`; the decoder reads `tgt_in = <s> y` and
/// predicts `tgt_out = y </s>`, both `(B, T)`. Masks are 1 on real tokens, 0 on
/// padding (`f32`).
#[derive(Debug, Clone)]
pub struct Seq2SeqBatch {
    /// Source ids, `u32`.
    pub src: Tensor,
    /// Source mask, `f32`.
    pub src_mask: Tensor,
    /// Decoder inputs, `u32`.
    pub tgt_in: Tensor,
    /// Decoder targets, `u32`.
    pub tgt_out: Tensor,
    /// Target mask, `f32`.
    pub tgt_mask: Tensor,
    /// Real source lengths.
    pub src_lens: Vec<usize>,
    /// `tgt_in` on the host, row-major.
    pub tgt_in_host: Vec<u32>,
    /// `tgt_out` on the host, row-major.
    pub tgt_out_host: Vec<u32>,
    /// Real target tokens (end markers included): the loss's denominator.
    pub tokens: usize,
}

fn pad_rows(rows: &[&[u32]], len: usize) -> (Vec<u32>, Vec<f32>) {
    let mut ids = Vec::with_capacity(rows.len() * len);
    let mut mask = Vec::with_capacity(rows.len() * len);
    for r in rows {
        ids.extend_from_slice(r);
        ids.resize(ids.len() + len - r.len(), PAD);
        mask.extend(std::iter::repeat_n(1f32, r.len()));
        mask.resize(mask.len() + len - r.len(), 0.0);
    }
    (ids, mask)
}

fn as_slices(v: &[Vec<u32>]) -> Vec<&[u32]> {
    v.iter().map(|r| r.as_slice()).collect()
}

/// Pads sources only (for decoding): `(ids (B, S), mask (B, S), lengths)`.
pub fn source_batch(rows: &[&[u32]], device: &Device) -> Result<(Tensor, Tensor, Vec<usize>)> {
    if rows.is_empty() {
        return Err(Error::NoData("empty batch".into()));
    }
    let len = rows.iter().map(|r| r.len()).max().unwrap_or(0).max(1);
    let (ids, mask) = pad_rows(rows, len);
    let b = rows.len();
    Ok((
        Tensor::from_vec(ids, (b, len), device)?,
        Tensor::from_vec(mask, (b, len), device)?,
        rows.iter().map(|r| r.len()).collect(),
    ))
}

impl Seq2SeqBatch {
    /// Pads `src` and `tgt` rows (ids without markers) into a batch on `device`.
    pub fn new(src: &[&[u32]], tgt: &[&[u32]], device: &Device) -> Result<Self> {
        if src.len() != tgt.len() {
            return Err(Error::Config(format!(
                "{} sources for {} targets",
                src.len(),
                tgt.len()
            )));
        }
        let (s, sm, src_lens) = source_batch(src, device)?;
        let t = tgt.iter().map(|r| r.len() + 1).max().unwrap_or(1);
        let tin: Vec<Vec<u32>> = tgt
            .iter()
            .map(|r| std::iter::once(BOS).chain(r.iter().copied()).collect())
            .collect();
        let tout: Vec<Vec<u32>> = tgt
            .iter()
            .map(|r| r.iter().copied().chain(std::iter::once(EOS)).collect())
            .collect();
        let (tin, _) = pad_rows(&as_slices(&tin), t);
        let (tout, tmask) = pad_rows(&as_slices(&tout), t);
        let b = src.len();
        let tokens = tgt.iter().map(|r| r.len() + 1).sum();
        Ok(Self {
            src: s,
            src_mask: sm,
            tgt_in: Tensor::from_vec(tin.clone(), (b, t), device)?,
            tgt_out: Tensor::from_vec(tout.clone(), (b, t), device)?,
            tgt_mask: Tensor::from_vec(tmask, (b, t), device)?,
            src_lens,
            tgt_in_host: tin,
            tgt_out_host: tout,
            tokens,
        })
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.src_lens.len()
    }

    /// True for a batch of no pairs.
    pub fn is_empty(&self) -> bool {
        self.src_lens.is_empty()
    }
}

/// Groups of pair indices of similar lengths, each at most `batch_size` pairs:
/// sorted by (source length, target length) with ties broken by a seeded shuffle,
/// then cut. Padding is then at most a token or two per row.
pub fn length_buckets(data: &EncodedPairs, batch_size: usize, seed: u64) -> Vec<Vec<usize>> {
    let mut idx: Vec<usize> = (0..data.len()).collect();
    idx.shuffle(&mut taper_nn::init::rng_for(seed, "buckets"));
    idx.sort_by_key(|&i| (data.src[i].len(), data.tgt[i].len()));
    idx.chunks(batch_size.max(1)).map(|c| c.to_vec()).collect()
}

/// Sentence pairs served as length buckets: item `i` of this source is bucket `i`,
/// so a [`taper_train::data::DataLoader`] with batch size 1 shuffles the buckets'
/// order each epoch (a pure function of seed and epoch) while each batch stays
/// homogeneous in length.
#[derive(Debug, Clone)]
pub struct BucketedPairs {
    data: Arc<EncodedPairs>,
    buckets: Vec<Vec<usize>>,
    device: Device,
}

impl BucketedPairs {
    /// Buckets of at most `batch_size` pairs (see [`length_buckets`]).
    pub fn new(data: Arc<EncodedPairs>, batch_size: usize, seed: u64, device: &Device) -> Self {
        let buckets = length_buckets(&data, batch_size, seed);
        Self {
            data,
            buckets,
            device: device.clone(),
        }
    }

    /// The buckets.
    pub fn buckets(&self) -> &[Vec<usize>] {
        &self.buckets
    }
}

impl BatchSource for BucketedPairs {
    type Batch = Seq2SeqBatch;
    fn len(&self) -> usize {
        self.buckets.len()
    }
    fn batch(&self, indices: &[usize]) -> taper_train::Result<Seq2SeqBatch> {
        let mut items = Vec::new();
        for &b in indices {
            let bucket = self.buckets.get(b).ok_or_else(|| {
                taper_train::Error::Data(format!(
                    "bucket {b} out of range ({} buckets)",
                    self.buckets.len()
                ))
            })?;
            items.extend_from_slice(bucket);
        }
        let src: Vec<&[u32]> = items.iter().map(|&i| self.data.src[i].as_slice()).collect();
        let tgt: Vec<&[u32]> = items.iter().map(|&i| self.data.tgt[i].as_slice()).collect();
        Ok(Seq2SeqBatch::new(&src, &tgt, &self.device)?)
    }
}
