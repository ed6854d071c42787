//! HNSW crates compared on real sentence embeddings (issue 19; the results and
//! the commands are in docs/BENCHMARKS-notes.md).
//!
//! hnsw-compare EMB.jsonl exact
//! hnsw-compare EMB.jsonl hnsw_rs   M,EFC[;M,EFC...] EF[,EF...]
//! hnsw-compare EMB.jsonl usearch   M,EFC[;...]      EF[,...]
//! hnsw-compare EMB.jsonl instant   EFC[;...]        EF[,...]   (M is fixed at 32 by the crate)
//!
//! EMB.jsonl: `semantic_search --embed` output. The first N-1000 vectors are
//! indexed, the last 1000 are the queries. Ground truth: exact top-10 by dot
//! product (vectors normalised on loading). Builds run on 2 threads; queries
//! one at a time on the main thread (p50 of 1000). Caches (vectors, ground
//! truth), graph files and results.tsv go to $HNSW_WORK (default /tmp/hnsw).

// Without a crate feature only the exact baseline is compiled in.
#![cfg_attr(
    not(any(feature = "hnsw_rs", feature = "usearch", feature = "instant")),
    allow(dead_code, unused_variables)
)]

use rayon::prelude::*;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

const K: usize = 10;
const NQ: usize = 1000;

fn work(name: &str) -> PathBuf {
    PathBuf::from(std::env::var("HNSW_WORK").unwrap_or_else(|_| "/tmp/hnsw".into())).join(name)
}

fn load(path: &Path) -> (Vec<f32>, usize) {
    let cache = work("emb.f32");
    if let Ok(bytes) = std::fs::read(&cache) {
        let dim = u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
        let v: Vec<f32> = bytes[4..]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        return (v, dim);
    }
    let f = std::io::BufReader::new(std::fs::File::open(path).expect("embeddings"));
    let mut v = Vec::new();
    let mut dim = 0;
    for line in f.lines() {
        let line = line.unwrap();
        let j: serde_json::Value = serde_json::from_str(&line).unwrap();
        let e = j["embedding"].as_array().unwrap();
        dim = e.len();
        let row: Vec<f32> = e.iter().map(|x| x.as_f64().unwrap() as f32).collect();
        let n = row.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        v.extend(row.iter().map(|x| x / n));
    }
    let mut out = (dim as u32).to_le_bytes().to_vec();
    for x in &v {
        out.extend_from_slice(&x.to_le_bytes());
    }
    std::fs::write(&cache, out).unwrap();
    (v, dim)
}

/// # Safety
/// The CPU must have AVX2 and FMA; `a` and `b` of the same length.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for (j, s) in acc.iter_mut().enumerate() {
            // SAFETY: i + 8j + 8 <= i + 32 <= n, within both slices.
            let x = _mm256_loadu_ps(a.as_ptr().add(i + 8 * j));
            let y = _mm256_loadu_ps(b.as_ptr().add(i + 8 * j));
            *s = _mm256_fmadd_ps(x, y, *s);
        }
        i += 32;
    }
    let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut lanes = [0f32; 8];
    // SAFETY: `lanes` holds the 8 floats stored.
    _mm256_storeu_ps(lanes.as_mut_ptr(), s);
    let mut t: f32 = lanes.iter().sum();
    while i < n {
        t += a[i] * b[i];
        i += 1;
    }
    t
}

/// Dot product, AVX2+FMA when the CPU has it (the crates dispatch at run time too).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: both features checked just above.
        return unsafe { dot_avx2(a, b) };
    }
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn exact_top(base: &[f32], dim: usize, q: &[f32]) -> Vec<u32> {
    let mut best: Vec<(f32, u32)> = Vec::with_capacity(K + 1);
    for (i, row) in base.chunks_exact(dim).enumerate() {
        let s = dot(row, q);
        if best.len() == K && s <= best[K - 1].0 {
            continue;
        }
        let pos = best.partition_point(|b| b.0 >= s);
        best.insert(pos, (s, i as u32));
        best.truncate(K);
    }
    best.into_iter().map(|b| b.1).collect()
}

struct Data {
    base: Vec<f32>,
    queries: Vec<f32>,
    dim: usize,
    truth: Vec<Vec<u32>>,
}

impl Data {
    fn n(&self) -> usize {
        self.base.len() / self.dim
    }
    fn row(&self, i: usize) -> &[f32] {
        &self.base[i * self.dim..(i + 1) * self.dim]
    }
    fn query(&self, i: usize) -> &[f32] {
        &self.queries[i * self.dim..(i + 1) * self.dim]
    }
}

fn p50(mut t: Vec<f64>) -> f64 {
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

/// Recall@10 and p50 latency (ms) of `search` over the queries, one at a time.
fn evaluate(d: &Data, mut search: impl FnMut(&[f32]) -> Vec<u32>) -> (f64, f64) {
    for i in 0..50 {
        search(d.query(i));
    }
    let mut times = Vec::with_capacity(NQ);
    let mut found = 0usize;
    for i in 0..NQ {
        let t0 = Instant::now();
        let hits = search(d.query(i));
        times.push(t0.elapsed().as_secs_f64() * 1e3);
        found += hits
            .iter()
            .take(K)
            .filter(|h| d.truth[i].contains(h))
            .count();
    }
    (found as f64 / (NQ * K) as f64, p50(times))
}

fn report(name: &str, params: &str, build: f64, size: u64, recall: f64, ms: f64, exact_ms: f64) {
    let line = format!(
        "{name}\t{params}\tbuild_s={build:.1}\trecall@10={recall:.4}\tp50_ms={ms:.3}\tspeedup={:.1}\tfile_bytes={size}",
        exact_ms / ms
    );
    println!("{line}");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(work("results.tsv"))
        .unwrap();
    writeln!(f, "{line}").unwrap();
}

fn parse_list(s: &str) -> Vec<usize> {
    s.split(',').map(|x| x.trim().parse().unwrap()).collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (all, dim) = load(Path::new(&args[1]));
    let n_all = all.len() / dim;
    let n = n_all - NQ;
    let (base, queries) = all.split_at(n * dim);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    std::fs::create_dir_all(work("dump")).unwrap();
    let truth_path = work("truth.json");
    let truth: Vec<Vec<u32>> = match std::fs::read(&truth_path) {
        Ok(b) => serde_json::from_slice(&b).unwrap(),
        Err(_) => {
            let t: Vec<Vec<u32>> = pool.install(|| {
                queries
                    .par_chunks_exact(dim)
                    .map(|q| exact_top(base, dim, q))
                    .collect()
            });
            std::fs::write(&truth_path, serde_json::to_vec(&t).unwrap()).unwrap();
            t
        }
    };
    let d = Data {
        base: base.to_vec(),
        queries: queries.to_vec(),
        dim,
        truth,
    };
    eprintln!("{} indexed, {} queries, dim {}", d.n(), NQ, dim);
    // Brute force, one thread: the baseline of the 10x target.
    let exact_ms = {
        let mut t = Vec::new();
        for i in 0..200 {
            let t0 = Instant::now();
            std::hint::black_box(exact_top(&d.base, dim, d.query(i)));
            t.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        p50(t)
    };
    let what = args.get(2).map(String::as_str).unwrap_or("exact");
    if what == "exact" {
        report(
            "exact (brute force, AVX2 dot)",
            "-",
            0.0,
            (d.base.len() * 4) as u64,
            1.0,
            exact_ms,
            exact_ms,
        );
        return;
    }
    let builds: Vec<Vec<usize>> = args[3].split(';').map(parse_list).collect();
    let efs = parse_list(&args[4]);
    for b in builds {
        match what {
            #[cfg(feature = "hnsw_rs")]
            "hnsw_rs" => run_hnsw_rs(&d, &pool, b[0], b[1], &efs, exact_ms),
            #[cfg(feature = "usearch")]
            "usearch" => run_usearch(&d, b[0], b[1], &efs, exact_ms),
            #[cfg(feature = "instant")]
            "instant" => run_instant(&d, &pool, b[0], &efs, exact_ms),
            other => panic!("unknown or not compiled in: {other}"),
        }
    }
}

#[cfg(feature = "hnsw_rs")]
fn run_hnsw_rs(
    d: &Data,
    pool: &rayon::ThreadPool,
    m: usize,
    efc: usize,
    efs: &[usize],
    exact_ms: f64,
) {
    use hnsw_rs::prelude::*;
    let n = d.n();
    let layers = 16;
    let t0 = Instant::now();
    let mut h: Hnsw<f32, DistDot> = Hnsw::new(m, n, layers, efc, DistDot {});
    let data: Vec<(&[f32], usize)> = (0..n).map(|i| (d.row(i), i)).collect();
    pool.install(|| h.parallel_insert_slice(&data));
    let build = t0.elapsed().as_secs_f64();
    h.set_searching_mode(true);
    let dir = work("dump");
    let base = format!("hnswrs-{m}-{efc}");
    let name = h.file_dump(&dir, &base).unwrap();
    let size = std::fs::metadata(dir.join(format!("{name}.hnsw.graph")))
        .unwrap()
        .len()
        + std::fs::metadata(dir.join(format!("{name}.hnsw.data")))
            .unwrap()
            .len();
    for &ef in efs {
        let (r, ms) = evaluate(d, |q| {
            h.search(q, K, ef).iter().map(|x| x.d_id as u32).collect()
        });
        report(
            "hnsw_rs 0.3.5",
            &format!("M={m} ef_c={efc} ef={ef}"),
            build,
            size,
            r,
            ms,
            exact_ms,
        );
    }
}

#[cfg(feature = "usearch")]
fn run_usearch(d: &Data, m: usize, efc: usize, efs: &[usize], exact_ms: f64) {
    use usearch::{Index, IndexOptions, MetricKind, ScalarKind};
    let n = d.n();
    let opts = IndexOptions {
        dimensions: d.dim,
        metric: MetricKind::IP,
        quantization: ScalarKind::F32,
        connectivity: m,
        expansion_add: efc,
        expansion_search: 64,
        multi: false,
    };
    let t0 = Instant::now();
    let index = Index::new(&opts).unwrap();
    index.reserve_capacity_and_threads(n, 2).unwrap();
    std::thread::scope(|s| {
        for t in 0..2 {
            let index = &index;
            s.spawn(move || {
                for i in (t..n).step_by(2) {
                    index.add(i as u64, d.row(i)).unwrap();
                }
            });
        }
    });
    let build = t0.elapsed().as_secs_f64();
    let path = work(&format!("dump/usearch-{m}-{efc}.usearch"));
    index.save(path.to_str().unwrap()).unwrap();
    let size = std::fs::metadata(&path).unwrap().len();
    eprintln!("usearch acceleration: {}", index.hardware_acceleration());
    for &ef in efs {
        index.change_expansion_search(ef);
        let (r, ms) = evaluate(d, |q| {
            index
                .search(q, K)
                .unwrap()
                .keys
                .iter()
                .map(|&k| k as u32)
                .collect()
        });
        let name = if cfg!(feature = "numkong") {
            "usearch 2.26.6 (numkong)"
        } else {
            "usearch 2.26.6"
        };
        report(
            name,
            &format!("M={m} ef_c={efc} ef={ef}"),
            build,
            size,
            r,
            ms,
            exact_ms,
        );
    }
}

#[cfg(feature = "instant")]
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct P(Vec<f32>);

#[cfg(feature = "instant")]
impl instant_distance::Point for P {
    fn distance(&self, other: &Self) -> f32 {
        1.0 - dot(&self.0, &other.0)
    }
}

#[cfg(feature = "instant")]
fn run_instant(d: &Data, pool: &rayon::ThreadPool, efc: usize, efs: &[usize], exact_ms: f64) {
    use instant_distance::{Builder, Hnsw, Search};
    let n = d.n();
    let points: Vec<P> = (0..n).map(|i| P(d.row(i).to_vec())).collect();
    let t0 = Instant::now();
    let (h, ids) = pool.install(|| {
        Builder::default()
            .ef_construction(efc)
            .ef_search(efs[0])
            .seed(42)
            .build_hnsw(points)
    });
    let build = t0.elapsed().as_secs_f64();
    // The crate reorders points; map its ids back to rows.
    let mut row_of = vec![0u32; n];
    for (row, pid) in ids.iter().enumerate() {
        row_of[pid.into_inner() as usize] = row as u32;
    }
    let bytes = bincode::serialize(&h).unwrap();
    let size = bytes.len() as u64;
    drop(h);
    // ef_search is fixed at build time and private; its serialised form starts
    // with it (bincode: u64 LE), so each ef is tried without rebuilding.
    for &ef in efs {
        let mut b = bytes.clone();
        b[..8].copy_from_slice(&(ef as u64).to_le_bytes());
        let h: Hnsw<P> = bincode::deserialize(&b).unwrap();
        let mut search = Search::default();
        let (r, ms) = evaluate(d, |q| {
            h.search(&P(q.to_vec()), &mut search)
                .take(K)
                .map(|it| row_of[it.pid.into_inner() as usize])
                .collect()
        });
        report(
            "instant-distance 0.6.1",
            &format!("M=32 ef_c={efc} ef={ef}"),
            build,
            size,
            r,
            ms,
            exact_ms,
        );
    }
}
