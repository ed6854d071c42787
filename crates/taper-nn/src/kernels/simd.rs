//! Run-time choice of the vector instructions the kernels' loops are compiled for.
//!
//! The crate is built for baseline x86-64 (SSE2, four f32 lanes) so that one binary
//! runs on every machine; on that target the element-wise loops here (GELU's erf,
//! softmax's exp, layer norm) ran at a quarter of what an AVX-512 core can do, and
//! GELU alone was an eighth of the sentence encoder's time on the project's Intel
//! Xeon. [`dispatch`] runs a closure inside a copy of a function compiled with AVX2
//! and FMA, or with AVX-512, chosen once from `is_x86_feature_detected!`; the
//! compiler inlines the closure there and vectorises its loops at that width.
//!
//! Every level gives bit-identical results: enabling FMA in the target features
//! does not let the compiler fuse a multiply and an add (Rust never contracts
//! floating-point expressions), and the loops' reductions are written with explicit
//! lanes (see [`super::vmath::sum_map`]), which a wider vector does not reorder. The
//! tests in `tests/simd_levels.rs` check that on every kernel, on every level the
//! CPU has.
//!
//! `TAPER_SIMD=portable|avx2|avx512` caps the level (read once, at first use), for
//! A/B measurements; [`set_level`] does the same from code.

use std::sync::atomic::{AtomicU8, Ordering};

/// A set of vector instructions the kernels can be compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// The build's own target (SSE2 on x86-64; whatever the target has elsewhere).
    Portable = 1,
    /// AVX2 and FMA (x86-64 since Haswell and Zen).
    Avx2 = 2,
    /// AVX-512 F, BW, DQ and VL, with AVX2 and FMA (Skylake-SP and later Xeons, Zen 4).
    Avx512 = 3,
}

impl Level {
    /// Lower-case name, as `TAPER_SIMD` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Level::Portable => "portable",
            Level::Avx2 => "avx2",
            Level::Avx512 => "avx512",
        }
    }

    fn from_u8(v: u8) -> Option<Level> {
        match v {
            1 => Some(Level::Portable),
            2 => Some(Level::Avx2),
            3 => Some(Level::Avx512),
            _ => None,
        }
    }
}

/// The widest level this CPU runs.
pub fn detected() -> Level {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512dq")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
        {
            return Level::Avx512;
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            return Level::Avx2;
        }
    }
    Level::Portable
}

/// The levels this CPU runs, narrowest first (always starts with `Portable`).
pub fn available() -> Vec<Level> {
    let top = detected();
    [Level::Portable, Level::Avx2, Level::Avx512]
        .into_iter()
        .filter(|&l| l <= top)
        .collect()
}

/// 0: not chosen yet.
static LEVEL: AtomicU8 = AtomicU8::new(0);

/// The level [`dispatch`] runs at: the detected one, capped by `TAPER_SIMD` or
/// [`set_level`].
#[inline]
pub fn level() -> Level {
    if let Some(l) = Level::from_u8(LEVEL.load(Ordering::Relaxed)) {
        return l;
    }
    let top = detected();
    let chosen = match std::env::var("TAPER_SIMD").ok().as_deref() {
        Some("portable") => Level::Portable,
        Some("avx2") => Level::Avx2.min(top),
        _ => top,
    };
    LEVEL.store(chosen as u8, Ordering::Relaxed);
    chosen
}

/// Runs the kernels at `level` from now on, in every thread.
///
/// # Errors
/// The CPU lacks `level`'s instructions (the widest it has is returned).
pub fn set_level(level: Level) -> Result<(), Level> {
    let top = detected();
    if level > top {
        return Err(top);
    }
    LEVEL.store(level as u8, Ordering::Relaxed);
    Ok(())
}

/// Runs `f` compiled for [`level`]'s instructions. `f` should be a loop over
/// slices whose calls are `#[inline]` (the `vmath` functions are): what is not
/// inlined into it runs at the baseline width. Costs one relaxed load and a
/// branch, so call it per row or per chunk, not per element.
#[inline(always)]
pub fn dispatch<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        match level() {
            // SAFETY: `level` never exceeds what `detected` found on this CPU.
            Level::Avx512 => return unsafe { x86::avx512(f) },
            // SAFETY: as above.
            Level::Avx2 => return unsafe { x86::avx2(f) },
            Level::Portable => {}
        }
    }
    f()
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    /// # Safety
    /// The CPU must have AVX-512 F/BW/DQ/VL, AVX2 and FMA.
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,bmi1,bmi2")]
    pub(super) unsafe fn avx512<R>(f: impl FnOnce() -> R) -> R {
        f()
    }

    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma,bmi1,bmi2")]
    pub(super) unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
        f()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_ordered_and_portable_is_always_there() {
        let a = available();
        assert_eq!(a[0], Level::Portable);
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(*a.last().unwrap(), detected());
    }

    #[test]
    fn a_level_above_the_cpu_is_refused() {
        let top = detected();
        if top < Level::Avx512 {
            assert_eq!(set_level(Level::Avx512), Err(top));
        }
        assert_eq!(dispatch(|| 2 + 2), 4);
    }
}
