//! The fast path: one SGD update per (word, context) pair over plain `f32` rows,
//! several threads updating the shared tables without locks (Hogwild).

use super::{
    alpha_at, initial_input, vectors_of, Architecture, PreparedCorpus, Rng, TrainStats,
    Word2VecConfig,
};
use crate::vectors::WordVectors;
use crate::{Error, Result};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

/// Words per work unit: small enough to share the corpus between threads and to
/// decay the learning rate smoothly, large enough that claiming one is free.
const CHUNK_WORDS: usize = 10_000;
const MAX_EXP: f32 = 6.0;
const SIGMOID_SIZE: usize = 1024;

/// A `vocab × dim` table that several threads update at once.
///
/// Hogwild (Recht et al. 2011): updates of different threads may interleave on a
/// row and lose a few increments. This is the design of word2vec.c and gensim
/// (sparse updates rarely collide, and a lost increment is noise SGD absorbs);
/// taking a lock per row would cost more than the update itself.
///
/// No reference to a shared row is ever made: rows are read into the caller's
/// own buffers and updated element by element through raw pointers
/// ([`SharedTable::dot`], [`SharedTable::add_to`], [`SharedTable::axpy_into`]),
/// so no `&`/`&mut` aliasing assumption is made about memory another thread
/// writes. Every row index is checked against the table's size.
struct SharedTable {
    ptr: *mut f32,
    rows: usize,
    dim: usize,
}

// SAFETY: the pointer targets a Vec that outlives every thread (they run inside
// a scope that ends before the Vec is read again), and the table hands out no
// references: every access is a raw element read or write (see the type's doc).
unsafe impl Sync for SharedTable {}
// SAFETY: as for `Sync`: the table owns nothing and points into a Vec that
// outlives the threads it is sent to.
unsafe impl Send for SharedTable {}

impl SharedTable {
    fn new(v: &mut [f32], dim: usize) -> Self {
        Self {
            ptr: v.as_mut_ptr(),
            rows: v.len() / dim,
            dim,
        }
    }

    /// The first element of row `i`; panics on a row outside the table (an
    /// internal invariant: ids come from the vocabulary the table was sized by).
    #[inline(always)]
    fn row(&self, i: u32) -> *mut f32 {
        let i = i as usize;
        assert!(i < self.rows, "row {i} out of {} rows", self.rows);
        // SAFETY: `i < rows`, so `i * dim` is within the allocation of
        // `rows * dim` values the table was made from.
        unsafe { self.ptr.add(i * self.dim) }
    }

    /// `Σ_k x[k] · row_i[k]` over `x.len() == dim` values, summed in the order of
    /// [`crate::vectors::dot`] (eight partial sums, then the tail).
    #[inline(always)]
    fn dot(&self, x: &[f32], i: u32) -> f32 {
        let r = self.row(i);
        let x = &x[..self.dim];
        let body = x.len() / 8 * 8;
        let mut acc = [0f32; 8];
        for (c, xs) in x[..body].chunks_exact(8).enumerate() {
            for (l, a) in acc.iter_mut().enumerate() {
                // SAFETY: `8c + l < dim`: an element of row `i` (checked by `row`).
                *a += xs[l] * unsafe { r.add(8 * c + l).read() };
            }
        }
        let mut s: f32 = x[body..]
            .iter()
            .enumerate()
            // SAFETY: `body + j < dim`: an element of row `i`.
            .map(|(j, xv)| xv * unsafe { r.add(body + j).read() })
            .sum();
        s += (acc[0] + acc[4]) + (acc[1] + acc[5]) + (acc[2] + acc[6]) + (acc[3] + acc[7]);
        s
    }

    /// `y += a · row_i` (y of `dim` values, the caller's own).
    #[inline(always)]
    fn axpy_into(&self, a: f32, i: u32, y: &mut [f32]) {
        let r = self.row(i);
        for (k, yv) in y[..self.dim].iter_mut().enumerate() {
            // SAFETY: `k < dim`: an element of row `i`.
            *yv += a * unsafe { r.add(k).read() };
        }
    }

    /// `row_i += a · x` (x of `dim` values, the caller's own).
    #[inline(always)]
    fn add_to(&self, a: f32, x: &[f32], i: u32) {
        let r = self.row(i);
        for (k, xv) in x[..self.dim].iter().enumerate() {
            // SAFETY: `k < dim`: an element of row `i`; a raw read and write, no
            // reference to memory other threads may update.
            unsafe {
                let p = r.add(k);
                p.write(p.read() + a * xv);
            }
        }
    }

    /// Row `i` copied into `out` (`dim` values).
    #[inline(always)]
    fn read_into(&self, i: u32, out: &mut [f32]) {
        let r = self.row(i);
        for (k, o) in out[..self.dim].iter_mut().enumerate() {
            // SAFETY: `k < dim`: an element of row `i`.
            *o = unsafe { r.add(k).read() };
        }
    }
}

struct Ctx<'a> {
    prep: &'a PreparedCorpus,
    cfg: &'a Word2VecConfig,
    syn0: SharedTable,
    syn1: SharedTable,
    sigmoid: Vec<f32>,
    chunks: Vec<Range<usize>>,
    kept_total: f64,
}

struct Scratch {
    buf: Vec<u32>,
    /// The hidden vector: a copy of the input row (skip-gram) or the context mean (CBOW).
    neu1: Vec<f32>,
    neu1e: Vec<f32>,
}

/// Trains with the native loops; vectors are the input table (gensim's `wv`).
/// With `threads = 1` the result is a pure function of the seed; with more,
/// Hogwild interleaving makes runs differ slightly.
pub fn train_native(
    prep: &PreparedCorpus,
    cfg: &Word2VecConfig,
) -> Result<(WordVectors, TrainStats)> {
    cfg.validate()?;
    let v = prep.vocab.len();
    let dim = cfg.dim;
    let mut syn0 = initial_input(v, dim, cfg.seed);
    let mut syn1 = vec![0f32; v * dim];
    let threads = if cfg.threads == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    } else {
        cfg.threads
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| Error::Config(format!("cannot start {threads} threads: {e}")))?;
    let ctx = Ctx {
        prep,
        cfg,
        syn0: SharedTable::new(&mut syn0, dim),
        syn1: SharedTable::new(&mut syn1, dim),
        sigmoid: sigmoid_table(),
        chunks: chunks(&prep.sentences, CHUNK_WORDS),
        kept_total: prep.ids.len() as f64,
    };
    let started = Instant::now();
    let effective = AtomicU64::new(0);
    for epoch in 0..cfg.epochs {
        let t0 = Instant::now();
        let next = AtomicUsize::new(0);
        let before = effective.load(Ordering::Relaxed);
        pool.scope(|s| {
            for _ in 0..threads {
                s.spawn(|_| {
                    let mut scratch = Scratch {
                        buf: Vec::with_capacity(CHUNK_WORDS),
                        neu1: vec![0.0; dim],
                        neu1e: vec![0.0; dim],
                    };
                    loop {
                        // Claimed in order, so the learning rate decays as in a
                        // single pass even with several threads.
                        let c = next.fetch_add(1, Ordering::Relaxed);
                        if c >= ctx.chunks.len() {
                            break;
                        }
                        let n = train_chunk(&ctx, epoch, c, &mut scratch);
                        effective.fetch_add(n, Ordering::Relaxed);
                    }
                });
            }
        });
        if cfg.verbose {
            let secs = t0.elapsed().as_secs_f64();
            eprintln!(
                "word2vec epoch {}/{}: {:.0} words/s, {} effective words, {:.2} s",
                epoch + 1,
                cfg.epochs,
                prep.raw_words as f64 / secs.max(1e-9),
                effective.load(Ordering::Relaxed) - before,
                secs
            );
        }
    }
    let stats = TrainStats {
        words: (prep.raw_words * cfg.epochs) as u64,
        effective_words: effective.load(Ordering::Relaxed),
        seconds: started.elapsed().as_secs_f64(),
    };
    drop(ctx);
    Ok((vectors_of(prep, dim, syn0)?, stats))
}

/// Consecutive sentences grouped into units of at least `words` ids.
fn chunks(sentences: &[Range<usize>], words: usize) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut n = 0;
    for (i, s) in sentences.iter().enumerate() {
        n += s.len();
        if n >= words {
            out.push(start..i + 1);
            start = i + 1;
            n = 0;
        }
    }
    if start < sentences.len() {
        out.push(start..sentences.len());
    }
    out
}

fn sigmoid_table() -> Vec<f32> {
    (0..SIGMOID_SIZE)
        .map(|i| {
            let x = (i as f32 / SIGMOID_SIZE as f32 * 2.0 - 1.0) * MAX_EXP;
            1.0 / (1.0 + (-x).exp())
        })
        .collect()
}

/// Sigmoid of `f` in `(−MAX_EXP, MAX_EXP)` from the table.
#[inline(always)]
fn sigmoid(table: &[f32], f: f32) -> f32 {
    let i = ((f + MAX_EXP) * (SIGMOID_SIZE as f32 / MAX_EXP / 2.0)) as usize;
    table[i.min(SIGMOID_SIZE - 1)]
}

fn train_chunk(ctx: &Ctx, epoch: usize, chunk: usize, scratch: &mut Scratch) -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // Same code compiled for AVX2/FMA: the binary stays portable while a
            // modern CPU gets 8-wide fused dot products and updates.
            // SAFETY: both target features were detected on this CPU just above.
            return unsafe { train_chunk_avx2(ctx, epoch, chunk, scratch) };
        }
    }
    train_chunk_generic(ctx, epoch, chunk, scratch)
}

/// [`train_chunk_generic`] compiled for AVX2 and FMA.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn train_chunk_avx2(ctx: &Ctx, epoch: usize, chunk: usize, scratch: &mut Scratch) -> u64 {
    train_chunk_generic(ctx, epoch, chunk, scratch)
}

#[inline(always)]
fn train_chunk_generic(ctx: &Ctx, epoch: usize, chunk: usize, scratch: &mut Scratch) -> u64 {
    let cfg = ctx.cfg;
    let prep = ctx.prep;
    let mut rng = Rng::new(cfg.seed, &[epoch as u64, chunk as u64]);
    let total = ctx.kept_total * cfg.epochs as f64;
    let mut effective = 0u64;
    let Scratch { buf, neu1, neu1e } = scratch;
    for s in ctx.chunks[chunk].clone() {
        let range = prep.sentences[s].clone();
        let done = epoch as f64 * ctx.kept_total + range.start as f64;
        let alpha = alpha_at(cfg, done, total);
        buf.clear();
        for &w in &prep.ids[range] {
            let k = prep.keep[w as usize];
            if k < 1.0 && k < rng.unit() {
                continue;
            }
            buf.push(w);
        }
        effective += buf.len() as u64;
        for i in 0..buf.len() {
            let reduced = cfg.window - rng.below(cfg.window);
            let lo = i.saturating_sub(reduced);
            let hi = (i + reduced + 1).min(buf.len());
            match cfg.arch {
                Architecture::SkipGram => {
                    for (j, &word) in buf.iter().enumerate().take(hi).skip(lo) {
                        if j != i {
                            // The input row is read once: only this pair's update,
                            // at the end, writes it.
                            ctx.syn0.read_into(word, neu1);
                            neu1e.iter_mut().for_each(|x| *x = 0.0);
                            negative_sampling(ctx, neu1, buf[i], alpha, neu1e, &mut rng);
                            ctx.syn0.add_to(1.0, neu1e, word);
                        }
                    }
                }
                Architecture::Cbow => {
                    neu1.iter_mut().for_each(|x| *x = 0.0);
                    let mut count = 0usize;
                    for (j, &word) in buf.iter().enumerate().take(hi).skip(lo) {
                        if j != i {
                            ctx.syn0.axpy_into(1.0, word, neu1);
                            count += 1;
                        }
                    }
                    if count == 0 {
                        continue;
                    }
                    let inv = 1.0 / count as f32;
                    neu1.iter_mut().for_each(|x| *x *= inv);
                    neu1e.iter_mut().for_each(|x| *x = 0.0);
                    negative_sampling(ctx, neu1, buf[i], alpha, neu1e, &mut rng);
                    // Every context word gets the hidden layer's whole error, not
                    // the mean's gradient (error / count): word2vec.c and gensim
                    // (cbow_mean=1) do so, and it trains rare context words faster.
                    for (j, &word) in buf.iter().enumerate().take(hi).skip(lo) {
                        if j != i {
                            ctx.syn0.add_to(1.0, neu1e, word);
                        }
                    }
                }
            }
        }
    }
    effective
}

/// One positive and `negative` noise targets for the hidden vector `l1` (the
/// caller's copy): updates the output rows and accumulates the hidden vector's
/// gradient in `neu1e`.
#[inline(always)]
fn negative_sampling(
    ctx: &Ctx,
    l1: &[f32],
    target: u32,
    alpha: f32,
    neu1e: &mut [f32],
    rng: &mut Rng,
) {
    for d in 0..=ctx.cfg.negative {
        let (t, label) = if d == 0 {
            (target, 1.0)
        } else {
            let t = ctx.prep.noise.sample(rng);
            if t == target {
                continue;
            }
            (t, 0.0)
        };
        let f = ctx.syn1.dot(l1, t);
        if f.abs() >= MAX_EXP {
            // Saturated: gensim skips the pair (word2vec.c applies a clipped step).
            continue;
        }
        let g = (label - sigmoid(&ctx.sigmoid, f)) * alpha;
        ctx.syn1.axpy_into(g, t, neu1e);
        ctx.syn1.add_to(g, l1, t);
    }
}
