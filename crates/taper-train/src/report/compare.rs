//! One page comparing several runs: their curves overlaid (one colour per
//! run), their settings and final figures side by side, rows that differ
//! highlighted.

use super::{head, html, lines_chart, Points, RunData, Series};
use crate::fs::atomic_write;
use crate::{Error, Result};
use html::esc;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// A curve of a run, `(x, y)` points.
type Curve<'a> = dyn Fn(&RunData) -> Points + 'a;

/// `prefix.key` → JSON text of every leaf of `v`.
fn flatten(prefix: &str, v: &serde_json::Value, out: &mut BTreeMap<String, String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, x, out);
            }
        }
        serde_json::Value::Null => {}
        other => {
            out.insert(prefix.to_string(), html::figure_text(other));
        }
    }
}

/// Each run's settings: its configuration, its model's, and what `run.json` holds.
fn settings(run: &RunData) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some(i) = &run.info {
        flatten("", &i.config, &mut out);
        for (k, v) in [
            ("seed", i.seed.map(|v| v.to_string())),
            ("device", i.device.clone()),
            ("threads", i.threads.map(|v| v.to_string())),
            ("train items", i.train_items.map(|v| v.to_string())),
            ("valid items", i.valid_items.map(|v| v.to_string())),
            ("test items", i.test_items.map(|v| v.to_string())),
            ("Taper version", Some(i.taper_version.clone())),
        ] {
            if let Some(v) = v {
                out.insert(k.to_string(), v);
            }
        }
    }
    if let Some(c) = &run.card {
        out.insert("model.family".into(), c.family.clone());
        flatten("model", &c.config, &mut out);
    }
    out
}

/// A table with one column per run; rows whose values differ between runs
/// come first, marked `class="diff"` (highlighted) and `data-differs`.
fn side_by_side(runs: &[RunData], cols: &[BTreeMap<String, String>]) -> (String, usize) {
    let mut keys: Vec<&String> = cols.iter().flat_map(|c| c.keys()).collect();
    keys.sort();
    keys.dedup();
    let differs = |k: &String| {
        let first = cols[0].get(k);
        cols.iter().any(|c| c.get(k) != first)
    };
    keys.sort_by_key(|k| !differs(k));
    let mut s = String::from("<div class=\"scroll\"><table><tr><th></th>");
    for (i, r) in runs.iter().enumerate() {
        let _ = write!(s, "<th>{}</th>", label(i, r));
    }
    s.push_str("</tr>");
    let mut n = 0;
    for k in keys {
        let d = differs(k);
        n += d as usize;
        let _ = write!(
            s,
            "<tr{}><th>{}</th>",
            if d {
                " class=\"diff\" data-differs=\"true\""
            } else {
                ""
            },
            esc(k)
        );
        for c in cols {
            let _ = write!(
                s,
                "<td>{}</td>",
                esc(c.get(k).map(String::as_str).unwrap_or("—"))
            );
        }
        s.push_str("</tr>");
    }
    s.push_str("</table></div>");
    (s, n)
}

fn label(i: usize, r: &RunData) -> String {
    let c = super::chart::colour(i);
    format!(
        "<span class=\"swatch\" style=\"background:rgb({},{},{})\"></span>{}",
        c.0,
        c.1,
        c.2,
        esc(&r.dir_name())
    )
}

/// Writes one page comparing the runs in `runs` to `out` (atomically):
/// every metric's train and validation curves with one colour per run, the
/// learning rates, memory and throughput overlaid; settings and final figures
/// side by side, differences first and highlighted. Returns the number of
/// settings that differ.
///
/// # Errors
/// No runs, a run directory that does not exist, holds no run or whose files
/// do not parse, an `out` that exists and is not an HTML page, a chart that
/// cannot be drawn, a page that cannot be written.
pub fn compare(runs: &[PathBuf], out: &Path) -> Result<usize> {
    if runs.is_empty() {
        return Err(Error::Config("compare: no run directories given".into()));
    }
    // The page replaces only a page (an earlier comparison), never a file of
    // another kind given as `out` by mistake.
    if let Some(head) = crate::fs::read_head(out, 64) {
        if !head.starts_with(b"<!DOCTYPE html>") {
            return Err(Error::Config(format!(
                "{} exists and is not an HTML page, so it is not replaced: give the comparison another path",
                out.display()
            )));
        }
    }
    let data: Vec<RunData> = runs
        .iter()
        .map(|r| RunData::load(r))
        .collect::<Result<_>>()?;
    let live = data.iter().any(RunData::live);
    let mut page = head(&format!("Taper: {} runs compared", data.len()), live);
    let _ = write!(
        page,
        "<body data-report=\"compare\" data-live=\"{live}\">\n<header><h1>{} runs compared</h1>",
        data.len()
    );
    page.push_str("<div class=\"scroll\"><table><tr><th>run</th><th>example</th><th>directory</th><th>epochs</th><th>status</th></tr>");
    for (i, r) in data.iter().enumerate() {
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            label(i, r),
            esc(&r.name()),
            esc(&r.dir.display().to_string()),
            r.history.len(),
            if r.live() { "running" } else { "ended" }
        );
    }
    page.push_str("</table></div></header>\n");

    let cols: Vec<BTreeMap<String, String>> = data.iter().map(settings).collect();
    let (table, differing) = side_by_side(&data, &cols);
    let _ = writeln!(
        page,
        "<section id=\"settings\"><h2>Settings ({differing} differ)</h2>{table}</section>"
    );
    let finals: Vec<BTreeMap<String, String>> = data
        .iter()
        .map(|r| {
            r.figures
                .iter()
                .map(|(k, v)| (k.clone(), html::figure_text(v)))
                .collect()
        })
        .collect();
    if finals.iter().any(|f| !f.is_empty()) {
        let (table, _) = side_by_side(&data, &finals);
        let _ = writeln!(
            page,
            "<section id=\"figures\"><h2>Final figures</h2>{table}</section>"
        );
    }

    // One series per run in run order, empty where a run lacks the curve, so
    // that run i keeps colour i on every chart.
    let per_run = |f: &Curve<'_>| -> Vec<Series> {
        data.iter()
            .map(|r| Series {
                name: r.dir_name(),
                points: f(r),
            })
            .collect()
    };
    let mut names: Vec<String> = data.iter().flat_map(RunData::metric_names).collect();
    names.sort_by_key(|n| (n != "loss", n.clone()));
    names.dedup();
    let mut charts = String::new();
    for m in &names {
        for (split, word) in [("train", "train"), ("valid", "validation")] {
            let series = per_run(&|r| r.curve(split, m));
            if series.iter().any(|s| !s.points.is_empty()) {
                charts.push_str(&lines_chart(&format!("{word} {m}"), "epoch", m, series)?);
            }
        }
    }
    let extra: [(&str, &str, &str, &Curve<'_>); 3] = [
        ("learning rate", "step", "learning rate", &|r| {
            r.lr_curves()
                .into_iter()
                .next()
                .map(|s| s.points)
                .unwrap_or_default()
        }),
        ("resident memory", "epoch", "MiB", &|r| r.memory().0),
        ("throughput", "epoch", "samples/s", &|r| r.throughput()),
    ];
    for (title, x, y, f) in extra {
        let series = per_run(f);
        if series.iter().any(|s| !s.points.is_empty()) {
            charts.push_str(&lines_chart(title, x, y, series)?);
        }
    }
    if !charts.is_empty() {
        let _ = writeln!(
            page,
            "<section id=\"curves\"><h2>Curves</h2><div class=\"charts\">{charts}</div></section>"
        );
    }
    page.push_str("</body></html>\n");
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    atomic_write(out, page.as_bytes())?;
    Ok(differing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::RunInfo;

    fn run(dir: &Path, lr: f64, acc: f64) {
        let mut info = RunInfo::new(1, &candle_core::Device::Cpu);
        info.live = false;
        info.config = serde_json::json!({"example": "mlp", "lr": lr, "batch_size": 32});
        info.save(dir).unwrap();
        let line = serde_json::json!({"epoch": 0, "train": {"loss": 1.0}, "valid": {"loss": 1.2},
            "lr": {"model": lr}, "seconds": 1.0});
        std::fs::write(dir.join("metrics.jsonl"), format!("{line}\n")).unwrap();
        std::fs::write(
            dir.join("final.json"),
            serde_json::json!({"test_accuracy": acc}).to_string(),
        )
        .unwrap();
    }

    #[test]
    fn differing_settings_are_highlighted_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        for (d, lr, acc) in [(&a, 0.01, 0.9), (&b, 0.001, 0.95)] {
            std::fs::create_dir_all(d).unwrap();
            run(d, lr, acc);
        }
        let out = dir.path().join("cmp/compare.html");
        let n = compare(&[a.clone(), b.clone()], &out).unwrap();
        assert_eq!(n, 1, "only lr differs");
        let page = std::fs::read_to_string(&out).unwrap();
        assert!(
            page.contains(
                "<tr class=\"diff\" data-differs=\"true\"><th>lr</th><td>0.01</td><td>0.001</td>"
            ),
            "{page}"
        );
        assert!(page.contains("<tr><th>batch_size</th><td>32</td><td>32</td></tr>"));
        assert!(page.contains(">\ntrain loss\n<") && page.contains(">\nvalidation loss\n<"));
        assert!(compare(&[], &out).is_err());
        assert!(compare(&[dir.path().join("missing")], &out).is_err());
        // An empty folder is not a run; a file that is not a page is not replaced
        // (the earlier comparison is).
        let empty = dir.path().join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        let e = compare(&[a.clone(), empty], &out).unwrap_err().to_string();
        assert!(e.contains("not a Taper run"), "{e}");
        let notes = dir.path().join("notes.txt");
        std::fs::write(&notes, "mine").unwrap();
        let e = compare(&[a.clone(), b.clone()], &notes)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not an HTML page"), "{e}");
        assert_eq!(std::fs::read_to_string(&notes).unwrap(), "mine");
        assert_eq!(compare(&[a, b], &out).unwrap(), 1);
    }
}
