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
