//! Times Taper's f32 GEMM (`taper_nn::kernels::gemm`, which every layer calls) on
//! the products the benchmark models really run, on 1 thread (as inside a
//! per-image or per-batch parallel loop) and on all of `--threads`. Prints one line
//! per shape and a final JSON object of GFLOP/s. The backend is the process's:
//! run it once as is and once with `TAPER_BLAS=off` to compare OpenBLAS with the
//! `gemm` crate; `bench/gemm_peer.py` times the same shapes in PyTorch.

use anyhow::Result;
use clap::Parser;
use std::time::Instant;
use taper::nn::kernels::{blas, gemm, MatRef};
use taper::train::cli::ExampleArgs;

#[global_allocator]
static GLOBAL: taper::alloc::Allocator = taper::alloc::Allocator;

#[derive(Parser, Debug)]
#[command(about = "Taper's f32 GEMM on the benchmark models' products, 1 thread and all (GFLOP/s)")]
struct Args {
    #[command(flatten)]
    common: ExampleArgs,
    /// Seconds of timing per shape and thread count (after a warm-up).
    #[arg(long, default_value_t = 0.3)]
    seconds: f64,
}

/// `[name, m, n, k]` per product: the list `bench/gemm_peer.py` reads too.
const SHAPES: &str = include_str!("../bench/gemm_shapes.json");

fn main() -> Result<()> {
    let args = Args::parse();
    args.common.reject("bench_gemm", ExampleArgs::TRAINING)?;
    args.common.reject("bench_gemm", &["resume"])?;
    args.common.device()?;
    let shapes: Vec<(String, usize, usize, usize)> = serde_json::from_str(SHAPES)?;
    let all = rayon::current_num_threads();
    let mut out = serde_json::Map::new();
    out.insert("gemm".into(), blas::backend().into());
    out.insert("threads".into(), all.into());
    for (name, m, n, k) in shapes {
        let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.1 - 0.3).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.1 - 0.2).collect();
        let mut c = vec![0f32; m * n];
        let flop = 2.0 * (m * n * k) as f64;
        let mut line = format!("{name} ({m}x{n}x{k}):");
        let counts = if all > 1 { vec![1, all] } else { vec![1] };
        for threads in counts {
            let mut run = || {
                gemm(
                    &mut c,
                    n,
                    MatRef::rows(&a, k),
                    MatRef::rows(&b, n),
                    (m, n, k),
                    false,
                    threads,
                )
            };
            // Warm-up, then repetitions in batches until the time is spent; the
            // median batch gives the rate.
            let start = Instant::now();
            let mut per_batch = 0;
            while start.elapsed().as_secs_f64() < args.seconds / 4.0 {
                run();
                per_batch += 1;
            }
            let per_batch = (per_batch / 4).max(1);
            let mut rates = Vec::new();
            let start = Instant::now();
            while rates.len() < 5 || start.elapsed().as_secs_f64() < args.seconds {
                let t = Instant::now();
                for _ in 0..per_batch {
                    run();
                }
                rates.push(flop * per_batch as f64 / t.elapsed().as_secs_f64() / 1e9);
            }
            rates.sort_by(|x, y| x.total_cmp(y));
            let rate = rates[rates.len() / 2];
            line += &format!(" {threads}t {rate:.0} GFLOP/s");
            out.insert(format!("{name}_{threads}t_gflops"), rate.into());
        }
        println!("{line}");
    }
    println!("{}", serde_json::Value::Object(out));
    Ok(())
}
