//! Differentially private MNIST: a small CNN trained with DP-SGD (per-example
//! clipping and Gaussian noise) to a target ε at δ = 1e-5, with the privacy spent
//! reported after every epoch by the Rényi DP accountant.
//!
//! `--epsilon 3` picks the noise multiplier that spends exactly that budget over
//! `--epochs`; `--noise σ` sets it directly. The embedded digits serve when
//! `--dataset digits` (no download).

use anyhow::{bail, Result};
use candle_core::{DType, Device};
use candle_nn::VarMap;
use clap::Parser;
use std::time::Instant;
use taper::train::data::{
    root::require_dir, split_indices, DataLoader, LoaderConfig, TensorDataset,
};
use taper::train::optim::{named_vars, Sgd, SgdConfig};
use taper::train::privacy::{noise_for_epsilon, DpSgd, RdpAccountant};
use taper::train::record::EpochRecord;
use taper::train::schedule::{Constant, WarmupCosine};
use taper::train::{
    cli::ExampleArgs, Callback, Classifier, Control, Optimizers, Trainer, TrainerConfig,
};
use taper::vision::datasets::{digits, load_digits, load_mnist, Split};
use taper::vision::models::{LeNet, LeNetConfig};

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

/// Prints ε after each epoch and stops if the budget is exceeded.
struct Budget {
    q: f64,
    sigma: f64,
    delta: f64,
    target: Option<f64>,
    steps_per_epoch: u64,
}

impl Callback for Budget {
    fn on_epoch_end(&mut self, record: &EpochRecord) -> taper::train::Result<Control> {
        let mut a = RdpAccountant::new();
        a.record(
            self.q,
            self.sigma,
            (record.epoch as u64 + 1) * self.steps_per_epoch,
        );
        let (eps, order) = a.epsilon(self.delta);
        println!(
            "epoch {}: ε = {eps:.3} at δ = {} (Rényi order {order})",
            record.epoch + 1,
            self.delta
        );
        Ok(match self.target {
            Some(t) if eps > t * 1.001 => Control::Stop,
            _ => Control::Continue,
        })
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let c = &args.common;
    let device = c.device()?;
    let started = Instant::now();
    let (x, y, tx, ty, cfg) = match args.dataset.as_str() {
        "digits" => {
            let (x, y) = load_digits(&digits::default_digits_path())?;
            let (tr, te) = split_indices(x.dim(0)?, 0.2, c.seed)?;
            let all = TensorDataset::new(vec![x, y], &Device::Cpu)?;
            let (a, b) = (all.subset(&tr)?, all.subset(&te)?);
            let f = |d: &TensorDataset, i: usize| d.fields()[i].clone();
            let cfg = LeNetConfig {
                channels: (16, 32),
                hidden: 32,
                dropout: 0.0,
                ..LeNetConfig::digits()
            };
            (f(&a, 0), f(&a, 1), f(&b, 0), f(&b, 1), cfg)
        }
        "mnist" | "fashion-mnist" => {
            let dir = require_dir(&c.data_root(), &args.dataset)?;
            let (x, y) = load_mnist(&dir, Split::Train)?;
            let (tx, ty) = load_mnist(&dir, Split::Test)?;
            // Small and without dropout or batch norm: per-example gradients cost
            // one backward pass each, and batch statistics would mix examples.
            let cfg = LeNetConfig {
                channels: (16, 32),
                hidden: 32,
                dropout: 0.0,
                ..LeNetConfig::mnist()
            };
            (x, y, tx, ty, cfg)
        }
        other => bail!("unknown --dataset '{other}' (mnist, fashion-mnist or digits)"),
    };
    let (x, y) = match args.limit {
        Some(0) => bail!("--limit must be at least 1"),
        Some(n) if n < x.dim(0)? => (x.narrow(0, 0, n)?, y.narrow(0, 0, n)?),
        _ => (x, y),
    };
    let norm = |t: &candle_core::Tensor| -> Result<candle_core::Tensor> {
        Ok(((t - 0.1307)? / 0.3081)?.to_device(&device)?)
    };
    let (x, tx) = (norm(&x)?, norm(&tx)?);
    let n = x.dim(0)?;
    let epochs = c.epochs.unwrap_or(5);
    let batch = c.batch_size.unwrap_or(256);
    // Noise per coordinate is σC/batch: the small digits set (batch 64) needs a
    // smaller step than MNIST's batches of 256.
    let lr =
        c.lr.unwrap_or(if args.dataset == "digits" { 0.05 } else { 0.2 });
    if args.max_grad_norm.is_nan() || args.max_grad_norm <= 0.0 || !(0.0..1.0).contains(&args.delta)
    {
        bail!("--max-grad-norm must be positive and --delta in [0, 1)");
    }
    let train = DataLoader::new(
        TensorDataset::new(vec![x, y.to_device(&device)?], &device)?,
        LoaderConfig::train(batch, c.seed),
    )?;
    let test = DataLoader::new(
        TensorDataset::new(vec![tx, ty.to_device(&device)?], &device)?,
        LoaderConfig::eval(1000),
    )?;
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
    let varmap = VarMap::new();
    let vb = taper::nn::init::seeded_var_builder(&varmap, c.seed, DType::F32, &device);
    let net = LeNet::new(cfg, vb)?;
    let mut model = Classifier::new(net, varmap.clone());
    let dp = DpSgd::new(args.max_grad_norm, sigma, q)?;
    let sgd = Sgd::new(
        named_vars(&varmap, ""),
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
    let run_dir = c.run_dir("mnist_dp");
    let mut trainer = Trainer::new(TrainerConfig {
        epochs,
        run_dir: Some(run_dir.clone()),
        seed: c.seed,
        resume: c.resume.is_some(),
        checkpoint_every: c.checkpoint_every,
        config: serde_json::json!({"example": "mnist_dp", "dataset": args.dataset, "lr": lr,
            "schedule": args.schedule,
            "batch_size": batch, "epochs": epochs, "noise_multiplier": sigma,
            "max_grad_norm": args.max_grad_norm, "delta": args.delta}),
        ..Default::default()
    })
    .with_callback(Budget {
        q: (q * k as f64).min(1.0),
        sigma,
        delta: args.delta,
        target: args.noise.is_none().then_some(args.epsilon),
        steps_per_epoch: updates_per_epoch,
    });
    let report = trainer.fit(&mut model, &mut opt, &train, Some(&test))?;
    let last = report
        .last()
        .ok_or_else(|| anyhow::anyhow!("no epoch was run"))?;
    let acc = last.valid.get("accuracy").copied().unwrap_or(f64::NAN);
    // The accountant of the optimizers counted every update (and is in the
    // checkpoints, so a resumed run does not forget what it spent).
    let (eps, _) = opt
        .privacy()
        .map(|dp| dp.epsilon(args.delta))
        .ok_or_else(|| anyhow::anyhow!("DP-SGD was not installed"))?;
    println!("run directory: {}", run_dir.display());
    println!(
        "{}",
        serde_json::json!({"example": "mnist_dp", "dataset": args.dataset, "test_accuracy": acc,
            "epsilon": eps, "delta": args.delta, "noise_multiplier": sigma,
            "max_grad_norm": args.max_grad_norm, "epochs": report.history.len(),
            "batch_size": batch, "seconds": started.elapsed().as_secs_f64()})
    );
    Ok(())
}
