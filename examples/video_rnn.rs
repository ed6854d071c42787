//! Clip classification with a CNN over frames and an LSTM (or GRU) over time, on
//! generated Moving-MNIST-style clips: one digit bouncing in a 64x64 canvas; the
//! label is the direction it moves at the end of the clip, which no single frame
//! shows. The same encoder trained on the last frame alone is the baseline.
//!
//! `cargo run --release --example video_rnn` (embedded digits, no download) or
//! `-- --source mnist` (MNIST digits from the data root).

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use clap::Parser;
use std::path::Path;
use std::time::Instant;
use taper::nn::Forward;
use taper::train::data::{root::require_dir, split_indices, DataLoader, LoaderConfig};
use taper::train::optim::{named_vars, Adam, AdamConfig};
use taper::train::schedule::{Direction, OneCycle};
use taper::train::{
    cli::ExampleArgs, clip::Clip, Classifier, FitReport, Optimizers, Trainer, TrainerConfig,
};
use taper::vision::datasets::{
    digits, load_digits, load_mnist, MovingDigits, MovingDigitsConfig, Split,
};
use taper::vision::models::video::{frame_classifier, video_classifier, RnnCell};
use taper::vision::models::VideoConfig;

#[global_allocator]
static GLOBAL: taper::alloc::Allocator = taper::alloc::Allocator;

#[derive(Parser, Debug)]
#[command(about = "Classify generated moving-digit clips with a CNN + LSTM/GRU")]
struct Args {
    #[command(flatten)]
    common: ExampleArgs,
    /// Digits drawn into the clips: digits (embedded, upscaled to 24x24) or mnist.
    #[arg(long, default_value = "digits")]
    source: String,
    /// Frames per clip.
    #[arg(long, default_value_t = 12)]
    frames: usize,
    /// Training clips (generated from the training digits).
    #[arg(long, default_value_t = 2048)]
    train_clips: usize,
    /// Held-out clips (generated from held-out digits, another seed).
    #[arg(long, default_value_t = 1024)]
    test_clips: usize,
    /// Recurrent cell: lstm or gru.
    #[arg(long, default_value = "lstm")]
    cell: String,
    /// Skip the single-frame baseline.
    #[arg(long)]
    no_baseline: bool,
}

/// Training and held-out digit images `(N, 1, d, d)` in 0..1.
fn digit_images(source: &str, c: &ExampleArgs) -> Result<(Tensor, Tensor)> {
    let (x, side) = match source {
        "digits" => (load_digits(&digits::default_digits_path())?.0, 24),
        "mnist" => {
            let dir = require_dir(&c.data_root(), "mnist")?;
            (load_mnist(&dir, Split::Train)?.0.narrow(0, 0, 20_000)?, 28)
        }
        other => bail!("unknown --source '{other}' (digits or mnist)"),
    };
    let x = if x.dim(2)? == side {
        x
    } else {
        x.upsample_nearest2d(side, side)?
    };
    let (tr, te) = split_indices(x.dim(0)?, 0.2, c.seed)?;
    let pick = |idx: &[usize]| -> Result<Tensor> {
        let i = Tensor::from_vec(
            idx.iter().map(|&i| i as u32).collect::<Vec<_>>(),
            idx.len(),
            &Device::Cpu,
        )?;
        Ok(x.index_select(&i, 0)?)
    };
    Ok((pick(&tr)?, pick(&te)?))
}

/// What both trainings share.
struct Setup {
    train: DataLoader<taper::train::data::TensorBatch>,
    test: DataLoader<taper::train::data::TensorBatch>,
    epochs: usize,
    lr: f64,
    seed: u64,
    resume: bool,
}

fn fit(
    model: impl Forward + Sync,
    varmap: VarMap,
    run_dir: &Path,
    s: &Setup,
    config: serde_json::Value,
) -> Result<FitReport> {
    let (train, epochs, lr) = (&s.train, s.epochs, s.lr);
    let mut clf = Classifier::new(model, varmap.clone());
    let adam = Adam::new(
        named_vars(&varmap, ""),
        AdamConfig {
            lr,
            weight_decay: 1e-4,
            decoupled_weight_decay: true,
            ..Default::default()
        },
    );
    let mut opt = Optimizers::new().with_group(
        "model",
        adam,
        OneCycle::new(lr, epochs * train.num_batches()),
        Clip::GlobalNorm(5.0),
    );
    let mut trainer = Trainer::new(TrainerConfig {
        epochs,
        run_dir: Some(run_dir.to_path_buf()),
        seed: s.seed,
        monitor: Some(("valid.accuracy".into(), Direction::Max)),
        // A run stopped before its baseline started has no baseline checkpoint.
        resume: s.resume && run_dir.join("checkpoints/latest.json").is_file(),
        config,
        ..Default::default()
    });
    Ok(trainer.fit(&mut clf, &mut opt, train, Some(&s.test))?)
}

fn accuracy(r: &FitReport) -> Result<f64> {
    Ok(*r
        .last()
        .context("no epoch was run")?
        .valid
        .get("accuracy")
        .context("no validation accuracy")?)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let c = &args.common;
    let device = c.device()?;
    let started = Instant::now();
    let cell = match args.cell.as_str() {
        "lstm" => RnnCell::Lstm,
        "gru" => RnnCell::Gru,
        other => bail!("unknown --cell '{other}' (lstm or gru)"),
    };
    let (train_digits, test_digits) = digit_images(&args.source, c)?;
    let clips = |digits: &Tensor, n: usize, seed: u64| -> Result<MovingDigits> {
        Ok(MovingDigits::new(
            digits,
            MovingDigitsConfig {
                frames: args.frames,
                clips: n,
                seed,
                ..Default::default()
            },
            &device,
        )?)
    };
    let batch = c.batch_size.unwrap_or(32);
    let train = DataLoader::new(
        clips(&train_digits, args.train_clips, c.seed)?,
        LoaderConfig::train(batch, c.seed),
    )?;
    // Held-out clips: other digits and another seed, so no clip is seen twice.
    let test = DataLoader::new(
        clips(
            &test_digits,
            args.test_clips,
            c.seed.wrapping_add(1_000_003),
        )?,
        LoaderConfig::eval(128),
    )?;
    let epochs = c.epochs.unwrap_or(8);
    let lr = c.lr.unwrap_or(3e-3);
    let cfg = VideoConfig {
        cell,
        ..VideoConfig::moving_digits(4)
    };
    let run_dir = c.run_dir("video_rnn");
    let config = |model: &str| {
        serde_json::json!({"example": "video_rnn", "model": model, "source": args.source, "frames": args.frames,
            "train_clips": args.train_clips, "test_clips": args.test_clips, "cell": args.cell,
            "epochs": epochs, "lr": lr, "batch_size": batch})
    };
    let vm = VarMap::new();
    let model = video_classifier(
        cfg,
        taper::nn::init::seeded_var_builder(&vm, c.seed, DType::F32, &device),
    )?;
    let t0 = Instant::now();
    let setup = Setup {
        train,
        test,
        epochs,
        lr,
        seed: c.seed,
        resume: c.resume.is_some(),
    };
    let report = fit(model, vm, &run_dir, &setup, config("cnn+rnn"))?;
    let clip_seconds = t0.elapsed().as_secs_f64();
    let clip_acc = accuracy(&report)?;
    println!("run directory: {}", run_dir.display());
    println!(
        "CNN + {}: held-out clip accuracy {:.4} after {} epochs ({:.0} s)",
        args.cell.to_uppercase(),
        clip_acc,
        report.history.len(),
        clip_seconds
    );
    let mut json = serde_json::json!({"example": "video_rnn", "source": args.source, "cell": args.cell,
        "frames": args.frames, "train_clips": args.train_clips, "test_clips": args.test_clips,
        "epochs": report.history.len(), "clip_accuracy": clip_acc, "clip_train_seconds": clip_seconds,
        "chance": 0.25, "run_dir": run_dir});
    if !args.no_baseline {
        let vm = VarMap::new();
        let model = frame_classifier(
            cfg,
            taper::nn::init::seeded_var_builder(&vm, c.seed, DType::F32, &device),
        )?;
        let t0 = Instant::now();
        let r = fit(
            model,
            vm,
            &run_dir.join("single_frame"),
            &setup,
            config("single-frame"),
        )?;
        let acc = accuracy(&r)?;
        println!(
            "single-frame baseline (last frame only): held-out accuracy {:.4} ({:.0} s)",
            acc,
            t0.elapsed().as_secs_f64()
        );
        json["single_frame_accuracy"] = acc.into();
    }
    json["seconds"] = started.elapsed().as_secs_f64().into();
    println!("{json}");
    Ok(())
}
