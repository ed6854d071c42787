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
    resolve_root(explicit, DATA_ENV, "data")
}

/// `explicit`, then `$env`, then `../shared/<name>`, then `./<name>`: the
/// first that is given or is a folder.
fn resolve_root(explicit: Option<&Path>, env: &str, name: &str) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    if let Ok(p) = std::env::var(env) {
        if !p.is_empty() {
            return PathBuf::from(p);
        }
    }
    let shared = Path::new("../shared").join(name);
    if shared.is_dir() {
        return shared;
    }
    PathBuf::from(name)
}

/// The environment variable naming the models folder.
pub const MODELS_ENV: &str = "TAPER_MODELS";

/// Resolves the models root the way [`resolve_data_root`] resolves data:
/// `explicit` (from `--model`'s parent), then `$TAPER_MODELS`, then
/// `../shared/models`, then `./models`.
pub fn resolve_model_root(explicit: Option<&Path>) -> PathBuf {
    resolve_root(explicit, MODELS_ENV, "models")
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
