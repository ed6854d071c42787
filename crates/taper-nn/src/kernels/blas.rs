//! Large f32 matrix products through a system OpenBLAS, loaded at run time.
//!
//! The `gemm` crate, which every kernel here and candle's matmul use, runs its AVX2
//! micro-kernels on AVX-512 CPUs (its AVX-512 ones need a nightly feature): on the
//! project's Intel Xeon it reaches about a third of MKL's rate, while OpenBLAS with
//! its SkylakeX/Cooperlake kernels comes within a few percent of MKL
//! (`../shared/notes/gemm-on-these-cpus.md`). On AVX2-only CPUs the `gemm` crate
//! was measured at parity with PyTorch, so there the crate stays the default.
//!
//! The library is opened with `dlopen`, not linked, so Taper builds and runs where
//! it is absent (`tools/install_blas.sh` installs Debian's `libopenblas0-pthread`).
//! `TAPER_BLAS` chooses: unset or `auto` (OpenBLAS on AVX-512 CPUs when found),
//! `openblas` (on any CPU when found), `off`, or the path of a `libopenblas.so`.
//!
//! Debian's OpenBLAS 0.3.21 does not recognise recent Xeons and falls back to SSE3
//! kernels, 5x slower; so unless `OPENBLAS_CORETYPE` is already set, the core type
//! is chosen from the CPU's features before the library is loaded (it reads the
//! variable once, at load).
//!
//! Products are cut into tiles of at most [`TILE_MAX`] x [`TILE_MAX`] output values,
//! balanced and chosen from the shape alone, each one single-threaded OpenBLAS call,
//! spread over rayon's threads: every output value is computed by the same call
//! whatever the thread count, so results are bit-identical on 1 or many threads, as
//! the `gemm` crate's path is. Each call packs its operands again, so tiles are kept
//! large: with 128-row tiles, repacking the weights took a third as long as the
//! products themselves in the sentence encoder.

use rayon::prelude::*;
use std::ffi::{c_char, c_int, CStr};
use std::sync::OnceLock;

/// Largest tile side, in output rows or columns (see the module docs).
pub const TILE_MAX: usize = 512;
/// Products smaller than this many multiply-adds stay on the `gemm` crate, whose
/// per-call cost is lower.
pub const MIN_WORK: usize = 1 << 15;

const ROW_MAJOR: c_int = 101;
const NO_TRANS: c_int = 111;
const TRANS: c_int = 112;

type Sgemm = unsafe extern "C" fn(
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    f32,
    *const f32,
    c_int,
    *const f32,
    c_int,
    f32,
    *mut f32,
    c_int,
);

/// A loaded OpenBLAS.
pub struct Blas {
    sgemm: Sgemm,
    description: String,
    // Keeps the library mapped for as long as `sgemm` may be called (forever: the
    // value lives in a static).
    _lib: libloading::Library,
}

impl std::fmt::Debug for Blas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.description)
    }
}

static BLAS: OnceLock<Option<Blas>> = OnceLock::new();

/// The OpenBLAS in use for large f32 products, if any (loaded on first call).
pub fn blas() -> Option<&'static Blas> {
    BLAS.get_or_init(load).as_ref()
}

/// One line naming the f32 GEMM in use, for logs and benchmark records: e.g.
/// `OpenBLAS 0.3.21 (Cooperlake kernels)` or `gemm crate`.
pub fn backend() -> String {
    match blas() {
        Some(b) => b.description.clone(),
        None => "gemm crate".into(),
    }
}

fn cpu_has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// OpenBLAS's name for this CPU's best sgemm kernels, or `None` to let it detect.
fn core_type() -> Option<&'static str> {
    #[cfg(target_arch = "x86_64")]
    {
        if cpu_has_avx512() {
            // CPUID leaf 7, sub-leaf 1, EAX bit 5: AVX512_BF16, which Cooper Lake and
            // later Xeons have.
            // SAFETY: CPUID exists on every x86-64 CPU, and leaf 7 on every CPU that
            // reports AVX-512 (detected above). (Safe to call from Rust 1.87 on; the
            // block keeps the crate building on its minimum 1.85.)
            #[allow(unused_unsafe)]
            let bf16 = unsafe { std::arch::x86_64::__cpuid_count(7, 1) }.eax & (1 << 5) != 0;
            return Some(if bf16 { "Cooperlake" } else { "SkylakeX" });
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            return Some("Haswell");
        }
    }
    None
}

fn load() -> Option<Blas> {
    let choice = std::env::var("TAPER_BLAS").unwrap_or_default();
    let path = match choice.as_str() {
        "off" | "0" | "none" => return None,
        "" | "auto" if !cpu_has_avx512() => return None,
        "" | "auto" | "openblas" | "on" | "1" => "libopenblas.so.0",
        other => other,
    };
    if std::env::var_os("OPENBLAS_CORETYPE").is_none() {
        if let Some(core) = core_type() {
            std::env::set_var("OPENBLAS_CORETYPE", core);
        }
    }
    // Tiles are the parallelism; OpenBLAS's own pool would only oversubscribe.
    if std::env::var_os("OPENBLAS_NUM_THREADS").is_none() {
        std::env::set_var("OPENBLAS_NUM_THREADS", "1");
    }
    // SAFETY: loading OpenBLAS runs its initialisers, which only read the
    // environment and the CPU and allocate their buffers.
    let lib = match unsafe { libloading::Library::new(path) } {
        Ok(lib) => lib,
        Err(e) => {
            if !choice.is_empty() && choice != "auto" {
                eprintln!("TAPER_BLAS={choice}: cannot load {path} ({e}); using the gemm crate");
            }
            return None;
        }
    };
    // SAFETY: the symbol types are the CBLAS and OpenBLAS C signatures (32-bit
    // integers, as Debian's non-ILP64 build uses).
    unsafe {
        let sgemm: Sgemm = *lib.get::<Sgemm>(b"cblas_sgemm\0").ok()?;
        if let Ok(set) = lib.get::<unsafe extern "C" fn(c_int)>(b"openblas_set_num_threads\0") {
            set(1);
        }
        let text = |name: &[u8]| -> Option<String> {
            let f = lib
                .get::<unsafe extern "C" fn() -> *const c_char>(name)
                .ok()?;
            let p = f();
            (!p.is_null()).then(|| CStr::from_ptr(p).to_string_lossy().trim().to_string())
        };
        let version = text(b"openblas_get_config\0")
            .and_then(|c| c.split_whitespace().nth(1).map(str::to_string))
            .unwrap_or_default();
        let core = text(b"openblas_get_corename\0").unwrap_or_else(|| "?".into());
        let description = format!("OpenBLAS {version} ({core} kernels)").replace("  (", " (");
        Some(Blas {
            sgemm,
            description,
            _lib: lib,
        })
    }
}

/// How CBLAS reads one operand stored with row step `rs` and column step `cs`
/// as a `rows x cols` matrix: (transpose flag, leading dimension), or `None` when
/// neither step is 1.
fn operand(rows: usize, cols: usize, rs: usize, cs: usize) -> Option<(c_int, usize)> {
    if cs == 1 && (rows <= 1 || rs >= cols) {
        Some((NO_TRANS, if rows <= 1 { cols.max(1) } else { rs }))
    } else if rs == 1 && (cols <= 1 || cs >= rows) {
        Some((TRANS, if cols <= 1 { rows.max(1) } else { cs }))
    } else {
        None
    }
}

/// `len` cut into balanced pieces of at most [`TILE_MAX`], multiples of 16 (the
/// AVX-512 micro-kernels' width): (pieces, piece length).
fn split(len: usize) -> (usize, usize) {
    let pieces = len.div_ceil(TILE_MAX).max(1);
    let piece = len.div_ceil(pieces).next_multiple_of(16);
    (len.div_ceil(piece).max(1), piece)
}

/// Tiles of an `m x n` output with inner dimension `k`: at most [`TILE_MAX`] a
/// side, then halved (the longer side first) while there are fewer than
/// `min_tiles` ([`MIN_TILES`], or 1 in [`whole_products`]), each keeps at least [`MIN_TILE_WORK`] multiply-adds and
/// no side falls under 64: the sentence encoder's products (a few hundred rows)
/// were otherwise one tile, one thread. From the shape alone, never the thread
/// count, so results do not depend on it.
fn tiles(m: usize, n: usize, k: usize, min_tiles: usize) -> ((usize, usize), (usize, usize)) {
    let (mut tm, mut tn) = (split(m), split(n));
    while tm.0 * tn.0 < min_tiles && tm.1 * tn.1 * k >= 2 * MIN_TILE_WORK {
        let halve = |(_, piece): (usize, usize), len: usize| {
            let piece = (piece / 2).next_multiple_of(16);
            (len.div_ceil(piece), piece)
        };
        if tm.1 >= tn.1 && tm.1 >= 128 {
            tm = halve(tm, m);
        } else if tn.1 >= 128 {
            tn = halve(tn, n);
        } else {
            break;
        }
    }
    (tm, tn)
}

/// Tiles a product is cut into at least, where it is large enough (see [`tiles`]).
pub const MIN_TILES: usize = 4;
/// Fewest multiply-adds in a tile cut for parallelism.
pub const MIN_TILE_WORK: usize = 1 << 20;

thread_local! {
    /// Set inside [`whole_products`].
    static WHOLE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with the products this thread starts cut by size only ([`TILE_MAX`]),
/// not into [`MIN_TILES`] for the other threads: for callers that keep every
/// thread busy with work of their own (the sentence encoder runs one batch per
/// thread), where the extra tiles only pack the operands again (14 % of the
/// encoder's time went to packing with them). What is computed inside still
/// depends on shapes alone, never on the thread count. Nested calls keep the
/// setting; it ends with `f`. Work another rayon job leaves for this thread while
/// it waits inside `f` runs under the setting too, which changes how products
/// are rounded there, not their values' correctness.
pub fn whole_products<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            WHOLE.with(|w| w.set(self.0));
        }
    }
    let _restore = Restore(WHOLE.with(|w| w.replace(true)));
    f()
}

struct SendPtr(*mut f32);
// SAFETY: the pointer is only used to write tiles that do not overlap (see `sgemm`).
unsafe impl Sync for SendPtr {}
// SAFETY: as for `Sync`: each thread writes only its own tiles.
unsafe impl Send for SendPtr {}
impl SendPtr {
    // A method, so closures capture the wrapper rather than the raw field.
    fn get(&self) -> *mut f32 {
        self.0
    }
}

/// `dst (m x n, rows dst_rs apart) = (accumulate ? dst : 0) + a · b` with OpenBLAS,
/// `a` (m x k) at `a_ptr` with steps `(a_rs, a_cs)` and `b` (k x n) likewise.
/// Returns `false`, computing nothing, where OpenBLAS is not in use or cannot take
/// the operands (neither step 1, a dimension over `i32`); the caller then uses the
/// `gemm` crate.
///
/// # Safety
/// Every index the shapes and steps reach must lie inside the operands' and
/// `dst`'s allocations, and `dst` must alias neither operand.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn sgemm(
    dst: *mut f32,
    dst_rs: usize,
    a: (*const f32, usize, usize),
    b: (*const f32, usize, usize),
    (m, n, k): (usize, usize, usize),
    accumulate: bool,
    parallel: bool,
) -> bool {
    if m * n * k < MIN_WORK {
        return false;
    }
    let Some(blas) = blas() else { return false };
    let fits = |x: usize| x <= i32::MAX as usize;
    let (Some((ta, lda)), Some((tb, ldb))) = (operand(m, k, a.1, a.2), operand(k, n, b.1, b.2))
    else {
        return false;
    };
    if ![m, n, k, lda, ldb, dst_rs].into_iter().all(fits) {
        return false;
    }
    let beta = if accumulate { 1.0 } else { 0.0 };
    let min_tiles = if WHOLE.with(|w| w.get()) {
        1
    } else {
        MIN_TILES
    };
    let ((tiles_m, tile_m), (tiles_n, tile_n)) = tiles(m, n, k, min_tiles);
    let out = SendPtr(dst);
    let (ap, bp) = (a.0 as usize, b.0 as usize);
    let tile = |t: usize| {
        let (i0, j0) = ((t / tiles_n) * tile_m, (t % tiles_n) * tile_n);
        let (mt, nt) = (tile_m.min(m - i0), tile_n.min(n - j0));
        // Row i of `a` starts i * a_rs values in, column j of `b` j * b_cs.
        let a0 = (ap as *const f32).wrapping_add(i0 * a.1);
        let b0 = (bp as *const f32).wrapping_add(j0 * b.2);
        let d0 = out.get().wrapping_add(i0 * dst_rs + j0);
        // SAFETY: the tile lies inside the product the caller vouched for, and the
        // tiles partition `dst`, so no two calls write the same value.
        unsafe {
            (blas.sgemm)(
                ROW_MAJOR,
                ta,
                tb,
                mt as c_int,
                nt as c_int,
                k as c_int,
                1.0,
                a0,
                lda as c_int,
                b0,
                ldb as c_int,
                beta,
                d0,
                dst_rs as c_int,
            )
        }
    };
    let count = tiles_m * tiles_n;
    if parallel && count > 1 {
        (0..count).into_par_iter().for_each(tile);
    } else {
        (0..count).for_each(tile);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_are_balanced_and_cover_the_output() {
        assert_eq!(split(576), (2, 288));
        assert_eq!(split(1536), (3, 512));
        assert_eq!(split(384), (1, 384));
        assert_eq!(split(513), (2, 272));
        assert_eq!(split(1), (1, 16));
        for len in 1..3000 {
            let (pieces, piece) = split(len);
            assert!(pieces * piece >= len && (pieces - 1) * piece < len, "{len}");
            assert!(piece <= TILE_MAX, "{len}");
        }
    }

    #[test]
    fn whole_products_are_cut_by_size_only_and_the_setting_ends_with_the_call() {
        assert_eq!(tiles(300, 384, 384, 1), ((1, 304), (1, 384)));
        assert_eq!(tiles(2048, 700, 512, 1), ((4, 512), (2, 352)));
        let inside = whole_products(|| {
            whole_products(|| WHOLE.with(|w| w.get())) && WHOLE.with(|w| w.get())
        });
        assert!(inside);
        assert!(!WHOLE.with(|w| w.get()));
    }

    #[test]
    fn small_outputs_are_cut_for_threads_large_ones_by_size() {
        // The encoder's attention projection: 300 rows, 384 columns.
        assert_eq!(tiles(300, 384, 384, MIN_TILES), ((2, 160), (2, 192)));
        assert_eq!(tiles(2048, 2048, 512, MIN_TILES), ((4, 512), (4, 512)));
        // Too little work to cut.
        assert_eq!(tiles(64, 64, 64, MIN_TILES), ((1, 64), (1, 64)));
        for (m, n, k) in [
            (300, 384, 384),
            (7, 900, 1000),
            (1, 16384, 384),
            (1000, 3, 50),
        ] {
            let ((a, ta), (b, tb)) = tiles(m, n, k, MIN_TILES);
            assert!(a * ta >= m && (a - 1) * ta < m && b * tb >= n && (b - 1) * tb < n);
        }
    }

    #[test]
    fn operands_map_to_cblas_flags() {
        assert_eq!(operand(4, 3, 3, 1), Some((NO_TRANS, 3)));
        assert_eq!(operand(4, 3, 5, 1), Some((NO_TRANS, 5)));
        assert_eq!(operand(4, 3, 1, 4), Some((TRANS, 4)));
        assert_eq!(operand(1, 3, 0, 1), Some((NO_TRANS, 3)));
        assert_eq!(operand(4, 1, 1, 0), Some((TRANS, 4)));
        assert_eq!(operand(4, 3, 2, 7), None);
        // A row step shorter than a row would overlap rows: not a CBLAS matrix.
        assert_eq!(operand(4, 3, 2, 1), None);
    }
}
