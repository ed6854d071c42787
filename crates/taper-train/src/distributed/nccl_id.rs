//! How NCCL's ranks meet: rank 0 publishes the communicator's unique id as a
//! file in a folder every rank sees, the others wait for it. No CUDA here, so
//! the CPU tests cover it.

use crate::{Error, Result};
use std::path::Path;
use std::time::{Duration, Instant};

/// Name of the file, in the folder given to `Nccl::new`, through which rank 0
/// hands NCCL's unique id to the other ranks.
pub const NCCL_ID_FILE: &str = "nccl.id";

/// Bytes in an NCCL unique id (`NCCL_UNIQUE_ID_BYTES`).
pub(crate) const ID_BYTES: usize = 128;

/// How often a waiting rank looks for the file.
const POLL: Duration = Duration::from_millis(100);

/// Rank 0: writes `id` to `dir/`[`NCCL_ID_FILE`] atomically (creating `dir`),
/// so a waiting rank reads either nothing or the whole id.
pub(crate) fn publish(dir: &Path, id: &[u8; ID_BYTES]) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    crate::fs::atomic_write(&dir.join(NCCL_ID_FILE), id)
}

/// The other ranks: waits up to `timeout` for rank 0's id in `dir`.
pub(crate) fn wait_for(dir: &Path, timeout: Duration, rank: usize) -> Result<[u8; ID_BYTES]> {
    let path = dir.join(NCCL_ID_FILE);
    let started = Instant::now();
    loop {
        // Written atomically: a file of another size is not rank 0's id.
        if let Ok(bytes) = std::fs::read(&path) {
            if let Ok(id) = <[u8; ID_BYTES]>::try_from(bytes.as_slice()) {
                return Ok(id);
            }
        }
        if started.elapsed() >= timeout {
            return Err(Error::Distributed(format!(
                "rank {rank}: rank 0's NCCL id did not appear as {} within {:.0} s \
                 (TAPER_COLLECTIVE_TIMEOUT): is rank 0 running, with the same folder?",
                path.display(),
                timeout.as_secs_f64()
            )));
        }
        std::thread::sleep(POLL.min(timeout));
    }
}

/// Rank 0, once every rank has joined: the id is spent, and a later run in
/// the same folder (a resume) must not find it.
pub(crate) fn retire(dir: &Path) {
    let _ = std::fs::remove_file(dir.join(NCCL_ID_FILE));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(seed: u8) -> [u8; ID_BYTES] {
        std::array::from_fn(|i| seed.wrapping_add(i as u8))
    }

    #[test]
    fn a_rank_started_first_waits_for_rank_0() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("run");
        let waiter = {
            let sub = sub.clone();
            std::thread::spawn(move || wait_for(&sub, Duration::from_secs(20), 1))
        };
        std::thread::sleep(Duration::from_millis(250));
        publish(&sub, &id(7)).unwrap();
        assert_eq!(waiter.join().unwrap().unwrap(), id(7));
        retire(&sub);
        assert!(!sub.join(NCCL_ID_FILE).exists());
    }

    #[test]
    fn a_rank_started_after_rank_0_reads_the_id_at_once() {
        let dir = tempfile::tempdir().unwrap();
        publish(dir.path(), &id(1)).unwrap();
        let started = Instant::now();
        assert_eq!(
            wait_for(dir.path(), Duration::from_secs(5), 2).unwrap(),
            id(1)
        );
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn no_id_in_time_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        // A file of the wrong size is not an id: still waiting at the timeout.
        std::fs::write(dir.path().join(NCCL_ID_FILE), b"partial").unwrap();
        let e = wait_for(dir.path(), Duration::from_millis(300), 3).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("rank 3") && msg.contains(NCCL_ID_FILE),
            "{msg}"
        );
    }
}
