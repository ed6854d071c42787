//! Linear regression on the diabetes data: ordinary least squares (with
//! standard errors and p-values) and ridge, scored on a held-out 20 %.
//!
//! `cargo run --release --example linear_regression --features regression -- --seed 42 --out runs/lin`
//!
//! Writes `pred.png` (predicted vs true on the test rows, with the y = x
//! diagonal; no text, see below) and both fitted models into the run folder.
//! The last stdout line is a JSON summary.

use anyhow::{Context, Result};
use clap::Parser;
use std::path::Path;
use taper::regression::metrics;
use taper::regression::{
    load_csv, load_diabetes, train_test_split, CsvOptions, LinearModel, LinearRegression,
};
use taper::train::cli::ExampleArgs;

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
    print_ols(&ols);
    println!("\nridge (alpha = {}):", args.alpha);
    println!("  {:<12} {:>12}", "intercept", fmt(ridge.intercept()));
    for (name, v) in ridge.named_coef() {
        println!("  {name:<12} {:>12}", fmt(v));
    }

    let y_true = test.y.as_slice();
    let ols_pred = ols.predict(&test.x)?;
    let ridge_pred = ridge.predict(&test.x)?;
    let r2 = metrics::r2(y_true, ols_pred.as_slice())?;
    let rmse = metrics::rmse(y_true, ols_pred.as_slice())?;
    let mae = metrics::mae(y_true, ols_pred.as_slice())?;
    let ridge_r2 = metrics::r2(y_true, ridge_pred.as_slice())?;
    let ridge_rmse = metrics::rmse(y_true, ridge_pred.as_slice())?;
    println!("\nheld out:  OLS   R² {r2:.4}  RMSE {rmse:.3}  MAE {mae:.3}");
    println!("           ridge R² {ridge_r2:.4}  RMSE {ridge_rmse:.3}");

    let dir = c.run_dir("linear_regression");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    ols.save(dir.join("ols.safetensors"))?;
    ridge.save(dir.join("ridge.safetensors"))?;
    let png = dir.join("pred.png");
    plot_pred_vs_true(&png, y_true, ols_pred.as_slice())?;
    println!("wrote {} and the fitted models", png.display());

    println!(
        "{}",
        serde_json::json!({
            "example": "linear_regression",
            "seed": c.seed,
            "n_train": train.n_samples(),
            "n_test": test.n_samples(),
            "r2": r2,
            "rmse": rmse,
            "mae": mae,
            "ridge_alpha": args.alpha,
            "ridge_r2": ridge_r2,
            "ridge_rmse": ridge_rmse,
        })
    );
    Ok(())
}

fn fmt(v: f64) -> String {
    format!("{v:.4}")
}

/// The coefficient table a statistician expects: estimate, standard error, t, p.
fn print_ols(m: &LinearModel) {
    println!("\nordinary least squares (training rows):");
    println!(
        "  {:<12} {:>12} {:>10} {:>8} {:>10}",
        "", "estimate", "std err", "t", "p"
    );
    let Some(s) = m.summary() else { return };
    if let (Some(se), Some(t), Some(p)) =
        (s.intercept_std_error, s.intercept_t, s.intercept_p_value)
    {
        println!(
            "  {:<12} {:>12.4} {:>10.4} {:>8.3} {:>10.2e}",
            "intercept",
            m.intercept(),
            se,
            t,
            p
        );
    }
    for (j, (name, v)) in m.named_coef().into_iter().enumerate() {
        println!(
            "  {name:<12} {v:>12.4} {:>10.4} {:>8.3} {:>10.2e}",
            s.std_errors[j], s.t_values[j], s.p_values[j]
        );
    }
    println!(
        "  residual std error {:.3} on {} df; R² {:.4}, adjusted {:.4}; F {:.2}",
        s.sigma, s.df_resid, s.r2, s.adj_r2, s.f_statistic
    );
}

/// Scatter of predicted against true values with the y = x line.
///
/// No text: the workspace builds plotters without a font stack, so axes carry
/// no labels; the numbers are in the JSON line.
fn plot_pred_vs_true(path: &Path, y_true: &[f64], y_pred: &[f64]) -> Result<()> {
    use plotters::prelude::*;
    let (lo, hi) = y_true
        .iter()
        .chain(y_pred)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let pad = ((hi - lo) * 0.05).max(1e-9);
    let (lo, hi) = (lo - pad, hi + pad);
    let root = BitMapBackend::new(path, (600, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .margin(20)
        .build_cartesian_2d(lo..hi, lo..hi)?;
    let grid = RGBColor(225, 225, 225);
    let step = (hi - lo) / 10.0;
    for k in 1..10 {
        let v = lo + step * k as f64;
        chart.draw_series(LineSeries::new(vec![(v, lo), (v, hi)], grid))?;
        chart.draw_series(LineSeries::new(vec![(lo, v), (hi, v)], grid))?;
    }
    chart.draw_series(LineSeries::new(
        vec![(lo, lo), (hi, hi)],
        BLACK.stroke_width(1),
    ))?;
    chart.draw_series(
        y_true
            .iter()
            .zip(y_pred)
            .map(|(&t, &p)| Circle::new((t, p), 3, BLUE.filled())),
    )?;
    root.present()?;
    Ok(())
}
