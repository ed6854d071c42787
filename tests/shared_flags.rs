//! Every example flattens the same shared flags (`ExampleArgs`); one that a
//! given example (or mode) does not use is refused with one line naming the
//! flag, before any work starts, never accepted and silently ignored.

use std::process::Command;

mod common;
use common::example;

#[test]
fn unused_shared_flags_are_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let run = run.to_str().unwrap();
    let cases: &[(&str, &[&str], &str)] = &[
        (
            "dcgan",
            &["--accumulate", "2"],
            "dcgan does not use --accumulate",
        ),
        (
            "dcgan",
            &["--valid-fraction", "0.2"],
            "dcgan does not use --valid-fraction",
        ),
        (
            "dcgan",
            &["--generate", "4", "--resume", run, "--epochs", "3"],
            "dcgan --generate does not use --epochs",
        ),
        (
            "explain",
            &["--resume", run, "--lr", "0.1"],
            "explain does not use --lr",
        ),
        (
            "mnist_cnn",
            &["--predict", "x.png", "--resume", run, "--batch-size", "8"],
            "mnist_cnn --predict does not use --batch-size",
        ),
        (
            "image_classifier",
            &[
                "--predict",
                "x.png",
                "--resume",
                run,
                "--checkpoint-every",
                "5",
            ],
            "image_classifier --predict does not use --checkpoint-every",
        ),
        (
            "word2vec",
            &["--accumulate", "4"],
            "word2vec does not use --accumulate",
        ),
        (
            "word2vec",
            &["--batch-size", "64"],
            "word2vec --engine native does not use --batch-size",
        ),
        (
            "word2vec",
            &["--score", "v.txt", "--epochs", "2"],
            "word2vec --score does not use --epochs",
        ),
        (
            "logistic_regression",
            &["--epochs", "5"],
            "logistic_regression --solver newton does not use --epochs",
        ),
        (
            "logistic_regression",
            &["--solver", "trainer", "--valid-fraction", "0.2"],
            "logistic_regression does not use --valid-fraction",
        ),
        (
            "linear_regression",
            &["--lr", "0.1"],
            "linear_regression does not use --lr",
        ),
        (
            "image_transforms",
            &["--epochs", "2"],
            "image_transforms does not use --epochs",
        ),
        (
            "bench_ops",
            &["--accumulate", "2"],
            "bench_ops does not use --accumulate",
        ),
    ];
    for (name, args, want) in cases {
        let out = Command::new(example(name))
            .args(*args)
            .env("RUST_BACKTRACE", "0")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name} {args:?} succeeded");
        assert!(
            err.contains(want),
            "{name} {args:?}: expected '{want}' in: {err}"
        );
        assert!(!err.contains("panicked"), "{name} {args:?} panicked: {err}");
    }
    assert!(
        !std::path::Path::new(run).exists(),
        "a refused command wrote its run directory"
    );
}

/// Runs `name args` and returns (success, stderr).
fn run(name: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(example(name))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .env("RAYON_NUM_THREADS", "2")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!err.contains("panicked"), "{name} {args:?} panicked: {err}");
    (out.status.success(), err)
}

#[test]
fn values_no_training_can_use_are_refused_up_front() {
    let tmp = tempfile::tempdir().unwrap();
    let run_dir = tmp.path().join("run");
    let out = run_dir.to_str().unwrap();
    let cases: &[(&str, &[&str], &str)] = &[
        (
            "mlp",
            &["--lr", "NaN"],
            "--lr must be a finite number above 0",
        ),
        ("mlp", &["--lr=-1"], "--lr must be a finite number above 0"),
        (
            "mlp",
            &["--accumulate", "0"],
            "--accumulate must be at least 1",
        ),
        (
            "mlp",
            &["--checkpoint-every", "0"],
            "--checkpoint-every must be at least 1",
        ),
        (
            "mlp",
            &["--batch-size", "0"],
            "--batch-size must be at least 1",
        ),
        (
            "mlp",
            &["--valid-fraction", "0"],
            "--valid-fraction must be above 0",
        ),
        (
            "mlp",
            &["--threads", "100000"],
            "--threads 100000 is more than four per core",
        ),
        (
            "mlp",
            &["--dropout", "2"],
            "dropout probability must be in [0, 1]",
        ),
        ("mlp", &["--hidden1", "0"], "a layer size of 0"),
        (
            "dcgan",
            &["--generate", "0", "--resume", out],
            "--generate must be 1 to 100000",
        ),
        ("semantic_search", &["--k", "0"], "--k must be at least 1"),
        (
            "semantic_search",
            &["--embed", "a.txt", "--query", "x"],
            "semantic_search --embed does not use --query",
        ),
        (
            "semantic_search",
            &["--corpus", "a.txt", "--fine-tune"],
            "--fine-tune goes with --eval-paraphrases",
        ),
        (
            "translate",
            &["--task", "dates", "--beam", "0"],
            "--beam and --eval-limit must be at least 1",
        ),
        (
            "word2vec",
            &["--score", "v.txt", "--out", "x"],
            "word2vec --score does not use --out",
        ),
        (
            "dcgan",
            &["--eval-samples", "5"],
            "--eval-samples and --epoch-samples count samples scored by --classifier",
        ),
        (
            "explain",
            &["--translation", "t", "--image", "p.png"],
            "--image is for a LeNet run",
        ),
    ];
    for (name, args, want) in cases {
        let mut all = args.to_vec();
        if *name == "mlp" {
            all.extend(["--out", out]);
        }
        let (ok, err) = run(name, &all);
        assert!(!ok, "{name} {args:?} succeeded");
        assert!(
            err.contains(want),
            "{name} {args:?}: expected '{want}' in: {err}"
        );
    }
}

#[test]
fn a_new_run_never_deletes_what_is_already_in_its_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let path = |p: &str| tmp.path().join(p);
    // A folder of the user's own, with names a run writes.
    std::fs::create_dir_all(path("mine/report")).unwrap();
    std::fs::write(path("mine/report/figure.png"), b"mine").unwrap();
    std::fs::write(path("mine/metrics.jsonl"), b"keep").unwrap();
    let mine = path("mine");
    for extra in [&[][..], &["--overwrite"][..]] {
        let mut args = vec!["--epochs", "1", "--out", mine.to_str().unwrap()];
        args.extend(extra);
        let (ok, err) = run("mlp", &args);
        assert!(
            !ok,
            "a run into a folder of other files succeeded ({extra:?})"
        );
        assert!(err.contains("holds no Taper run"), "{err}");
    }
    assert_eq!(
        std::fs::read(path("mine/report/figure.png")).unwrap(),
        b"mine"
    );
    assert_eq!(std::fs::read(path("mine/metrics.jsonl")).unwrap(), b"keep");
    // A file is not a folder.
    std::fs::write(path("afile"), b"x").unwrap();
    let (ok, err) = run("mlp", &["--out", path("afile").to_str().unwrap()]);
    assert!(!ok && err.contains("is a file, not a folder"), "{err}");
    // A folder that cannot be made: one line naming it, the reason said once.
    let (ok, err) = run("mlp", &["--out", "/proc/taper-cannot-be-made"]);
    assert!(!ok && err.contains("/proc/taper-cannot-be-made:"), "{err}");
    assert!(!err.contains("Caused by"), "{err}");

    // An earlier run: refused without --overwrite, replaced with it; a resume
    // stays in its own folder and is not combined with --overwrite.
    let r = path("run");
    let r = r.to_str().unwrap();
    let (ok, err) = run("mlp", &["--epochs", "1", "--out", r]);
    assert!(ok, "{err}");
    let (ok, err) = run("mlp", &["--epochs", "1", "--out", r]);
    assert!(!ok && err.contains("holds an earlier run"), "{err}");
    let other = path("other");
    let (ok, err) = run("mlp", &["--resume", r, "--out", other.to_str().unwrap()]);
    assert!(!ok && err.contains("cannot move it"), "{err}");
    assert!(!other.exists());
    let (ok, err) = run("mlp", &["--resume", r, "--overwrite"]);
    assert!(!ok && err.contains("give one"), "{err}");
    // Another example's run is refused by its model card, before any resume.
    let (ok, err) = run("dcgan", &["--resume", r, "--epochs", "2"]);
    assert!(!ok, "{err}");
    assert!(
        err.contains("holds a 'vision.classifier' model, not a 'vision.dcgan' one"),
        "{err}"
    );
    // Resuming without --epochs keeps the run's own count: nothing left to train.
    let (ok, err) = run("mlp", &["--resume", r]);
    assert!(ok && err.contains("nothing left to train"), "{err}");
    let (ok, err) = run("mlp", &["--epochs", "1", "--out", r, "--overwrite"]);
    assert!(ok, "{err}");
}

/// A resumed translation run keeps the pairs it was split from: other data flags
/// would train and test it on another split, so they are refused by name.
#[test]
fn a_translation_resume_with_other_data_flags_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let r = tmp.path().join("dates");
    let r = r.to_str().unwrap();
    let common = ["--task", "dates", "--epochs", "1", "--eval-limit", "20"];
    let (ok, err) = run(
        "translate",
        &[&common[..], &["--num-dates", "300", "--out", r]].concat(),
    );
    assert!(ok, "{err}");
    let (ok, err) = run("translate", &[&common[..], &["--resume", r]].concat());
    assert!(!ok, "{err}");
    assert!(
        err.contains("--num-dates 300 (this command: 20000)"),
        "{err}"
    );
    let (ok, err) = run(
        "translate",
        &[&common[..], &["--num-dates", "300", "--resume", r]].concat(),
    );
    assert!(ok && err.contains("nothing left to train"), "{err}");
}
