//! DCGAN on the embedded 8x8 digits (default, seconds), MNIST or Fashion-MNIST,
//! optionally conditioned on the class (`--conditional`). After each epoch a grid
//! of samples from fixed noise goes to `RUN/samples/epoch-NNNNN.png` and the grids
//! so far to `RUN/samples/progress.gif`. With `--classifier RUN` (a LeNet trained by
//! `mnist_cnn --model lenet` on the same data set) it ends with the Inception Score
//! and Fréchet distance of 10,000 samples beside the real test set's, and scores
//! `--epoch-samples` samples after each epoch: the report draws both per epoch.
//!
//! ```text
//! cargo run --release --example dcgan -- --classifier runs/demo-mnist_cnn
//! cargo run --release --example dcgan -- --generate 20 --resume RUN [--class 3]
//! ```

use anyhow::{Context, Result};
use clap::Parser;
use std::path::PathBuf;
use std::time::Instant;
use taper::train::data::{DataLoader, LoaderConfig, TensorDataset};
use taper::train::{cli::ExampleArgs, Trainer};
use taper::vision::datasets::builtin;
use taper::vision::grid::{save_grid, SampleGrids};
use taper::vision::metrics::{score_generator, scoring_lenet};
use taper::vision::models::dcgan::{GanOptimConfig, Generator};
use taper::vision::models::{Dcgan, DcganConfig};

#[global_allocator]
static GLOBAL: taper::alloc::Allocator = taper::alloc::Allocator;

#[derive(Parser, Debug)]
#[command(about = "Train a DCGAN on digits, MNIST or Fashion-MNIST, or sample from one")]
struct Args {
    #[command(flatten)]
    common: ExampleArgs,
    /// digits (embedded, 8x8), mnist or fashion-mnist (28x28).
    #[arg(long, default_value = "digits")]
    dataset: String,
    /// Condition both networks on the class label.
    #[arg(long)]
    conditional: bool,
    /// Run directory of a LeNet trained by mnist_cnn on the same data set, for IS/FID.
    #[arg(long, value_name = "RUN_DIR")]
    classifier: Option<PathBuf>,
    /// With --classifier: generated samples scored for IS/FID [default: 10000].
    #[arg(long)]
    eval_samples: Option<usize>,
    /// With --classifier: samples scored after each epoch for the report's IS/FID
    /// curves (0: none) [default: 500].
    #[arg(long)]
    epoch_samples: Option<usize>,
    /// Sample N images from the trained run in --resume instead of training.
    #[arg(long, value_name = "N")]
    generate: Option<usize>,
    /// Width of both networks (default 32; the paper's is 64).
    #[arg(long)]
    width: Option<usize>,
    /// With --generate and a conditional model: the class to draw (default: all in turn).
    #[arg(long)]
    class: Option<u32>,
}

fn generate(args: &Args, n: usize) -> Result<()> {
    // All samples are drawn as one tensor (a seed's draw depends on the count),
    // and each becomes a numbered PNG: a bound keeps both sane.
    if !(1..=100_000).contains(&n) {
        anyhow::bail!("--generate must be 1 to 100000 (images to draw), got {n}");
    }
    let c = &args.common;
    c.reject("dcgan --generate", ExampleArgs::TRAINING)?;
    let run = c
        .resume
        .as_ref()
        .context("--generate needs the trained run: --resume RUN_DIR")?;
    let gen = Generator::load(run, &c.device()?)?;
    let x = gen.sample(n, args.class, c.seed)?;
    let out = c.out.clone().unwrap_or_else(|| run.join("generated"));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let scale = if gen.config().image_size == 8 { 4 } else { 2 };
    let grid = out.join("samples.png");
    save_grid(&x, 10.min(n), scale, (0.0, 1.0), &grid)?;
    for i in 0..n {
        save_grid(
            &x.narrow(0, i, 1)?,
            1,
            1,
            (0.0, 1.0),
            &out.join(format!("sample-{i:05}.png")),
        )?;
    }
    println!(
        "{n} samples in {} (grid: {})",
        out.display(),
        grid.display()
    );
    println!(
        "{}",
        serde_json::json!({"example": "dcgan", "generated": n, "class": args.class, "out": out, "grid": grid})
    );
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    let c = &args.common;
    if let Some(n) = args.generate {
        return generate(&args, n);
    }
    // A GAN has no validation loss to select on, and its two updates a step do
    // not accumulate.
    c.reject("dcgan", &["valid-fraction", "accumulate"])?;
    if args.classifier.is_none() && (args.eval_samples.is_some() || args.epoch_samples.is_some()) {
        anyhow::bail!(
            "--eval-samples and --epoch-samples count samples scored by --classifier RUN: give one"
        );
    }
    let (eval_samples, epoch_samples) = (
        args.eval_samples.unwrap_or(10_000),
        args.epoch_samples.unwrap_or(500),
    );
    let device = c.device()?;
    let started = Instant::now();
    let data = builtin(&args.dataset, &c.data_root(), c.seed)?;
    // Load the scorer first: a wrong --classifier fails before training, not after.
    let scorer = args
        .classifier
        .as_ref()
        .map(|run| scoring_lenet(run, data.side, &device))
        .transpose()?;

    let small = data.side == 8;
    let mut cfg = if small {
        DcganConfig::digits()
    } else {
        DcganConfig::mnist()
    };
    if let Some(w) = args.width {
        (cfg.gen_width, cfg.disc_width) = (w, w);
    }
    if args.conditional {
        cfg = cfg.conditional(data.classes.len());
    }
    let (epochs, batch) = (
        c.epochs_or(if small { 30 } else { 5 })?,
        c.batch_size.unwrap_or(64),
    );
    let o = GanOptimConfig {
        lr_d: c.lr.unwrap_or(2e-4),
        lr_g: c.lr.unwrap_or(2e-4),
        ..Default::default()
    };
    let mut gan = Dcgan::new(cfg, &candle_nn::VarMap::new(), c.seed, &device)?;
    let mut opt = gan.optimizers(o);
    // tanh's range: the generator's images are compared with real ones in [-1, 1].
    let src = TensorDataset::new(
        vec![data.train_x.affine(2.0, -1.0)?, data.train_y.clone()],
        &device,
    )?;
    let train = DataLoader::new(
        src,
        LoaderConfig {
            drop_last: true,
            ..LoaderConfig::train(batch, c.seed)
        },
    )?;

    let run_dir = c.run_dir("dcgan")?;
    let mut grids = SampleGrids::new(
        gan.gen.clone(),
        c.seed,
        &run_dir.join("samples"),
        if small { 4 } else { 2 },
    )
    .with_report(&run_dir);
    if let Some(lenet) = scorer.as_ref().filter(|_| epoch_samples > 0) {
        grids = grids.with_scores(lenet.clone(), &data.train_x, epoch_samples)?;
    }
    let config = serde_json::json!({"example": "dcgan", "dataset": args.dataset, "conditional": args.conditional,
        "lr_d": o.lr_d, "lr_g": o.lr_g, "beta1": o.beta1, "batch_size": batch, "epochs": epochs, "width": cfg.gen_width});
    let mut trainer = Trainer::new(c.trainer_config("dcgan", epochs, config)?).with_callback(grids);
    let report = trainer.fit(&mut gan, &mut opt, &train, None)?;
    let last = report.last().context("no epoch was run")?;
    let steps = (report.history.len() - report.resumed_at) * train.num_batches();
    let step_ms = 1000.0 * report.seconds / steps.max(1) as f64;
    println!("run directory: {}", run_dir.display());
    println!(
        "dcgan {}: {} epochs, d_loss {:.3}, g_loss {:.3}, D(real) {:.3}, D(fake) {:.3}, {step_ms:.0} ms a step",
        args.dataset,
        report.history.len(),
        last.train["d_loss"],
        last.train["g_loss"],
        last.train["d_real"],
        last.train["d_fake"]
    );
    let mut json = serde_json::json!({"example": "dcgan", "dataset": args.dataset, "conditional": args.conditional,
        "epochs": report.history.len(), "train_seconds": report.seconds, "step_ms": step_ms,
        "d_loss": last.train["d_loss"], "g_loss": last.train["g_loss"], "run_dir": run_dir});
    match scorer {
        Some(lenet) => {
            let (fake, real) = score_generator(&lenet, &gan.gen, eval_samples, c.seed, &data.train_x, &data.test_x)?;
            println!(
                "Inception Score {:.3} ± {:.3} (real test set {:.3}), Fréchet distance {:.3} (real test set {:.3}), {} samples",
                fake.inception_score, fake.inception_score_std, real.inception_score,
                fake.frechet_distance, real.frechet_distance, eval_samples
            );
            json["inception_score"] = fake.inception_score.into();
            json["inception_score_std"] = fake.inception_score_std.into();
            json["frechet_distance"] = fake.frechet_distance.into();
            json["real_inception_score"] = real.inception_score.into();
            json["real_frechet_distance"] = real.frechet_distance.into();
        }
        None => println!("no --classifier: IS/FID skipped (train one with `mnist_cnn --model lenet --dataset {}`)", args.dataset),
    }
    json["seconds"] = started.elapsed().as_secs_f64().into();
    let page = taper::train::report::finish(&run_dir, &json, None)?;
    println!("report: {}", page.display());
    println!("{json}");
    Ok(())
}
