//! Times single operations (forward + backward) in Taper's kernels against candle's
//! own, on the shapes of the LeNet and batch-norm CNN benchmarks. `--threads` sets the thread count.
//! Prints one line per case and a final JSON object of medians in milliseconds.

use anyhow::Result;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use clap::Parser;
use std::time::Instant;
use taper::nn;
use taper::nn::{batch_norm, kernels, BatchNormConfig};
use taper::nn::{Forward, Mode};
use taper::train::cli::ExampleArgs;

#[global_allocator]
static GLOBAL: taper::alloc::Allocator = taper::alloc::Allocator;

#[derive(Parser, Debug)]
#[command(about = "Single operations (forward + backward): Taper's kernels against candle's")]
struct Args {
    #[command(flatten)]
    common: ExampleArgs,
    /// Timed repetitions per case (after 3 warm-up runs).
    #[arg(long, default_value_t = 15)]
    reps: usize,
    /// Run only the cases whose names contain one of these (comma-separated); all by default.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Skip candle's side of the convolution cases (to profile Taper's alone).
    #[arg(long)]
    no_candle: bool,
}

fn median_ms(reps: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    for _ in 0..3 {
        f()?;
    }
    let mut t = Vec::with_capacity(reps);
    for _ in 0..reps {
        let s = Instant::now();
        f()?;
        t.push(s.elapsed().as_secs_f64() * 1e3);
    }
    t.sort_by(|a, b| a.total_cmp(b));
    Ok(t[t.len() / 2])
}

fn main() -> Result<()> {
    let args = Args::parse();
    // Nothing is trained or resumed here.
    args.common.reject("bench_ops", ExampleArgs::TRAINING)?;
    args.common.reject("bench_ops", &["resume"])?;
    args.common.device()?;
    let dev = Device::Cpu;
    let mut out = serde_json::Map::new();
    let cases = [
        ("conv1", (64, 1, 28, 28), (32, 1, 5, 5), 0),
        ("conv2", (64, 32, 12, 12), (64, 32, 5, 5), 0),
        // The batch-norm CNN's four 3x3 convolutions (padding 1).
        ("cnn_conv1", (64, 1, 28, 28), (32, 1, 3, 3), 1),
        ("cnn_conv2", (64, 32, 28, 28), (32, 32, 3, 3), 1),
        ("cnn_conv3", (64, 32, 14, 14), (64, 32, 3, 3), 1),
        ("cnn_conv4", (64, 64, 14, 14), (64, 64, 3, 3), 1),
    ];
    let want =
        |case: &str| args.only.is_empty() || args.only.iter().any(|o| case.contains(o.as_str()));
    for (name, xs, ws, pad) in cases {
        if !want(name) {
            continue;
        }
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, xs, &dev)?)?;
        let w = Var::from_tensor(&Tensor::randn(0f32, 0.1, ws, &dev)?)?;
        let candle = if args.no_candle {
            f64::NAN
        } else {
            median_ms(args.reps, || {
                let y = x.as_tensor().conv2d(w.as_tensor(), pad, 1, 1, 1)?;
                y.sum_all()?.backward()?;
                Ok(())
            })?
        };
        let taper = median_ms(args.reps, || {
            let y = kernels::conv2d(x.as_tensor(), w.as_tensor(), 1, pad)?;
            y.sum_all()?.backward()?;
            Ok(())
        })?;
        println!("{name} fwd+bwd: candle {candle:.2} ms, taper {taper:.2} ms");
        out.insert(format!("{name}_candle_ms"), candle.into());
        out.insert(format!("{name}_taper_ms"), taper.into());
    }
    if !want("pool_relu_bn_dropout") {
        println!("{}", serde_json::Value::Object(out));
        return Ok(());
    }
    let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (64, 32, 24, 24), &dev)?)?;
    let candle = median_ms(args.reps, || {
        x.as_tensor().max_pool2d(2)?.sum_all()?.backward()?;
        Ok(())
    })?;
    let taper = median_ms(args.reps, || {
        nn::max_pool2d(x.as_tensor(), 2)?.sum_all()?.backward()?;
        Ok(())
    })?;
    println!("max_pool 2x2 (64,32,24,24) fwd+bwd: candle {candle:.2} ms, taper {taper:.2} ms");
    out.insert("maxpool_candle_ms".into(), candle.into());
    out.insert("maxpool_taper_ms".into(), taper.into());
    let relu = median_ms(args.reps, || {
        x.as_tensor().relu()?.sum_all()?.backward()?;
        Ok(())
    })?;
    let taper = median_ms(args.reps, || {
        nn::relu(x.as_tensor())?.sum_all()?.backward()?;
        Ok(())
    })?;
    println!("relu (64,32,24,24) fwd+bwd: candle {relu:.2} ms, taper {taper:.2} ms");
    out.insert("relu_candle_ms".into(), relu.into());
    out.insert("relu_taper_ms".into(), taper.into());
    // The batch-norm CNN's shapes: batch norm + ReLU and dropout, candle-nn's
    // composed ops against Taper's fused kernels.
    let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (64, 32, 28, 28), &dev)?)?;
    let vm = VarMap::new();
    let vb = taper::nn::init::seeded_var_builder(&vm, 0, DType::F32, &dev);
    let candle_bn = candle_nn::batch_norm(32, 1e-5, vb.pp("a"))?;
    let taper_bn = batch_norm(32, BatchNormConfig::default(), vb.pp("b"))?;
    let candle = median_ms(args.reps, || {
        use candle_core::ModuleT;
        candle_bn
            .forward_t(x.as_tensor(), true)?
            .relu()?
            .sum_all()?
            .backward()?;
        Ok(())
    })?;
    let taper = median_ms(args.reps, || {
        taper_bn
            .forward_relu_t(x.as_tensor(), &Mode::train(0))?
            .sum_all()?
            .backward()?;
        Ok(())
    })?;
    println!("batch norm + relu (64,32,28,28) fwd+bwd: candle {candle:.2} ms, taper {taper:.2} ms");
    out.insert("bn_relu_candle_ms".into(), candle.into());
    out.insert("bn_relu_taper_ms".into(), taper.into());
    let drop = nn::Dropout::new(0.15, "d")?;
    let candle = median_ms(args.reps, || {
        candle_nn::ops::dropout(x.as_tensor(), 0.15)?
            .sum_all()?
            .backward()?;
        Ok(())
    })?;
    let taper = median_ms(args.reps, || {
        drop.forward_t(x.as_tensor(), &Mode::train(0))?
            .sum_all()?
            .backward()?;
        Ok(())
    })?;
    println!("dropout (64,32,28,28) fwd+bwd: candle {candle:.2} ms, taper {taper:.2} ms");
    out.insert("dropout_candle_ms".into(), candle.into());
    out.insert("dropout_taper_ms".into(), taper.into());
    println!("{}", serde_json::Value::Object(out));
    Ok(())
}
