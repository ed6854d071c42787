//! `exp`, `tanh` and the logistic sigmoid for f32, written so that loops over
//! slices vectorise.
//!
//! glibc's `expf` is a call per element, so a loop that calls it stays scalar:
//! in the LSTM sequence-to-sequence step it was a tenth of all samples. These
//! versions use only multiplies, adds, min/max, compares and integer bit
//! operations (no `floor`, no libm call, no `mul_add`, which is a libm call
//! without FMA in the target features), so the compiler turns a loop over them
//! into SIMD code even at the baseline x86-64 target. Relative error of `exp`
//! stays below 3e-7 (a few units in the last place; the tests check it).

use candle_core::WithDType;

/// Above this, `exp` overflows to infinity.
const EXP_HI: f32 = 88.37;
/// Below this, `exp` is taken as 0 (it would be subnormal).
const EXP_LO: f32 = -87.33;

/// `e^x` in f32: inlined and branch-free, so loops over it vectorise.
///
/// Infinity above 88.37, exactly 0 below -87.33, NaN for NaN.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    // x = n·ln2 + r with |r| ≤ ln2/2; e^x = 2^n · e^r.
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split in two so that n·LN2_HI is exact for |n| < 2^9.
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Adding 1.5·2^23 rounds to the nearest integer and leaves it in the low
    // mantissa bits: no float-to-int conversion needed.
    const SHIFTER: f32 = 12_582_912.0;
    let xc = x.clamp(EXP_LO, EXP_HI);
    let t = xc * LOG2E + SHIFTER;
    let n = t - SHIFTER;
    let r = (xc - n * LN2_HI) - n * LN2_LO;
    // Taylor series of e^r to degree 7: truncation error < 6e-9 for |r| ≤ 0.35.
    let p = 1.0 / 5040.0;
    let p = p * r + 1.0 / 720.0;
    let p = p * r + 1.0 / 120.0;
    let p = p * r + 1.0 / 24.0;
    let p = p * r + 1.0 / 6.0;
    let p = p * r + 0.5;
    let p = p * r + 1.0;
    let p = p * r + 1.0;
    // 2^n: n + 127 in the exponent field.
    let k = t.to_bits().wrapping_sub(SHIFTER.to_bits());
    let scale = f32::from_bits(k.wrapping_add(127) << 23);
    let y = p * scale;
    let y = if x > EXP_HI { f32::INFINITY } else { y };
    let y = if x < EXP_LO { 0.0 } else { y };
    // Comparisons with NaN are false, so NaN reaches here as the clamp's bound.
    if x.is_nan() {
        x
    } else {
        y
    }
}

/// Hyperbolic tangent through [`exp`]: `1 - 2 / (1 + e^{2x})`. Absolute error
/// below 3e-7; both tails saturate exactly to ±1.
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    1.0 - 2.0 / (1.0 + exp(2.0 * x))
}

/// The error function in f32 through [`exp`]: Abramowitz & Stegun 7.1.26,
/// `1 - (a1 t + … + a5 t⁵) e^{-x²}` with `t = 1 / (1 + p|x|)`, odd in `x`.
/// Absolute error below 4e-7: the formula's 1.5e-7 plus f32 rounding (the
/// tests check it against the f64 series); the Maclaurin series near 0, where
/// the formula's subtraction cancels.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_74,
        1.421_413_7,
        -1.453_152_1,
        1.061_405_4,
    ];
    let ax = x.abs();
    let t = 1.0 / (1.0 + P * ax);
    let poly = ((((A[4] * t + A[3]) * t + A[2]) * t + A[1]) * t + A[0]) * t;
    let y = 1.0 - poly * exp(-ax * ax);
    let y = if x < 0.0 { -y } else { y };
    // Near 0 the subtraction above cancels: there the series to x⁷ (next
    // term below 2e-8 for |x| < 0.25).
    let x2 = x * x;
    let series = std::f32::consts::FRAC_2_SQRT_PI
        * x
        * (1.0 + x2 * (-1.0 / 3.0 + x2 * (0.1 + x2 * (-1.0 / 42.0))));
    if ax < 0.25 {
        series
    } else {
        y
    }
}

/// The logistic sigmoid `1 / (1 + e^{-x})` through [`exp`].
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// `Σ f(x_i)` in f64, computed as eight independent partial sums in the
/// element type over blocks of 256 (so the loop vectorises: one running sum
/// cannot be reordered by the compiler), the blocks added in f64 (so the
/// rounding error does not grow with the length).
#[inline(always)]
pub fn sum_map<T: WithDType>(x: &[T], f: impl Fn(T) -> T) -> f64 {
    let mut total = 0f64;
    for block in x.chunks(256) {
        let mut acc = [T::zero(); 8];
        let lanes = block.chunks_exact(8);
        let mut s = T::zero();
        for &v in lanes.remainder() {
            s += f(v);
        }
        for c in lanes {
            for l in 0..8 {
                acc[l] += f(c[l]);
            }
        }
        for a in acc {
            s += a;
        }
        total += s.to_f64();
    }
    total
}

/// `Σ x_i` in f64 (see [`sum_map`]).
#[inline(always)]
pub fn sum<T: WithDType>(x: &[T]) -> f64 {
    sum_map(x, |v| v)
}

/// `(Σ f(a_i, b_i).0, Σ f(a_i, b_i).1)` in f64 over two slices of one length,
/// eight independent partial sums per total: a single running f64 sum is a chain
/// the compiler may not reorder, so it ran one add per four cycles, unvectorised
/// (batch-norm statistics and gradient sums were 6 % of a batch-norm CNN step, a
/// convolution's bias gradient 4 % of a LeNet step on one thread).
/// The order is fixed by the lanes, so every SIMD level gives the same bits.
#[inline(always)]
pub fn lane_sums<T: WithDType>(a: &[T], b: &[T], f: impl Fn(f64, f64) -> (f64, f64)) -> (f64, f64) {
    let (mut s0, mut s1) = ([0f64; 8], [0f64; 8]);
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let (mut t0, mut t1) = (0f64, 0f64);
    for (x, y) in ac.remainder().iter().zip(bc.remainder()) {
        let (u, v) = f(x.to_f64(), y.to_f64());
        t0 += u;
        t1 += v;
    }
    for (x, y) in ac.zip(bc) {
        for l in 0..8 {
            let (u, v) = f(x[l].to_f64(), y[l].to_f64());
            s0[l] += u;
            s1[l] += v;
        }
    }
    for l in 0..8 {
        t0 += s0[l];
        t1 += s1[l];
    }
    (t0, t1)
}

/// `Σ x_i` in f64 with eight f64 lanes (see [`lane_sums`]): the f64 sum of
/// [`sum`], without its f32 partial sums.
#[inline(always)]
pub fn sum_f64<T: WithDType>(x: &[T]) -> f64 {
    dot_sums(x, x).0
}

/// `(Σ b_i, Σ a_i·b_i)` in f64 over two slices of one length: [`lane_sums`]
/// with `f(a, b) = (b, a·b)`, the same bits (remainder first, then eight f64
/// lanes, the lanes in order; a product then a sum, never fused). For f32 on
/// AVX-512 or AVX2 (the level [`super::simd::level`] runs at) the lanes are
/// written with intrinsics: the compiler kept the generic loop scalar (one
/// f32-to-f64 conversion and one 2-lane add at a time), and the batch-norm
/// gradient sums built on it were 15 % of the batch-norm CNN's step on one
/// thread. Used for the batch-norm statistics (`a = b = x`: `Σx`, `Σx²`) and
/// gradient sums (`Σg`, `Σg·x`), and the convolutions' bias gradients.
#[inline(always)]
pub fn dot_sums<T: WithDType>(a: &[T], b: &[T]) -> (f64, f64) {
    #[cfg(target_arch = "x86_64")]
    if T::DTYPE == candle_core::DType::F32 {
        use super::simd::{level, Level};
        let n = a.len().min(b.len());
        // SAFETY: T is f32 (its dtype says so), so these are the same values
        // as f32 slices of the same lengths.
        let (a, b) = unsafe {
            (
                std::slice::from_raw_parts(a.as_ptr().cast::<f32>(), n),
                std::slice::from_raw_parts(b.as_ptr().cast::<f32>(), n),
            )
        };
        match level() {
            // SAFETY: `level` never exceeds what this CPU has.
            Level::Avx512 => return unsafe { x86::dot_sums_avx512(a, b) },
            // SAFETY: as above.
            Level::Avx2 => return unsafe { x86::dot_sums_avx2(a, b) },
            Level::Portable => {}
        }
    }
    lane_sums(a, b, |x, y| (y, x * y))
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// The remainder's sums (the entries past the last whole 8), first, as
    /// [`super::lane_sums`] takes them.
    fn remainder(a: &[f32], b: &[f32], whole: usize) -> (f64, f64) {
        let (mut t0, mut t1) = (0f64, 0f64);
        for (x, y) in a[whole..].iter().zip(&b[whole..]) {
            let (x, y) = (*x as f64, *y as f64);
            t0 += y;
            t1 += x * y;
        }
        (t0, t1)
    }

    /// The lanes added to the remainder's sums in lane order.
    fn finish((mut t0, mut t1): (f64, f64), l0: [f64; 8], l1: [f64; 8]) -> (f64, f64) {
        for l in 0..8 {
            t0 += l0[l];
            t1 += l1[l];
        }
        (t0, t1)
    }

    /// [`super::dot_sums`] with the eight lanes in one AVX-512 register each.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F; `a` and `b` of one length.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn dot_sums_avx512(a: &[f32], b: &[f32]) -> (f64, f64) {
        let whole = a.len() / 8 * 8;
        let t = remainder(a, b, whole);
        let (mut s0, mut s1) = (_mm512_setzero_pd(), _mm512_setzero_pd());
        for i in (0..whole).step_by(8) {
            // SAFETY: i + 8 <= whole <= the length of both slices.
            let (x, y) = unsafe {
                (
                    _mm512_cvtps_pd(_mm256_loadu_ps(a.as_ptr().add(i))),
                    _mm512_cvtps_pd(_mm256_loadu_ps(b.as_ptr().add(i))),
                )
            };
            s0 = _mm512_add_pd(s0, y);
            s1 = _mm512_add_pd(s1, _mm512_mul_pd(x, y));
        }
        let (mut l0, mut l1) = ([0f64; 8], [0f64; 8]);
        // SAFETY: each array holds the register's eight f64.
        unsafe {
            _mm512_storeu_pd(l0.as_mut_ptr(), s0);
            _mm512_storeu_pd(l1.as_mut_ptr(), s1);
        }
        finish(t, l0, l1)
    }

    /// [`super::dot_sums`] with lanes 0-3 and 4-7 in two AVX registers each.
    ///
    /// # Safety
    /// The CPU must have AVX2; `a` and `b` of one length.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn dot_sums_avx2(a: &[f32], b: &[f32]) -> (f64, f64) {
        let whole = a.len() / 8 * 8;
        let t = remainder(a, b, whole);
        let z = _mm256_setzero_pd();
        let (mut s0, mut s1) = ([z, z], [z, z]);
        for i in (0..whole).step_by(8) {
            for h in 0..2 {
                // SAFETY: i + 4·h + 4 <= whole <= the length of both slices.
                let (x, y) = unsafe {
                    (
                        _mm256_cvtps_pd(_mm_loadu_ps(a.as_ptr().add(i + 4 * h))),
                        _mm256_cvtps_pd(_mm_loadu_ps(b.as_ptr().add(i + 4 * h))),
                    )
                };
                s0[h] = _mm256_add_pd(s0[h], y);
                s1[h] = _mm256_add_pd(s1[h], _mm256_mul_pd(x, y));
            }
        }
        let (mut l0, mut l1) = ([0f64; 8], [0f64; 8]);
        // SAFETY: each half of an array holds one register's four f64.
        unsafe {
            for h in 0..2 {
                _mm256_storeu_pd(l0.as_mut_ptr().add(4 * h), s0[h]);
                _mm256_storeu_pd(l1.as_mut_ptr().add(4 * h), s1[h]);
            }
        }
        finish(t, l0, l1)
    }
}

/// Maximum of a slice (negative infinity if empty, NaN if any is NaN), eight
/// lanes at a time.
#[inline(always)]
// `v != v` is the NaN test WithDType allows (no `is_nan`), and it vectorises.
#[allow(clippy::eq_op)]
pub fn max<T: WithDType>(x: &[T]) -> T {
    let lo = T::from_f64(f64::NEG_INFINITY);
    let mut acc = [lo; 8];
    let lanes = x.chunks_exact(8);
    let mut m = lo;
    let mut nan = false;
    for &v in lanes.remainder() {
        nan |= v != v;
        m = if v > m { v } else { m };
    }
    for c in lanes {
        for l in 0..8 {
            nan |= c[l] != c[l];
            acc[l] = if c[l] > acc[l] { c[l] } else { acc[l] };
        }
    }
    for v in acc {
        m = if v > m { v } else { m };
    }
    if nan {
        T::from_f64(f64::NAN)
    } else {
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(a: f32, b: f64) -> f64 {
        if b == 0.0 {
            a.abs() as f64
        } else {
            ((a as f64 - b) / b).abs()
        }
    }

    #[test]
    fn exp_matches_f64_exp_within_a_few_ulp() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            worst = worst.max(rel(exp(x), (x as f64).exp()));
            x += 0.001_37;
        }
        for x in [0.0f32, 1e-8, -1e-8, 0.5, -0.5, 1.0, 10.0, -10.0] {
            worst = worst.max(rel(exp(x), (x as f64).exp()));
        }
        assert!(worst < 3e-7, "worst relative error {worst}");
    }

    /// erf by its Maclaurin series in f64 (accurate to ~1e-13 for |x| ≤ 3).
    fn erf_series(x: f64) -> f64 {
        let (mut term, mut sum, mut n) = (x, x, 0.0);
        while term.abs() > 1e-17 {
            n += 1.0;
            term *= -x * x / n;
            sum += term / (2.0 * n + 1.0);
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn erf_matches_its_series_within_4e_7() {
        let mut x = -3.0f32;
        while x <= 3.0 {
            let d = erf(x) as f64 - erf_series(x as f64);
            assert!(d.abs() < 4e-7, "erf({x}) off by {d}");
            x += 0.0037;
        }
        for x in [4.0f32, 6.0, 30.0, f32::INFINITY] {
            assert!(
                (erf(x) - 1.0).abs() < 2e-7 && (erf(-x) + 1.0).abs() < 2e-7,
                "{x}"
            );
        }
        assert_eq!(erf(0.0), 0.0);
    }

    #[test]
    fn exp_edges() {
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-1000.0), 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(1000.0), f32::INFINITY);
        assert_eq!(exp(f32::INFINITY), f32::INFINITY);
        assert!(exp(f32::NAN).is_nan());
    }

    #[test]
    fn tanh_and_sigmoid_match_f64() {
        let mut x = -30.0f32;
        while x < 30.0 {
            let t = tanh(x) as f64 - (x as f64).tanh();
            let s = sigmoid(x) as f64 - 1.0 / (1.0 + (-(x as f64)).exp());
            assert!(t.abs() < 3e-7, "tanh({x}) off by {t}");
            assert!(s.abs() < 3e-7, "sigmoid({x}) off by {s}");
            x += 0.0071;
        }
        assert_eq!(tanh(50.0), 1.0);
        assert_eq!(tanh(-50.0), -1.0);
        assert_eq!(sigmoid(-200.0), 0.0);
        assert_eq!(sigmoid(200.0), 1.0);
        assert!(tanh(f32::NAN).is_nan() && sigmoid(f32::NAN).is_nan());
    }

    #[test]
    fn sum_and_max_over_odd_lengths() {
        for n in [1usize, 7, 8, 9, 31, 1000] {
            let x: Vec<f32> = (0..n).map(|i| ((i * 37 % 101) as f32) - 50.0).collect();
            let s: f64 = x.iter().map(|&v| v as f64).sum();
            assert!((sum(&x) - s).abs() < 1e-3, "sum over {n}");
            let sq: f64 = x.iter().map(|&v| (v * v) as f64).sum();
            assert!((sum_map(&x, |v| v * v) - sq).abs() < 1e-6 * sq.max(1.0));
            let m = x.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            assert_eq!(max(&x), m, "max over {n}");
        }
        assert!(max(&[1.0, f32::NAN, 2.0]).is_nan());
        assert!(max(&[1.0f64; 9]
            .iter()
            .chain([f64::NAN].iter())
            .cloned()
            .collect::<Vec<_>>())
        .is_nan());
        assert_eq!(max::<f32>(&[]), f32::NEG_INFINITY);
    }
}
