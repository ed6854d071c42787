//! The run reports (`report.html`) rendered by a real browser: short runs of a
//! classifier, a GAN, a translator and word vectors, and a comparison page, each opened in
//! headless Chromium. No console error, every image decodes, the page is not
//! blank (its screenshot has many colours), and the figures on the page are
//! those of the example's JSON line. Where Chromium is missing
//! (`bash tools/install_chromium.sh` installs it) the browser checks say they
//! skipped and the pages are checked as text only.

mod common;

use common::{assert_succeeded, example};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn last_json(out: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("last line is not JSON ({e}): {stdout}"))
}

/// Runs example `name` with `args`; its JSON line and the report path it printed.
fn run(name: &str, args: &[&str]) -> (serde_json::Value, PathBuf) {
    let out = Command::new(example(name))
        .args(args)
        .env("RAYON_NUM_THREADS", "2")
        .output()
        .unwrap();
    assert_succeeded(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let page = stdout
        .lines()
        .find_map(|l| l.strip_prefix("report: "))
        .unwrap_or_else(|| panic!("{name} printed no report path: {stdout}"));
    (last_json(&out), PathBuf::from(page))
}

/// The browser, where one is installed.
fn chromium() -> Option<String> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .map(String::from)
}

/// What the browser made of a page: its DOM after the load handlers ran, its
/// log (console messages included) and a screenshot.
struct Rendered {
    dom: String,
    log: String,
    screenshot: image::RgbaImage,
}

fn render(browser: &str, page: &Path) -> Rendered {
    let profile = tempfile::tempdir().unwrap();
    let url = format!("file://{}", page.canonicalize().unwrap().display());
    let base = |cmd: &mut Command| {
        cmd.args([
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--no-first-run",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()));
    };
    let mut dump = Command::new(browser);
    base(&mut dump);
    let out = dump.arg("--dump-dom").arg(&url).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shot = profile.path().join("shot.png");
    let mut cap = Command::new(browser);
    base(&mut cap);
    let cap_out = cap
        .arg(format!("--screenshot={}", shot.display()))
        .arg("--window-size=900,1400")
        .arg(&url)
        .output()
        .unwrap();
    assert!(
        shot.exists(),
        "no screenshot: {}",
        String::from_utf8_lossy(&cap_out.stderr)
    );
    Rendered {
        dom: String::from_utf8_lossy(&out.stdout).into_owned(),
        log: String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&cap_out.stderr),
        screenshot: image::open(&shot).unwrap().to_rgba8(),
    }
}

/// The text of the element carrying `data-figure="key"`.
fn figure<'a>(html: &'a str, key: &str) -> Option<&'a str> {
    let tag = format!("data-figure=\"{key}\">");
    let start = html.find(&tag)? + tag.len();
    Some(&html[start..start + html[start..].find('<')?])
}

/// Every number of the JSON line is on the page, with the same value.
fn assert_figures(html: &str, json: &serde_json::Value) {
    let mut checked = 0;
    for (k, v) in json.as_object().unwrap() {
        let Some(want) = v.as_f64() else { continue };
        let text = figure(html, k).unwrap_or_else(|| panic!("figure {k} not on the page"));
        let got: f64 = text
            .parse()
            .unwrap_or_else(|e| panic!("{k}: '{text}': {e}"));
        assert_eq!(got, want, "figure {k}");
        checked += 1;
    }
    assert!(checked >= 3, "only {checked} numeric figures in {json}");
}

/// The page's attribute `name` on `<body>` (set by its load handler).
fn body_attr<'a>(dom: &'a str, name: &str) -> Option<&'a str> {
    let tag = format!("{name}=\"");
    let body = &dom[dom.find("<body")?..];
    let body = &body[..body.find('>')?];
    let start = body.find(&tag)? + tag.len();
    Some(&body[start..start + body[start..].find('"')?])
}

/// The checks of one finished page: as text always, in the browser where
/// there is one. Returns the images the browser counted (0 without browser).
fn check_page(page: &Path, json: Option<&serde_json::Value>, min_images: usize) -> usize {
    let html = std::fs::read_to_string(page).unwrap();
    assert!(
        !html.contains("http-equiv=\"refresh\""),
        "a finished page must not reload"
    );
    for remote in ["src=\"http", "href=\"http", "url(http", "@import"] {
        assert!(
            !html.contains(remote),
            "the page fetches nothing ({remote})"
        );
    }
    if let Some(j) = json {
        assert_figures(&html, j);
    }
    let Some(browser) = chromium() else {
        eprintln!(
            "report_browser: browser checks SKIPPED for {}: chromium not found (bash tools/install_chromium.sh installs it)",
            page.display()
        );
        return 0;
    };
    let r = render(&browser, page);
    assert_eq!(
        body_attr(&r.dom, "data-checked"),
        Some("1"),
        "load handler did not run"
    );
    assert_eq!(
        body_attr(&r.dom, "data-errors"),
        Some("0"),
        "script errors: {}",
        r.log
    );
    assert_eq!(
        body_attr(&r.dom, "data-broken-images"),
        Some("0"),
        "images that do not decode"
    );
    let images: usize = body_attr(&r.dom, "data-images").unwrap().parse().unwrap();
    assert!(
        images >= min_images,
        "{images} images, expected {min_images}"
    );
    for line in r.log.lines() {
        assert!(
            !line.contains(":CONSOLE") && !line.contains("Uncaught"),
            "console message: {line}"
        );
    }
    let colours: HashSet<[u8; 4]> = r.screenshot.pixels().map(|p| p.0).collect();
    assert!(colours.len() > 16, "blank page? {} colours", colours.len());
    if let Some(j) = json {
        // The figures as the browser parsed the page.
        assert_figures(&r.dom, j);
    }
    images
}

#[test]
fn classifier_reports_and_their_comparison_render() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("mlp-a"), dir.path().join("mlp-b"));
    let mut jsons = Vec::new();
    for (d, lr) in [(&a, "0.001"), (&b, "0.003")] {
        let args = ["--epochs", "2", "--lr", lr, "--out", d.to_str().unwrap()];
        let (json, page) = run("mlp", &args);
        assert_eq!(page, d.join("report.html"));
        let html = std::fs::read_to_string(&page).unwrap();
        for part in [
            "confusion (validation)",
            "most confidently wrong",
            ">\naccuracy\n<",
            ">\nlearning rate\n<",
        ] {
            assert!(html.contains(part), "{part} missing");
        }
        // The confusion matrix's thumbnails of mistakes, at least one.
        check_page(&page, Some(&json), 1);
        jsons.push(json);
    }
    let cmp = dir.path().join("compare.html");
    let out = Command::new(example("report"))
        .args([
            a.to_str().unwrap(),
            b.to_str().unwrap(),
            "--out",
            cmp.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_succeeded(&out);
    let json = last_json(&out);
    assert_eq!(json["runs"], 2);
    assert!(json["differences"].as_u64().unwrap() >= 1, "{json}");
    let html = std::fs::read_to_string(&cmp).unwrap();
    assert!(
        html.contains(
            "<tr class=\"diff\" data-differs=\"true\"><th>lr</th><td>0.001</td><td>0.003</td>"
        ),
        "the differing learning rate is not highlighted"
    );
    check_page(&cmp, None, 0);
}

#[test]
fn gan_report_renders_its_sample_grids() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("dcgan");
    let args = [
        "--epochs",
        "2",
        "--width",
        "8",
        "--out",
        d.to_str().unwrap(),
    ];
    let (json, page) = run("dcgan", &args);
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("class=\"slider\"") && html.contains("samples after epoch 2"));
    let images = check_page(&page, Some(&json), 2);
    assert!(
        images == 0 || images == 2,
        "one grid per epoch, got {images}"
    );
}

#[test]
fn translation_report_renders_triples_and_attention() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("dates");
    let args = [
        "--task",
        "dates",
        "--num-dates",
        "600",
        "--epochs",
        "1",
        "--emb",
        "16",
        "--hidden",
        "32",
        "--eval-limit",
        "20",
        "--heatmaps",
        "2",
        "--beam",
        "2",
        "--out",
        d.to_str().unwrap(),
    ];
    let (json, page) = run("translate", &args);
    let html = std::fs::read_to_string(&page).unwrap();
    for part in ["beam search", "reference", "Attention of each output token"] {
        assert!(html.contains(part), "{part} missing");
    }
    // The header counts sentence pairs and the real batch size, not buckets.
    let splits = format!(
        "<th>splits (items)</th><td>train {}, validation {}, test {}</td>",
        json["train_pairs"], json["valid_pairs"], json["test_pairs"]
    );
    assert!(html.contains(&splits), "{splits} missing");
    assert!(html.contains("<th>batch size</th><td>64</td>"));
    check_page(&page, Some(&json), 2);
    // Resuming it as another model is refused up front, naming the flag to repeat.
    let out = Command::new(example("translate"))
        .args([
            "--task",
            "dates",
            "--num-dates",
            "600",
            "--model",
            "transformer",
        ])
        .args([
            "--emb",
            "16",
            "--hidden",
            "32",
            "--resume",
            d.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "resumed as another model: {err}");
    assert!(
        err.contains("model \"lstm\" (this command: \"transformer\"; --model)")
            && err.contains("repeat the run's flags"),
        "{err}"
    );
}

#[test]
fn word2vec_report_renders_neighbours_and_the_wordsim_scatter() {
    let dir = tempfile::tempdir().unwrap();
    // Two topics of four words each, sentences drawn from one topic at a time.
    let topics = [
        ["cat", "dog", "mouse", "pet"],
        ["car", "road", "wheel", "drive"],
    ];
    let corpus: String = (0..400)
        .map(|i| {
            let t = &topics[i % 2];
            (0..8)
                .map(|j| t[(i * 7 + j * 3) % 4])
                .collect::<Vec<_>>()
                .join(" ")
                + "\n"
        })
        .collect();
    let corpus_path = dir.path().join("corpus.txt");
    std::fs::write(&corpus_path, corpus).unwrap();
    let pairs_path = dir.path().join("pairs.csv");
    std::fs::write(
        &pairs_path,
        "a,b,score\ncat,dog,9\ncar,road,8\ncat,wheel,1\ndog,drive,2\n",
    )
    .unwrap();
    let d = dir.path().join("word2vec");
    let args = [
        "--corpus",
        corpus_path.to_str().unwrap(),
        "--wordsim",
        pairs_path.to_str().unwrap(),
        "--epochs",
        "1",
        "--dim",
        "8",
        "--min-count",
        "1",
        "--show",
        "cat,car",
        "--out",
        d.to_str().unwrap(),
    ];
    let (json, page) = run("word2vec", &args);
    assert_eq!(json["wordsim_pairs"], 4);
    let html = std::fs::read_to_string(&page).unwrap();
    for part in [
        "nearest (cosine)",
        "Word similarity: model against people",
        "<svg",
    ] {
        assert!(html.contains(part), "{part} missing");
    }
    check_page(&page, Some(&json), 0);
}

/// The regression domain: a linear regression on the embedded diabetes data, whose
/// page carries the fit section (predicted against true, residuals).
#[test]
fn regression_report_renders_its_fit() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("linear");
    let (json, page) = run("linear_regression", &["--out", d.to_str().unwrap()]);
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(
        html.contains("Fit on the"),
        "no fit section in {}",
        page.display()
    );
    check_page(&page, Some(&json), 0);
}
