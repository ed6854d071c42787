//! 2-D convolution as one fused custom op: per image, im2col into a reused
//! buffer and one matrix product written straight into the output.
//!
//! The earlier form (an im2col op, candle's matmul, a transpose and a copy) built
//! one im2col matrix for the whole batch (58 MB for a 64-image batch of 32-channel
//! 28x28 maps), and candle's backward added a zero-filled buffer per graph node:
//! page faults and memsets were a quarter of a batch-norm CNN's step. Here the
//! columns of one image (under 1 MB) stay in cache and the backward is two more
//! fused ops, each computed only for an input that needs it.

use super::scratch::Scratch;
use super::Window;
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor, WithDType};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// A row-major view of a matrix operand: its values and its row and column
/// strides (a transposed view is the same slice with the strides swapped).
#[derive(Debug, Clone, Copy)]
pub struct MatRef<'a, T> {
    /// The values.
    pub data: &'a [T],
    /// Step between rows.
    pub rs: usize,
    /// Step between columns.
    pub cs: usize,
}

impl<'a, T> MatRef<'a, T> {
    /// A contiguous row-major `rows x cols` matrix.
    pub fn rows(data: &'a [T], cols: usize) -> Self {
        Self {
            data,
            rs: cols,
            cs: 1,
        }
    }
    /// The transpose of a contiguous row-major matrix with `cols` columns.
    pub fn transposed(data: &'a [T], cols: usize) -> Self {
        Self {
            data,
            rs: 1,
            cs: cols,
        }
    }
    fn fits(&self, rows: usize, cols: usize) -> bool {
        rows == 0 || cols == 0 || self.data.len() > (rows - 1) * self.rs + (cols - 1) * self.cs
    }
}

/// `dst (m x n, rows `dst_rs` apart) = (accumulate ? dst : 0) + a (m x k) · b (k x n)`
/// with the `gemm` crate (the kernels candle's own matmul uses), on `threads`
/// threads (1: the caller parallelises around it); large f32 products go to
/// OpenBLAS where [`blas`](super::blas) loaded it.
pub fn gemm<T: WithDType>(
    dst: &mut [T],
    dst_rs: usize,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    mnk: (usize, usize, usize),
    accumulate: bool,
    threads: usize,
) {
    gemm_on(dst, dst_rs, a, b, mnk, accumulate, threads, true)
}

/// Whether one image's product `(m, n, k)` in a convolution over `images`
/// images may go to OpenBLAS (else the `gemm` crate).
///
/// In a batch, each image's product runs on one thread beside the others', and
/// the `gemm` crate (AVX-512 kernels, `x86-v4`) beats OpenBLAS at these skinny
/// shapes on one thread (3x3 convolution of 32 channels at 28x28: 175 against
/// 106 GFLOP/s): CNN + batch norm step 77.1-78.7 → 70.5-72.0 ms, batch-256
/// inference 2,185-2,276 → 2,503-2,535 images/s (docs/BENCHMARKS.md). Not where
/// a side is under 32 (the 8x8 digits DCGAN's 2x2 and 4x4 maps: its step took
/// 16.5-17.2 → 21.1-21.5 ms with the crate), and not for a single image, which
/// splits its product over the threads, as OpenBLAS's tiles do better (batch-1
/// inference: 1,035 images/s with the crate, 1,210 with OpenBLAS). The choice
/// depends on shapes alone, never on the thread count, so results stay
/// bit-identical on any number of threads.
fn blas_for_image((m, n, k): (usize, usize, usize), images: usize) -> bool {
    images < 2 || m.min(n).min(k) < 32
}

/// [`gemm`], with OpenBLAS allowed or not.
#[allow(clippy::too_many_arguments)]
fn gemm_on<T: WithDType>(
    dst: &mut [T],
    dst_rs: usize,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    (m, n, k): (usize, usize, usize),
    accumulate: bool,
    threads: usize,
    blas: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(dst_rs >= n && dst.len() >= (m - 1) * dst_rs + n);
    assert!(a.fits(m, k) && b.fits(k, n));
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                dst[r * dst_rs..r * dst_rs + n].fill(T::zero());
            }
        }
        return;
    }
    // SAFETY: the asserts keep the product inside `dst`, `a` and `b`, and `dst`
    // is a distinct mutable borrow, so it aliases neither operand.
    unsafe {
        gemm_raw(
            (dst.as_mut_ptr(), dst_rs),
            (a, b),
            (m, n, k),
            (accumulate, threads, blas),
        )
    }
}

/// `a (m x k) · b (k x n)` as a new row-major `m x n` vector, written once by
/// the product: no zero fill first (the linear layers' gradients spent 3 % of
/// an MLP step on a memset that the product then overwrote). Large f32
/// products go to OpenBLAS as in [`gemm`].
///
/// # Panics
/// If `a` or `b` is too short for its shape.
pub fn gemm_new<T: WithDType>(
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    (m, n, k): (usize, usize, usize),
    threads: usize,
) -> Vec<T> {
    assert!(a.fits(m, k) && b.fits(k, n));
    if m == 0 || n == 0 || k == 0 {
        return vec![T::zero(); m * n];
    }
    let mut out = Vec::with_capacity(m * n);
    // SAFETY: `out` has room for the `m x n` product (rows `n` apart), which
    // both backends write in full without reading it (`accumulate` is false:
    // OpenBLAS's beta is 0, the `gemm` crate's `read_dst` false); the operands
    // fit their shapes (assert) and are not `out`.
    unsafe {
        gemm_raw(
            (out.as_mut_ptr(), n),
            (a, b),
            (m, n, k),
            (false, threads, true),
        );
        out.set_len(m * n);
    }
    out
}

/// The product of [`gemm_on`] into `dst`.
///
/// # Safety
/// `dst` must be valid for writes (and, with `accumulate`, reads) of the
/// `m x n` product with rows `dst_rs >= n` apart, and alias neither operand;
/// `a` and `b` must fit `(m, k)` and `(k, n)`; `m`, `n` and `k` are not zero.
unsafe fn gemm_raw<T: WithDType>(
    (dst, dst_rs): (*mut T, usize),
    (a, b): (MatRef<'_, T>, MatRef<'_, T>),
    (m, n, k): (usize, usize, usize),
    (accumulate, threads, blas): (bool, usize, bool),
) {
    if blas && T::DTYPE == candle_core::DType::F32 {
        // SAFETY: T is f32 (its dtype says so), so the casts change no value; the
        // caller's contract keeps the product inside the buffers, dst apart.
        let done = unsafe {
            super::blas::sgemm(
                dst.cast(),
                dst_rs,
                (a.data.as_ptr().cast(), a.rs, a.cs),
                (b.data.as_ptr().cast(), b.rs, b.cs),
                (m, n, k),
                accumulate,
                threads > 1,
            )
        };
        if done {
            return;
        }
    }
    let par = if threads > 1 && m * n * k >= 1 << 18 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the caller's contract keeps every index the strides reach inside
    // the buffers, and dst aliases neither operand.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            T::one(),
            T::one(),
            false,
            false,
            false,
            par,
        )
    }
}

/// Geometry of one convolution: input `(n, c, h, w)`, `co` output channels.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    co: usize,
    ho: usize,
    wo: usize,
    win: Window,
}

impl Geometry {
    fn new(x: &Layout, w: &Layout, win: Window) -> Result<Self> {
        let (n, c, h, wd) = x.shape().dims4()?;
        let (co, ci, kh, kw) = w.shape().dims4()?;
        if ci != c || (kh, kw) != win.kernel {
            candle_core::bail!(
                "conv2d: input {:?} and weight {:?} do not match",
                x.dims(),
                w.dims()
            );
        }
        let (ho, wo) = win.output(h, wd)?;
        Ok(Self {
            n,
            c,
            h,
            w: wd,
            co,
            ho,
            wo,
            win,
        })
    }
    /// Rows of the column matrix: `c·kh·kw`.
    fn k(&self) -> usize {
        self.c * self.win.kernel.0 * self.win.kernel.1
    }
    fn image(&self) -> usize {
        self.c * self.h * self.w
    }
    fn out_image(&self) -> usize {
        self.co * self.ho * self.wo
    }
    /// Output positions per image: `ho·wo`.
    fn cols(&self) -> usize {
        self.ho * self.wo
    }
    /// Threads for one image's products when the batch is too small to spread
    /// images over the pool.
    fn inner_threads(&self) -> usize {
        threads_within(self.n)
    }
}

/// Largest column buffer per thread, in elements (1 Mi: 4 MB in f32). An image
/// whose columns exceed it is convolved in bands of output rows.
pub const COLUMN_BUDGET: usize = 1 << 20;

impl Geometry {
    /// Output rows per band.
    fn band(&self) -> usize {
        (COLUMN_BUDGET / (self.k() * self.wo).max(1)).clamp(1, self.ho.max(1))
    }
    /// A worker's buffers: the column matrix of one band and the gather's
    /// padded copy of the image. Unspecified contents.
    fn scratch<T: WithDType>(&self) -> (Scratch<T>, Vec<T>) {
        (
            Scratch::take(self.k() * self.band() * self.wo, T::zero()),
            Vec::new(),
        )
    }
    /// `(first row, rows)` of each band.
    fn bands(&self) -> impl Iterator<Item = (usize, usize)> {
        let (ho, band) = (self.ho, self.band());
        (0..ho).step_by(band).map(move |r| (r, band.min(ho - r)))
    }
}

/// Output rows `r0..r0 + rows` of one image `(c, h, w)` → their
/// `(c·kh·kw, rows·wo)` columns, every entry written. Inlined into
/// [`super::simd::dispatch`] by its callers, so the short copies below are
/// vector moves at the CPU's width.
#[inline(always)]
fn im2col_band<T: WithDType>(x: &[T], g: &Geometry, (r0, rows): (usize, usize), out: &mut [T]) {
    let (s, p) = (g.win.stride as isize, g.win.padding as isize);
    let (h, w, wo) = (g.h as isize, g.w, g.wo);
    let su = s as usize;
    if su == 1 && p == 0 {
        valid_band(x, g, (r0, rows), out);
        return;
    }
    for ((ci, ki, kj), dst) in taps(g).zip(out[..g.k() * rows * wo].chunks_exact_mut(rows * wo)) {
        let plane = &x[ci * g.h * w..(ci + 1) * g.h * w];
        // Columns ow with 0 <= ow·s - p + kj < w: zero outside, a copy (stride 1)
        // or a strided gather inside, with no per-element bounds test. The range
        // depends on kj only, so it is found once per row of the matrix.
        let (lo, hi) = valid_range(wo, w, s, p, kj);
        if lo >= hi {
            dst.fill(T::zero());
            continue;
        }
        let first = (lo as isize * s - p + kj) as usize;
        if su == 1 && wo == w {
            same_rows(plane, (h, w), (r0, rows), (lo, hi), ki - p, first, dst);
            continue;
        }
        if su == 1 {
            // Padded, narrower output rows: the rows that read inside the
            // image as short copies (see `valid_band`), their edges and the
            // rows that read padding zeroed.
            let valid = valid_rows(h, (r0, rows), ki - p);
            dst[..valid.start * wo].fill(T::zero());
            dst[valid.end * wo..].fill(T::zero());
            for i in valid {
                let ih = ((r0 + i) as isize + ki - p) as usize;
                let d = &mut dst[i * wo..(i + 1) * wo];
                d[..lo].fill(T::zero());
                d[hi..].fill(T::zero());
                copy_short(&plane[ih * w + first..], &mut d[lo..hi]);
            }
            continue;
        }
        for (i, d) in dst.chunks_mut(wo).enumerate() {
            let ih = (r0 + i) as isize * s - p + ki;
            if ih < 0 || ih >= h {
                d.fill(T::zero());
                continue;
            }
            let src = &plane[ih as usize * w + first..(ih as usize + 1) * w];
            d[..lo].fill(T::zero());
            d[hi..].fill(T::zero());
            for (t, v) in d[lo..hi].iter_mut().enumerate() {
                *v = src[t * su];
            }
        }
    }
}

/// The runs of a stride-1 convolution without padding (LeNet's 5x5
/// convolutions), in the column matrix's order: `f(column entry, image entry)`
/// for each output row of each matrix row, `wo` values long in both. Every
/// entry reads inside the image, so there are no bounds, fills or per-row
/// set-up: the general path spent more on that bookkeeping (a division, empty
/// fills that still called memset) than on the 8-value copies of a 12x12 map.
#[inline(always)]
fn valid_runs(g: &Geometry, (r0, rows): (usize, usize), mut f: impl FnMut(usize, usize)) {
    let (kh, kw) = g.win.kernel;
    let (w, wo) = (g.w, g.wo);
    let mut col = 0;
    for ci in 0..g.c {
        for ki in 0..kh {
            let top = ci * g.h * w + (r0 + ki) * w;
            for kj in 0..kw {
                for i in 0..rows {
                    f(col + i * wo, top + i * w + kj);
                }
                col += rows * wo;
            }
        }
    }
}

/// [`im2col_band`] of a stride-1 convolution without padding ([`valid_runs`]).
#[inline(always)]
fn valid_band<T: WithDType>(x: &[T], g: &Geometry, band: (usize, usize), out: &mut [T]) {
    let wo = g.wo;
    valid_runs(g, band, |c, at| copy_short(&x[at..], &mut out[c..c + wo]));
}

/// The reverse of [`valid_band`] (col2im): adds each run of `cols` back into
/// `out`, in the general path's order.
#[inline(always)]
fn valid_band_add<T: WithDType>(cols: &[T], g: &Geometry, band: (usize, usize), out: &mut [T]) {
    let wo = g.wo;
    valid_runs(g, band, |c, at| add_short(&cols[c..c + wo], &mut out[at..]));
}

/// `(channel, kernel row, kernel column)` of each row of the column matrix, in
/// order, counted up rather than divided out of the row index (three integer
/// divisions per row showed in a 5x5 convolution's im2col). Endless: its
/// callers zip it with the matrix rows.
fn taps(g: &Geometry) -> Taps {
    let (kh, kw) = g.win.kernel;
    Taps {
        kh: kh as isize,
        kw: kw as isize,
        at: (0, 0, 0),
    }
}

/// The counter behind [`taps`]: three nested `flat_map`s did not inline, and
/// their `next` was 1-2 % of a batch-norm CNN's step and inference.
struct Taps {
    kh: isize,
    kw: isize,
    at: (usize, isize, isize),
}

impl Iterator for Taps {
    type Item = (usize, isize, isize);
    #[inline(always)]
    fn next(&mut self) -> Option<Self::Item> {
        let now = self.at;
        let (ci, ki, kj) = &mut self.at;
        *kj += 1;
        if *kj == self.kw {
            *kj = 0;
            *ki += 1;
            if *ki == self.kh {
                *ki = 0;
                *ci += 1;
            }
        }
        Some(now)
    }
}

/// The band's output rows `i` whose input row `r0 + i + shift` lies in `0..h`
/// (stride 1).
#[inline(always)]
fn valid_rows(h: isize, (r0, rows): (usize, usize), shift: isize) -> std::ops::Range<usize> {
    let lo = (-shift - r0 as isize).clamp(0, rows as isize) as usize;
    let hi = (h - shift - r0 as isize).clamp(lo as isize, rows as isize) as usize;
    lo..hi
}

/// `dst = src[..dst.len()]` for a short run, as 8-value pieces (the last one overlapping the
/// one before) that compile to vector moves, where `copy_from_slice` would call
/// memcpy once per run. Runs under 8 values are copied one by one.
#[inline(always)]
fn copy_short<T: Copy>(src: &[T], dst: &mut [T]) {
    const PIECE: usize = 8;
    let n = dst.len();
    let src = &src[..n];
    if n < PIECE {
        for (d, v) in dst.iter_mut().zip(src) {
            *d = *v;
        }
        return;
    }
    let mut j = 0;
    while j + PIECE < n {
        dst[j..j + PIECE].copy_from_slice(&src[j..j + PIECE]);
        j += PIECE;
    }
    dst[n - PIECE..].copy_from_slice(&src[n - PIECE..]);
}

/// `d += v` on 8 values, both read before the sum is stored: with the loads and
/// stores interleaved the compiler kept the adds scalar, as it could not tell
/// that `d` and `v` (inlined slices of two buffers) do not overlap.
#[inline(always)]
fn add8<T: WithDType>(d: &mut [T; 8], v: &[T; 8]) {
    let (a, b) = (*d, *v);
    *d = std::array::from_fn(|t| a[t] + b[t]);
}

/// `dst[..src.len()] += src` for a short run, in 8-value pieces and then one by
/// one: the same one addition per entry as a plain loop. The first piece is
/// written outside the loop so that a run of exactly 8 (a 5x5 convolution of a
/// 12x12 map) is one vector add: in a loop over pieces the compiler vectorised
/// across pieces and left a single piece to its scalar remainder.
#[inline(always)]
fn add_short<T: WithDType>(src: &[T], dst: &mut [T]) {
    let n = src.len();
    let dst = &mut dst[..n];
    let (s8, s_rest) = src.as_chunks::<8>();
    let (d8, d_rest) = dst.as_chunks_mut::<8>();
    if let (Some((d, d8)), Some((v, s8))) = (d8.split_first_mut(), s8.split_first()) {
        add8(d, v);
        for (d, v) in d8.iter_mut().zip(s8) {
            add8(d, v);
        }
    }
    for (d, v) in d_rest.iter_mut().zip(s_rest) {
        *d += *v;
    }
}

/// One row of the column matrix of a stride-1 convolution whose output rows are
/// as wide as its input rows ("same" padding, such as 3x3 with padding 1): the
/// valid entries of consecutive output rows are then consecutive in the input
/// plane too, so they are one copy, and only the `lo` entries before and the
/// `w - hi` after each output row are set to zero afterwards (they received the
/// neighbouring input rows' ends). Copying 28-value runs one by one, with two
/// fills around each, had spent most of im2col's time in calls to memcpy and
/// memset. `shift` is `ki - p` (input row = output row + shift); `first` the
/// input column of output column `lo`; `lo < hi`.
#[inline(always)]
fn same_rows<T: WithDType>(
    plane: &[T],
    (h, w): (isize, usize),
    (r0, rows): (usize, usize),
    (lo, hi): (usize, usize),
    shift: isize,
    first: usize,
    dst: &mut [T],
) {
    let run = SameRun::new((h, w), (r0, rows), (lo, hi), shift, first);
    dst[..run.rows.start * w].fill(T::zero());
    dst[run.rows.end * w..rows * w].fill(T::zero());
    if run.rows.is_empty() {
        return;
    }
    let n = run.cols.len();
    dst[run.cols.clone()].copy_from_slice(&plane[run.plane_start..][..n]);
    run.zero_edges(dst, w, (lo, hi));
}

/// The reverse of [`same_rows`]: adds one row of the column matrix back into
/// `plane` as one run. The entries that read padding would land on the
/// neighbouring rows' ends in a single run, so they are zeroed in `src` first.
#[inline(always)]
fn same_rows_add<T: WithDType>(
    src: &mut [T],
    (h, w): (isize, usize),
    (r0, rows): (usize, usize),
    (lo, hi): (usize, usize),
    shift: isize,
    first: usize,
    plane: &mut [T],
) {
    let run = SameRun::new((h, w), (r0, rows), (lo, hi), shift, first);
    if run.rows.is_empty() {
        return;
    }
    run.zero_edges(src, w, (lo, hi));
    let n = run.cols.len();
    for (dv, v) in plane[run.plane_start..][..n].iter_mut().zip(&src[run.cols]) {
        *dv += *v;
    }
}

/// Where one row of a same-width column matrix ([`same_rows`]) meets its input
/// plane: the band's output rows whose input row lies inside the image, the
/// matrix entries from the first valid one to the last, and the plane index the
/// first of them reads.
struct SameRun {
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
    plane_start: usize,
}

impl SameRun {
    #[inline(always)]
    fn new(
        (h, w): (isize, usize),
        (r0, rows): (usize, usize),
        (lo, hi): (usize, usize),
        shift: isize,
        first: usize,
    ) -> Self {
        let valid = valid_rows(h, (r0, rows), shift);
        let (i_lo, i_hi) = (valid.start, valid.end);
        let cols = if i_lo < i_hi {
            i_lo * w + lo..(i_hi - 1) * w + hi
        } else {
            0..0
        };
        Self {
            rows: i_lo..i_hi,
            cols,
            plane_start: ((r0 + i_lo) as isize + shift).max(0) as usize * w + first,
        }
    }

    /// Zeroes the `lo` entries before and the `w - hi` after each valid output
    /// row: strided stores (one per row), which the compiler cannot turn into a
    /// call per row.
    #[inline(always)]
    fn zero_edges<T: WithDType>(&self, buf: &mut [T], w: usize, (lo, hi): (usize, usize)) {
        for t in (0..lo).chain(hi..w) {
            for i in self.rows.clone() {
                buf[i * w + t] = T::zero();
            }
        }
    }
}

/// The output columns `lo..hi` whose input column `ow·s - p + kj` lies in `0..w`.
fn valid_range(wo: usize, w: usize, s: isize, p: isize, kj: isize) -> (usize, usize) {
    // ow·s >= p - kj  and  ow·s <= w - 1 + p - kj
    let lo = if p - kj <= 0 {
        0
    } else {
        ((p - kj) + s - 1) / s
    };
    let top = w as isize - 1 + p - kj;
    let hi = if top < 0 { 0 } else { top / s + 1 };
    let (lo, hi) = ((lo as usize).min(wo), (hi as usize).min(wo));
    (lo, hi.max(lo))
}

/// Adds the columns of output rows `r0..r0 + rows` back into their `(c, h, w)`
/// image. `cols` is scratch: a stride-1 "same" convolution zeroes its padding
/// entries so that each row of the matrix is added back as one run (see
/// [`same_rows`]). Inlined into [`super::simd::dispatch`] by its caller, so the
/// adds are as wide as the CPU's vectors.
#[inline(always)]
fn col2im_band<T: WithDType>(
    cols: &mut [T],
    g: &Geometry,
    (r0, rows): (usize, usize),
    out: &mut [T],
) {
    let (s, p) = (g.win.stride as isize, g.win.padding as isize);
    let (h, w, wo) = (g.h as isize, g.w, g.wo);
    if s == 1 && p == 0 {
        valid_band_add(cols, g, (r0, rows), out);
        return;
    }
    for ((ci, ki, kj), src_row) in taps(g).zip(cols[..g.k() * rows * wo].chunks_mut(rows * wo)) {
        let plane = &mut out[ci * g.h * w..(ci + 1) * g.h * w];
        let (lo, hi) = valid_range(wo, w, s, p, kj);
        if lo >= hi {
            continue;
        }
        let first = (lo as isize * s - p + kj) as usize;
        let su = s as usize;
        if su == 1 && wo == w {
            same_rows_add(src_row, (h, w), (r0, rows), (lo, hi), ki - p, first, plane);
            continue;
        }
        for (i, srow) in src_row.chunks(wo).enumerate() {
            let ih = (r0 + i) as isize * s - p + ki;
            if ih < 0 || ih >= h {
                continue;
            }
            let d = &mut plane[ih as usize * w + first..(ih as usize + 1) * w];
            if su == 1 {
                // A separate loop for stride 1: with the stride a runtime value the
                // compiler keeps the general one scalar, and it took a quarter of a
                // 3x3 convolution's forward and backward time.
                add_short(&srow[lo..hi], d);
            } else {
                for (t, v) in srow[lo..hi].iter().enumerate() {
                    d[t * su] += *v;
                }
            }
        }
    }
}

/// im2col (and col2im) as a precomputed gather (scatter-add) for strided
/// convolutions of small images: `idx[j]` is the image element that column
/// entry `j` reads, or the image length for padding (read from a zero appended
/// to a copy of the image). Built once per op call and shared by every image.
/// For a DCGAN's 14x14 → 7x7 stride-2 maps the row-wise im2col spent its time
/// on bounds and fills around strided runs of 7 values (20 % of the step's
/// samples); with the gather the step took 53-63 ms instead of 64-72 ms
/// (four interleaved runs).
struct Gather {
    idx: Vec<u32>,
    /// col2im as a gather too: for the `r`-th contribution each image element
    /// `e` receives, its entry in a group's column matrix (`inv[r · len + e]`,
    /// in increasing column order, for the group's first image), or
    /// `k · stride`, the start of a zeroed tail past the columns.
    inv: Vec<u32>,
    /// Images per matrix product ([`group_size`]).
    group: usize,
    /// Column-matrix rows `k` and one image's columns `ho·wo`.
    rows: usize,
    cols: usize,
}

/// Largest column matrix of a group of images, in elements (256 Ki: 1 MB in
/// f32, the L2 cache of the project's AMD EPYC).
const GROUP_COLUMNS: usize = 1 << 18;
/// Most images per matrix product.
const GROUP_MAX: usize = 8;

/// Images whose column matrices sit side by side in one product, where the
/// gather builds them: a DCGAN's 7x7 maps give products of 49 columns, a poor
/// width for the `gemm` crate's 16x6 (AVX2) tiles, and the weights were packed
/// again for every image; eight images a product ran at 84 GFLOP/s against 65
/// on the project's AMD EPYC (`bench_gemm`, 64 x 392 x 512 against 64 x 49 x
/// 512, one thread). Each output value is still one dot product over `k` taken
/// in order, so the values do not depend on the group.
fn group_size(g: &Geometry) -> usize {
    (GROUP_COLUMNS / (g.k() * g.cols()).max(1)).clamp(1, GROUP_MAX)
}

impl Gather {
    /// `None` where the row-wise im2col is as fast: stride 1 (its runs are
    /// plain copies), batches too small to repay building the index (it costs
    /// about one image's im2col), images that need several bands or are too
    /// large to index.
    fn new(g: &Geometry) -> Option<Self> {
        let n = g.k() * g.cols();
        let group = group_size(g);
        if g.win.stride < 2
            || g.n < 4
            || g.band() < g.ho
            || g.image() >= u32::MAX as usize
            || (n + 1) * group >= u32::MAX as usize
            || n == 0
        {
            return None;
        }
        let (kh, kw) = g.win.kernel;
        let (s, p) = (g.win.stride as isize, g.win.padding as isize);
        let pad = g.image() as u32;
        let mut idx = Vec::with_capacity(n);
        for row in 0..g.k() {
            let ci = row / (kh * kw);
            let ki = ((row / kw) % kh) as isize;
            let kj = (row % kw) as isize;
            for oh in 0..g.ho {
                let ih = oh as isize * s - p + ki;
                for ow in 0..g.wo {
                    let iw = ow as isize * s - p + kj;
                    idx.push(
                        if ih < 0 || ih >= g.h as isize || iw < 0 || iw >= g.w as isize {
                            pad
                        } else {
                            (ci * g.h * g.w + ih as usize * g.w + iw as usize) as u32
                        },
                    );
                }
            }
        }
        // Each image element's contributions, in column order, as entries of
        // a group's matrix (rows `group · ho·wo` apart).
        let (len, cols) = (g.image(), g.cols());
        let stride = group * cols;
        let mut count = vec![0usize; len + 1];
        for &i in &idx {
            count[i as usize] += 1;
        }
        let per = count[..len].iter().copied().max().unwrap_or(0);
        let mut inv = vec![(g.k() * stride) as u32; per * len];
        count.fill(0);
        for (j, &i) in idx.iter().enumerate() {
            let e = i as usize;
            if e < len {
                inv[count[e] * len + e] = ((j / cols) * stride + j % cols) as u32;
                count[e] += 1;
            }
        }
        Some(Self {
            idx,
            inv,
            group,
            rows: g.k(),
            cols,
        })
    }

    /// Row step of a group's column matrix.
    fn stride(&self) -> usize {
        self.group * self.cols
    }

    /// A worker's buffers for a group: its column matrix with the zeroed tail
    /// [`Self::add_back`] reads, the product (or gathered gradient), and the
    /// padded image. Unspecified contents.
    fn scratch<T: WithDType>(&self, product_rows: usize) -> (Scratch<T>, Scratch<T>, Vec<T>) {
        (
            Scratch::take((self.rows + 1) * self.stride(), T::zero()),
            Scratch::take(product_rows * self.stride(), T::zero()),
            Vec::new(),
        )
    }

    /// Adds each image's columns, held in the group's column matrix `cols`
    /// (image `i` at column `i · ho·wo`), back into its image in `imgs`
    /// (col2im), with `acc` (image length) as scratch. Each element's
    /// contributions are summed from zero in column order, as a scatter-add
    /// over the columns would sum them, but as one gather per contribution
    /// over the image, which vectorise: the scatter's dependent
    /// read-modify-writes were 12 % of a DCGAN step on one thread. Inlined into
    /// [`super::simd::dispatch`] by its caller.
    #[inline(always)]
    fn add_back<T: WithDType>(&self, cols: &mut [T], acc: &mut Vec<T>, imgs: &mut [T], len: usize) {
        let tail = self.rows * self.stride();
        cols[tail..tail + self.stride()].fill(T::zero());
        for (i, img) in imgs.chunks_exact_mut(len).enumerate() {
            let c = &cols[i * self.cols..];
            acc.clear();
            acc.resize(len, T::zero());
            for inv in self.inv.chunks_exact(len) {
                for (a, &j) in acc.iter_mut().zip(inv) {
                    *a += c[j as usize];
                }
            }
            for (d, &v) in img.iter_mut().zip(acc.iter()) {
                *d += v;
            }
        }
    }

    /// Fills `out` (`k x ho·wo`, rows `stride` apart) from `img`, using
    /// `padded` (image length + 1) as scratch. Left at the baseline width:
    /// compiled for AVX-512 its loop became vector gathers, and the DCGAN step
    /// on one thread got slower.
    fn fill<T: WithDType>(&self, img: &[T], padded: &mut Vec<T>, out: &mut [T], stride: usize) {
        padded.clear();
        padded.extend_from_slice(img);
        padded.push(T::zero());
        for (row, idx) in self.idx.chunks_exact(self.cols).enumerate() {
            let out = &mut out[row * stride..][..self.cols];
            for (d, &i) in out.iter_mut().zip(idx) {
                *d = padded[i as usize];
            }
        }
    }
}

/// One band of an image's column matrix into `buf`: through the precomputed
/// gather where there is one, else row by row at the CPU's vector width.
#[inline(always)]
fn columns<T: WithDType>(
    gather: Option<&Gather>,
    img: &[T],
    g: &Geometry,
    band: (usize, usize),
    (padded, buf): (&mut Vec<T>, &mut [T]),
) {
    match gather {
        Some(ga) => ga.fill(img, padded, buf, ga.cols),
        None => super::simd::dispatch(
            #[inline(always)]
            || im2col_band(img, g, band, buf),
        ),
    }
}

fn conv_fwd<T: WithDType>(x: &[T], wt: &[T], bias: Option<&[T]>, g: &Geometry) -> Vec<T> {
    if let Some(ga) = Gather::new(g) {
        return conv_fwd_grouped(x, wt, bias, g, &ga);
    }
    let (k, hw) = (g.k(), g.cols());
    let threads = g.inner_threads();
    let fill = |(buf, _): &mut (Scratch<T>, Vec<T>), i: usize, dst: &mut [MaybeUninit<T>]| {
        let img = &x[i * g.image()..(i + 1) * g.image()];
        // The bias is the product's starting value: no separate pass, and
        // no broadcast whose backward is candle's slow strided reduction.
        let start = |c: usize| bias.map_or(T::zero(), |b| b[c]);
        for (c, row) in dst.chunks_mut(hw).enumerate() {
            let v = start(c);
            for e in row {
                e.write(v);
            }
        }
        // SAFETY: the `co` rows of `hw` values just written are the whole
        // chunk (`out_image`), so every value is initialised.
        let dst = unsafe { &mut *(dst as *mut [MaybeUninit<T>] as *mut [T]) };
        for band in g.bands() {
            let n = band.1 * g.wo;
            super::simd::dispatch(
                #[inline(always)]
                || im2col_band(img, g, band, buf),
            );
            gemm_on(
                &mut dst[band.0 * g.wo..],
                hw,
                MatRef::rows(wt, k),
                MatRef::rows(buf, n),
                (g.co, n, k),
                bias.is_some(),
                threads,
                blas_for_image((g.co, n, k), g.n),
            );
        }
    };
    // SAFETY: `fill` writes each image's whole chunk (`co` rows of `hw` values,
    // the bias or a zero) before anything else touches it.
    unsafe { super::par_new_with(g.n * g.out_image(), g.out_image(), || g.scratch(), fill) }
}

/// Threads for each of `tasks` independent products (images, or groups of
/// them) spread over the pool: one where there are enough tasks to keep every
/// thread busy, else the whole pool inside each product.
fn threads_within(tasks: usize) -> usize {
    let t = rayon::current_num_threads();
    if tasks >= t {
        1
    } else {
        t
    }
}

/// [`conv_fwd`] over groups of images ([`group_size`]): their columns side by
/// side, one product per group, then each image's rows copied out.
fn conv_fwd_grouped<T: WithDType>(
    x: &[T],
    wt: &[T],
    bias: Option<&[T]>,
    g: &Geometry,
    ga: &Gather,
) -> Vec<T> {
    let (k, hw, stride) = (g.k(), g.cols(), ga.stride());
    let threads = threads_within(g.n.div_ceil(ga.group));
    let fill = |(cols, prod, padded): &mut (Scratch<T>, Scratch<T>, Vec<T>),
                gi: usize,
                dst: &mut [MaybeUninit<T>]| {
        let imgs = dst.len() / g.out_image();
        for i in 0..imgs {
            let img = &x[(gi * ga.group + i) * g.image()..][..g.image()];
            ga.fill(img, padded, &mut cols[i * hw..], stride);
        }
        // The bias is the product's starting value: no separate pass, and
        // no broadcast whose backward is candle's slow strided reduction.
        // Without one the product writes every value (`read_dst` false).
        if let Some(b) = bias {
            for (c, &v) in b.iter().enumerate() {
                prod[c * stride..][..imgs * hw].fill(v);
            }
        }
        gemm_on(
            prod,
            stride,
            MatRef::rows(wt, k),
            MatRef::rows(cols, stride),
            (g.co, imgs * hw, k),
            bias.is_some(),
            threads,
            blas_for_image((g.co, hw, k), g.n),
        );
        for (i, out) in dst.chunks_mut(g.out_image()).enumerate() {
            for (c, row) in out.chunks_mut(hw).enumerate() {
                for (d, &v) in row.iter_mut().zip(&prod[c * stride + i * hw..][..hw]) {
                    d.write(v);
                }
            }
        }
    };
    // SAFETY: `fill` writes each image of its group, `co` rows of `hw` values,
    // the whole chunk.
    unsafe {
        super::par_new_with(
            g.n * g.out_image(),
            ga.group * g.out_image(),
            || ga.scratch(g.co),
            fill,
        )
    }
}

/// `dW = Σ_images grad_b (co x HW) · cols_bᵀ`, summed in a fixed order
/// ([`super::ordered_sum`]) so the gradient is the same on any number of threads.
///
/// Accumulated as its transpose `cols_b · grad_bᵀ` (`k x co`) and transposed
/// once at the end: the `gemm` crate computes a row-major product as its
/// transpose, and in `dW`'s own layout that made the column matrix its left
/// operand with rows `HW` apart, which it re-packed, one strided value at a
/// time, for every image (7 % of a LeNet step on one thread). As `dWᵀ` only
/// `grad_b` (`co x HW`, 16 times smaller for LeNet's second convolution) is
/// packed. Each entry is the same sum over the image's positions in the same
/// order, so the values do not change.
fn conv_grad_weight<T: WithDType>(x: &[T], grad: &[T], g: &Geometry) -> Vec<T> {
    let (k, hw) = (g.k(), g.cols());
    let threads = g.inner_threads();
    let gather = Gather::new(g);
    let dw_t = super::ordered_sum(
        g.n,
        g.co * k,
        T::zero(),
        || g.scratch(),
        |(buf, padded), i, acc| {
            let img = &x[i * g.image()..(i + 1) * g.image()];
            let gb = &grad[i * g.out_image()..(i + 1) * g.out_image()];
            for band in g.bands() {
                let n = band.1 * g.wo;
                columns(gather.as_ref(), img, g, band, (padded, buf));
                gemm_on(
                    acc,
                    g.co,
                    MatRef::rows(buf, n),
                    MatRef {
                        data: &gb[band.0 * g.wo..],
                        rs: 1,
                        cs: hw,
                    },
                    (k, g.co, n),
                    true,
                    threads,
                    blas_for_image((k, g.co, n), g.n),
                );
            }
        },
    );
    let mut dw = Vec::with_capacity(g.co * k);
    for c in 0..g.co {
        dw.extend(dw_t.iter().skip(c).step_by(g.co));
    }
    dw
}

/// `dx_b = col2im(Wᵀ (k x co) · grad_b (co x HW))`.
fn conv_grad_input<T: WithDType>(grad: &[T], wt: &[T], g: &Geometry) -> Vec<T> {
    if let Some(ga) = Gather::new(g) {
        return conv_grad_input_grouped(grad, wt, g, &ga);
    }
    let (k, hw) = (g.k(), g.cols());
    let threads = g.inner_threads();
    let mut out = vec![T::zero(); g.n * g.image()];
    out.par_chunks_mut(g.image())
        .zip(grad.par_chunks(g.out_image()))
        .for_each_init(
            || g.scratch(),
            |(buf, _), (dst, gb)| {
                for band in g.bands() {
                    let n = band.1 * g.wo;
                    gemm_on(
                        buf,
                        n,
                        MatRef::transposed(wt, k),
                        MatRef {
                            data: &gb[band.0 * g.wo..],
                            rs: hw,
                            cs: 1,
                        },
                        (k, n, g.co),
                        false,
                        threads,
                        blas_for_image((k, n, g.co), g.n),
                    );
                    super::simd::dispatch(
                        #[inline(always)]
                        || col2im_band(buf, g, band, dst),
                    );
                }
            },
        );
    out
}

/// [`conv_grad_input`] over groups of images ([`group_size`]): their output
/// gradients side by side (`co x group·HW`), one product per group, then
/// each image's columns added back through the gather.
fn conv_grad_input_grouped<T: WithDType>(
    grad: &[T],
    wt: &[T],
    g: &Geometry,
    ga: &Gather,
) -> Vec<T> {
    let (k, hw, stride) = (g.k(), g.cols(), ga.stride());
    let threads = threads_within(g.n.div_ceil(ga.group));
    let mut out = vec![T::zero(); g.n * g.image()];
    out.par_chunks_mut(ga.group * g.image())
        .zip(grad.par_chunks(ga.group * g.out_image()))
        .for_each_init(
            || ga.scratch(g.co),
            |(cols, gbuf, acc), (dst, gb)| {
                let imgs = dst.len() / g.image();
                for (i, gi) in gb.chunks_exact(g.out_image()).enumerate() {
                    for (c, row) in gi.chunks_exact(hw).enumerate() {
                        gbuf[c * stride + i * hw..][..hw].copy_from_slice(row);
                    }
                }
                gemm_on(
                    cols,
                    stride,
                    MatRef::transposed(wt, k),
                    MatRef::rows(gbuf, stride),
                    (k, imgs * hw, g.co),
                    false,
                    threads,
                    blas_for_image((k, hw, g.co), g.n),
                );
                super::simd::dispatch(
                    #[inline(always)]
                    || ga.add_back(cols, acc, dst, g.image()),
                );
            },
        );
    out
}

/// `(x (N, C, H, W), weight (Co, C, kh, kw))` → `(N, Co, Ho, Wo)`, no bias.
#[derive(Debug, Clone, Copy)]
pub struct Conv2d(pub Window);

/// Weight gradient: `(x, output gradient)` → `(Co, C, kh, kw)`.
#[derive(Debug, Clone, Copy)]
struct Conv2dGradWeight {
    win: Window,
    co: usize,
}

/// Input gradient: `(output gradient, weight)` → `(N, C, H, W)`.
#[derive(Debug, Clone, Copy)]
struct Conv2dGradInput {
    win: Window,
    image: (usize, usize),
}

impl CustomOp2 for Conv2d {
    fn name(&self) -> &'static str {
        "taper-conv2d"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = Geometry::new(l1, l2, self.0)?;
        let out = crate::float_dispatch!(
            "conv2d",
            s1.dtype(),
            [(x, s1, l1), (w, s2, l2)],
            conv_fwd(x, w, None, &g)
        );
        Ok((out, Shape::from((g.n, g.co, g.ho, g.wo))))
    }
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        conv_bwd(self.0, x, w, &grad.contiguous()?)
    }
}

/// The input and weight gradients of a convolution, each only where needed.
fn conv_bwd(
    win: Window,
    x: &Tensor,
    w: &Tensor,
    grad: &Tensor,
) -> Result<(Option<Tensor>, Option<Tensor>)> {
    {
        let (_, _, h, wd) = x.dims4()?;
        let grad = grad.clone();
        // An input image or a frozen weight needs no gradient: skip its product.
        let dx = if x.track_op() {
            Some(grad.apply_op2_no_bwd(
                w,
                &Conv2dGradInput {
                    win,
                    image: (h, wd),
                },
            )?)
        } else {
            None
        };
        let dw = if w.track_op() {
            Some(x.apply_op2_no_bwd(&grad, &Conv2dGradWeight { win, co: w.dim(0)? })?)
        } else {
            None
        };
        Ok((dx, dw))
    }
}

impl CustomOp2 for Conv2dGradWeight {
    fn name(&self) -> &'static str {
        "taper-conv2d-grad-weight"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = l1.shape().dims4()?;
        let (kh, kw) = self.win.kernel;
        let (ho, wo) = self.win.output(h, w)?;
        if l2.dims() != [n, self.co, ho, wo] {
            candle_core::bail!(
                "conv2d backward: gradient {:?} for input {:?}",
                l2.dims(),
                l1.dims()
            );
        }
        let g = Geometry {
            n,
            c,
            h,
            w,
            co: self.co,
            ho,
            wo,
            win: self.win,
        };
        let out = crate::float_dispatch!(
            "conv2d backward",
            s1.dtype(),
            [(x, s1, l1), (gr, s2, l2)],
            conv_grad_weight(x, gr, &g)
        );
        Ok((out, Shape::from((self.co, c, kh, kw))))
    }
}

impl CustomOp2 for Conv2dGradInput {
    fn name(&self) -> &'static str {
        "taper-conv2d-grad-input"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, co, ho, wo) = l1.shape().dims4()?;
        let (wco, c, kh, kw) = l2.shape().dims4()?;
        let (h, w) = self.image;
        if wco != co || (kh, kw) != self.win.kernel || self.win.output(h, w)? != (ho, wo) {
            candle_core::bail!(
                "conv2d backward: gradient {:?} and weight {:?} do not match",
                l1.dims(),
                l2.dims()
            );
        }
        let g = Geometry {
            n,
            c,
            h,
            w,
            co,
            ho,
            wo,
            win: self.win,
        };
        let out = crate::float_dispatch!(
            "conv2d backward",
            s1.dtype(),
            [(gr, s1, l1), (wt, s2, l2)],
            conv_grad_input(gr, wt, &g)
        );
        Ok((out, Shape::from((n, c, h, w))))
    }
}

/// [`Conv2d`] plus a bias `(Co,)`: `(x, weight, bias)` → `(N, Co, Ho, Wo)`.
#[derive(Debug, Clone, Copy)]
pub struct Conv2dBias(pub Window);

/// `(N, C, ...)` → `(C,)`: each channel's sum (the gradient of a per-channel bias).
#[derive(Debug, Clone, Copy)]
struct ChannelSum;

impl CustomOp3 for Conv2dBias {
    fn name(&self) -> &'static str {
        "taper-conv2d-bias"
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
        let g = Geometry::new(l1, l2, self.0)?;
        if l3.shape().elem_count() != g.co {
            candle_core::bail!(
                "conv2d: bias of shape {:?} for {} output channels",
                l3.dims(),
                g.co
            );
        }
        let out = crate::float_dispatch!(
            "conv2d",
            s1.dtype(),
            [(x, s1, l1), (w, s2, l2), (b, s3, l3)],
            conv_fwd(x, w, Some(b), &g)
        );
        Ok((out, Shape::from((g.n, g.co, g.ho, g.wo))))
    }
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let (dx, dw) = conv_bwd(self.0, x, w, &grad)?;
        let db = if b.track_op() {
            Some(grad.apply_op1_no_bwd(&ChannelSum)?.reshape(b.shape())?)
        } else {
            None
        };
        Ok((dx, dw, db))
    }
}

fn channel_sum<T: WithDType>(x: &[T], (n, c, s): (usize, usize, usize)) -> Vec<T> {
    (0..c)
        .into_par_iter()
        .map(|ch| {
            let acc = super::simd::dispatch(
                #[inline(always)]
                || {
                    let mut acc = 0f64;
                    for b in 0..n {
                        acc += super::vmath::sum_f64(&x[(b * c + ch) * s..(b * c + ch + 1) * s]);
                    }
                    acc
                },
            );
            T::from_f64(acc)
        })
        .collect()
}

impl candle_core::CustomOp1 for ChannelSum {
    fn name(&self) -> &'static str {
        "taper-channel-sum"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let d = l.dims();
        if d.len() < 2 {
            candle_core::bail!("channel sum: (N, C, ...) expected, got {d:?}");
        }
        let dims = (d[0], d[1], d[2..].iter().product());
        let out =
            crate::float_dispatch!("channel sum", s.dtype(), [(x, s, l)], channel_sum(x, dims));
        Ok((out, Shape::from(d[1])))
    }
}

/// Runs the fused convolution (with its bias, if any) on CPU f32/f64 tensors.
pub(super) fn conv2d_cpu(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    win: Window,
) -> Result<Tensor> {
    let (x, w) = (x.contiguous()?, weight.contiguous()?);
    match bias {
        Some(b) => x.apply_op3(&w, &b.contiguous()?, Conv2dBias(win)),
        None => x.apply_op2(&w, Conv2d(win)),
    }
}

/// Transposed convolution `(x (N, Cin, H, W), weight (Cin, Cout, kh, kw))` →
/// `(N, Cout, (H-1)·s - 2p + kh, ...)`: the input gradient of the convolution
/// whose weight is `weight`, so its forward and both gradients are the three
/// routines above with the roles of image and output swapped.
#[derive(Debug, Clone, Copy)]
pub struct ConvTranspose2d(pub Window);

impl ConvTranspose2d {
    /// The convolution this is the adjoint of: image = this op's output.
    fn geometry(&self, x: &Layout, w: &Layout) -> Result<Geometry> {
        let (n, cin, h, wd) = x.shape().dims4()?;
        let (wc, cout, kh, kw) = w.shape().dims4()?;
        if wc != cin || (kh, kw) != self.0.kernel {
            candle_core::bail!(
                "conv_transpose2d: input {:?} and weight {:?} do not match",
                x.dims(),
                w.dims()
            );
        }
        let (s, p) = (self.0.stride, self.0.padding);
        let (ho, wo) = ((h - 1) * s + kh, (wd - 1) * s + kw);
        if ho < 2 * p + 1 || wo < 2 * p + 1 {
            candle_core::bail!("conv_transpose2d: padding {p} leaves no output for {h}x{wd}");
        }
        let g = Geometry {
            n,
            c: cout,
            h: ho - 2 * p,
            w: wo - 2 * p,
            co: cin,
            ho: h,
            wo: wd,
            win: self.0,
        };
        if self.0.output(g.h, g.w)? != (h, wd) {
            candle_core::bail!("conv_transpose2d: stride {s} does not invert for {h}x{wd}");
        }
        Ok(g)
    }
}

impl CustomOp2 for ConvTranspose2d {
    fn name(&self) -> &'static str {
        "taper-conv-transpose2d"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = self.geometry(l1, l2)?;
        let out = crate::float_dispatch!(
            "conv_transpose2d",
            s1.dtype(),
            [(x, s1, l1), (w, s2, l2)],
            conv_grad_input(x, w, &g)
        );
        Ok((out, Shape::from((g.n, g.c, g.h, g.w))))
    }
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let dx = if x.track_op() {
            Some(grad.apply_op2_no_bwd(w, &Conv2d(self.0))?)
        } else {
            None
        };
        let dw = if w.track_op() {
            // The adjoint convolution's weight gradient: image dy, output gradient x.
            let co = x.dim(1)?;
            Some(grad.apply_op2_no_bwd(x, &Conv2dGradWeight { win: self.0, co })?)
        } else {
            None
        };
        Ok((dx, dw))
    }
}

/// Runs the fused transposed convolution on CPU f32/f64 tensors.
pub fn conv_transpose2d_cpu(x: &Tensor, weight: &Tensor, win: Window) -> Result<Tensor> {
    x.contiguous()?
        .apply_op2(&weight.contiguous()?, ConvTranspose2d(win))
}
