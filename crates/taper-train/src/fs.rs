//! Atomic file writes: a kill at any instant leaves either the old file or the
//! new one, never a mix.

use crate::{Error, Result};
use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` atomically: a temporary file in the same folder,
/// fsynced, renamed over `path`, then the folder fsynced.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    atomic_write_with(path, |w| w.write_all(bytes))
}

/// [`atomic_write`] for content too large to hold in memory: `fill` streams it
/// into a buffered writer on the temporary file. The temporary file's name is
/// unique to the process and the call, so two processes (data-parallel ranks) or
/// threads saving the same path never write into one file.
///
/// # Errors
/// What `fill` returns, or a failure to create, sync or rename the file; the
/// temporary file is removed and `path` keeps its old content.
pub fn atomic_write_with(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    // Process id and a per-process counter: two threads saving the same file at
    // once must not share a temporary file.
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.tmp-{}-{n}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut out = std::io::BufWriter::new(File::create(&tmp)?);
        fill(&mut out)?;
        let f = out.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        sync_dir(dir)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    // Directories can be fsynced on Unix; elsewhere the rename is the best we have.
    #[cfg(unix)]
    File::open(if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    })?
    .sync_all()?;
    Ok(())
}

pub(crate) fn sync_file(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(path, e))
}

/// The first `n` bytes of the file at `path` (fewer when it is shorter), or `None`
/// when there is no file there: what a writer checks before it replaces a file,
/// to replace only one of its own kind.
pub fn read_head(path: &Path, n: u64) -> Option<Vec<u8>> {
    use std::io::Read;
    let file = File::open(path).ok()?;
    let mut head = Vec::new();
    // A read error leaves what was read: too little to pass for the writer's own.
    let _ = file.take(n).read_to_end(&mut head);
    Some(head)
}
