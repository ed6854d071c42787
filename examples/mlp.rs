//! The seed's multi-layer perceptron (two hidden layers, softmax cross-entropy, Adam)
//! trained with Taper's `Trainer`, on the embedded 8x8 digits or on MNIST. Keep-best
//! watches a stratified `--valid-fraction` of the training images; the test split
//! is evaluated once, with the kept checkpoint.
//!
//! `cargo run --release --example mlp` (digits, seconds) or
//! `cargo run --release --example mlp -- --dataset mnist`.

use anyhow::{Context, Result};
use clap::Parser;
use std::time::Instant;
use taper::train::data::{DataLoader, LoaderConfig, TensorDataset};
use taper::train::optim::{named_vars, Adam, AdamConfig};
use taper::train::schedule::WarmupCosine;
use taper::train::{cli::ExampleArgs, clip::Clip, Optimizers, Trainer};
use taper::vision::datasets::builtin;
use taper::vision::models::MlpConfig;
use taper::vision::report::classifier_section;
use taper::vision::{ClassifierConfig, ImageClassifier, Preprocessing};

#[global_allocator]
static GLOBAL: taper::alloc::Allocator = taper::alloc::Allocator;

#[derive(Parser, Debug)]
#[command(about = "Train the seed's MLP on digits or MNIST")]
struct Args {
    #[command(flatten)]
    common: ExampleArgs,
    /// digits (embedded) or mnist (from the data root).
    #[arg(long, default_value = "digits")]
    dataset: String,
    /// Width of the first hidden layer.
    #[arg(long, default_value_t = 256)]
    hidden1: usize,
    /// Width of the second hidden layer.
    #[arg(long, default_value_t = 128)]
    hidden2: usize,
    /// Dropout probability after each hidden layer.
    #[arg(long, default_value_t = 0.1)]
    dropout: f32,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let c = &args.common;
    let device = c.device()?;
    let started = Instant::now();
    let data = builtin(&args.dataset, &c.data_root(), c.seed)?;
    let ((x, y), (vx, vy)) = data.split_valid(c.valid_fraction()?, c.seed)?;
    let small = data.side == 8;
    let epochs = c.epochs_or(if small { 40 } else { 15 })?;
    let (lr, batch) = (
        c.lr.unwrap_or(1e-3),
        c.batch_size.unwrap_or(if small { 32 } else { 128 }),
    );
    let loader = |x, y, cfg| -> Result<_> {
        Ok(DataLoader::new(
            TensorDataset::new(vec![x, y], &device)?,
            cfg,
        )?)
    };
    let train = loader(x, y, LoaderConfig::train(batch, c.seed))?;
    let valid = loader(vx.clone(), vy.clone(), LoaderConfig::eval(1024))?;
    let test = loader(
        data.test_x.clone(),
        data.test_y.clone(),
        LoaderConfig::eval(1024),
    )?;

    let (side, classes) = (data.side, data.classes.len());
    let config = ClassifierConfig::Mlp(MlpConfig {
        in_dim: side * side,
        hidden1: args.hidden1,
        hidden2: args.hidden2,
        classes,
        dropout: args.dropout,
    });
    let mut model = ImageClassifier::new(
        config,
        Preprocessing::new(1, (side, side), data.classes),
        c.seed,
        &device,
    )?;
    // Schedules count updates; with accumulation an epoch makes ceil(batches / K).
    let updates = epochs * train.num_batches().div_ceil(c.accumulate.max(1));
    let adam = Adam::new(
        named_vars(model.varmap(), ""),
        AdamConfig {
            lr,
            ..Default::default()
        },
    );
    let mut opt = Optimizers::new()
        .with_group(
            "model",
            adam,
            WarmupCosine::cosine(lr, lr * 0.01, updates),
            Clip::GlobalNorm(5.0),
        )
        .with_accumulation(c.accumulate);
    let run_dir = c.run_dir("mlp")?;
    let config = serde_json::json!({"example": "mlp", "dataset": args.dataset, "lr": lr, "batch_size": batch,
        "epochs": epochs, "hidden1": args.hidden1, "hidden2": args.hidden2, "dropout": args.dropout});
    // Keep-best watches the validation loss (the default): on 144 validation
    // digits the accuracy ties at its best long before the model is done.
    let mut trainer = Trainer::new(c.trainer_config("mlp", epochs, config)?);
    let r = trainer.fit_and_test(&mut model, &mut opt, &train, &valid, &test)?;
    println!("run directory: {}", run_dir.display());
    println!(
        "validation accuracy {:.4}, test accuracy {:.4} after {} epochs",
        r.valid.mean("accuracy").unwrap_or(f64::NAN),
        r.test.mean("accuracy").unwrap_or(f64::NAN),
        r.fit.history.len()
    );
    let mut json = serde_json::json!({"example": "mlp", "dataset": args.dataset, "epochs": r.fit.history.len(),
        "kept_checkpoint": r.kept, "seconds": started.elapsed().as_secs_f64(), "run_dir": run_dir});
    json.as_object_mut()
        .context("a JSON object")?
        .extend(r.figures());
    // The kept model's confusion and worst mistakes on the validation split.
    classifier_section(&model, &vx, &vy, "validation", &run_dir, 16)?;
    let page = taper::train::report::finish(&run_dir, &json, None)?;
    println!("report: {}", page.display());
    println!("{json}");
    Ok(())
}
