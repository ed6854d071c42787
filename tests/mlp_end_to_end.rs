//! End to end through the `mlp` example binary: accuracy on the embedded digits,
//! SIGKILL at random moments followed by `--resume` (bit-exact final weights), and
//! bad command lines answered by one clear line, never a panic.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::example;

fn run(args: &[&str]) -> Output {
    Command::new(example("mlp"))
        .args(args)
        .env("RAYON_NUM_THREADS", "2")
        .output()
        .unwrap()
}

fn last_json(out: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("last line is not JSON ({e}): {stdout}"))
}

fn final_weights(run_dir: &Path) -> Vec<u8> {
    let ptr = std::fs::read_to_string(run_dir.join("checkpoints/latest.json")).unwrap();
    let tag: serde_json::Value = serde_json::from_str(&ptr).unwrap();
    let dir = run_dir
        .join("checkpoints")
        .join(tag["dir"].as_str().unwrap());
    std::fs::read(dir.join("model.safetensors")).unwrap()
}

#[test]
fn digits_reach_96_percent_and_print_json() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&["--out", dir.path().to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j = last_json(&out);
    assert_eq!(j["example"], "mlp");
    let acc = j["test_accuracy"].as_f64().unwrap();
    assert!(acc >= 0.96, "held-out accuracy {acc}");
    assert!(dir.path().join("metrics.jsonl").exists() && dir.path().join("loss.png").exists());
}

#[test]
fn sigkill_and_resume_end_bit_for_bit_equal() {
    let epochs = "12";
    let reference = tempfile::tempdir().unwrap();
    let out = run(&[
        "--epochs",
        epochs,
        "--out",
        reference.path().to_str().unwrap(),
    ]);
    assert!(out.status.success());

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let mut kills = 0;
    let mut delay_ms = 30u64;
    for attempt in 0..6 {
        let args: Vec<&str> = if attempt == 0 {
            vec!["--epochs", epochs, "--out", d]
        } else {
            vec!["--epochs", epochs, "--resume", d]
        };
        let mut child = Command::new(example("mlp"))
            .args(&args)
            .env("RAYON_NUM_THREADS", "2")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Kill once a checkpoint exists, a little later each time, so that kills
        // land mid-epoch and during checkpoint writes.
        let start = Instant::now();
        let latest = dir.path().join("checkpoints/latest.json");
        while !latest.exists() && start.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_millis(delay_ms));
        delay_ms += 40;
        match child.try_wait().unwrap() {
            Some(_) => break, // finished before we could kill it
            None => {
                child.kill().unwrap(); // SIGKILL on Unix
                child.wait().unwrap();
                kills += 1;
            }
        }
    }
    assert!(kills >= 2, "only {kills} kills landed");
    let out = run(&["--epochs", epochs, "--resume", d]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(last_json(&out)["epochs"], 12);
    assert!(
        final_weights(dir.path()) == final_weights(reference.path()),
        "after {kills} kills and resumes the weights differ from the uninterrupted run"
    );
    let lines = std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap();
    assert_eq!(
        lines.lines().count(),
        12,
        "one metrics line per epoch, none repeated"
    );
}

fn assert_clean_error(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "should fail: {err}");
    assert!(!err.contains("panicked"), "panicked: {err}");
    assert!(err.contains(needle), "expected '{needle}' in: {err}");
}

#[test]
fn bad_command_lines_give_one_clear_error() {
    assert_clean_error(
        &run(&["--batch-size", "0", "--out", "/tmp/taper-never"]),
        "--batch-size must be at least 1",
    );
    let missing = tempfile::tempdir().unwrap();
    let out = run(&[
        "--dataset",
        "mnist",
        "--data",
        missing.path().to_str().unwrap(),
    ]);
    assert_clean_error(&out, "data set 'mnist' not found: expected folder");
    assert_clean_error(&out, "make data");
    let empty = tempfile::tempdir().unwrap();
    assert_clean_error(
        &run(&["--resume", empty.path().to_str().unwrap()]),
        "no checkpoint to resume from",
    );
    assert_clean_error(&run(&["--device", "tpu"]), "unknown device 'tpu'");
}

/// The allocator reads `MIMALLOC_PURGE_DELAY` on the first allocation. Read with
/// std's `env::var_os` it allocated inside the allocator and the program hung
/// before `main` whenever the variable was set.
#[test]
fn an_explicit_mimalloc_setting_does_not_hang_the_program() {
    let mut child = Command::new(example("mlp"))
        .arg("--help")
        .env("MIMALLOC_PURGE_DELAY", "1000")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "mlp --help failed: {status}");
            break;
        }
        if start.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            panic!("mlp --help with MIMALLOC_PURGE_DELAY set did not finish in 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
