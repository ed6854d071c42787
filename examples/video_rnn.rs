//! Clip classification with a CNN over frames and an LSTM (or GRU) over time, on
//! generated Moving-MNIST-style clips: one digit bouncing in a 64x64 canvas; the
//! label is the direction it moves at the end of the clip, which no single frame
//! shows. The same encoder trained on the last frame alone is the baseline.
//!
//! Training, validation and test clips are drawn from disjoint digit images (and
//! seeds); keep-best watches the validation loss and the test clips are
//! evaluated once, with the kept checkpoint. Both runs load back with
//! `ImageClassifier::load` (the baseline's is `RUN/single_frame`).
//!
//! `cargo run --release --example video_rnn` (embedded digits, no download) or
//! `-- --source mnist` (MNIST digits from the data root).

use anyhow::{bail, Context, Result};
use clap::Parser;
use std::time::Instant;
use taper::train::data::{split_indices, DataLoader, LoaderConfig, TensorBatch};
use taper::train::{cli::ExampleArgs, Optimizers, TestReport, Trainer, TrainerConfig};
use taper::vision::datasets::builtin::rows;
use taper::vision::datasets::{builtin, moving::DIRECTIONS, MovingDigits, MovingDigitsConfig};
use taper::vision::models::video::RnnCell;
use taper::vision::models::VideoConfig;
use taper::vision::{ClassifierConfig, ImageClassifier, Preprocessing};

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
    /// Training clips (validation clips: --valid-fraction as many, from held-out digits).
    #[arg(long, default_value_t = 2048)]
    train_clips: usize,
    /// Test clips (from the test digits, another seed).
    #[arg(long, default_value_t = 1024)]
    test_clips: usize,
    /// Recurrent cell: lstm or gru.
    #[arg(long, default_value = "lstm")]
    cell: String,
    /// Skip the single-frame baseline.
    #[arg(long)]
    no_baseline: bool,
}

type Loaders = [DataLoader<TensorBatch>; 3];

/// Trains `config` on the clips and evaluates its kept checkpoint once.
fn fit(
    args: &Args,
    config: ClassifierConfig,
    loaders: &Loaders,
    trainer: TrainerConfig,
) -> Result<TestReport> {
    let c = &args.common;
    let device = c.device()?;
    let names = DIRECTIONS.map(String::from).to_vec();
    let mut model = ImageClassifier::new(
        config,
        Preprocessing::new(1, (64, 64), names),
        c.seed,
        &device,
    )?;
    let (epochs, lr) = (trainer.epochs, c.lr.unwrap_or(3e-3));
    let batches = loaders[0].num_batches();
    let mut opt =
        Optimizers::adamw_one_cycle(model.varmap(), lr, 1e-4, epochs, batches, c.accumulate);
    let [train, valid, test] = loaders;
    Ok(Trainer::new(trainer).fit_and_test(&mut model, &mut opt, train, valid, test)?)
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
    let (x, side) = match args.source.as_str() {
        "digits" => {
            let d = builtin("digits", &c.data_root(), c.seed)?;
            (candle_core::Tensor::cat(&[d.train_x, d.test_x], 0)?, 24)
        }
        "mnist" => (
            builtin("mnist", &c.data_root(), c.seed)?
                .train_x
                .narrow(0, 0, 20_000)?,
            28,
        ),
        other => bail!("unknown --source '{other}' (digits or mnist)"),
    };
    let x = if x.dim(2)? == side {
        x
    } else {
        x.upsample_nearest2d(side, side)?
    };
    // Disjoint digit images for training, validation and test clips.
    let (rest, test_idx) = split_indices(x.dim(0)?, 0.2, c.seed)?;
    let (tr, va) = split_indices(rest.len(), c.valid_fraction()?, c.seed.wrapping_add(1))?;
    let of_rest = |i: &[usize]| i.iter().map(|&k| rest[k]).collect::<Vec<_>>();
    let valid_clips = ((args.train_clips as f64 * c.valid_fraction()?).round() as usize).max(1);
    let batch = c.batch_size.unwrap_or(32);
    let clips = |idx: &[usize],
                 n: usize,
                 seed: u64,
                 cfg: LoaderConfig|
     -> Result<DataLoader<TensorBatch>> {
        let mc = MovingDigitsConfig {
            frames: args.frames,
            clips: n,
            seed,
            ..Default::default()
        };
        Ok(DataLoader::new(
            MovingDigits::new(&rows(&x, idx)?, mc, &device)?,
            cfg,
        )?)
    };
    let loaders: Loaders = [
        clips(
            &of_rest(&tr),
            args.train_clips,
            c.seed,
            LoaderConfig::train(batch, c.seed),
        )?,
        clips(
            &of_rest(&va),
            valid_clips,
            c.seed.wrapping_add(7),
            LoaderConfig::eval(128),
        )?,
        clips(
            &test_idx,
            args.test_clips,
            c.seed.wrapping_add(1_000_003),
            LoaderConfig::eval(128),
        )?,
    ];
    let cfg = VideoConfig {
        cell,
        ..VideoConfig::moving_digits(DIRECTIONS.len())
    };
    let epochs = c.epochs_or(8)?;
    let run_dir = c.run_dir("video_rnn")?;
    let config = |model: &str| {
        serde_json::json!({"example": "video_rnn", "model": model, "source": args.source, "frames": args.frames,
            "train_clips": args.train_clips, "test_clips": args.test_clips, "cell": args.cell,
            "epochs": epochs, "lr": c.lr, "batch_size": batch})
    };
    let r = fit(
        &args,
        ClassifierConfig::Video(cfg),
        &loaders,
        c.trainer_config("video_rnn", epochs, config("cnn+rnn"))?,
    )?;
    let acc = |m: &taper::train::Metrics| m.mean("accuracy").unwrap_or(f64::NAN);
    println!("run directory: {}", run_dir.display());
    println!(
        "CNN + {}: validation accuracy {:.4}, test accuracy {:.4} after {} epochs ({:.0} s)",
        args.cell.to_uppercase(),
        acc(&r.valid),
        acc(&r.test),
        r.fit.history.len(),
        r.fit.seconds
    );
    let mut json = serde_json::json!({"example": "video_rnn", "source": args.source, "cell": args.cell,
        "frames": args.frames, "train_clips": args.train_clips, "valid_clips": valid_clips, "test_clips": args.test_clips,
        "epochs": r.fit.history.len(), "clip_train_seconds": r.fit.seconds, "chance": 0.25, "run_dir": run_dir});
    json.as_object_mut()
        .context("a JSON object")?
        .extend(r.figures());
    if !args.no_baseline {
        let dir = run_dir.join("single_frame");
        // A run stopped before its baseline started has no baseline checkpoint to resume.
        let resume = c.resume.is_some() && dir.join("checkpoints/latest.json").is_file();
        let t = TrainerConfig {
            run_dir: Some(dir),
            resume,
            ..c.trainer_config("video_rnn", epochs, config("frame"))?
        };
        let b = fit(&args, ClassifierConfig::Frame(cfg), &loaders, t)?;
        println!(
            "single-frame baseline (last frame only): validation accuracy {:.4}, test accuracy {:.4} ({:.0} s)",
            acc(&b.valid),
            acc(&b.test),
            b.fit.seconds
        );
        json["single_frame_valid_accuracy"] = acc(&b.valid).into();
        json["single_frame_test_accuracy"] = acc(&b.test).into();
    }
    json["seconds"] = started.elapsed().as_secs_f64().into();
    println!("{json}");
    Ok(())
}
