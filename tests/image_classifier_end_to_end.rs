//! End to end through the `image_classifier` example on a folder of 3x32x32
//! images this test generates: training, prediction of held-back images by
//! class name, clear messages for a hidden folder and an unreadable file, and
//! SIGKILL at random moments followed by `--resume` on two threads ending
//! bit-identical to an uninterrupted run (issue 21).

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::example;

fn run(args: &[&str]) -> Output {
    Command::new(example("image_classifier"))
        .args(args)
        .env("RAYON_NUM_THREADS", "2")
        .output()
        .unwrap()
}

fn last_json(out: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| {
        panic!(
            "last line is not JSON ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// A 32x32 RGB picture of bars, horizontal or vertical, at a position, width and
/// colour drawn from `seed`, over a noisy background.
fn bars(path: &Path, vertical: bool, seed: u64) {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move |m: u64| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s % m
    };
    let (offset, width) = (next(6) as u32, 2 + next(3) as u32);
    let colour = [
        100 + next(156) as u8,
        100 + next(156) as u8,
        100 + next(156) as u8,
    ];
    let img = image::RgbImage::from_fn(32, 32, |x, y| {
        let t = if vertical { x } else { y };
        if (t + offset) % 8 < width {
            image::Rgb(colour)
        } else {
            let n = next(60) as u8;
            image::Rgb([n, n, n])
        }
    });
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    img.save(path).unwrap();
}

/// `per_class` pictures of each class in `root/horizontal` and `root/vertical`.
fn folder(root: &Path, per_class: u64, seed: u64) {
    for i in 0..per_class {
        bars(
            &root.join(format!("horizontal/h{i:03}.png")),
            false,
            seed + 2 * i,
        );
        bars(
            &root.join(format!("vertical/v{i:03}.png")),
            true,
            seed + 2 * i + 1,
        );
    }
}

#[test]
fn trains_on_a_folder_and_predicts_held_back_images_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("photos");
    folder(&data, 40, 1);
    // What users' folders hold beside their classes.
    std::fs::create_dir_all(data.join(".ipynb_checkpoints")).unwrap();
    std::fs::write(data.join(".ipynb_checkpoints/notes-checkpoint.ipynb"), "{}").unwrap();
    std::fs::write(
        data.join("vertical/broken.png"),
        b"\x89PNG\r\n\x1a\nnot an image",
    )
    .unwrap();
    let run_dir = dir.path().join("run");
    let out = run(&[
        "--data",
        data.to_str().unwrap(),
        "--out",
        run_dir.to_str().unwrap(),
        "--epochs",
        "8",
        "--model",
        "cnn",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("skipped") && err.contains("broken.png"),
        "{err}"
    );
    let j = last_json(&out);
    assert_eq!(j["classes"], serde_json::json!(["horizontal", "vertical"]));
    assert_eq!(j["skipped"], 1);
    let acc = j["valid_accuracy"].as_f64().unwrap();
    assert!(acc >= 0.9, "validation accuracy {acc}");
    // Held-back pictures (other seeds), one per class, predicted by name.
    let held = dir.path().join("held");
    for (class, vertical) in [("horizontal", false), ("vertical", true)] {
        let p = held.join(format!("{class}.png"));
        bars(&p, vertical, 10_000 + vertical as u64);
        let out = run(&[
            "--predict",
            p.to_str().unwrap(),
            "--resume",
            run_dir.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let top = &last_json(&out)["top"];
        assert_eq!(top[0][0], class, "{top}");
        assert_eq!(top.as_array().unwrap().len(), 2);
    }
    // A run directory of another kind of model, and a folder without classes.
    let out = run(&[
        "--predict",
        "x.png",
        "--resume",
        dir.path().to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("model.json") && !err.contains("panicked"),
        "{err}"
    );
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = run(&[
        "--data",
        empty.to_str().unwrap(),
        "--out",
        dir.path().join("r2").to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("no class folders"),
        "{err}"
    );
    // A second fresh run into the same directory is refused, not merged.
    let out = run(&[
        "--data",
        data.to_str().unwrap(),
        "--out",
        run_dir.to_str().unwrap(),
        "--epochs",
        "1",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("earlier run"),
        "{err}"
    );
}

/// The README's walk-through (`examples/custom_cnn.rs`, a network of the
/// user's own in under 100 lines): trains on the folder, saves the run, loads it
/// back with the same code and names a held-back image of each class right.
#[test]
fn a_users_own_cnn_trains_saves_loads_and_predicts_by_name() {
    let source = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/custom_cnn.rs"
    ))
    .unwrap();
    assert!(
        source.lines().count() <= 100,
        "custom_cnn.rs grew past 100 lines"
    );
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("photos");
    folder(&data, 30, 11);
    for (class, vertical) in [("horizontal", false), ("vertical", true)] {
        let held = dir.path().join(format!("held-{class}.png"));
        bars(&held, vertical, 90_001 + vertical as u64);
        let run_dir = dir.path().join(format!("run-{class}"));
        let out = Command::new(example("custom_cnn"))
            .args([
                data.to_str().unwrap(),
                run_dir.to_str().unwrap(),
                held.to_str().unwrap(),
            ])
            .env("RAYON_NUM_THREADS", "2")
            .output()
            .unwrap();
        common::assert_succeeded(&out);
        let j = last_json(&out);
        assert_eq!(j["top"][0][0], class, "{j}");
        assert!(run_dir.join("model.json").is_file());
    }
    // The template keeps an earlier run: a second run into its folder is refused.
    let held = dir.path().join("held-vertical.png");
    let run_dir = dir.path().join("run-vertical");
    let before = final_weights(&run_dir);
    let out = Command::new(example("custom_cnn"))
        .args([&data, &run_dir, &held].map(|p| p.to_str().unwrap()))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("earlier run"),
        "{err}"
    );
    assert!(final_weights(&run_dir) == before, "the earlier run changed");
}

fn final_weights(run_dir: &Path) -> Vec<u8> {
    let ptr = std::fs::read_to_string(run_dir.join("checkpoints/latest.json")).unwrap();
    let tag: serde_json::Value = serde_json::from_str(&ptr).unwrap();
    std::fs::read(
        run_dir
            .join("checkpoints")
            .join(tag["dir"].as_str().unwrap())
            .join("model.safetensors"),
    )
    .unwrap()
}

/// A CNN over 3x32x32 images on two threads, killed at random moments and
/// resumed: the final weights equal an uninterrupted run's byte for byte (the
/// convolution's weight gradient is summed in a fixed order; issue 21).
#[test]
fn rgb_cnn_on_two_threads_survives_sigkill_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("photos");
    folder(&data, 48, 7);
    let common = |out_flag: &str, path: &Path| -> Vec<String> {
        [
            "--data",
            data.to_str().unwrap(),
            "--epochs",
            "6",
            "--threads",
            "2",
            "--augment",
            "--checkpoint-every",
            "2",
            out_flag,
            path.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let reference = dir.path().join("reference");
    let args = common("--out", &reference);
    let out = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let killed = dir.path().join("killed");
    let mut kills = 0;
    let mut delay_ms = 50u64;
    for attempt in 0..6 {
        let args = common(if attempt == 0 { "--out" } else { "--resume" }, &killed);
        let mut child = Command::new(example("image_classifier"))
            .args(&args)
            .env("RAYON_NUM_THREADS", "2")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        let latest = killed.join("checkpoints/latest.json");
        while !latest.exists() && start.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_millis(delay_ms));
        delay_ms += 70;
        match child.try_wait().unwrap() {
            Some(_) => break,
            None => {
                child.kill().unwrap();
                child.wait().unwrap();
                kills += 1;
            }
        }
    }
    assert!(kills >= 2, "only {kills} kills landed");
    let args = common("--resume", &killed);
    let out = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        final_weights(&killed) == final_weights(&reference),
        "after {kills} kills and resumes the weights differ from the uninterrupted run"
    );
}
