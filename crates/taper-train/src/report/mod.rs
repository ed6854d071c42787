//! `report.html`: one self-contained page per run directory, and a page that
//! compares several runs.
//!
//! The [`crate::Trainer`] writes `RUN/run.json` ([`RunInfo`]: seed, device,
//! threads, split sizes, times) when a fit starts, rewrites the page after each
//! epoch while the run is live (the page then reloads itself every
//! [`REFRESH_SECONDS`]) and once more, without the reload, when the fit ends.
//! An example adds its final figures (the JSON line it prints) with
//! [`finish`]. The page reads everything from the run directory:
//!
//! - `metrics.jsonl` (curves of every metric, train and validation, per epoch;
//!   resident and peak memory; throughput), `lr.jsonl` (learning rate per step);
//! - `model.json` (model family and configuration), `run.json`, `final.json`;
//! - `report/*.json`: the sections a domain adds ([`Section`]: confusion
//!   matrices, sample grids, translations, ...), with their pictures.
//!
//! Pictures are inlined as base64 `data:` URIs and charts as SVG drawn by
//! plotters, so the one file opens anywhere, offline. A small inline script
//! drives the sliders and records on `<body>` whether every image decoded
//! (`data-broken-images`) and whether a script error fired (`data-errors`).

mod chart;
mod compare;
mod html;
mod section;

pub use compare::compare;
pub use section::{section_dir, Block, Picture, Section, Series, SECTION_DIR};

use crate::card::{ModelCard, MODEL_FILE};
use crate::fs::atomic_write;
use crate::record::EpochRecord;
use crate::{Error, Result};
use html::esc;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The page's file name in a run directory.
pub const REPORT_FILE: &str = "report.html";
/// What the trainer records about a run: [`RunInfo`].
pub const RUN_FILE: &str = "run.json";
/// The example's final figures: [`finish`].
pub const FINAL_FILE: &str = "final.json";
/// Learning rate of each step, one line per epoch: [`StepRates`].
pub const LR_FILE: &str = "lr.jsonl";
/// Seconds between reloads of a live page.
pub const REFRESH_SECONDS: u32 = 10;

/// Learning rates at most drawn per group: longer runs are thinned evenly.
const MAX_LR_POINTS: usize = 2000;

/// What a run records about itself for its report (`RUN/run.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// Start, in seconds since the Unix epoch (kept across resumes).
    pub started: f64,
    /// End of the last fit or of [`finish`], same unit; `None` while running.
    #[serde(default)]
    pub ended: Option<f64>,
    /// True while training runs: the page reloads itself.
    #[serde(default)]
    pub live: bool,
    /// The run's seed.
    #[serde(default)]
    pub seed: Option<u64>,
    /// The device the model lives on (`cpu`, `cuda:0`).
    #[serde(default)]
    pub device: Option<String>,
    /// CPU threads of the kernels.
    #[serde(default)]
    pub threads: Option<usize>,
    /// Items of the training split.
    #[serde(default)]
    pub train_items: Option<usize>,
    /// Items of the validation split.
    #[serde(default)]
    pub valid_items: Option<usize>,
    /// Items of the test split.
    #[serde(default)]
    pub test_items: Option<usize>,
    /// Mini-batch size (per rank in data-parallel training).
    #[serde(default)]
    pub batch_size: Option<usize>,
    /// Data-parallel ranks (`None`: one process).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ranks: Option<usize>,
    /// Epochs asked for.
    #[serde(default)]
    pub epochs: Option<usize>,
    /// The caller's configuration ([`crate::TrainerConfig::config`]).
    #[serde(default)]
    pub config: serde_json::Value,
    /// Version of Taper that trained the run.
    pub taper_version: String,
}

impl RunInfo {
    /// A run starting now, with `seed` and the model on `device`, threads as
    /// candle's kernels use them.
    pub fn new(seed: u64, device: &candle_core::Device) -> Self {
        let device = match device.location() {
            candle_core::DeviceLocation::Cpu => "cpu".to_string(),
            other => format!("{other:?}").to_lowercase(),
        };
        Self {
            started: html::now(),
            ended: None,
            live: true,
            seed: Some(seed),
            device: Some(device),
            threads: Some(candle_core::utils::get_num_threads()),
            train_items: None,
            valid_items: None,
            test_items: None,
            batch_size: None,
            ranks: None,
            epochs: None,
            config: serde_json::Value::Null,
            taper_version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }

    /// `RUN/run.json`, or `None` where there is none.
    ///
    /// # Errors
    /// A file that exists but does not parse.
    pub fn load(run_dir: &Path) -> Result<Option<Self>> {
        read_json(&run_dir.join(RUN_FILE))
    }

    /// Writes `RUN/run.json` atomically.
    ///
    /// # Errors
    /// A file that cannot be written.
    pub fn save(&self, run_dir: &Path) -> Result<()> {
        write_json(&run_dir.join(RUN_FILE), self)
    }

    /// Marks the run ended now (not live).
    pub fn end(&mut self) {
        self.ended = Some(html::now());
        self.live = false;
    }
}

/// The learning rate of each step of one epoch (a line of `lr.jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRates {
    /// Epoch (0-based).
    pub epoch: usize,
    /// Step (iteration since the run started) of the first rate.
    pub first_step: u64,
    /// Rates per optimizer group, one per step.
    pub lr: BTreeMap<String, Vec<f64>>,
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Data(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let json = serde_json::to_vec_pretty(value)
        .map_err(|e| Error::Data(format!("{}: {e}", path.display())))?;
    atomic_write(path, &json)
}

/// Every line of a JSON-lines file that parses as `T`; a missing file is empty.
/// A last line cut by a kill is skipped rather than failing the page.
fn read_lines<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// `(x, y)` points of a curve.
pub(crate) type Points = Vec<(f64, f64)>;

/// Everything the page shows of one run, read from its directory.
pub(crate) struct RunData {
    pub dir: PathBuf,
    pub info: Option<RunInfo>,
    pub history: Vec<EpochRecord>,
    pub rates: Vec<StepRates>,
    pub card: Option<ModelCard>,
    pub figures: Vec<(String, serde_json::Value)>,
    pub sections: Vec<Section>,
}

impl RunData {
    pub fn load(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::io(
                dir,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such run directory"),
            ));
        }
        if !dir.join(RUN_FILE).exists() && !dir.join("metrics.jsonl").exists() {
            return Err(Error::Config(format!(
                "{}: not a Taper run (no {RUN_FILE}, no metrics.jsonl)",
                dir.display()
            )));
        }
        let history: Vec<EpochRecord> = read_lines(&dir.join("metrics.jsonl"))?;
        // A resumed run may have logged an epoch twice, or epochs past its
        // checkpoint: keep the last line of each epoch the history holds.
        let mut by_epoch: BTreeMap<usize, StepRates> = BTreeMap::new();
        for r in read_lines::<StepRates>(&dir.join(LR_FILE))? {
            if r.epoch < history.len() {
                by_epoch.insert(r.epoch, r);
            }
        }
        let final_map: Option<serde_json::Map<String, serde_json::Value>> =
            read_json(&dir.join(FINAL_FILE))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            info: RunInfo::load(dir)?,
            history,
            rates: by_epoch.into_values().collect(),
            // The page shows any family: no family check, and a card it
            // cannot read is left out rather than failing the page.
            card: read_json(&dir.join(MODEL_FILE)).ok().flatten(),
            figures: final_map
                .map(|m| m.into_iter().collect())
                .unwrap_or_default(),
            sections: Section::load_all(dir)?,
        })
    }

    /// A value of the caller's configuration or of the final figures.
    fn setting(&self, key: &str) -> Option<String> {
        let from_config = self
            .info
            .as_ref()
            .and_then(|i| i.config.get(key))
            .filter(|v| !v.is_null());
        let from_final = self
            .figures
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
            .filter(|v| !v.is_null());
        from_config.or(from_final).map(html::figure_text)
    }

    /// The example's name, else the directory's.
    pub fn name(&self) -> String {
        self.setting("example").unwrap_or_else(|| self.dir_name())
    }

    pub fn dir_name(&self) -> String {
        self.dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.dir.display().to_string())
    }

    pub fn live(&self) -> bool {
        self.info.as_ref().is_some_and(|i| i.live)
    }

    /// Every metric name of the history, `loss` first.
    pub fn metric_names(&self) -> Vec<String> {
        let mut names: BTreeSet<&String> = BTreeSet::new();
        for r in &self.history {
            names.extend(r.train.keys());
            names.extend(r.valid.keys());
        }
        let mut v: Vec<String> = names.into_iter().cloned().collect();
        v.sort_by_key(|n| (n != "loss", n.clone()));
        v
    }

    /// `(epoch, value)` of `metric` in `split` (`train` or `valid`).
    pub fn curve(&self, split: &str, metric: &str) -> Vec<(f64, f64)> {
        self.history
            .iter()
            .filter_map(|r| {
                let m = if split == "train" { &r.train } else { &r.valid };
                m.get(metric).map(|v| (r.epoch as f64 + 1.0, *v))
            })
            .collect()
    }

    /// `(step, rate)` per group, thinned to [`MAX_LR_POINTS`].
    pub fn lr_curves(&self) -> Vec<Series> {
        let mut groups: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
        for r in &self.rates {
            for (g, rates) in &r.lr {
                let pts = groups.entry(g).or_default();
                pts.extend(
                    rates
                        .iter()
                        .enumerate()
                        .map(|(i, &v)| ((r.first_step + i as u64 + 1) as f64, v)),
                );
            }
        }
        groups
            .into_iter()
            .map(|(g, pts)| {
                let every = pts.len().div_ceil(MAX_LR_POINTS).max(1);
                let last = pts.last().copied();
                let mut thin: Vec<(f64, f64)> = pts.into_iter().step_by(every).collect();
                if thin.last().copied() != last {
                    thin.extend(last);
                }
                Series {
                    name: g.to_string(),
                    points: thin,
                }
            })
            .collect()
    }

    /// Resident and peak memory (MiB) per epoch.
    pub fn memory(&self) -> (Points, Points) {
        let pts = |f: fn(&crate::record::MemoryUse) -> f64| {
            self.history
                .iter()
                .filter_map(|r| r.memory_mib.as_ref().map(|m| (r.epoch as f64 + 1.0, f(m))))
                .collect()
        };
        (pts(|m| m.rss), pts(|m| m.peak))
    }

    /// Training samples per second, per epoch.
    pub fn throughput(&self) -> Vec<(f64, f64)> {
        self.history
            .iter()
            .filter_map(|r| r.samples_per_second.map(|v| (r.epoch as f64 + 1.0, v)))
            .collect()
    }
}

fn lines_chart(title: &str, x: &str, y: &str, series: Vec<Series>) -> Result<String> {
    Ok(chart::lines(title, x, y, &series)?
        .map(|svg| format!("<div class=\"chart\">{svg}</div>"))
        .unwrap_or_default())
}

/// The page head: charset, phone viewport, the reload while live, style, script.
pub(crate) fn head(title: &str, live: bool) -> String {
    let refresh = if live {
        format!("<meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">")
    } else {
        String::new()
    };
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">{refresh}\
         <title>{}</title><style>{}</style><script>{}</script></head>\n",
        esc(title),
        html::STYLE,
        html::SCRIPT
    )
}

fn row(s: &mut String, key: &str, value: &str) {
    let _ = write!(s, "<tr><th>{}</th><td>{value}</td></tr>", esc(key));
}

fn json_details(summary: &str, v: &serde_json::Value) -> String {
    let pretty = serde_json::to_string_pretty(v).unwrap_or_default();
    format!(
        "<details><summary>{}</summary><pre>{}</pre></details>",
        esc(summary),
        esc(&pretty)
    )
}

fn header(run: &RunData) -> String {
    let mut s = String::new();
    let name = run.name();
    let _ = write!(
        s,
        "<header><h1>{} <small>{}</small></h1>",
        esc(&name),
        esc(&run.dir_name())
    );
    let info = run.info.as_ref();
    let updated = html::utc(html::now());
    if run.live() {
        let _ = write!(
            s,
            "<p class=\"status live\" data-status=\"live\">Training is running: this page reloads \
             every {REFRESH_SECONDS} s (written {updated}).</p>"
        );
    } else {
        let ended = info.and_then(|i| i.ended).map(html::utc).unwrap_or(updated);
        let _ = write!(
            s,
            "<p class=\"status\" data-status=\"ended\">Finished {}.</p>",
            esc(&ended)
        );
    }
    s.push_str("<div class=\"scroll\"><table class=\"info\">");
    row(&mut s, "example", &esc(&name));
    row(
        &mut s,
        "run directory",
        &esc(&run.dir.display().to_string()),
    );
    if let Some(card) = &run.card {
        row(
            &mut s,
            "model",
            &format!(
                "{} ({} {}){}",
                esc(&card.family),
                esc(&card.crate_name),
                esc(&card.crate_version),
                json_details("configuration", &card.config)
            ),
        );
    }
    if let Some(model) = run.setting("model").filter(|_| run.card.is_none()) {
        row(&mut s, "model", &esc(&model));
    }
    if let Some(d) = run.setting("dataset").or_else(|| run.setting("task")) {
        row(&mut s, "data set", &esc(&d));
    }
    if let Some(i) = info {
        let splits: Vec<String> = [
            ("train", i.train_items),
            ("validation", i.valid_items),
            ("test", i.test_items),
        ]
        .iter()
        .filter_map(|(k, n)| n.map(|n| format!("{k} {n}")))
        .collect();
        if !splits.is_empty() {
            row(&mut s, "splits (items)", &esc(&splits.join(", ")));
        }
        for (k, v) in [
            ("device", i.device.clone()),
            ("threads", i.threads.map(|t| t.to_string())),
            ("seed", i.seed.map(|t| t.to_string())),
            ("batch size", i.batch_size.map(|t| t.to_string())),
        ] {
            if let Some(v) = v {
                row(&mut s, k, &esc(&v));
            }
        }
        let done = run.history.len();
        let epochs = match i.epochs {
            Some(n) => format!("{done} of {n}"),
            None => done.to_string(),
        };
        row(&mut s, "epochs", &esc(&epochs));
        row(&mut s, "Taper version", &esc(&i.taper_version));
        row(&mut s, "started", &esc(&html::utc(i.started)));
        if let Some(e) = i.ended {
            row(&mut s, "ended", &esc(&html::utc(e)));
        }
        let wall = i.ended.unwrap_or_else(html::now) - i.started;
        row(&mut s, "wall time", &esc(&html::duration(wall)));
        if !i.config.is_null() {
            row(
                &mut s,
                "settings",
                &json_details("training settings", &i.config),
            );
        }
    }
    s.push_str("</table></div>");
    if !run.figures.is_empty() {
        s.push_str("<h2>Final figures</h2><div class=\"scroll\">");
        s.push_str(&html::figures_table(&run.figures));
        s.push_str("</div>");
    }
    s.push_str("</header>\n");
    s
}

fn curves(run: &RunData) -> Result<String> {
    let mut charts = String::new();
    for m in run.metric_names() {
        let series: Vec<Series> = ["train", "valid"]
            .iter()
            .map(|split| Series {
                name: if *split == "train" {
                    "train".into()
                } else {
                    "validation".into()
                },
                points: run.curve(split, &m),
            })
            .filter(|s| !s.points.is_empty())
            .collect();
        charts.push_str(&lines_chart(&m, "epoch", &m, series)?);
    }
    let lr = run.lr_curves();
    if !lr.is_empty() {
        charts.push_str(&lines_chart("learning rate", "step", "learning rate", lr)?);
    }
    let (rss, peak) = run.memory();
    if !rss.is_empty() {
        let series = vec![
            Series {
                name: "resident".into(),
                points: rss,
            },
            Series {
                name: "peak".into(),
                points: peak,
            },
        ];
        charts.push_str(&lines_chart("memory", "epoch", "MiB", series)?);
    }
    let tp = run.throughput();
    if !tp.is_empty() {
        let series = vec![Series {
            name: String::new(),
            points: tp,
        }];
        charts.push_str(&lines_chart("throughput", "epoch", "samples/s", series)?);
    }
    if charts.is_empty() {
        return Ok(String::new());
    }
    Ok(format!(
        "<section id=\"curves\"><h2>Training curves</h2><div class=\"charts\">{charts}</div></section>\n"
    ))
}

fn block(run_dir: &Path, b: &Block) -> Result<String> {
    Ok(match b {
        Block::Text { text } => format!("<p>{}</p>", esc(text)),
        Block::Figures { figures } => {
            format!(
                "<div class=\"scroll\">{}</div>",
                html::figures_table(figures)
            )
        }
        Block::Table { header, rows } => {
            let mut s = String::from("<div class=\"scroll\"><table><tr>");
            for h in header {
                let _ = write!(s, "<th>{}</th>", esc(h));
            }
            s.push_str("</tr>");
            for r in rows {
                s.push_str("<tr>");
                for c in r {
                    let _ = write!(s, "<td>{}</td>", esc(c));
                }
                s.push_str("</tr>");
            }
            s.push_str("</table></div>");
            s
        }
        Block::Images { images, slider } => {
            let figs: String = images
                .iter()
                .map(|p| {
                    format!(
                        "<figure>{}<figcaption>{}</figcaption></figure>",
                        html::picture(&run_dir.join(&p.file), &p.caption),
                        esc(&p.caption)
                    )
                })
                .collect();
            if *slider && images.len() > 1 {
                let n = images.len();
                format!(
                    "<div class=\"slider\"><input type=\"range\" min=\"0\" max=\"{}\" value=\"{}\" \
                     aria-label=\"frame\"> <output></output><div class=\"pictures\">{figs}</div></div>",
                    n - 1,
                    n - 1
                )
            } else {
                format!("<div class=\"pictures\">{figs}</div>")
            }
        }
        Block::Lines {
            title,
            x_label,
            y_label,
            series,
        } => lines_chart(title, x_label, y_label, series.clone())?,
        Block::Scatter {
            title,
            x_label,
            y_label,
            points,
            diagonal,
        } => chart::scatter(title, x_label, y_label, points, *diagonal)?
            .map(|svg| format!("<div class=\"chart\">{svg}</div>"))
            .unwrap_or_default(),
        Block::Matrix {
            title,
            rows,
            columns,
            values,
            x_label,
            y_label,
        } => chart::matrix(title, rows, columns, values, x_label, y_label)?
            .map(|svg| format!("<div class=\"chart\">{svg}</div>"))
            .unwrap_or_default(),
    })
}

fn sections(run: &RunData) -> Result<String> {
    let mut s = String::new();
    for sec in &run.sections {
        let _ = write!(s, "<section><h2>{}</h2>", esc(&sec.title));
        for b in &sec.blocks {
            s.push_str(&block(&run.dir, b)?);
        }
        s.push_str("</section>\n");
    }
    Ok(s)
}

/// The page of one run, as HTML text.
///
/// # Errors
/// A run directory that does not exist, a file that does not parse
/// (`run.json`, `final.json`, a section), or a chart that cannot be drawn.
pub fn render(run_dir: &Path) -> Result<String> {
    let run = RunData::load(run_dir)?;
    let mut page = head(
        &format!("{} — Taper run {}", run.name(), run.dir_name()),
        run.live(),
    );
    let _ = writeln!(
        page,
        "<body data-report=\"run\" data-live=\"{}\">",
        run.live()
    );
    page.push_str(&header(&run));
    page.push_str(&curves(&run)?);
    page.push_str(&sections(&run)?);
    page.push_str("<footer><p><small>Written by Taper ");
    page.push_str(env!("CARGO_PKG_VERSION"));
    page.push_str(".</small></p></footer></body></html>\n");
    Ok(page)
}

/// Writes `RUN/report.html` (atomically) from what the run directory holds;
/// returns its path. Live while `run.json` says so. On data-parallel ranks
/// other than 0 nothing is written ([`crate::distributed::is_primary`]).
///
/// # Errors
/// As [`render`], or a page that cannot be written.
pub fn write(run_dir: &Path) -> Result<PathBuf> {
    let path = run_dir.join(REPORT_FILE);
    if !crate::distributed::is_primary() {
        return Ok(path);
    }
    let page = render(run_dir)?;
    atomic_write(&path, page.as_bytes())?;
    Ok(path)
}

/// Records an example's final figures (the JSON object it prints last) as
/// `RUN/final.json`, marks the run ended, and writes the finished page;
/// returns its path. A run that never went through the trainer (a closed-form
/// fit, a native word2vec) gets `run.json` here with what `info` gives. On
/// data-parallel ranks other than 0 nothing is written.
///
/// # Errors
/// Figures that are not a JSON object, or as [`write`].
pub fn finish(
    run_dir: &Path,
    figures: &serde_json::Value,
    info: Option<RunInfo>,
) -> Result<PathBuf> {
    if !figures.is_object() {
        return Err(Error::Config("report figures must be a JSON object".into()));
    }
    if !crate::distributed::is_primary() {
        return Ok(run_dir.join(REPORT_FILE));
    }
    std::fs::create_dir_all(run_dir).map_err(|e| Error::io(run_dir, e))?;
    write_json(&run_dir.join(FINAL_FILE), figures)?;
    let mut run = match RunInfo::load(run_dir)? {
        Some(r) => r,
        None => match info {
            Some(i) => i,
            None => RunInfo {
                seed: None,
                device: None,
                threads: None,
                ..RunInfo::new(0, &candle_core::Device::Cpu)
            },
        },
    };
    if run.live || run.ended.is_none() {
        run.end();
    }
    run.save(run_dir)?;
    write(run_dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::MemoryUse;

    fn record(epoch: usize, loss: f64) -> EpochRecord {
        EpochRecord {
            epoch,
            train: [("loss".to_string(), loss), ("accuracy".into(), 0.5)].into(),
            valid: [("loss".to_string(), loss + 0.1)].into(),
            lr: [("model".to_string(), 0.01)].into(),
            seconds: 1.5,
            memory_mib: Some(MemoryUse {
                rss: 100.0,
                peak: 120.0,
            }),
            samples_per_second: Some(1000.0),
            train_seconds: Some(1.0),
        }
    }

    fn fake_run(dir: &Path, live: bool) {
        let lines: String = (0..3)
            .map(|e| serde_json::to_string(&record(e, 1.0 / (e + 1) as f64)).unwrap() + "\n")
            .collect();
        std::fs::write(dir.join("metrics.jsonl"), lines).unwrap();
        let rates = StepRates {
            epoch: 0,
            first_step: 0,
            lr: [("model".to_string(), vec![0.1, 0.05])].into(),
        };
        std::fs::write(
            dir.join(LR_FILE),
            serde_json::to_string(&rates).unwrap() + "\n{\"cut",
        )
        .unwrap();
        let mut info = RunInfo::new(7, &candle_core::Device::Cpu);
        info.live = live;
        info.train_items = Some(90);
        info.config = serde_json::json!({"example": "demo", "dataset": "digits"});
        info.save(dir).unwrap();
    }

    #[test]
    fn a_live_page_reloads_and_a_finished_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        fake_run(dir.path(), true);
        let page = std::fs::read_to_string(write(dir.path()).unwrap()).unwrap();
        assert!(page.contains("http-equiv=\"refresh\""));
        assert!(page.contains("data-status=\"live\""));
        let figures = serde_json::json!({"example": "demo", "test_accuracy": 0.9583333333333334});
        let page = std::fs::read_to_string(finish(dir.path(), &figures, None).unwrap()).unwrap();
        assert!(!page.contains("http-equiv=\"refresh\""));
        assert!(page.contains("<td data-figure=\"test_accuracy\">0.9583333333333334</td>"));
        assert!(!RunInfo::load(dir.path()).unwrap().unwrap().live);
        // Curves of each metric, the learning rate, memory and throughput.
        for title in ["loss", "accuracy", "learning rate", "memory", "throughput"] {
            assert!(page.contains(&format!(">\n{title}\n<")), "{title} missing");
        }
        assert!(page.contains("train 90") && page.contains("digits"));
    }

    #[test]
    fn sections_are_drawn_in_order_with_their_pictures_inlined() {
        let dir = tempfile::tempdir().unwrap();
        fake_run(dir.path(), false);
        let pics = section_dir(dir.path()).unwrap();
        std::fs::write(pics.join("a.png"), b"\x89PNG").unwrap();
        Section::new("Second", 2)
            .with(Block::Text { text: "two".into() })
            .save(dir.path(), "b")
            .unwrap();
        Section::new("First", 1)
            .with(Block::Images {
                images: vec![Picture {
                    file: "report/a.png".into(),
                    caption: "3 -> 8".into(),
                }],
                slider: false,
            })
            .with(Block::Matrix {
                title: "confusion".into(),
                rows: vec!["a".into(), "b".into()],
                columns: vec!["a".into(), "b".into()],
                values: vec![vec![3.0, 1.0], vec![0.0, 4.0]],
                x_label: "predicted".into(),
                y_label: "true".into(),
            })
            .save(dir.path(), "a")
            .unwrap();
        let page = render(dir.path()).unwrap();
        let (first, second) = (
            page.find(">First<").unwrap(),
            page.find(">Second<").unwrap(),
        );
        assert!(first < second);
        assert!(page.contains("data:image/png;base64,iVBORw=="));
        assert!(page.contains("3 -&gt; 8"));
        assert!(Section::new("x", 0).save(dir.path(), "../x").is_err());
    }

    #[test]
    fn a_resumed_runs_repeated_rate_lines_are_read_once() {
        let dir = tempfile::tempdir().unwrap();
        fake_run(dir.path(), false);
        let again = StepRates {
            epoch: 0,
            first_step: 0,
            lr: [("model".to_string(), vec![0.2, 0.1])].into(),
        };
        let past_history = StepRates {
            epoch: 5,
            ..again.clone()
        };
        let mut text = std::fs::read_to_string(dir.path().join(LR_FILE)).unwrap();
        text = text.replace("{\"cut", "");
        for r in [&again, &past_history] {
            text.push_str(&(serde_json::to_string(r).unwrap() + "\n"));
        }
        std::fs::write(dir.path().join(LR_FILE), text).unwrap();
        let run = RunData::load(dir.path()).unwrap();
        assert_eq!(run.lr_curves()[0].points, [(1.0, 0.2), (2.0, 0.1)]);
    }
}
