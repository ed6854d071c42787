//! What the end-to-end tests share.

use std::path::PathBuf;

/// The built example binary `name`. Integration tests live in
/// `target/<profile>/deps`; `make test` builds the examples into
/// `target/<profile>/examples` first.
pub fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let p = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name);
    assert!(
        p.exists(),
        "example binary {} not built (make test runs `cargo build --release --examples` first)",
        p.display()
    );
    p
}

/// Panics with the command's standard error unless it succeeded.
#[allow(dead_code)] // not every test binary that shares this module uses it
pub fn assert_succeeded(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
