//! Logistic regression on an embedded data set: binary (Newton) on breast
//! cancer, multinomial (L-BFGS) on digits, iris or wine. Features are
//! standardised on the training rows; 20 % of rows are held out.
//!
//! `cargo run --release --example logistic_regression --features regression -- --dataset digits`
//!
//! The fitted model (safetensors + JSON) goes into the run folder. The last
//! stdout line is a JSON summary.

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use taper::regression::metrics::{self, Average};
use taper::regression::{
    load_breast_cancer, load_digits, load_iris, load_wine, train_test_split, LogisticRegression,
};
use taper::train::cli::ExampleArgs;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Clone, Copy, ValueEnum)]
#[clap(rename_all = "snake_case")]
enum Which {
    BreastCancer,
    Digits,
    Iris,
    Wine,
}

impl Which {
    fn name(self) -> &'static str {
        match self {
            Which::BreastCancer => "breast_cancer",
            Which::Digits => "digits",
            Which::Iris => "iris",
            Which::Wine => "wine",
        }
    }
}

#[derive(Parser, Debug)]
#[command(about = "Binary or multinomial logistic regression on an embedded data set")]
struct Args {
    #[command(flatten)]
    common: ExampleArgs,
    /// Data set.
    #[arg(long, value_enum, default_value = "breast_cancer")]
    dataset: Which,
    /// Inverse L2 strength (scikit-learn's C).
    #[arg(long, default_value_t = 1.0)]
    c: f64,
    /// Decision threshold on P(positive class); binary data sets only.
    #[arg(long, default_value_t = 0.5)]
    threshold: f64,
    /// Share of rows held out for testing.
    #[arg(long, default_value_t = 0.2)]
    test_fraction: f64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let c = &args.common;
    let ds = match args.dataset {
        Which::BreastCancer => load_breast_cancer()?,
        Which::Digits => load_digits()?,
        Which::Iris => load_iris()?,
        Which::Wine => load_wine()?,
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

    let mut model = LogisticRegression::new()
        .c(args.c)
        .standardize(true)
        .fit_dataset(&train)?;
    if model.is_binary() {
        model.set_threshold(args.threshold)?;
    }
    println!(
        "fitted in {} {} iterations (converged: {})",
        model.n_iter(),
        if model.is_binary() {
            "Newton"
        } else {
            "L-BFGS"
        },
        model.converged()
    );

    let y = test.labels()?;
    let pred = model.predict(&test.x)?;
    let proba = model.predict_proba(&test.x)?;
    let accuracy = metrics::accuracy(&y, &pred)?;
    let log_loss = metrics::log_loss(&y, &proba)?;
    let (average, roc_auc) = if model.is_binary() {
        let positive = model.classes()[1];
        let auc = metrics::roc_auc(&y, proba.column(1).as_slice())?;
        (Average::Binary { positive }, Some(auc))
    } else {
        (Average::Macro, None)
    };
    let prf = metrics::precision_recall_f1(&y, &pred, average)?;
    let cm =
        metrics::confusion_matrix(&y, &pred, model.classes().iter().max().map_or(0, |m| m + 1))?;

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

    let dir = c.run_dir("logistic_regression");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{}.safetensors", args.dataset.name()));
    model.save(&path)?;
    println!("wrote {}", path.display());

    println!(
        "{}",
        serde_json::json!({
            "example": "logistic_regression",
            "dataset": args.dataset.name(),
            "seed": c.seed,
            "n_train": train.n_samples(),
            "n_test": test.n_samples(),
            "accuracy": accuracy,
            "precision": prf.precision,
            "recall": prf.recall,
            "f1": prf.f1,
            "roc_auc": roc_auc,
            "log_loss": log_loss,
            "confusion_matrix": cm.rows(),
        })
    );
    Ok(())
}
