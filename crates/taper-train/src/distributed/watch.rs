//! The engines' shared watchdog: a collective that waits longer than
//! `TAPER_COLLECTIVE_TIMEOUT` seconds ends its process with a message, since
//! MPI and NCCL would otherwise wait forever for a lost peer. It also counts
//! each call in [`super::comm_stats`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// The collectives' time limit from the value of `TAPER_COLLECTIVE_TIMEOUT`
/// (seconds): 300 s when unset or not a positive, finite number.
pub(crate) fn timeout_from(value: Option<&str>) -> Duration {
    value
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map_or(Duration::from_secs(300), Duration::from_secs_f64)
}

/// [`timeout_from`] on this process's environment.
pub(crate) fn timeout() -> Duration {
    timeout_from(std::env::var("TAPER_COLLECTIVE_TIMEOUT").ok().as_deref())
}

/// Watches the collective in progress from a thread of its own, which ends
/// when the watch is dropped.
#[derive(Debug)]
pub(crate) struct Watch {
    epoch: Instant,
    /// Milliseconds after `epoch` at which the current collective started, 0
    /// when none is in progress.
    since: AtomicU64,
    what: Mutex<&'static str>,
}

impl Watch {
    /// A watch for `rank` (named in its message) with the limit `timeout`.
    pub(crate) fn start(rank: usize, engine: &'static str, timeout: Duration) -> Arc<Self> {
        let watch = Arc::new(Self {
            epoch: Instant::now(),
            since: AtomicU64::new(0),
            what: Mutex::new(""),
        });
        let weak: Weak<Self> = Arc::downgrade(&watch);
        let _ = std::thread::Builder::new()
            .name("taper-collective-watchdog".into())
            .spawn(move || loop {
                std::thread::sleep(Duration::from_millis(500).min(timeout / 4));
                let Some(w) = weak.upgrade() else { return };
                let since = w.since.load(Ordering::Acquire);
                if since != 0 && w.now_ms().saturating_sub(since) > timeout.as_millis() as u64 {
                    let what = w.what.lock().map(|g| *g).unwrap_or("collective");
                    eprintln!(
                        "rank {rank}: an {engine} {what} waited {:.0} s for the other ranks \
                         (TAPER_COLLECTIVE_TIMEOUT): one of them is lost or stuck; ending \
                         this rank",
                        timeout.as_secs_f64()
                    );
                    // Not `exit`: its handlers would call into the engine from
                    // this thread.
                    std::process::abort();
                }
            });
        watch
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Runs the collective `f` (`what`, on `bytes` of buffers) under the watch,
    /// and counts it in [`super::comm_stats`].
    pub(crate) fn run<T>(&self, what: &'static str, bytes: usize, f: impl FnOnce() -> T) -> T {
        if let Ok(mut g) = self.what.lock() {
            *g = what;
        }
        // 1 at least: 0 means "not in a collective".
        self.since.store(self.now_ms().max(1), Ordering::Release);
        let t0 = Instant::now();
        let out = f();
        super::record_comm(bytes, t0.elapsed());
        self.since.store(0, Ordering::Release);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timeout_is_300_s_unless_a_positive_number_is_given() {
        assert_eq!(timeout_from(None), Duration::from_secs(300));
        assert_eq!(timeout_from(Some(" 2.5 ")), Duration::from_millis(2500));
        for bad in ["0", "-1", "NaN", "inf", "soon"] {
            assert_eq!(timeout_from(Some(bad)), Duration::from_secs(300), "{bad}");
        }
    }
}
