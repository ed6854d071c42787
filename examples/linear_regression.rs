//! Linear regression on the diabetes data: ordinary least squares (with
//! standard errors and p-values) and ridge, scored on a held-out 20 %.
//!
//! `cargo run --release --example linear_regression --features regression -- --seed 42 --out runs/lin`
//!
//! Writes `pred.png` (predicted vs true on the test rows, with the y = x
//! diagonal) and both fitted models (`RUN/ols`, `RUN/ridge`, each loading back
//! with `LinearModel::load_run`) into the run folder.
//! The last stdout line is a JSON summary.

use anyhow::Result;
use clap::Parser;
use taper::regression::metrics;
use taper::regression::{load_csv, load_diabetes, train_test_split, CsvOptions, LinearRegression};
use taper::train::cli::ExampleArgs;
use taper::train::report;
use taper::train::runlog::plot_pred_vs_true;

#[global_allocator]
static GLOBAL: taper::alloc::Allocator = taper::alloc::Allocator;

#[derive(Parser, Debug)]
#[command(about = "OLS and ridge regression on the diabetes data (or a CSV of your own)")]
struct Args {
    #[command(flatten)]
    common: ExampleArgs,
    /// Ridge penalty α (scikit-learn `Ridge` scale: added to the residual sum of squares).
    #[arg(long, default_value_t = 1.0)]
    alpha: f64,
    /// Share of rows held out for testing.
    #[arg(long, default_value_t = 0.2)]
    test_fraction: f64,
    /// Use this numeric CSV (header line required) instead of the diabetes data.
    #[arg(long, value_name = "FILE")]
    csv: Option<std::path::PathBuf>,
    /// Target column of `--csv` (default: the last column).
    #[arg(long, requires = "csv")]
    target: Option<String>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let c = &args.common;
    // Closed-form fits: nothing is trained in epochs.
    c.reject("linear_regression", ExampleArgs::TRAINING)?;
    c.reject("linear_regression", &["resume", "device", "data"])?;
    let ds = match &args.csv {
        Some(path) => {
            let opts = match &args.target {
                Some(t) => CsvOptions::target_name(t),
                None => CsvOptions::default(),
            };
            load_csv(path, &opts)?
        }
        None => load_diabetes()?,
    };
    let (train, test) = train_test_split(&ds, args.test_fraction, c.seed)?;
    if test.n_samples() < 2 {
        anyhow::bail!(
            "--test-fraction {} leaves {} test row(s): R² needs at least 2",
            args.test_fraction,
            test.n_samples()
        );
    }
    println!(
        "{} rows x {} features; train {}, test {} (seed {})",
        ds.n_samples(),
        ds.n_features(),
        train.n_samples(),
        test.n_samples(),
        c.seed
    );

    let ols = LinearRegression::ols().fit_dataset(&train)?;
    let ridge = LinearRegression::ridge(args.alpha).fit_dataset(&train)?;
    println!(
        "\nordinary least squares (training rows):\n{}",
        ols.coefficient_table()
    );
    println!(
        "ridge (alpha = {}):\n{}",
        args.alpha,
        ridge.coefficient_table()
    );

    let y_true = test.y.as_slice();
    let ols_pred = ols.predict(&test.x)?;
    let ridge_pred = ridge.predict(&test.x)?;
    let r2 = metrics::r2(y_true, ols_pred.as_slice())?;
    let rmse = metrics::rmse(y_true, ols_pred.as_slice())?;
    let mae = metrics::mae(y_true, ols_pred.as_slice())?;
    let ridge_r2 = metrics::r2(y_true, ridge_pred.as_slice())?;
    let ridge_rmse = metrics::rmse(y_true, ridge_pred.as_slice())?;
    println!("held out:  OLS   R² {r2:.4}  RMSE {rmse:.3}  MAE {mae:.3}");
    println!("           ridge R² {ridge_r2:.4}  RMSE {ridge_rmse:.3}");

    // Each fit is a run of its own: `LinearModel::load_run(DIR/ols)`.
    let dir = c.run_dir("linear_regression")?;
    ols.save_run(dir.join("ols"))?;
    ridge.save_run(dir.join("ridge"))?;
    let png = dir.join("pred.png");
    plot_pred_vs_true(&png, y_true, ols_pred.as_slice())?;
    println!("wrote {} and the fitted models", png.display());
    taper::regression::report::regression_section(&dir, "test", y_true, ols_pred.as_slice())?;

    let json = serde_json::json!({"example": "linear_regression", "seed": c.seed, "n_train": train.n_samples(),
        "n_test": test.n_samples(), "r2": r2, "rmse": rmse, "mae": mae, "ridge_alpha": args.alpha,
        "ridge_r2": ridge_r2, "ridge_rmse": ridge_rmse, "run_dir": dir});
    // A closed-form fit has no trainer to record the run: say here what it ran on.
    let mut info = report::RunInfo::new(c.seed, &candle_core::Device::Cpu);
    (info.train_items, info.test_items) = (Some(train.n_samples()), Some(test.n_samples()));
    let page = report::finish(&dir, &json, Some(info))?;
    println!("report: {}", page.display());
    println!("{json}");
    Ok(())
}
