//! Loops over 8-bit pixels behind the transforms: triangle-filter resize,
//! bilinear rotation, and conversion to normalised f32 planes.
//!
//! Each runs its rows inside [`simd::dispatch`], so the loops are compiled for
//! the widest vector instructions the CPU has (the crate itself is built for
//! baseline x86-64, where `f32::floor` is a library call and a u8 → f32 row is
//! converted four lanes at a time). No expression is reassociated or fused, so
//! every level gives the same bytes and the same floats. Values are rounded
//! back to 8 bits as `(v + 0.5) as u8`: Rust's float-to-integer cast saturates
//! (and sends NaN to 0), so it is the clamp to 0..=255 as well.
//!
//! Rows are split over rayon's threads only when the caller is not already on
//! one of them: a batch is parallel over its images ([`crate::transforms::Compose`]),
//! and splitting each image's rows again cost more in scheduling than it saved.

use rayon::prelude::*;
use taper_nn::kernels::simd;

/// Runs `f(scratch, row_index, row)` over the `pitch`-long rows of `out`, in
/// parallel unless already on a rayon worker (see the module docs), with one
/// `scratch` from `init` per sequential run or per parallel job.
fn for_each_row<S>(
    out: &mut [u8],
    pitch: usize,
    init: impl Fn() -> S + Sync + Send,
    f: impl Fn(&mut S, usize, &mut [u8]) + Sync,
) {
    if pitch == 0 {
        return;
    }
    if rayon::current_thread_index().is_some() {
        let mut scratch = init();
        out.chunks_mut(pitch)
            .enumerate()
            .for_each(|(y, r)| f(&mut scratch, y, r));
    } else {
        out.par_chunks_mut(pitch)
            .enumerate()
            .for_each_init(init, |scratch, (y, r)| f(scratch, y, r));
    }
}

/// Triangle-filter taps of one axis, `from` → `to` samples: output `o` reads
/// `len[o]` inputs from `first[o]` with weights `w[at[o]..at[o] + len[o]]`.
struct Taps {
    first: Vec<usize>,
    at: Vec<usize>,
    len: Vec<usize>,
    w: Vec<f32>,
}

impl Taps {
    /// The `image` crate's `Triangle` resampling: support scaled by the ratio
    /// when shrinking (antialiased), weights normalised to sum to one.
    fn triangle(from: u32, to: u32) -> Self {
        let ratio = from as f32 / to as f32;
        let sratio = ratio.max(1.0);
        let support = sratio;
        let mut t = Taps {
            first: Vec::with_capacity(to as usize),
            at: Vec::with_capacity(to as usize),
            len: Vec::with_capacity(to as usize),
            w: Vec::new(),
        };
        for o in 0..to {
            let centre = (o as f32 + 0.5) * ratio;
            let left = ((centre - support).floor() as i64).clamp(0, from as i64 - 1);
            let right = ((centre + support).ceil() as i64).clamp(left + 1, from as i64);
            let c = centre - 0.5;
            let start = t.w.len();
            t.w.extend((left..right).map(|i| (1.0 - ((i as f32 - c) / sratio).abs()).max(0.0)));
            let sum: f32 = t.w[start..].iter().sum();
            t.w[start..].iter_mut().for_each(|w| *w /= sum);
            t.first.push(left as usize);
            t.at.push(start);
            t.len.push(t.w.len() - start);
        }
        t
    }

    #[inline(always)]
    fn get(&self, o: usize) -> (usize, &[f32]) {
        (self.first[o], &self.w[self.at[o]..self.at[o] + self.len[o]])
    }
}

/// Separable triangle-filter resize of 8-bit pixels with `ch` interleaved
/// channels (1 or 3: the transforms work on grey or RGB), `(w, h)` → `(nw, nh)`: per output row, the vertical taps as
/// whole-row multiply-adds into an f32 row, then the horizontal taps, rounded
/// to the nearest level. Equals the `image` crate's `Triangle` resize up to one
/// level (it rounds once more, between its passes); the `image` crate's generic
/// version took 38 % of the preprocessing benchmark.
pub(crate) fn resize_triangle(
    src: &[u8],
    (w, h): (u32, u32),
    ch: usize,
    (nw, nh): (u32, u32),
) -> Vec<u8> {
    let mut out = vec![0u8; nw as usize * nh as usize * ch];
    if w == 0 || h == 0 || nw == 0 || nh == 0 {
        return out;
    }
    let (vt, ht) = (Taps::triangle(h, nh), Taps::triangle(w, nw));
    let pitch = w as usize * ch;
    // One spare value: the RGB pass reads each tap as four lanes.
    let init = || vec![0f32; pitch + 1];
    for_each_row(&mut out, nw as usize * ch, init, |row, y, dst| {
        simd::dispatch(
            #[inline(always)]
            || {
                let (top, ws) = vt.get(y);
                for (i, &wv) in ws.iter().enumerate() {
                    let s = &src[(top + i) * pitch..(top + i + 1) * pitch];
                    if i == 0 {
                        row.iter_mut().zip(s).for_each(|(r, &v)| *r = wv * v as f32);
                    } else {
                        row.iter_mut()
                            .zip(s)
                            .for_each(|(r, &v)| *r += wv * v as f32);
                    }
                }
                if ch == 1 {
                    horizontal::<1>(row, dst, &ht)
                } else {
                    horizontal_rgb(row, dst, &ht)
                }
            },
        )
    });
    out
}

#[inline(always)]
fn horizontal<const CH: usize>(row: &[f32], dst: &mut [u8], ht: &Taps) {
    for (o, px) in dst.chunks_exact_mut(CH).enumerate() {
        let (left, ws) = ht.get(o);
        let src = &row[left * CH..(left + ws.len()) * CH];
        let mut acc = [0f32; CH];
        for (p, &wv) in src.chunks_exact(CH).zip(ws) {
            for k in 0..CH {
                acc[k] += wv * p[k];
            }
        }
        for k in 0..CH {
            px[k] = (acc[k] + 0.5) as u8;
        }
    }
}

/// [`horizontal`] for RGB, each tap's three values read as four lanes (the
/// fourth is the next pixel's red, or `row`'s spare value, and is dropped), so
/// a tap is one 4-lane multiply and add. Each lane sums in [`horizontal`]'s
/// order, so the bytes are the same; SSE2 is part of x86-64, so no run-time
/// check is needed. Written with intrinsics because the compiler split the
/// 4-lane arrays of a plain loop back into a pair and a single.
#[inline(always)]
fn horizontal_rgb(row: &[f32], dst: &mut [u8], ht: &Taps) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        for (o, px) in dst.chunks_exact_mut(3).enumerate() {
            let (left, ws) = ht.get(o);
            let src = &row[left * 3..(left + ws.len()) * 3 + 1];
            // SAFETY: SSE2 is in every x86-64 CPU; each load reads `src[3j..3j + 4]`,
            // inside `src` for every tap j (its length is 3 * taps + 1).
            let v = unsafe {
                let mut acc = _mm_setzero_ps();
                for (j, &wv) in ws.iter().enumerate() {
                    let p = _mm_loadu_ps(src[j * 3..j * 3 + 4].as_ptr());
                    acc = _mm_add_ps(acc, _mm_mul_ps(_mm_set1_ps(wv), p));
                }
                let q = _mm_cvttps_epi32(_mm_add_ps(acc, _mm_set1_ps(0.5)));
                // Saturating packs: the clamp to 0..=255 of `as u8` (the sums
                // are convex combinations of 0..=255, never out of i32 range).
                _mm_cvtsi128_si32(_mm_packus_epi16(_mm_packs_epi32(q, q), q)) as u32
            };
            px.copy_from_slice(&v.to_le_bytes()[..3]);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    horizontal::<3>(row, dst, ht)
}

/// Clockwise rotation by `theta` radians of `ch`-channel 8-bit pixels (1 or 3,
/// as for [`resize_triangle`]) about the image centre, bilinear, black outside: imageproc's `rotate_about_center` (same mapping and border),
/// written for 8-bit pixels with one rounding per value (imageproc truncates
/// after each of three blends). imageproc's generic version called a
/// bounds-checked pixel accessor four times and rounded three times per
/// channel: 6.9 ms of the 10 ms a 256x256 photo took through resize, crop,
/// rotate and flip.
pub(crate) fn rotate_bilinear(
    src: &[u8],
    (w, h): (usize, usize),
    ch: usize,
    theta: f32,
) -> Vec<u8> {
    let mut out = vec![0u8; src.len()];
    let row_fn: RotateRow = if ch == 1 {
        rotate_row::<1>
    } else {
        rotate_row_rgb
    };
    for_each_row(
        &mut out,
        w * ch,
        || (),
        |_, y, row| row_fn(src, (w, h), theta, y, row),
    );
    out
}

/// One row of a rotation: `(src, (w, h), theta, y, row)`.
type RotateRow = fn(&[u8], (usize, usize), f32, usize, &mut [u8]);

/// The clockwise rotation by `theta` about the centre of a `w` x `h` image.
#[derive(Clone, Copy)]
struct Rotation {
    cx: f32,
    cy: f32,
    sin: f32,
    cos: f32,
}

impl Rotation {
    fn new((w, h): (usize, usize), theta: f32) -> Self {
        let (sin, cos) = theta.sin_cos();
        Rotation {
            cx: w as f32 / 2.0,
            cy: h as f32 / 2.0,
            sin,
            cos,
        }
    }

    /// The pre-image of output pixel `(x, y)`: where it is read from.
    #[inline(always)]
    fn source(&self, x: usize, y: usize) -> (f32, f32) {
        let (dx, dy) = (x as f32 - self.cx, y as f32 - self.cy);
        (
            self.cx + self.cos * dx + self.sin * dy,
            self.cy - self.sin * dx + self.cos * dy,
        )
    }
}

/// Row `y` of [`rotate_bilinear`], at the CPU's vector width.
fn rotate_row<const CH: usize>(
    src: &[u8],
    (w, h): (usize, usize),
    theta: f32,
    y: usize,
    row: &mut [u8],
) {
    let r = Rotation::new((w, h), theta);
    simd::dispatch(
        #[inline(always)]
        || {
            for (x, px) in row.chunks_exact_mut(CH).enumerate() {
                rotate_px::<CH>(src, (w, h), r.source(x, y), px);
            }
        },
    )
}

/// One output pixel of [`rotate_bilinear`]: the bilinear blend at source
/// position `(sx, sy)`, neighbours outside the image counting as 0.
#[inline(always)]
fn rotate_px<const CH: usize>(
    src: &[u8],
    (w, h): (usize, usize),
    (sx, sy): (f32, f32),
    px: &mut [u8],
) {
    let pitch = w * CH;
    let at = |x: i64, y: i64, k: usize| -> f32 {
        if x < 0 || y < 0 || x >= w as i64 || y >= h as i64 {
            0.0
        } else {
            src[y as usize * pitch + x as usize * CH + k] as f32
        }
    };
    let (fx, fy) = (sx.floor(), sy.floor());
    let (l, t) = (fx as i64, fy as i64);
    let (wr, wb) = (sx - fx, sy - fy);
    if l >= 0 && t >= 0 && l + 1 < w as i64 && t + 1 < h as i64 {
        let i = t as usize * pitch + l as usize * CH;
        let (a, b) = (&src[i..i + 2 * CH], &src[i + pitch..i + pitch + 2 * CH]);
        for k in 0..CH {
            let (tl, tr) = (a[k] as f32, a[k + CH] as f32);
            let (bl, br) = (b[k] as f32, b[k + CH] as f32);
            let top = tl + wr * (tr - tl);
            let bottom = bl + wr * (br - bl);
            px[k] = (top + wb * (bottom - top) + 0.5) as u8;
        }
    } else {
        for (k, v) in px.iter_mut().enumerate().take(CH) {
            let (tl, tr) = (at(l, t, k), at(l + 1, t, k));
            let (bl, br) = (at(l, t + 1, k), at(l + 1, t + 1, k));
            let top = tl + wr * (tr - tl);
            let bottom = bl + wr * (br - bl);
            *v = (top + wb * (bottom - top) + 0.5) as u8;
        }
    }
}

/// [`rotate_row`] for RGB: eight pixels at a time with AVX2 where the CPU has
/// it (see [`avx2::rotate_row_rgb`]), else the scalar path.
fn rotate_row_rgb(src: &[u8], (w, h): (usize, usize), theta: f32, y: usize, row: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if simd::level() >= simd::Level::Avx2 && src.len() < i32::MAX as usize {
        // SAFETY: the level is at most what the CPU was detected to run, so
        // it has AVX2; the buffer's offsets fit the gathers' i32 lanes.
        unsafe { avx2::rotate_row_rgb(src, (w, h), theta, y, row) };
        return;
    }
    rotate_row::<3>(src, (w, h), theta, y, row)
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{rotate_px, Rotation};
    use std::arch::x86_64::*;

    /// Row `y` of an RGB [`super::rotate_bilinear`], eight pixels per step:
    /// source positions, floors and weights as vectors, the four neighbours
    /// of each pixel gathered as four bytes (three channels and one more,
    /// dropped), each channel blended in eight lanes. The float operations are
    /// the scalar path's, in its order, so the bytes are the same. A step with
    /// any pixel whose neighbours are not all inside the image (or whose last
    /// neighbour's fourth byte would be past the end) runs the scalar path.
    ///
    /// # Safety
    /// The CPU must have AVX2; `src.len()` must be below `i32::MAX`.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn rotate_row_rgb(
        src: &[u8],
        (w, h): (usize, usize),
        theta: f32,
        y: usize,
        row: &mut [u8],
    ) {
        let r = Rotation::new((w, h), theta);
        let Rotation { cx, cy, sin, cos } = r;
        let pitch = w * 3;
        let dy = y as f32 - cy;
        let (sin_dy, cos_dy) = (sin * dy, cos * dy);
        let scalar = |x: usize, px: &mut [u8]| rotate_px::<3>(src, (w, h), r.source(x, y), px);
        let (vcx, vcy) = (_mm256_set1_ps(cx), _mm256_set1_ps(cy));
        let (vsin, vcos) = (_mm256_set1_ps(sin), _mm256_set1_ps(cos));
        let (vsin_dy, vcos_dy) = (_mm256_set1_ps(sin_dy), _mm256_set1_ps(cos_dy));
        let (minus1, w1, h1) = (
            _mm256_set1_epi32(-1),
            _mm256_set1_epi32(w as i32 - 1),
            _mm256_set1_epi32(h as i32 - 1),
        );
        let (vpitch, three) = (_mm256_set1_epi32(pitch as i32), _mm256_set1_epi32(3));
        let last_bl = _mm256_set1_epi32(src.len() as i32 - 6);
        let (half, byte) = (_mm256_set1_ps(0.5), _mm256_set1_epi32(0xff));
        let (zero, top_level) = (_mm256_setzero_si256(), _mm256_set1_epi32(255));
        let iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        let base = src.as_ptr() as *const i32;
        let mut x0 = 0;
        while x0 + 8 <= w {
            let xs = _mm256_cvtepi32_ps(_mm256_add_epi32(_mm256_set1_epi32(x0 as i32), iota));
            let dx = _mm256_sub_ps(xs, vcx);
            let sx = _mm256_add_ps(_mm256_add_ps(vcx, _mm256_mul_ps(vcos, dx)), vsin_dy);
            let sy = _mm256_add_ps(_mm256_sub_ps(vcy, _mm256_mul_ps(vsin, dx)), vcos_dy);
            let (fx, fy) = (_mm256_floor_ps(sx), _mm256_floor_ps(sy));
            let (l, t) = (_mm256_cvttps_epi32(fx), _mm256_cvttps_epi32(fy));
            let tl = _mm256_add_epi32(_mm256_mullo_epi32(t, vpitch), _mm256_mullo_epi32(l, three));
            let bl = _mm256_add_epi32(tl, vpitch);
            let ok = _mm256_and_si256(
                _mm256_and_si256(_mm256_cmpgt_epi32(l, minus1), _mm256_cmpgt_epi32(w1, l)),
                _mm256_and_si256(
                    _mm256_and_si256(_mm256_cmpgt_epi32(t, minus1), _mm256_cmpgt_epi32(h1, t)),
                    _mm256_cmpgt_epi32(last_bl, bl),
                ),
            );
            let out = &mut row[x0 * 3..x0 * 3 + 24];
            if _mm256_movemask_ps(_mm256_castsi256_ps(ok)) != 0xff {
                for (k, px) in out.chunks_exact_mut(3).enumerate() {
                    scalar(x0 + k, px);
                }
                x0 += 8;
                continue;
            }
            // SAFETY (the gathers): every lane passed `ok`, so each reads four
            // bytes at or before `src.len() - 4` (bl + 3 + 4 <= len) and at or
            // after 0.
            let g_tl = _mm256_i32gather_epi32::<1>(base, tl);
            let g_tr = _mm256_i32gather_epi32::<1>(base, _mm256_add_epi32(tl, three));
            let g_bl = _mm256_i32gather_epi32::<1>(base, bl);
            let g_br = _mm256_i32gather_epi32::<1>(base, _mm256_add_epi32(bl, three));
            let (wr, wb) = (_mm256_sub_ps(sx, fx), _mm256_sub_ps(sy, fy));
            let mut packed = zero;
            for k in 0..3 {
                let chan = |g: __m256i| -> __m256 {
                    let shifted = match k {
                        0 => g,
                        1 => _mm256_srli_epi32::<8>(g),
                        _ => _mm256_srli_epi32::<16>(g),
                    };
                    _mm256_cvtepi32_ps(_mm256_and_si256(shifted, byte))
                };
                let (a, b, c, d) = (chan(g_tl), chan(g_tr), chan(g_bl), chan(g_br));
                let top = _mm256_add_ps(a, _mm256_mul_ps(wr, _mm256_sub_ps(b, a)));
                let bottom = _mm256_add_ps(c, _mm256_mul_ps(wr, _mm256_sub_ps(d, c)));
                let v = _mm256_add_ps(
                    _mm256_add_ps(top, _mm256_mul_ps(wb, _mm256_sub_ps(bottom, top))),
                    half,
                );
                // `as u8` saturates: the same clamp to 0..=255.
                let q = _mm256_min_epi32(_mm256_max_epi32(_mm256_cvttps_epi32(v), zero), top_level);
                packed = _mm256_or_si256(
                    packed,
                    match k {
                        0 => q,
                        1 => _mm256_slli_epi32::<8>(q),
                        _ => _mm256_slli_epi32::<16>(q),
                    },
                );
            }
            let mut lanes = [0u32; 8];
            // SAFETY: `lanes` is 32 writable bytes; the store is unaligned.
            _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, packed);
            for (px, v) in out.chunks_exact_mut(3).zip(lanes) {
                px.copy_from_slice(&v.to_le_bytes()[..3]);
            }
            x0 += 8;
        }
        for (k, px) in row[x0 * 3..].chunks_exact_mut(3).enumerate() {
            scalar(x0 + k, px);
        }
    }
}

/// Writes interleaved 8-bit pixels with `ch` channels as `ch` planes of f32:
/// `(v / 255 - mean[c]) / std[c]`, the same two roundings as `to_tensor`
/// followed by `Normalize::apply`; without statistics, `v / 255` (a mean of 0
/// and a std of 1 leave it exact). `out` holds `ch` planes of `src.len() / ch`
/// values; `mean` and `std` hold `ch` values.
pub(crate) fn to_planes(src: &[u8], ch: usize, stats: Option<(&[f32], &[f32])>, out: &mut [f32]) {
    let (zeros, ones) = (vec![0f32; ch], vec![1f32; ch]);
    let (mean, std) = stats.unwrap_or((&zeros, &ones));
    let hw = src.len() / ch.max(1);
    simd::dispatch(
        #[inline(always)]
        || match ch {
            1 => {
                let (m, s) = (mean[0], std[0]);
                out.iter_mut()
                    .zip(src)
                    .for_each(|(o, &v)| *o = (v as f32 / 255.0 - m) / s);
            }
            3 => {
                let (p0, rest) = out.split_at_mut(hw);
                let (p1, p2) = rest.split_at_mut(hw);
                let (m0, m1, m2) = (mean[0], mean[1], mean[2]);
                let (s0, s1, s2) = (std[0], std[1], std[2]);
                for (((px, a), b), c) in src.chunks_exact(3).zip(p0).zip(p1).zip(p2) {
                    *a = (px[0] as f32 / 255.0 - m0) / s0;
                    *b = (px[1] as f32 / 255.0 - m1) / s1;
                    *c = (px[2] as f32 / 255.0 - m2) / s2;
                }
            }
            _ => {
                for (c, plane) in out.chunks_exact_mut(hw).enumerate().take(ch) {
                    let (m, s) = (mean[c], std[c]);
                    plane
                        .iter_mut()
                        .zip(src.iter().skip(c).step_by(ch))
                        .for_each(|(o, &v)| *o = (v as f32 / 255.0 - m) / s);
                }
            }
        },
    )
}
