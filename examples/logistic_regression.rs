//! Logistic regression: binary on breast cancer, multinomial on digits, iris,
//! wine (embedded; features standardised on the training rows, 20 % held out) or
//! MNIST (pixels in 0..1, the standard 60k / 10k split, read from the data root).
//!
//! Two solvers minimise the same objective: `--solver newton` (default for the
//! embedded sets: Newton for two classes, L-BFGS for more, on the host in f64) and
//! `--solver trainer` (mini-batch gradient descent through taper-train's Trainer;
//! the only one for MNIST, too large for the full-batch host solver).
//!
//! `cargo run --release --example logistic_regression -- --dataset digits`
//! `cargo run --release --example logistic_regression -- --dataset mnist`
//!
//! The fitted model (safetensors + JSON) goes into the run folder, beside the
//! trainer's `metrics.jsonl`, `loss.png` and checkpoints. The last stdout line is
//! a JSON summary.

use anyhow::{bail, Context, Result};
use candle_core::{DType, Tensor};
use clap::{Parser, ValueEnum};
use std::time::Instant;
use taper::regression::metrics::{self, Average};
use taper::regression::nalgebra::DMatrix;
use taper::regression::{
    load_breast_cancer, load_digits, load_iris, load_wine, train_test_split, GdConfig, GdOptimizer,
    GdSchedule, LogisticModel, LogisticRegression,
};
use taper::train::cli::ExampleArgs;
use taper::vision::datasets::{load_mnist, Split};

#[global_allocator]
static GLOBAL: taper::alloc::Allocator = taper::alloc::Allocator;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[clap(rename_all = "snake_case")]
enum Which {
    BreastCancer,
    Digits,
    Iris,
    Wine,
    Mnist,
}

impl Which {
    fn name(self) -> &'static str {
        match self {
            Which::BreastCancer => "breast_cancer",
            Which::Digits => "digits",
            Which::Iris => "iris",
            Which::Wine => "wine",
            Which::Mnist => "mnist",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Solver {
    /// Newton (binary) or L-BFGS (multinomial), full batch, f64.
    Newton,
    /// Mini-batch gradient descent through taper-train's Trainer.
    Trainer,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Opt {
    Adam,
    Sgd,
    Rmsprop,
}

#[derive(Parser, Debug)]
#[command(about = "Binary or multinomial logistic regression, by Newton/L-BFGS or the Trainer")]
struct Args {
    #[command(flatten)]
    common: ExampleArgs,
    /// Data set.
    #[arg(long, value_enum, default_value = "breast_cancer")]
    dataset: Which,
    /// Solver (default: newton for the embedded sets, trainer for MNIST).
    #[arg(long, value_enum)]
    solver: Option<Solver>,
    /// Optimizer of the trainer solver.
    #[arg(long, value_enum, default_value = "adam")]
    optimizer: Opt,
    /// Momentum of `--optimizer sgd`.
    #[arg(long, default_value_t = 0.9)]
    momentum: f64,
    /// Keep the trainer's learning rate constant instead of decaying it (cosine) to 0.
    #[arg(long)]
    constant_lr: bool,
    /// Inverse L2 strength (scikit-learn's C).
    #[arg(long, default_value_t = 1.0)]
    c: f64,
    /// Decision threshold on P(positive class); binary data sets only.
    #[arg(long, default_value_t = 0.5)]
    threshold: f64,
    /// Share of rows held out for testing (embedded sets; MNIST has its own test set).
    #[arg(long, default_value_t = 0.2)]
    test_fraction: f64,
}

/// The held-out rows the figures are computed on.
struct Held {
    x: DMatrix<f64>,
    labels: Vec<usize>,
    n_train: usize,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let c = &args.common;
    let device = c.device()?;
    let is_mnist = args.dataset == Which::Mnist;
    let solver = args.solver.unwrap_or(if is_mnist {
        Solver::Trainer
    } else {
        Solver::Newton
    });
    if is_mnist && solver == Solver::Newton {
        bail!("MNIST is too large for the full-batch host solver: use --solver trainer");
    }
    // Defaults per data set: MNIST in f32 with larger batches, the small sets in f64.
    let (epochs, batch, lr, dtype) = if is_mnist {
        (10, 128, 5e-3, DType::F32)
    } else {
        (100, 32, 0.01, DType::F64)
    };
    let dir = c.run_dir("logistic_regression");
    let gd = GdConfig {
        epochs: c.epochs.unwrap_or(epochs),
        batch_size: Some(c.batch_size.unwrap_or(batch)),
        optimizer: match args.optimizer {
            Opt::Adam => GdOptimizer::Adam,
            Opt::Sgd => GdOptimizer::Sgd {
                momentum: args.momentum,
                nesterov: false,
            },
            Opt::Rmsprop => GdOptimizer::RmsProp,
        },
        lr: c.lr.unwrap_or(lr),
        schedule: if args.constant_lr {
            GdSchedule::Constant
        } else {
            GdSchedule::Cosine
        },
        seed: c.seed,
        dtype,
        device,
        run_dir: Some(dir.clone()),
        resume: c.resume.is_some(),
        verbose: is_mnist,
    };
    let settings = LogisticRegression::new().c(args.c).standardize(!is_mnist);

    // Only the fit itself is timed, not reading the data.
    let (mut model, held, fit_seconds) = if is_mnist {
        let mnist = taper::train::data::root::require_dir(&c.data_root(), "mnist")?;
        let (x, y) = load_mnist(&mnist, Split::Train)?;
        let (tx, ty) = load_mnist(&mnist, Split::Test)?;
        let x = x.flatten_from(1)?;
        println!(
            "mnist: train {} x {} pixels, test {} (seed {})",
            x.dim(0)?,
            x.dim(1)?,
            tx.dim(0)?,
            c.seed
        );
        let started = Instant::now();
        let model = settings.fit_tensors_gd(&x, &y, &gd)?;
        let fit_seconds = started.elapsed().as_secs_f64();
        let held = Held {
            x: host_matrix(&tx.flatten_from(1)?)?,
            labels: ty
                .to_vec1::<u32>()?
                .into_iter()
                .map(|l| l as usize)
                .collect(),
            n_train: x.dim(0)?,
        };
        (model, held, fit_seconds)
    } else {
        let ds = match args.dataset {
            Which::BreastCancer => load_breast_cancer()?,
            Which::Digits => load_digits()?,
            Which::Iris => load_iris()?,
            Which::Wine => load_wine()?,
            Which::Mnist => bail!("MNIST is loaded above"),
        };
        let (train, test) = train_test_split(&ds, args.test_fraction, c.seed)?;
        println!(
            "{}: {} rows x {} features, {} classes; train {}, test {} (seed {})",
            args.dataset.name(),
            ds.n_samples(),
            ds.n_features(),
            ds.class_names.len(),
            train.n_samples(),
            test.n_samples(),
            c.seed
        );
        let started = Instant::now();
        let model = match solver {
            Solver::Newton => settings.fit_dataset(&train)?,
            Solver::Trainer => settings.fit_dataset_gd(&train, &gd)?,
        };
        let fit_seconds = started.elapsed().as_secs_f64();
        let held = Held {
            x: test.x.clone(),
            labels: test.labels()?,
            n_train: train.n_samples(),
        };
        (model, held, fit_seconds)
    };
    if model.is_binary() {
        model.set_threshold(args.threshold)?;
    }
    println!(
        "fitted in {fit_seconds:.2} s: {} {} (converged: {})",
        model.n_iter(),
        match (solver, model.is_binary()) {
            (Solver::Trainer, _) => "optimizer updates",
            (Solver::Newton, true) => "Newton iterations",
            (Solver::Newton, false) => "L-BFGS iterations",
        },
        model.converged()
    );
    let figures = report(&model, &held)?;

    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{}.safetensors", args.dataset.name()));
    model.save(&path)?;
    println!("wrote {}", path.display());

    let mut summary = serde_json::json!({
        "example": "logistic_regression",
        "dataset": args.dataset.name(),
        "solver": format!("{solver:?}").to_lowercase(),
        "seed": c.seed,
        "n_train": held.n_train,
        "n_test": held.labels.len(),
        "n_iter": model.n_iter(),
        "fit_seconds": fit_seconds,
    });
    if solver == Solver::Trainer {
        summary["epochs"] = gd.epochs.into();
        summary["batch_size"] = gd.batch_size.into();
        summary["lr"] = gd.lr.into();
    }
    if let (Some(s), Some(f)) = (summary.as_object_mut(), figures.as_object()) {
        s.extend(f.clone());
    }
    println!("{summary}");
    Ok(())
}

/// A `(N, p)` tensor as a host f64 matrix.
fn host_matrix(t: &Tensor) -> Result<DMatrix<f64>> {
    let (n, p) = t.dims2()?;
    let v: Vec<f64> = t.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
    Ok(DMatrix::from_row_slice(n, p, &v))
}

/// Prints the held-out figures and returns them as JSON.
fn report(model: &LogisticModel, held: &Held) -> Result<serde_json::Value> {
    let y = &held.labels;
    let pred = model.predict(&held.x)?;
    let proba = model.predict_proba(&held.x)?;
    let accuracy = metrics::accuracy(y, &pred)?;
    let log_loss = metrics::log_loss(y, &proba)?;
    let (average, roc_auc) = if model.is_binary() {
        let positive = model.classes()[1];
        let auc = metrics::roc_auc(y, proba.column(1).as_slice())?;
        (Average::Binary { positive }, Some(auc))
    } else {
        (Average::Macro, None)
    };
    let prf = metrics::precision_recall_f1(y, &pred, average)?;
    let cm =
        metrics::confusion_matrix(y, &pred, model.classes().iter().max().map_or(0, |m| m + 1))?;

    println!("\nheld out:");
    println!("  accuracy  {accuracy:.4}");
    let kind = if model.is_binary() { "binary" } else { "macro" };
    println!(
        "  precision {:.4}, recall {:.4}, F1 {:.4} ({kind})",
        prf.precision, prf.recall, prf.f1
    );
    if let Some(auc) = roc_auc {
        println!("  ROC-AUC   {auc:.4}");
    }
    println!("  log-loss  {log_loss:.4}");
    println!(
        "confusion matrix (rows: true, columns: predicted; classes {}):",
        model.class_names().join(", ")
    );
    print!("{cm}");
    Ok(serde_json::json!({
        "accuracy": accuracy,
        "precision": prf.precision,
        "recall": prf.recall,
        "f1": prf.f1,
        "roc_auc": roc_auc,
        "log_loss": log_loss,
        "confusion_matrix": cm.rows(),
    }))
}
