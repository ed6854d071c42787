//! Taper's side of `make bench`'s search scaling rows (`bench/search_peer.py` is
//! sentence-transformers' `util.semantic_search` on the same vectors): the p50 time of
//! an exact top-10 cosine query, one query and a batch of 32, against corpora of
//! 10,000 to 1,000,000 vectors of 384 dimensions.
//!
//! ```text
//! cargo run --release --example bench_search -- --threads 2
//! ```
//!
//! The vectors are standard-normal draws (normalised by the index): an exact search
//! costs the same whatever the vectors hold, so each side draws its own
//! (`--sizes` and `--dim` to change the grid).

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use clap::Parser;
use std::time::Instant;
use taper::nlp::search::ExactIndex;
use taper::train::cli::ExampleArgs;

#[derive(Parser, Debug)]
#[command(about = "Exact search time against corpus size")]
struct Args {
    #[command(flatten)]
    common: ExampleArgs,
    /// Corpus sizes, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [10_000usize, 100_000, 1_000_000])]
    sizes: Vec<usize>,
    /// Vector width.
    #[arg(long, default_value_t = 384)]
    dim: usize,
    /// Timed queries (or batches) per size.
    #[arg(long, default_value_t = 30)]
    samples: usize,
}

fn p50(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() -> Result<()> {
    let args = Args::parse();
    args.common.reject(
        "bench_search",
        &[ExampleArgs::TRAINING, &["resume", "overwrite"]].concat(),
    )?;
    let device = args.common.device()?;
    let mut rows = serde_json::Map::new();
    for &n in &args.sizes {
        let vectors = Tensor::randn(0f32, 1f32, (n + 32, args.dim), &Device::Cpu)?
            .to_dtype(DType::F32)?
            .to_device(&device)?;
        let index = ExactIndex::new(&vectors.narrow(0, 0, n)?, "bench")?;
        let queries = vectors.narrow(0, n, 32)?;
        let mut one = Vec::new();
        let mut batch = Vec::new();
        index.search(&queries, 10, None)?;
        for s in 0..args.samples {
            let q = queries.narrow(0, s % 32, 1)?;
            let t = Instant::now();
            index.search(&q, 10, None)?;
            one.push(t.elapsed().as_secs_f64() * 1e3);
            let t = Instant::now();
            index.search(&queries, 10, None)?;
            batch.push(t.elapsed().as_secs_f64() * 1e3);
        }
        rows.insert(format!("exact_ms_p50_{n}"), p50(one).into());
        rows.insert(format!("exact_batch32_ms_p50_{n}"), p50(batch).into());
    }
    rows.insert("example".into(), "bench_search".into());
    rows.insert("dim".into(), args.dim.into());
    rows.insert("threads".into(), args.common.threads.into());
    println!("{}", serde_json::Value::Object(rows));
    Ok(())
}
