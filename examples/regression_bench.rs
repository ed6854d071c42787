//! Times the exact regression solvers on the embedded data sets and prints one
//! JSON line of median seconds per fit; `bench/regression.sh` runs it beside
//! `bench/regression_vs_sklearn.py`, which times scikit-learn on the same fits.
//!
//! `cargo run --release --example regression_bench -- --repeats 50`
//!
//! Features are standardised once, before timing, on both sides, so only the
//! solvers are compared.

use anyhow::Result;
use clap::Parser;
use std::time::Instant;
use taper::regression::nalgebra::{DMatrix, DVector};
use taper::regression::{
    load_breast_cancer, load_diabetes, load_digits, LinearRegression, LogisticRegression,
    StandardScaler,
};

#[global_allocator]
static GLOBAL: taper::alloc::Allocator = taper::alloc::Allocator;

#[derive(Parser, Debug)]
#[command(about = "Median fit times of the exact regression solvers, as one JSON line")]
struct Args {
    /// Timed fits per case (the median is reported).
    #[arg(long, default_value_t = 50)]
    repeats: usize,
    /// Untimed fits first, so caches and the allocator are warm.
    #[arg(long, default_value_t = 5)]
    warmup: usize,
}

/// Median wall time of `repeats` calls of `fit`, after `warmup` untimed ones.
fn median_seconds(args: &Args, mut fit: impl FnMut() -> Result<()>) -> Result<f64> {
    for _ in 0..args.warmup {
        fit()?;
    }
    let mut times = Vec::with_capacity(args.repeats);
    for _ in 0..args.repeats.max(1) {
        let t = Instant::now();
        fit()?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

fn standardized(x: &DMatrix<f64>) -> Result<DMatrix<f64>> {
    Ok(StandardScaler::fit_transform(x)?.1)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let diabetes = load_diabetes()?;
    let (dx, dy): (DMatrix<f64>, DVector<f64>) = (standardized(&diabetes.x)?, diabetes.y.clone());
    let bc = load_breast_cancer()?;
    let (bx, by) = (standardized(&bc.x)?, bc.labels()?);
    let digits = load_digits()?;
    let (gx, gy) = (standardized(&digits.x)?, digits.labels()?);

    let ols = median_seconds(&args, || {
        LinearRegression::ols().fit(&dx, &dy)?;
        Ok(())
    })?;
    let ridge = median_seconds(&args, || {
        LinearRegression::ridge(1.0).fit(&dx, &dy)?;
        Ok(())
    })?;
    let lasso = median_seconds(&args, || {
        LinearRegression::lasso(0.1).fit(&dx, &dy)?;
        Ok(())
    })?;
    let logistic_binary = median_seconds(&args, || {
        LogisticRegression::new().fit(&bx, &by)?;
        Ok(())
    })?;
    let logistic_multinomial = median_seconds(&args, || {
        LogisticRegression::new().fit(&gx, &gy)?;
        Ok(())
    })?;
    println!(
        "{}",
        serde_json::json!({
            "impl": "taper",
            "repeats": args.repeats,
            "ols_diabetes": ols,
            "ridge_diabetes": ridge,
            "lasso_diabetes": lasso,
            "logistic_breast_cancer": logistic_binary,
            "logistic_digits": logistic_multinomial,
        })
    );
    Ok(())
}
