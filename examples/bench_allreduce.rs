//! All-reduce latency and bandwidth of the process's collective, for buffers of
//! 1 KB to 64 MB, and of the trainer's bucketed gradient path on a model's worth
//! of gradients: the measurements docs/SCALING.md's cost model is checked against.
//!
//! ```text
//! cargo build --release --features mpi --example bench_allreduce
//! mpirun -np 2 target/release/examples/bench_allreduce
//! ```
//!
//! Bus bandwidth is NCCL's convention: algorithm bandwidth (bytes / time) times
//! `2 (n - 1) / n`, what a ring all-reduce moves per rank, so figures for
//! different world sizes compare.

use anyhow::{bail, Result};
use candle_core::{Device, Tensor};
use clap::Parser;
use std::time::Instant;
use taper::train::distributed::{self, all_reduce_grads, BUCKET_BYTES};

#[derive(Parser, Debug)]
#[command(about = "All-reduce latency and bandwidth across the ranks of mpirun")]
struct Args {
    /// Smallest buffer in bytes.
    #[arg(long, default_value_t = 1 << 10)]
    min_bytes: usize,
    /// Largest buffer in bytes.
    #[arg(long, default_value_t = 64 << 20)]
    max_bytes: usize,
    /// Seconds spent on each size (at least 5 calls).
    #[arg(long, default_value_t = 0.5)]
    seconds: f64,
    /// Gradient sizes (parameter counts) to push through the bucketed path,
    /// comma-separated: Taper's LeNet (184,586), the bench MLP (269,322) and
    /// the MiniLM encoder (22.7 M) by default.
    #[arg(long, default_value = "184586,269322,22713728")]
    grads: String,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() -> Result<()> {
    let args = Args::parse();
    let world = distributed::init()?;
    let (rank, n) = (world.rank(), world.world_size());
    if n < 2 {
        bail!(
            "one rank: start it with `mpirun -np N` from a build with `--features mpi` \
             (make mpi)"
        );
    }
    let bus = 2.0 * (n as f64 - 1.0) / n as f64;
    let mut rows = Vec::new();
    let mut bytes = args.min_bytes.max(4);
    while bytes <= args.max_bytes {
        let mut buf = vec![1.0f32; bytes / 4];
        // Warm-up: connections and buffers are set up on first use.
        for _ in 0..3 {
            world.all_reduce_sum_f32(&mut buf)?;
        }
        // Every rank makes the same number of calls: rank 0 decides it.
        let t0 = Instant::now();
        world.all_reduce_sum_f32(&mut buf)?;
        let mut calls =
            [(args.seconds / t0.elapsed().as_secs_f64().max(1e-7)).clamp(5.0, 20_000.0)];
        if rank != 0 {
            calls[0] = 0.0;
        }
        world.all_reduce_sum_f64(&mut calls)?;
        let mut times = Vec::new();
        for _ in 0..calls[0] as usize {
            let t = Instant::now();
            world.all_reduce_sum_f32(&mut buf)?;
            times.push(t.elapsed().as_secs_f64());
        }
        let t = median(&mut times);
        let alg = bytes as f64 / t / 1e9;
        if rank == 0 {
            println!(
                "{:>10} B  {:>9.1} us  algbw {:>6.2} GB/s  busbw {:>6.2} GB/s",
                bytes,
                t * 1e6,
                alg,
                alg * bus
            );
        }
        rows.push(serde_json::json!({"bytes": bytes, "median_us": t * 1e6,
            "algbw_gbps": alg, "busbw_gbps": alg * bus, "calls": calls[0] as usize}));
        bytes *= 4;
    }
    // The trainer's path: gradients as tensors, flattened into buckets, summed,
    // split back.
    let mut grad_rows = Vec::new();
    for p in args.grads.split(',').filter(|s| !s.is_empty()) {
        let params: usize = p.trim().parse()?;
        // A model's gradients come in many tensors: cut the count into 16.
        let parts = 16.min(params);
        let mut grads: Vec<Option<Tensor>> = (0..parts)
            .map(|i| {
                let len = params / parts + usize::from(i < params % parts);
                Tensor::ones(len, candle_core::DType::F32, &Device::Cpu).map(Some)
            })
            .collect::<candle_core::Result<_>>()?;
        all_reduce_grads(world.as_ref(), &mut grads, BUCKET_BYTES)?;
        let mut times = Vec::new();
        for _ in 0..10 {
            let t = Instant::now();
            all_reduce_grads(world.as_ref(), &mut grads, BUCKET_BYTES)?;
            times.push(t.elapsed().as_secs_f64());
        }
        let t = median(&mut times);
        if rank == 0 {
            println!(
                "gradients of {params} parameters ({:.2} MB, buckets of {} MB): {:.3} ms",
                params as f64 * 4.0 / 1e6,
                BUCKET_BYTES >> 20,
                t * 1e3
            );
        }
        grad_rows.push(serde_json::json!({"params": params, "median_ms": t * 1e3}));
    }
    if rank == 0 {
        println!(
            "{}",
            serde_json::json!({"example": "bench_allreduce", "backend": world.backend(),
                "ranks": n, "sizes": rows, "gradients": grad_rows})
        );
    }
    Ok(())
}
