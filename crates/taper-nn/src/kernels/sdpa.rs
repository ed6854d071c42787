//! Scaled dot-product attention for inference in one pass per block of query
//! rows: scores, scale, padding and causal bias, softmax and the product with
//! the values, with no `(B, h, Tq, S)` tensor in memory.
//!
//! As separate candle ops (split heads, a batched `Q·Kᵀ`, a division, a bias
//! broadcast, a softmax, a batched product with `V`, merge heads) each pass
//! read and wrote the whole score tensor: 100 MB per layer for 32 sentences of
//! 256 tokens and 12 heads. These were a quarter of the sentence encoder's time
//! at that length, and that share grows with the length (the linear layers grow
//! as `T`, the scores as `T²`). Here each task takes [`BLOCK`] query rows of one
//! batch entry through every head with two `BLOCK x S` scratches (scores,
//! probabilities: the softmax is `kernels::norm`'s row softmax) that stay in cache;
//! `q`, `k`, `v` and the output keep the `(B, T, h·dh)` layout of the linear
//! layers around them, each head read in place through strides.
//!
//! No gradient: the op is for evaluation where no input records a graph (see
//! [`sdpa`]); training keeps the separate ops, whose backward passes exist.

use super::{gemm, MatRef, Real};
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Query rows per task. Fixed, so the partition, and with it every value,
/// depends on the shapes alone, never on the thread count.
pub const BLOCK: usize = 32;

/// The op: `heads` heads, an optional additive key bias `(B, S)` (row-major),
/// and whether key `j` is hidden from query `i` when `j > i + (S - Tq)`.
#[derive(Debug, Clone)]
struct Sdpa {
    heads: usize,
    bias: Option<Vec<f32>>,
    causal: bool,
}

/// `(B, Tq, S, D)` of `q (B, Tq, D)`, `k (B, S, D)`, `v (B, S, D)`, or an error
/// naming the mismatch.
fn dims(op: &Sdpa, lq: &Layout, lk: &Layout, lv: &Layout) -> Result<(usize, usize, usize, usize)> {
    let (&[b, tq, d], &[bk, s, dk], &[bv, sv, dv]) = (lq.dims(), lk.dims(), lv.dims()) else {
        candle_core::bail!(
            "attention: q {:?}, k {:?} and v {:?} must be 3-D (batch, positions, features)",
            lq.dims(),
            lk.dims(),
            lv.dims()
        );
    };
    if (bk, bv) != (b, b) || (dk, dv) != (d, d) || sv != s {
        candle_core::bail!(
            "attention: q {:?}, k {:?} and v {:?} do not fit together",
            lq.dims(),
            lk.dims(),
            lv.dims()
        );
    }
    if op.heads == 0 || d % op.heads != 0 {
        candle_core::bail!(
            "attention: {d} features do not split into {} heads",
            op.heads
        );
    }
    if let Some(bias) = &op.bias {
        if bias.len() != b * s {
            candle_core::bail!(
                "attention: a key bias of {} values for {b} x {s} keys",
                bias.len()
            );
        }
    }
    Ok((b, tq, s, d))
}

/// The op's output `(B, Tq, D)`, row blocks of [`BLOCK`] in parallel.
fn forward<T: Real>(
    op: &Sdpa,
    q: &[T],
    k: &[T],
    v: &[T],
    (b, tq, s, d): (usize, usize, usize, usize),
) -> Vec<T> {
    let dh = d / op.heads;
    let scale = T::from_f64(1.0 / (dh as f64).sqrt());
    let mut out = vec![T::zero(); b * tq * d];
    // No queries or no features: nothing to compute (and no chunk size of 0
    // below). No keys: the context of an empty set, zeros.
    if out.is_empty() || s == 0 {
        return out;
    }
    let blocks = tq.div_ceil(BLOCK);
    // (batch entry, row block) tasks: each writes its own rows of the output.
    let mut tasks: Vec<(usize, usize, &mut [T])> = Vec::with_capacity(b * blocks);
    for (bi, entry) in out.chunks_mut(tq * d).enumerate() {
        for (blk, rows) in entry.chunks_mut(BLOCK * d).enumerate() {
            tasks.push((bi, blk * BLOCK, rows));
        }
    }
    tasks.into_par_iter().for_each(|(bi, r0, dst)| {
        let rows = dst.len() / d;
        let mut scores = vec![T::zero(); rows * s];
        let mut probs = vec![T::zero(); rows * s];
        let kb = &k[bi * s * d..(bi + 1) * s * d];
        let vb = &v[bi * s * d..(bi + 1) * s * d];
        let bias = op.bias.as_ref().map(|x| &x[bi * s..(bi + 1) * s]);
        for h in 0..op.heads {
            let qa = MatRef {
                data: &q[(bi * tq + r0) * d + h * dh..],
                rs: d,
                cs: 1,
            };
            // Kᵀ of this head: (dh x S), each key a column.
            let kt = MatRef {
                data: &kb[h * dh..],
                rs: 1,
                cs: d,
            };
            gemm(&mut scores, s, qa, kt, (rows, s, dh), false, 1);
            super::simd::dispatch(
                #[inline(always)]
                || {
                    bias_rows(&mut scores, bias, scale, (r0, tq, s), op.causal);
                    for (o, r) in probs.chunks_exact_mut(s).zip(scores.chunks_exact(s)) {
                        super::norm::softmax_row(o, r);
                    }
                },
            );
            let vh = MatRef {
                data: &vb[h * dh..],
                rs: d,
                cs: 1,
            };
            gemm(
                &mut dst[h * dh..],
                d,
                MatRef::rows(&probs, s),
                vh,
                (rows, dh, s),
                false,
                1,
            );
        }
    });
    out
}

/// Each row of `scores` (query `r0 + i`) becomes `scale·row + bias`, with
/// [`MASK_FILL`](crate::attention::MASK_FILL) added to the keys a causal mask
/// hides, as the unfused path adds a causal bias; the softmax follows.
#[inline(always)]
fn bias_rows<T: Real>(
    scores: &mut [T],
    bias: Option<&[f32]>,
    scale: T,
    (r0, tq, s): (usize, usize, usize),
    causal: bool,
) {
    let fill = T::from_f64(crate::attention::MASK_FILL);
    for (i, row) in scores.chunks_exact_mut(s).enumerate() {
        match bias {
            Some(bias) => {
                for (x, &c) in row.iter_mut().zip(bias) {
                    *x = *x * scale + T::from_f64(c as f64);
                }
            }
            None => {
                for x in row.iter_mut() {
                    *x *= scale;
                }
            }
        }
        if causal {
            // Query r0 + i sees keys up to r0 + i + (S - Tq): the queries are the
            // last Tq of the S positions (all of them when S = Tq).
            let seen = (r0 + i + 1 + s).saturating_sub(tq).min(s);
            for x in &mut row[seen..] {
                *x += fill;
            }
        }
    }
}

impl CustomOp3 for Sdpa {
    fn name(&self) -> &'static str {
        "taper-sdpa"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let dims = dims(self, l1, l2, l3)?;
        let out = crate::float_dispatch!(
            "attention",
            s1.dtype(),
            [(q, s1, l1), (k, s2, l2), (v, s3, l3)],
            forward(self, q, k, v, dims)
        );
        Ok((out, Shape::from((dims.0, dims.1, dims.3))))
    }
}

/// Whether [`sdpa`] applies: CPU tensors of f32 or f64 of which none records a
/// graph (no gradient can be asked of the result).
pub fn fusable(q: &Tensor, k: &Tensor, v: &Tensor) -> bool {
    [q, k, v]
        .iter()
        .all(|t| super::norm::fusable(t) && !t.track_op() && t.dtype() == q.dtype())
}

/// Multi-head scaled dot-product attention (Vaswani et al. 2017, "Attention is
/// all you need", eq. 1) for evaluation: `softmax(Q·Kᵀ/√dh + bias)·V` for each of
/// `heads` heads of width `dh = D / heads`, heads concatenated.
///
/// - `q (B, Tq, D)`, `k (B, S, D)`, `v (B, S, D)`: the projected queries, keys and
///   values, head `h` in features `h·dh..(h+1)·dh` (the layout of the linear
///   layers' outputs).
/// - `key_bias (B, S)`: added to every query's scores for that key (0 for a
///   token, [`MASK_FILL`](crate::attention::MASK_FILL) for padding, as from
///   [`padding_bias`](crate::attention::padding_bias)); `None` for none.
/// - `causal`: query `i` sees keys `0..=i + S - Tq` only (the queries are the
///   last `Tq` positions).
///
/// Returns the context `(B, Tq, D)`. Equal to the separate ops within float
/// rounding (tested), and the same bits on any number of threads.
///
/// # Errors
/// Shapes that do not fit, a `D` that `heads` does not divide, tensors that are
/// not on the CPU or not f32/f64, or an input that records a graph (the op has no
/// backward pass: check [`fusable`] first and keep the separate ops there).
pub fn sdpa(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    key_bias: Option<&Tensor>,
    heads: usize,
    causal: bool,
) -> Result<Tensor> {
    if !fusable(q, k, v) {
        candle_core::bail!(
            "attention: the fused kernel takes CPU f32/f64 tensors that record no graph"
        );
    }
    let bias = match key_bias {
        Some(b) => Some(b.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?),
        None => None,
    };
    let op = Sdpa {
        heads,
        bias,
        causal,
    };
    q.contiguous()?
        .apply_op3_no_bwd(&k.contiguous()?, &v.contiguous()?, &op)
}
