//! Progress display and run logs: `metrics.jsonl` and the `loss.png` curve.

use crate::fs::atomic_write;
use crate::record::EpochRecord;
use crate::{Error, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::Instant;

/// Seconds between plain progress lines when stderr is not a terminal.
const PLAIN_LINE_SECONDS: f64 = 10.0;

/// Per-epoch progress: an indicatif bar on a terminal, plain lines otherwise
/// (logs and CI keep readable output without carriage returns).
pub struct Progress {
    bar: Option<ProgressBar>,
    start: Instant,
    total: usize,
    done: usize,
    samples: usize,
    last_line: Instant,
    label: String,
    quiet: bool,
}

impl Progress {
    /// A progress display for `total` batches of epoch `label`.
    pub fn new(label: String, total: usize, enabled: bool) -> Self {
        let bar = (enabled && std::io::stderr().is_terminal()).then(|| {
            let b = ProgressBar::new(total as u64);
            let style =
                ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} eta {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> ");
            b.set_style(style);
            b.set_prefix(label.clone());
            b
        });
        Self {
            bar,
            start: Instant::now(),
            total,
            done: 0,
            samples: 0,
            last_line: Instant::now(),
            label,
            quiet: !enabled,
        }
    }

    /// Records one batch of `samples` items and its loss.
    pub fn update(&mut self, samples: usize, loss: Option<f64>) {
        self.done += 1;
        self.samples += samples;
        let rate = self.samples as f64 / self.start.elapsed().as_secs_f64().max(1e-9);
        let msg = match loss {
            Some(l) => format!("loss {l:.4} {rate:.0} samples/s"),
            None => format!("{rate:.0} samples/s"),
        };
        if let Some(b) = &self.bar {
            b.set_position(self.done as u64);
            b.set_message(msg);
        } else if !self.quiet
            && self.done < self.total
            && self.last_line.elapsed().as_secs_f64() >= PLAIN_LINE_SECONDS
        {
            // Without a terminal, a line every few seconds shows life without
            // flooding logs with one line per batch.
            eprintln!("{} {}/{} {msg}", self.label, self.done, self.total);
            self.last_line = Instant::now();
        }
    }

    /// Ends the display.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// Formats an epoch record as one human line.
pub fn epoch_line(r: &EpochRecord) -> String {
    let fmt = |m: &std::collections::BTreeMap<String, f64>| {
        m.iter()
            .map(|(k, v)| format!("{k} {v:.4}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut s = format!(
        "epoch {} ({:.1}s): train {}",
        r.epoch + 1,
        r.seconds,
        fmt(&r.train)
    );
    if !r.valid.is_empty() {
        s.push_str(&format!(" | valid {}", fmt(&r.valid)));
    }
    s
}

/// Appends one JSON line to `path`, creating it when needed.
pub fn append_jsonl(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    let line = serde_json::to_string(value).map_err(|e| Error::Data(e.to_string()))?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    writeln!(f, "{line}").map_err(|e| Error::io(path, e))
}

/// Rewrites `metrics.jsonl` from a history (used on resume, so that lines written
/// after the last checkpoint by a killed run do not appear twice).
pub fn write_history(path: &Path, history: &[EpochRecord]) -> Result<()> {
    let mut out = String::new();
    for r in history {
        out.push_str(&serde_json::to_string(r).map_err(|e| Error::Data(e.to_string()))?);
        out.push('\n');
    }
    atomic_write(path, out.as_bytes())
}

/// Draws train (blue) and validation (red) loss per epoch into a PNG.
///
/// No text is drawn: plotters' font rendering would pull a font stack into every
/// build, and the numbers are in `metrics.jsonl`.
pub fn plot_loss(path: &Path, history: &[EpochRecord], key: &str) -> Result<()> {
    use plotters::prelude::*;
    let train: Vec<(f64, f64)> = history
        .iter()
        .filter_map(|r| r.train.get(key).map(|v| (r.epoch as f64 + 1.0, *v)))
        .collect();
    let valid: Vec<(f64, f64)> = history
        .iter()
        .filter_map(|r| r.valid.get(key).map(|v| (r.epoch as f64 + 1.0, *v)))
        .collect();
    let all: Vec<f64> = train
        .iter()
        .chain(&valid)
        .map(|p| p.1)
        .filter(|v| v.is_finite())
        .collect();
    if all.is_empty() {
        return Ok(());
    }
    let (lo, hi) = all
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let pad = ((hi - lo) * 0.05).max(1e-6);
    let x_max = (history.len() as f64).max(2.0);
    let err = |e: String| Error::Data(format!("plot {}: {e}", path.display()));
    let root = BitMapBackend::new(path, (640, 400)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .margin(20)
        .build_cartesian_2d(1.0..x_max, (lo - pad)..(hi + pad))
        .map_err(|e| err(e.to_string()))?;
    let grid = RGBColor(225, 225, 225);
    for i in 1..=history.len() {
        let x = i as f64;
        chart
            .draw_series(LineSeries::new(vec![(x, lo - pad), (x, hi + pad)], grid))
            .map_err(|e| err(e.to_string()))?;
    }
    chart
        .draw_series(LineSeries::new(train, BLUE.stroke_width(2)))
        .map_err(|e| err(e.to_string()))?;
    if !valid.is_empty() {
        chart
            .draw_series(LineSeries::new(valid, RED.stroke_width(2)))
            .map_err(|e| err(e.to_string()))?;
    }
    root.present().map_err(|e| err(e.to_string()))?;
    Ok(())
}

/// Draws predicted against true values (blue dots) with the `y = x` diagonal
/// and a light grid into a 600x600 PNG: the first look at a regression fit.
/// No text, as in [`plot_loss`].
///
/// # Errors
/// Lists of different lengths, or a file that cannot be written.
pub fn plot_pred_vs_true(path: &Path, y_true: &[f64], y_pred: &[f64]) -> Result<()> {
    use plotters::prelude::*;
    if y_true.len() != y_pred.len() {
        return Err(Error::shape(
            "plot_pred_vs_true: predictions",
            y_true.len(),
            y_pred.len(),
        ));
    }
    let (lo, hi) = y_true
        .iter()
        .chain(y_pred)
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    if lo > hi {
        return Ok(());
    }
    let pad = ((hi - lo) * 0.05).max(1e-9);
    let (lo, hi) = (lo - pad, hi + pad);
    let err = |e: String| Error::Data(format!("plot {}: {e}", path.display()));
    let root = BitMapBackend::new(path, (600, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .margin(20)
        .build_cartesian_2d(lo..hi, lo..hi)
        .map_err(|e| err(e.to_string()))?;
    let grid = RGBColor(225, 225, 225);
    let step = (hi - lo) / 10.0;
    for k in 1..10 {
        let v = lo + step * k as f64;
        for line in [vec![(v, lo), (v, hi)], vec![(lo, v), (hi, v)]] {
            chart
                .draw_series(LineSeries::new(line, grid))
                .map_err(|e| err(e.to_string()))?;
        }
    }
    chart
        .draw_series(LineSeries::new(
            vec![(lo, lo), (hi, hi)],
            BLACK.stroke_width(1),
        ))
        .map_err(|e| err(e.to_string()))?;
    chart
        .draw_series(
            y_true
                .iter()
                .zip(y_pred)
                .map(|(&t, &p)| Circle::new((t, p), 3, BLUE.filled())),
        )
        .map_err(|e| err(e.to_string()))?;
    root.present().map_err(|e| err(e.to_string()))?;
    Ok(())
}
