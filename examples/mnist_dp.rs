//! Differentially private MNIST: a small CNN trained with DP-SGD (per-example
//! clipping and Gaussian noise) to a target ε at δ = 1e-5, with the privacy spent
//! reported after every epoch by the Rényi DP accountant.
//!
//! `--epsilon 3` picks the noise multiplier that spends exactly that budget over
//! `--epochs`; `--noise σ` sets it directly. The embedded digits serve when
//! `--dataset digits` (no download).

use anyhow::{bail, Context, Result};
use candle_core::Tensor;
use clap::Parser;
use std::time::Instant;
use taper::train::data::{DataLoader, LoaderConfig, TensorBatch, TensorDataset};
use taper::train::optim::{named_vars, Sgd, SgdConfig};
use taper::train::privacy::{noise_for_epsilon, BudgetStop, DpSgd};
use taper::train::schedule::{Constant, WarmupCosine};
use taper::train::{cli::ExampleArgs, Optimizers, Trainer, TrainerConfig};
use taper::vision::datasets::builtin;
use taper::vision::models::LeNetConfig;
use taper::vision::transforms::Normalize;
use taper::vision::{ClassifierConfig, ImageClassifier, Preprocessing};

#[global_allocator]
static GLOBAL: taper::alloc::Allocator = taper::alloc::Allocator;

#[derive(Parser, Debug)]
#[command(about = "Train a CNN on MNIST with DP-SGD to a target (ε, δ)")]
struct Args {
    #[command(flatten)]
    common: ExampleArgs,
    /// mnist (default) or digits (embedded).
    #[arg(long, default_value = "mnist")]
    dataset: String,
    /// Privacy budget to spend over the epochs (picks the noise multiplier).
    #[arg(long, default_value_t = 3.0)]
    epsilon: f64,
    /// Noise multiplier σ; overrides --epsilon.
    #[arg(long)]
    noise: Option<f64>,
    /// δ of (ε, δ)-DP.
    #[arg(long, default_value_t = 1e-5)]
    delta: f64,
    /// Per-example gradient norm bound C.
    #[arg(long, default_value_t = 1.0)]
    max_grad_norm: f64,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.9)]
    momentum: f64,
    /// Train on the first N training images only.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Learning-rate schedule: `constant`, or `cosine` decay to 2 % of `--lr` over
    /// the run (later steps, noisier relative to their gradient, take smaller steps).
    #[arg(long, default_value = "cosine")]
    schedule: String,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let c = &args.common;
    let device = c.device()?;
    let started = Instant::now();
    let mut data = builtin(&args.dataset, &c.data_root(), c.seed)?;
    if let Some(n) = args.limit {
        data = data.limit(n)?;
    }
    // The validation split is watched, not used to choose: the released model is
    // the last iterate, the one the (ε, δ) guarantee covers.
    let ((x, y), (vx, vy)) = data.split_valid(c.valid_fraction()?, c.seed)?;
    // Small and without dropout or batch norm: per-example gradients cost one
    // backward pass each, and batch statistics would mix examples.
    let side = data.side;
    let cfg = LeNetConfig {
        channels: (16, 32),
        hidden: 32,
        dropout: 0.0,
        ..if side == 8 {
            LeNetConfig::digits()
        } else {
            LeNetConfig::mnist()
        }
    };
    let n = x.dim(0)?;
    let epochs = c.epochs_or(5)?;
    let batch = c.batch_size.unwrap_or(if side == 8 { 64 } else { 256 });
    // Noise per coordinate is σC/batch: the small digits set (batch 64) needs a
    // smaller step than MNIST's batches of 256.
    let lr = c.lr.unwrap_or(if side == 8 { 0.05 } else { 0.2 });
    if args.max_grad_norm.is_nan() || args.max_grad_norm <= 0.0 || !(0.0..1.0).contains(&args.delta)
    {
        bail!("--max-grad-norm must be positive and --delta in [0, 1)");
    }
    let norm = Normalize::mnist();
    let loader = |x: &Tensor, y: Tensor, cfg| -> Result<DataLoader<TensorBatch>> {
        Ok(DataLoader::new(
            TensorDataset::new(vec![norm.apply(x)?, y], &device)?,
            cfg,
        )?)
    };
    let train = loader(&x, y, LoaderConfig::train(batch, c.seed))?;
    let valid = loader(&vx, vy, LoaderConfig::eval(1000))?;
    let test = loader(&data.test_x, data.test_y.clone(), LoaderConfig::eval(1000))?;
    let q = batch as f64 / n as f64;
    let steps_per_epoch = train.num_batches() as u64;
    let sigma = match args.noise {
        Some(s) if s < 0.0 => bail!("--noise must be at least 0"),
        Some(s) => s,
        None => {
            let k = c.accumulate.max(1) as u64;
            let q = (q * k as f64).min(1.0);
            noise_for_epsilon(
                args.epsilon,
                args.delta,
                q,
                epochs as u64 * steps_per_epoch.div_ceil(k),
            )?
        }
    };
    println!(
        "DP-SGD: {n} examples, batch {batch} (q = {q:.5}), σ = {sigma:.4}, C = {}, {epochs} epochs",
        args.max_grad_norm
    );
    let pre = Preprocessing::new(1, (side, side), data.classes.clone()).with_normalize(&norm);
    let mut model = ImageClassifier::new(ClassifierConfig::LeNet(cfg), pre, c.seed, &device)?;
    let dp = DpSgd::new(args.max_grad_norm, sigma, q)?;
    let sgd = Sgd::new(
        named_vars(model.varmap(), ""),
        SgdConfig {
            lr,
            momentum: args.momentum,
            ..Default::default()
        },
    );
    // Accumulating k batches samples at k·q and adds the noise once per update.
    let k = c.accumulate.max(1);
    let updates_per_epoch = steps_per_epoch.div_ceil(k as u64);
    let mut opt = Optimizers::single(sgd)
        .with_accumulation(k)
        .with_privacy(dp);
    let group = opt.groups()[0].name().to_string();
    match args.schedule.as_str() {
        "constant" => opt.set_schedule(&group, Constant(lr))?,
        "cosine" => opt.set_schedule(
            &group,
            WarmupCosine {
                lr,
                min_lr: 0.02 * lr,
                warmup_steps: 0,
                warmup_start: 1.0,
                total_steps: (updates_per_epoch * epochs as u64) as usize,
            },
        )?,
        o => bail!("unknown --schedule '{o}' (constant or cosine)"),
    }
    let run_dir = c.run_dir("mnist_dp")?;
    let config = serde_json::json!({"example": "mnist_dp", "dataset": args.dataset, "lr": lr,
        "schedule": args.schedule, "batch_size": batch, "epochs": epochs, "noise_multiplier": sigma,
        "max_grad_norm": args.max_grad_norm, "delta": args.delta});
    let mut trainer = Trainer::new(TrainerConfig {
        keep_best: false,
        ..c.trainer_config("mnist_dp", epochs, config)?
    })
    .with_callback(BudgetStop {
        q: (q * k as f64).min(1.0),
        sigma,
        delta: args.delta,
        target: args.noise.is_none().then_some(args.epsilon),
        updates_per_epoch,
    });
    let r = trainer.fit_and_test(&mut model, &mut opt, &train, &valid, &test)?;
    // The accountant of the optimizers counted every update (and is in the
    // checkpoints, so a resumed run does not forget what it spent).
    let (eps, _) = opt
        .privacy()
        .map(|dp| dp.epsilon(args.delta))
        .context("DP-SGD was not installed")?;
    println!("run directory: {}", run_dir.display());
    let mut json = serde_json::json!({"example": "mnist_dp", "dataset": args.dataset,
        "epsilon": eps, "delta": args.delta, "noise_multiplier": sigma,
        "max_grad_norm": args.max_grad_norm, "epochs": r.fit.history.len(),
        "batch_size": batch, "seconds": started.elapsed().as_secs_f64(), "run_dir": run_dir});
    json.as_object_mut()
        .context("a JSON object")?
        .extend(r.figures());
    println!("{json}");
    Ok(())
}
