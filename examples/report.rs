//! One page comparing several runs: their curves overlaid, their settings and
//! final figures side by side, the differences highlighted. With `--refresh`,
//! each run's own `report.html` is rewritten from its directory instead.
//!
//! ```text
//! cargo run --release --example report -- runs/mlp-a runs/mlp-b --out runs/compare.html
//! cargo run --release --example report -- --refresh runs/demo-mlp
//! ```

use anyhow::{Context, Result};
use clap::Parser;
use std::path::PathBuf;
use taper::train::report;

#[derive(Parser, Debug)]
#[command(about = "Compare Taper runs on one HTML page, or rewrite their reports")]
struct Args {
    /// Run directories.
    #[arg(required = true, value_name = "RUN")]
    runs: Vec<PathBuf>,
    /// The comparison page to write.
    #[arg(long, default_value = "runs/compare.html")]
    out: PathBuf,
    /// Rewrite each run's own report.html instead of comparing.
    #[arg(long)]
    refresh: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.refresh {
        let mut pages = Vec::new();
        for run in &args.runs {
            let page =
                report::write(run).with_context(|| format!("report of {}", run.display()))?;
            println!("report: {}", page.display());
            pages.push(page);
        }
        println!(
            "{}",
            serde_json::json!({"example": "report", "refreshed": pages})
        );
        return Ok(());
    }
    let differences = report::compare(&args.runs, &args.out)?;
    println!("report: {}", args.out.display());
    println!(
        "{}",
        serde_json::json!({"example": "report", "runs": args.runs.len(), "out": args.out,
            "differences": differences})
    );
    Ok(())
}
