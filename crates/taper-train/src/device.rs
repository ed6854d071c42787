//! Device selection by name (`cpu`, `cuda`, `cuda:1`, `metal`).

use crate::{Error, Result};
use candle_core::Device;

/// Parses a device name as given to `--device`.
///
/// `cuda` and `metal` need the crate features of the same name; without them the
/// error says which feature to enable rather than failing deep inside candle.
pub fn parse_device(name: &str) -> Result<Device> {
    let (kind, ordinal) = match name.split_once(':') {
        Some((k, o)) => {
            let o: usize = o
                .parse()
                .map_err(|_| Error::Config(format!("bad device ordinal in '{name}'")))?;
            (k, o)
        }
        None => (name, 0),
    };
    match kind {
        "cpu" => Ok(Device::Cpu),
        "cuda" => {
            if cfg!(feature = "cuda") {
                Ok(Device::new_cuda(ordinal)?)
            } else {
                Err(Error::Config(
                    "device 'cuda' needs taper built with the 'cuda' feature".into(),
                ))
            }
        }
        "metal" => {
            if cfg!(feature = "metal") {
                Ok(Device::new_metal(ordinal)?)
            } else {
                Err(Error::Config(
                    "device 'metal' needs taper built with the 'metal' feature".into(),
                ))
            }
        }
        other => Err(Error::Config(format!(
            "unknown device '{other}' (expected cpu, cuda or metal)"
        ))),
    }
}

/// Sets the number of CPU threads for the matrix products and Taper's kernels
/// (one rayon pool of `n` threads), and keeps candle's own element-wise pool
/// out of their way.
///
/// Must be called before the first tensor operation: the pools read it once.
///
/// candle runs its element-wise ops (the gradient adds of its backward, mostly)
/// on a second pool whose threads spin between ops. On two cores those spinning
/// threads took cycles from the GEMM threads: with that pool at one thread (no
/// extra threads) the training steps of `make bench` were 5-20 % faster. An
/// explicit `CANDLE_NUM_THREADS` is left alone.
/// `n = 0` leaves the thread count to rayon (all cores).
pub fn set_threads(n: usize) {
    if n > 0 {
        // candle reads RAYON_NUM_THREADS through `get_num_threads`; the gemm crate
        // follows the same value.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
}

/// Runs `f` on a thread of the CPU pool ([`set_threads`]) and waits for its
/// result; run directly where the caller already is one.
///
/// Taper's kernels split their work over rayon's pool. Each parallel kernel
/// started from a thread outside the pool (a program's main thread) is handed
/// to the pool while the caller sleeps, and waking both sides costs tens of
/// microseconds per kernel: on two cores, batch-1 CNN inference ran at 940
/// images/s from the main thread and 1,200 inside the pool, and the LSTM
/// seq2seq training step took 92 ms against 83 (`make bench`'s shapes).
/// [`crate::Trainer`] runs each training and validation step through it.
///
/// `f` must not wait for work that itself needs a pool thread (a channel fed
/// by rayon work, say): with one thread in the pool that would never finish.
pub fn in_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| f())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_pool_runs_on_a_pool_thread_and_stays_there_when_nested() {
        assert_eq!(rayon::current_thread_index(), None);
        let (outer, inner, value) = in_pool(|| {
            let outer = rayon::current_thread_index();
            let (inner, value) = in_pool(|| (rayon::current_thread_index(), 6 * 7));
            (outer, inner, value)
        });
        assert!(outer.is_some());
        assert_eq!(inner, outer, "a nested call runs where it is");
        assert_eq!(value, 42);
        // An error comes back like any other value.
        let r: std::result::Result<(), String> = in_pool(|| Err("bad batch".into()));
        assert_eq!(r.unwrap_err(), "bad batch");
    }
}
