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
//! Longer than 200 lines: two solvers, five data sets and the trainer's
//! optimizer choices are each a flag, and MNIST arrives as tensors, not rows.
//!
//! The fitted model goes into the run folder (`model.json`, `weights.safetensors`;
//! `LogisticModel::load_run(RUN)` reads it back), beside the trainer's
//! `metrics.jsonl`, `loss.png` and checkpoints. The last stdout line is a JSON
//! summary.

use anyhow::{bail, Context, Result};
use candle_core::DType;
use clap::{Parser, ValueEnum};
use std::time::Instant;
use taper::regression::nalgebra::DMatrix;
use taper::regression::{load_breast_cancer, load_digits, load_iris, load_wine, train_test_split};
use taper::regression::{GdConfig, GdOptimizer, GdSchedule, LogisticRegression};
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

fn main() -> Result<()> {
    let args = Args::parse();
    let c = &args.common;
    let device = c.device()?;
    let is_mnist = args.dataset == Which::Mnist;
    let value = args
        .dataset
        .to_possible_value()
        .context("a data set name")?;
    let name = value.get_name();
    let solver = args.solver.unwrap_or(if is_mnist {
        Solver::Trainer
    } else {
        Solver::Newton
    });
    if is_mnist && solver == Solver::Newton {
        bail!("MNIST is too large for the full-batch host solver: use --solver trainer");
    }
    // No validation split (the settings are fixed, not selected) and no
    // accumulation; the Newton solver has no epochs, batches or checkpoints.
    c.reject(
        "logistic_regression",
        &["accumulate", "valid-fraction", "checkpoint-every"],
    )?;
    if solver == Solver::Newton {
        c.reject("logistic_regression --solver newton", ExampleArgs::TRAINING)?;
        c.reject("logistic_regression --solver newton", &["resume", "device"])?;
    }
    // Defaults per data set: MNIST in f32 with larger batches, the small sets in f64.
    let (epochs, batch, lr, dtype) = if is_mnist {
        (10, 128, 5e-3, DType::F32)
    } else {
        (100, 32, 0.01, DType::F64)
    };
    let dir = c.run_dir("logistic_regression")?;
    let gd = GdConfig {
        epochs: c.epochs_or(epochs)?,
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
        overwrite: c.overwrite,
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
        // The test images as host rows and labels, what the report reads.
        let (n_test, p) = (tx.dim(0)?, x.dim(1)?);
        let flat: Vec<f64> = tx.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
        let labels: Vec<usize> = ty
            .to_vec1::<u32>()?
            .into_iter()
            .map(|l| l as usize)
            .collect();
        let held = (DMatrix::from_row_slice(n_test, p, &flat), labels, x.dim(0)?);
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
            name,
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
        let held = (test.x.clone(), test.labels()?, train.n_samples());
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
    let (x_test, labels, n_train) = held;
    let report = model.report(&x_test, &labels)?;
    println!("\nheld out:\n{report}");
    // The run loads back with `LogisticModel::load_run(RUN)`.
    model.save_run(&dir)?;
    println!("wrote the model into {}", dir.display());

    let mut summary = serde_json::json!({
        "example": "logistic_regression",
        "dataset": name,
        "solver": format!("{solver:?}").to_lowercase(),
        "seed": c.seed,
        "n_train": n_train,
        "n_test": labels.len(),
        "n_iter": model.n_iter(),
        "fit_seconds": fit_seconds,
    });
    if solver == Solver::Trainer {
        summary["epochs"] = gd.epochs.into();
        summary["batch_size"] = gd.batch_size.into();
        summary["lr"] = gd.lr.into();
    }
    summary["run_dir"] = serde_json::json!(dir);
    summary
        .as_object_mut()
        .context("a JSON object")?
        .extend(report.figures());
    let names: Vec<String> = (0..report.confusion.rows().len())
        .map(|k| k.to_string())
        .collect();
    taper::regression::report::confusion_section(&dir, "test", &report.confusion, &names)?;
    // The closed-form solvers have no trainer to record the run: say here what it ran on.
    let mut info = taper::train::report::RunInfo::new(c.seed, &candle_core::Device::Cpu);
    (info.train_items, info.test_items) = (Some(n_train), Some(labels.len()));
    let page = taper::train::report::finish(&dir, &summary, Some(info))?;
    println!("report: {}", page.display());
    println!("{summary}");
    Ok(())
}
