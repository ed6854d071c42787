//! The `mnist_cnn` example end to end: the embedded digits, then `--predict` on a
//! picture made from a held-out digit, then bad command lines.

use std::process::{Command, Output};

mod common;
use common::example;

fn run(args: &[&str]) -> Output {
    Command::new(example("mnist_cnn"))
        .args(args)
        .output()
        .unwrap()
}

fn last_json(out: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap_or_else(|e| {
        panic!(
            "last line is not JSON ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn digits_train_then_predict_a_picture() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let r = run_dir.to_str().unwrap();
    let out = run(&["--epochs", "12", "--out", r]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j = last_json(&out);
    let acc = j["test_accuracy"].as_f64().unwrap();
    assert!(acc >= 0.95, "held-out accuracy {acc}");
    // Honest figures: validation figures of the kept checkpoint, the test split
    // evaluated once; no figure selected on the test split.
    assert!(j["valid_accuracy"].as_f64().unwrap() > 0.9, "{j}");
    assert!(j.get("best_test_accuracy").is_none(), "{j}");

    // A digit "7" drawn dark on light paper at 64x64 (the example inverts and resizes it).
    let digits =
        taper_vision::datasets::load_digits(&taper_vision::datasets::digits::default_digits_path())
            .unwrap();
    let labels = digits.1.to_vec1::<u32>().unwrap();
    let idx = labels.iter().rposition(|&l| l == 7).unwrap();
    let px = digits
        .0
        .get(idx)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let img = image::GrayImage::from_fn(64, 64, |x, y| {
        image::Luma([255 - (px[(y / 8 * 8 + x / 8) as usize] * 255.0) as u8])
    });
    let pic = dir.path().join("seven.png");
    img.save(&pic).unwrap();
    let out = run(&["--resume", r, "--predict", pic.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j = last_json(&out);
    assert_eq!(j["top"][0][0], "7", "{j}");
    let p: f64 = j["top"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v[1].as_f64().unwrap())
        .sum();
    assert!(p > 0.5 && p <= 1.0 + 1e-6, "{j}");
}

#[test]
fn bad_inputs_are_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.png");
    std::fs::write(&junk, b"nope").unwrap();
    let out = run(&[
        "--resume",
        dir.path().to_str().unwrap(),
        "--predict",
        junk.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && !err.contains("panicked") && err.contains("model.json"),
        "{err}"
    );
    let out = run(&["--model", "vgg"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("unknown model 'vgg'"),
        "{err}"
    );
    let out = run(&[
        "--dataset",
        "fashion-mnist",
        "--data",
        dir.path().to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("fashion-mnist") && err.contains("make data"),
        "{err}"
    );
}
