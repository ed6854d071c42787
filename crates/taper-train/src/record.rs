//! What a run records per epoch: metrics, learning rates, time and memory.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One epoch's figures, as appended to `metrics.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EpochRecord {
    /// Epoch index (0-based).
    pub epoch: usize,
    /// Training metrics (means over the epoch).
    pub train: BTreeMap<String, f64>,
    /// Validation metrics.
    pub valid: BTreeMap<String, f64>,
    /// Learning rate of each group at the epoch's end.
    pub lr: BTreeMap<String, f64>,
    /// Seconds the epoch took.
    pub seconds: f64,
    /// Resident memory of the process at the epoch's end, and its peak so far, in
    /// MiB (Linux; absent elsewhere): the per-epoch record that shows a leak.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<MemoryUse>,
    /// Training samples per second over the epoch's training steps (validation
    /// not counted); absent in logs written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples_per_second: Option<f64>,
    /// Seconds of the epoch's training steps, before its validation and its
    /// end-of-epoch checkpoint: summed over epochs, the training time behind a
    /// time-to-quality curve. Absent in logs written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_seconds: Option<f64>,
}

/// Resident memory of this process, in MiB.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MemoryUse {
    /// Resident set size now (`VmRSS`).
    pub rss: f64,
    /// Peak resident set size since the process started (`VmHWM`).
    pub peak: f64,
}

/// The process's resident memory from `/proc/self/status`; `None` where that file
/// does not exist (other systems).
pub fn memory_use() -> Option<MemoryUse> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |key: &str| -> Option<f64> {
        let line = text.lines().find(|l| l.starts_with(key))?;
        let kib: f64 = line[key.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kib / 1024.0)
    };
    Some(MemoryUse {
        rss: field("VmRSS:")?,
        peak: field("VmHWM:")?,
    })
}

#[cfg(all(test, target_os = "linux"))]
mod memory_tests {
    #[test]
    fn resident_memory_is_read_and_peak_bounds_it() {
        let m = super::memory_use().expect("/proc/self/status on Linux");
        assert!(m.rss > 1.0 && m.peak >= m.rss, "{m:?}");
        // Touching 64 MiB raises the resident size by about that much.
        let block = vec![1u8; 64 << 20];
        let after = super::memory_use().unwrap();
        assert!(after.rss - m.rss > 48.0, "{m:?} -> {after:?}");
        assert!(block.iter().map(|&b| b as u64).sum::<u64>() == 64 << 20);
    }
}
