//! The one place where the data root is resolved.

use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// Environment variable naming the data root.
pub const DATA_ENV: &str = "TAPER_DATA";

/// Resolves the data root: `explicit` (from `--data`), then `$TAPER_DATA`, then
/// `../shared/data`, then `./data`. Returns the first candidate that is a folder.
///
/// The last candidate is returned even when it does not exist, so that a later
/// [`require_dir`] names the folder the user is expected to create.
pub fn resolve_data_root(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    if let Ok(p) = std::env::var(DATA_ENV) {
        if !p.is_empty() {
            return PathBuf::from(p);
        }
    }
    for candidate in ["../shared/data", "data"] {
        let p = PathBuf::from(candidate);
        if p.is_dir() {
            return p;
        }
    }
    PathBuf::from("data")
}

/// Returns `root/sub` when it is a folder, else the one-line error that says which
/// folder is expected and how to get it.
pub fn require_dir(root: &Path, sub: &str) -> Result<PathBuf> {
    let dir = root.join(sub);
    if dir.is_dir() {
        Ok(dir)
    } else {
        Err(Error::DataMissing(format!(
            "data set '{sub}' not found: expected folder {} (set --data DIR or {DATA_ENV}, or run `make data` to download it)",
            dir.display()
        )))
    }
}

/// Returns `dir/name` when it is a file, else an error naming the missing file.
pub fn require_file(dir: &Path, name: &str) -> Result<PathBuf> {
    let f = dir.join(name);
    if f.is_file() {
        Ok(f)
    } else {
        Err(Error::DataMissing(format!(
            "missing file {} (run `make data` to download the canonical files)",
            f.display()
        )))
    }
}
