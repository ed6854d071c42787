//! The seed's computer-vision pipeline: preprocessing, then a convolutional network
//! trained with Adam. Embedded 8x8 digits by default (seconds), `--dataset mnist`
//! or `--dataset fashion-mnist` from the data root; `--predict IMAGE` classifies a
//! picture with a trained run (`--resume RUN_DIR`).

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, D};
use candle_nn::VarMap;
use clap::Parser;
use std::path::Path;
use std::time::Instant;
use taper::nn::{Forward, Mode};
use taper::train::checkpoint;
use taper::train::clip::Clip;
use taper::train::data::{
    root::require_dir, split_indices, DataLoader, LoaderConfig, TensorDataset,
};
use taper::train::optim::{named_vars, Adam, AdamConfig};
use taper::train::schedule::{Direction, OneCycle};
use taper::train::{cli::ExampleArgs, Classifier, Optimizers, Trainer, TrainerConfig};
use taper::vision::datasets::{digits, load_digits, load_mnist, InMemoryImages, Split};
use taper::vision::models::{Cnn, CnnConfig, LeNet, LeNetConfig, ResNet, ResNetConfig};
use taper::vision::transforms::{open_image, to_tensor, Compose, Normalize, RandomAffine, Resize};

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
    /// Classify this image with the run in --resume (or --out) instead of training.
    #[arg(long, value_name = "IMAGE")]
    predict: Option<std::path::PathBuf>,
    /// Train on the first N training images only (quick runs, memory checks).
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
}

fn build(
    model: &str,
    dataset: &str,
    vb: candle_nn::VarBuilder,
) -> Result<Box<dyn Forward + Send + Sync>> {
    let small = dataset == "digits";
    Ok(match model {
        "lenet" => Box::new(LeNet::new(
            if small {
                LeNetConfig::digits()
            } else {
                LeNetConfig::mnist()
            },
            vb,
        )?),
        "cnn" => Box::new(Cnn::new(
            if small {
                CnnConfig::digits()
            } else {
                CnnConfig::mnist()
            },
            vb,
        )?),
        "resnet" => {
            let side = if small { 8 } else { 28 };
            Box::new(ResNet::new(ResNetConfig::small(1, (side, side), 10), vb)?)
        }
        other => bail!("unknown --model '{other}' (lenet, cnn or resnet)"),
    })
}

fn side(dataset: &str) -> u32 {
    if dataset == "digits" {
        8
    } else {
        28
    }
}

fn predict(args: &Args, image: &Path, device: &Device) -> Result<()> {
    let run = args
        .common
        .resume
        .as_ref()
        .or(args.common.out.as_ref())
        .context("--predict needs the trained run: --resume RUN_DIR")?;
    let ck = checkpoint::read(run, "best")?
        .or(checkpoint::read(run, "latest")?)
        .with_context(|| format!("{}: no checkpoint; train first", run.display()))?;
    let cfg = &ck.state.config;
    let dataset = cfg["dataset"].as_str().unwrap_or("digits").to_string();
    let model_kind = cfg["model"].as_str().unwrap_or("lenet").to_string();
    let varmap = VarMap::new();
    let vb = taper::nn::init::seeded_var_builder(&varmap, 0, DType::F32, device);
    let model = build(&model_kind, &dataset, vb)?;
    ck.load_weights(&varmap)?;
    // Any photo: grey, resized to the training side; dark digits on light paper
    // are inverted to the training sets' light-on-dark.
    let s = side(&dataset);
    let img = Compose::new()
        .then(Resize::new(s, s))
        .apply(open_image(image)?, 0)?;
    let mut x = to_tensor(&img, 1, device)?;
    if x.mean_all()?.to_scalar::<f32>()? > 0.5 {
        x = (1.0 - x)?;
    }
    let x = Normalize::mnist().apply(&x.unsqueeze(0)?)?;
    let probs = taper::nn::softmax(&model.forward_t(&x, &Mode::eval())?)?.squeeze(0)?;
    let p: Vec<f32> = probs.to_vec1()?;
    let best = probs.argmax(D::Minus1)?.to_scalar::<u32>()?;
    println!(
        "{}: class {best} ({:.1} %) with {model_kind} trained on {dataset}",
        image.display(),
        100.0 * p[best as usize]
    );
    println!(
        "{}",
        serde_json::json!({"example": "mnist_cnn", "image": image, "prediction": best, "probabilities": p})
    );
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    let c = &args.common;
    let device = c.device()?;
    if let Some(image) = &args.predict {
        return predict(&args, image, &device);
    }
    let started = Instant::now();
    let (train_x, train_y, test_x, test_y, epochs, batch) = match args.dataset.as_str() {
        "digits" => {
            let (x, y) = load_digits(&digits::default_digits_path())?;
            let (tr, te) = split_indices(x.dim(0)?, 0.2, c.seed)?;
            let all = TensorDataset::new(vec![x, y], &Device::Cpu)?;
            let (a, b) = (all.subset(&tr)?, all.subset(&te)?);
            let f = |d: &TensorDataset, i: usize| d.fields()[i].clone();
            (f(&a, 0), f(&a, 1), f(&b, 0), f(&b, 1), 30, 32)
        }
        name @ ("mnist" | "fashion-mnist") => {
            let dir = require_dir(&c.data_root(), name)?;
            let (x, y) = load_mnist(&dir, Split::Train)?;
            let (tx, ty) = load_mnist(&dir, Split::Test)?;
            (x, y, tx, ty, 8, 128)
        }
        other => bail!("unknown --dataset '{other}' (digits, mnist or fashion-mnist)"),
    };
    let epochs = c.epochs.unwrap_or(epochs);
    let batch = c.batch_size.unwrap_or(batch);
    let lr = c.lr.unwrap_or(3e-3);
    let (train_x, train_y) = match args.limit {
        Some(0) => bail!("--limit must be at least 1"),
        Some(n) if n < train_x.dim(0)? => (train_x.narrow(0, 0, n)?, train_y.narrow(0, 0, n)?),
        _ => (train_x, train_y),
    };
    let varmap = VarMap::new();
    let vb = taper::nn::init::seeded_var_builder(&varmap, c.seed, DType::F32, &device);
    let mut clf = Classifier::new(build(&args.model, &args.dataset, vb)?, varmap.clone());

    let mut train_src = InMemoryImages::from_tensors(&train_x, &train_y, &device)?
        .with_normalize(Normalize::mnist());
    if args.augment {
        let aug = Compose::new().then(RandomAffine {
            degrees: 10.0,
            translate: (0.1, 0.1),
            scale: (0.9, 1.1),
        });
        train_src = train_src.with_transform(aug, c.seed);
    }
    let train = DataLoader::new(train_src, LoaderConfig::train(batch, c.seed))?;
    let test_src =
        InMemoryImages::from_tensors(&test_x, &test_y, &device)?.with_normalize(Normalize::mnist());
    let test = DataLoader::new(test_src, LoaderConfig::eval(500))?;

    // Schedules count updates; with accumulation an epoch makes ceil(batches / K).
    let steps = epochs * train.num_batches().div_ceil(c.accumulate.max(1));
    let adam = Adam::new(
        named_vars(&varmap, ""),
        AdamConfig {
            lr,
            weight_decay: 1e-4,
            decoupled_weight_decay: true,
            ..Default::default()
        },
    );
    let mut opt = Optimizers::new()
        .with_group(
            "model",
            adam,
            OneCycle::new(lr, steps),
            Clip::GlobalNorm(5.0),
        )
        .with_accumulation(c.accumulate);
    let run_dir = c.run_dir("mnist_cnn");
    let mut trainer = Trainer::new(TrainerConfig {
        epochs,
        run_dir: Some(run_dir.clone()),
        seed: c.seed,
        monitor: Some(("valid.accuracy".into(), Direction::Max)),
        resume: c.resume.is_some(),
        checkpoint_every: c.checkpoint_every,
        config: serde_json::json!({"example": "mnist_cnn", "dataset": args.dataset, "model": args.model,
            "augment": args.augment, "limit": args.limit, "lr": lr, "batch_size": batch, "epochs": epochs}),
        ..Default::default()
    });
    let report = trainer.fit(&mut clf, &mut opt, &train, Some(&test))?;
    let last = report.last().context("no epoch was run")?;
    let acc = last.valid.get("accuracy").copied().unwrap_or(f64::NAN);
    let best = report.best_metric.unwrap_or(f64::NAN);
    println!("run directory: {}", run_dir.display());
    println!(
        "{} {}: test accuracy {:.4} (best {:.4}) after {} epochs",
        args.model,
        args.dataset,
        acc,
        best,
        report.history.len()
    );
    println!(
        "{}",
        serde_json::json!({"example": "mnist_cnn", "dataset": args.dataset, "model": args.model,
            "augment": args.augment, "test_accuracy": acc, "best_test_accuracy": best,
            "epochs": report.history.len(), "seconds": started.elapsed().as_secs_f64(), "run_dir": run_dir})
    );
    Ok(())
}
