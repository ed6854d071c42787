//! LeNet, the batch-norm CNN or the small ResNet on the embedded digits, MNIST or
//! Fashion-MNIST, and prediction of a photo with a trained run:
//!
//! ```text
//! cargo run --release --example mnist_cnn -- --dataset fashion-mnist --model cnn --augment
//! cargo run --release --example mnist_cnn -- --predict digit.png --resume runs/mnist_cnn-…
//! ```
//!
//! Honest evaluation: keep-best watches the loss on a seeded, stratified `--valid-fraction`
//! (0.1) of the training images; the test split is evaluated once, at the end,
//! with the kept checkpoint.

use anyhow::{Context, Result};
use candle_core::Tensor;
use clap::Parser;
use std::time::Instant;
use taper::train::cli::ExampleArgs;
use taper::train::data::{DataLoader, LoaderConfig};
use taper::train::{Optimizers, Trainer};
use taper::vision::datasets::{builtin, InMemoryImages};
use taper::vision::report::classifier_section;
use taper::vision::transforms::{open_image, Compose, Normalize, RandomAffine};
use taper::vision::{ClassifierConfig, ImageClassifier, Preprocessing};

#[global_allocator]
static GLOBAL: taper::alloc::Allocator = taper::alloc::Allocator;

#[derive(Parser, Debug)]
#[command(about = "Train a CNN on digits, MNIST or Fashion-MNIST, or classify an image")]
struct Args {
    #[command(flatten)]
    common: ExampleArgs,
    /// digits (embedded), mnist or fashion-mnist.
    #[arg(long, default_value = "digits")]
    dataset: String,
    /// lenet, cnn (batch norm + dropout) or resnet.
    #[arg(long, default_value = "lenet")]
    model: String,
    /// Random affine augmentation (rotation 10°, shift 10 %, scale 0.9-1.1).
    #[arg(long)]
    augment: bool,
    /// Classify this image with the run given by --resume instead of training.
    #[arg(long, value_name = "IMAGE")]
    predict: Option<std::path::PathBuf>,
    /// Train on the first N training images only (quick runs, memory checks).
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let c = &args.common;
    let device = c.device()?;
    if let Some(image) = &args.predict {
        c.reject("mnist_cnn --predict", ExampleArgs::TRAINING)?;
        let run = c
            .resume
            .as_ref()
            .context("--predict needs the trained run: --resume RUN_DIR")?;
        let model = ImageClassifier::load(run, &device)?;
        // Dark digits on light paper are inverted to the training sets' light-on-dark.
        let mut img = open_image(image)?.grayscale();
        let luma = img.to_luma8();
        if luma.iter().map(|&v| v as f64).sum::<f64>() / luma.len().max(1) as f64 > 127.5 {
            img.invert();
        }
        let top = model.predict(&img, 3)?;
        println!(
            "{}: {} ({:.1} %)",
            image.display(),
            top[0].0,
            100.0 * top[0].1
        );
        println!(
            "{}",
            serde_json::json!({"example": "mnist_cnn", "image": image, "top": top})
        );
        return Ok(());
    }
    let started = Instant::now();
    let mut data = builtin(&args.dataset, &c.data_root(), c.seed)?;
    if let Some(n) = args.limit {
        data = data.limit(n)?;
    }
    // A stratified validation split of the training images: the test split is
    // never seen before the end.
    let ((x, y), (vx, vy)) = data.split_valid(c.valid_fraction()?, c.seed)?;
    let images = |x: &Tensor, y: &Tensor| -> Result<InMemoryImages> {
        Ok(InMemoryImages::from_tensors(x, y, &device)?.with_normalize(Normalize::mnist()))
    };
    let mut train_src = images(&x, &y)?;
    if args.augment {
        let aug = RandomAffine {
            degrees: 10.0,
            translate: (0.1, 0.1),
            scale: (0.9, 1.1),
        };
        train_src = train_src.with_transform(Compose::new().then(aug), c.seed);
    }
    let side = data.side;
    let small = side == 8;
    let (epochs, batch) = if small { (30, 32) } else { (8, 128) };
    let (epochs, batch, lr) = (
        c.epochs_or(epochs)?,
        c.batch_size.unwrap_or(batch),
        c.lr.unwrap_or(3e-3),
    );
    let train = DataLoader::new(train_src, LoaderConfig::train(batch, c.seed))?;
    let valid = DataLoader::new(images(&vx, &vy)?, LoaderConfig::eval(500))?;
    let test = DataLoader::new(images(&data.test_x, &data.test_y)?, LoaderConfig::eval(500))?;

    let pre = Preprocessing::new(1, (side, side), data.classes.clone())
        .with_normalize(&Normalize::mnist());
    let config = ClassifierConfig::for_images(&args.model, 1, (side, side), 10)?;
    let mut model = ImageClassifier::new(config, pre, c.seed, &device)?;
    let batches = train.num_batches();
    let mut opt =
        Optimizers::adamw_one_cycle(model.varmap(), lr, 1e-4, epochs, batches, c.accumulate);
    let run_dir = c.run_dir("mnist_cnn")?;
    let config = serde_json::json!({"example": "mnist_cnn", "dataset": args.dataset, "model": args.model,
        "augment": args.augment, "limit": args.limit, "lr": lr, "batch_size": batch, "epochs": epochs, "seed": c.seed});
    // Keep-best watches the validation loss (the default): on small splits the
    // accuracy ties at 100 % long before the model is done.
    let mut trainer = Trainer::new(c.trainer_config("mnist_cnn", epochs, config)?);
    let r = trainer.fit_and_test(&mut model, &mut opt, &train, &valid, &test)?;
    let (va, ta) = (
        r.valid.mean("accuracy").unwrap_or(f64::NAN),
        r.test.mean("accuracy").unwrap_or(f64::NAN),
    );
    println!("run directory: {}", run_dir.display());
    println!(
        "{} {}: validation accuracy {va:.4}, test accuracy {ta:.4} (kept {:?})",
        args.model, args.dataset, r.kept
    );
    let mut json = serde_json::json!({"example": "mnist_cnn", "dataset": args.dataset, "model": args.model,
        "augment": args.augment, "epochs": r.fit.history.len(), "kept_checkpoint": r.kept,
        "seconds": started.elapsed().as_secs_f64(), "run_dir": run_dir});
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
