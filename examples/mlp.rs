//! The seed's multi-layer perceptron (two hidden layers, softmax cross-entropy, Adam)
//! trained with Taper's `Trainer`, on the embedded 8x8 digits or on MNIST.
//!
//! `cargo run --release --example mlp` (digits, seconds) or
//! `cargo run --release --example mlp -- --dataset mnist`.

use anyhow::Result;
use candle_core::DType;
use candle_nn::VarMap;
use clap::Parser;
use std::time::Instant;
use taper::train::data::{split_indices, DataLoader, LoaderConfig, TensorDataset};
use taper::train::optim::{named_vars, Adam, AdamConfig};
use taper::train::schedule::WarmupCosine;
use taper::train::{cli::ExampleArgs, clip::Clip, Classifier, Optimizers, Trainer, TrainerConfig};
use taper::vision::datasets::{digits, load_digits, load_mnist, Split};
use taper::vision::models::Mlp;

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
    // Train, held-out test, and the epochs / lr defaults per data set.
    let (train_x, train_y, test_x, test_y, epochs, lr, batch) = match args.dataset.as_str() {
        "digits" => {
            let (x, y) = load_digits(&digits::default_digits_path())?;
            let (tr, te) = split_indices(x.dim(0)?, 0.2, c.seed)?;
            let all = TensorDataset::new(vec![x, y], &device)?;
            let (a, b) = (all.subset(&tr)?, all.subset(&te)?);
            let f = |d: &TensorDataset, i: usize| d.fields()[i].clone();
            (f(&a, 0), f(&a, 1), f(&b, 0), f(&b, 1), 40, 1e-3, 32)
        }
        "mnist" => {
            let dir = taper::train::data::root::require_dir(&c.data_root(), "mnist")?;
            let (x, y) = load_mnist(&dir, Split::Train)?;
            let (tx, ty) = load_mnist(&dir, Split::Test)?;
            (x, y, tx, ty, 15, 1e-3, 128)
        }
        other => anyhow::bail!("unknown --dataset '{other}' (digits or mnist)"),
    };
    let epochs = c.epochs.unwrap_or(epochs);
    let lr = c.lr.unwrap_or(lr);
    let batch = c.batch_size.unwrap_or(batch);
    let inputs = train_x.elem_count() / train_x.dim(0)?;
    let varmap = VarMap::new();
    let vb = taper::nn::init::seeded_var_builder(&varmap, c.seed, DType::F32, &device);
    let model = Mlp::new(inputs, args.hidden1, args.hidden2, 10, args.dropout, vb)?;
    let mut clf = Classifier::new(model, varmap.clone());

    let train = DataLoader::new(
        TensorDataset::new(vec![train_x, train_y], &device)?,
        LoaderConfig::train(batch, c.seed),
    )?;
    let test = DataLoader::new(
        TensorDataset::new(vec![test_x, test_y], &device)?,
        LoaderConfig::eval(1024),
    )?;
    // Schedules count updates; with accumulation an epoch makes ceil(batches / K).
    let steps = epochs * train.num_batches().div_ceil(c.accumulate.max(1));
    let adam = Adam::new(
        named_vars(&varmap, ""),
        AdamConfig {
            lr,
            ..Default::default()
        },
    );
    let mut opt = Optimizers::new()
        .with_group(
            "model",
            adam,
            WarmupCosine::cosine(lr, lr * 0.01, steps),
            Clip::GlobalNorm(5.0),
        )
        .with_accumulation(c.accumulate);
    let run_dir = c.run_dir("mlp");
    let mut trainer = Trainer::new(TrainerConfig {
        epochs,
        run_dir: Some(run_dir.clone()),
        seed: c.seed,
        monitor: Some((
            "valid.accuracy".into(),
            taper::train::schedule::Direction::Max,
        )),
        resume: c.resume.is_some(),
        checkpoint_every: c.checkpoint_every,
        config: serde_json::json!({"example": "mlp", "dataset": args.dataset, "lr": lr,
            "batch_size": batch, "epochs": epochs, "hidden1": args.hidden1,
            "hidden2": args.hidden2, "dropout": args.dropout}),
        ..Default::default()
    });
    let report = trainer.fit(&mut clf, &mut opt, &train, Some(&test))?;
    let last = report
        .last()
        .ok_or_else(|| anyhow::anyhow!("no epoch was run"))?;
    let acc = last.valid.get("accuracy").copied().unwrap_or(f64::NAN);
    println!("run directory: {}", run_dir.display());
    println!(
        "test accuracy {:.4} after {} epochs",
        acc,
        report.history.len()
    );
    println!(
        "{}",
        serde_json::json!({"example": "mlp", "dataset": args.dataset, "test_accuracy": acc,
            "epochs": report.history.len(), "seconds": started.elapsed().as_secs_f64(),
            "run_dir": run_dir})
    );
    Ok(())
}
