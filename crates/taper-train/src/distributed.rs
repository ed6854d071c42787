//! Data-parallel training across processes: the [`Collective`] operations the
//! trainer needs (all-reduce, broadcast, barrier, abort) over an existing engine.
//!
//! - [`Single`]: one process, no communication (the default).
//! - `Mpi` (cargo feature `mpi`): the system MPI through the `mpi` crate (rsmpi).
//!   A binary started by `mpirun -np N …` finds its rank and world size in the
//!   launcher's environment ([`launcher`]) and joins the others on first use, with
//!   no flag.
//! - `Nccl` (cargo feature `cuda`): NCCL between GPUs, one process per device.
//!
//! The process's collective is chosen once ([`init`]); the [`crate::Trainer`] and
//! [`crate::Optimizers`] take it from there, so a training script runs unchanged on
//! one process or many. What the trainer does with it (the design is PyTorch's
//! `DistributedDataParallel` with a `DistributedSampler`):
//!
//! - each rank takes a disjoint shard of every epoch's shuffled order
//!   ([`crate::data::DataLoader::shard`]), padded so all ranks take the same number
//!   of steps: the global batch is `world_size × batch_size`;
//! - gradients are summed across ranks once per update, in buckets of about
//!   [`BUCKET_BYTES`], after accumulation and before clipping and the non-finite
//!   guard ([`all_reduce_grads`]), then divided by the world size: every rank
//!   applies the same update to the same weights;
//! - DP-SGD's noise is drawn on rank 0 only, before the sum, so it is added once;
//! - epoch metrics and validation are summed across ranks ([`all_reduce_metrics`]),
//!   so every rank logs the same figures;
//! - only rank 0 ([`is_primary`]) writes run files and checkpoints; the others
//!   wait at a barrier after each checkpoint.
//!
//! A rank that fails exits non-zero; `mpirun` then ends the others and names the
//! rank it lost. Under MPI a non-zero exit calls `MPI_Abort`, and a collective that
//! waits longer than `TAPER_COLLECTIVE_TIMEOUT` seconds (default 300) ends its
//! process with a message, so a lost peer never leaves the others hanging.
//!
//! ```
//! use taper_train::distributed::{self, Collective, Single};
//!
//! let one = Single;
//! let mut buf = vec![1.0f32, 2.0];
//! one.all_reduce_sum_f32(&mut buf)?; // one rank: the sum is itself
//! assert_eq!(buf, [1.0, 2.0]);
//! assert_eq!((one.rank(), one.world_size()), (0, 1));
//! // Outside a launcher the process's collective is Single.
//! assert_eq!(distributed::init()?.world_size(), 1);
//! # Ok::<(), taper_train::Error>(())
//! ```

use crate::metrics::Metrics;
use crate::{Error, Result};
use candle_core::{DType, Tensor};
use std::sync::{Arc, OnceLock};

/// Gradient bytes per all-reduce call: large enough that the per-call latency is
/// paid rarely, small enough to bound the staging copy (PyTorch DDP's default
/// `bucket_cap_mb` is 25).
pub const BUCKET_BYTES: usize = 25 << 20;

/// The communication a data-parallel run needs. Every rank must make the same
/// calls in the same order with buffers of the same length (MPI's rule for
/// collectives); a rank that does not leaves the others waiting until the
/// launcher or the timeout ends them.
pub trait Collective: Send + Sync {
    /// This process's rank, `0..world_size()`.
    fn rank(&self) -> usize;
    /// Number of processes.
    fn world_size(&self) -> usize;
    /// The engine's name, for logs (`"single"`, `"mpi"`, `"nccl"`).
    fn backend(&self) -> &'static str;
    /// Replaces `buf` by its element-wise sum over all ranks.
    ///
    /// # Errors
    /// A communication failure.
    fn all_reduce_sum_f32(&self, buf: &mut [f32]) -> Result<()>;
    /// [`Collective::all_reduce_sum_f32`] for f64 (metric sums and counts).
    ///
    /// # Errors
    /// A communication failure.
    fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> Result<()>;
    /// Copies rank `root`'s `buf` into every rank's `buf` (same length everywhere).
    ///
    /// # Errors
    /// `root` out of range, or a communication failure.
    fn broadcast(&self, root: usize, buf: &mut [u8]) -> Result<()>;
    /// Returns when every rank has called it.
    ///
    /// # Errors
    /// A communication failure.
    fn barrier(&self) -> Result<()>;
    /// Ends every rank's process with exit status `code`, after printing `why`.
    fn abort(&self, code: i32, why: &str) -> !;
    /// The sum over all ranks of `t` (same shape and dtype on every rank), on
    /// `t`'s device. The default goes through host buffers (f64 tensors in f64,
    /// every other dtype in f32); a GPU engine reduces on the device.
    ///
    /// # Errors
    /// A communication or tensor failure.
    fn all_reduce_sum_tensor(&self, t: &Tensor) -> Result<Tensor> {
        if self.world_size() == 1 {
            return Ok(t.clone());
        }
        let flat = t.flatten_all()?;
        let out = if t.dtype() == DType::F64 {
            let mut v = flat.to_vec1::<f64>()?;
            self.all_reduce_sum_f64(&mut v)?;
            Tensor::from_vec(v, t.shape(), t.device())?
        } else {
            let mut v = flat.to_dtype(DType::F32)?.to_vec1::<f32>()?;
            self.all_reduce_sum_f32(&mut v)?;
            Tensor::from_vec(v, t.shape(), t.device())?.to_dtype(t.dtype())?
        };
        Ok(out)
    }
}

/// One process: rank 0 of 1, every operation a no-op.
#[derive(Debug, Clone, Copy, Default)]
pub struct Single;

impl Collective for Single {
    fn rank(&self) -> usize {
        0
    }
    fn world_size(&self) -> usize {
        1
    }
    fn backend(&self) -> &'static str {
        "single"
    }
    fn all_reduce_sum_f32(&self, _buf: &mut [f32]) -> Result<()> {
        Ok(())
    }
    fn all_reduce_sum_f64(&self, _buf: &mut [f64]) -> Result<()> {
        Ok(())
    }
    fn broadcast(&self, root: usize, _buf: &mut [u8]) -> Result<()> {
        check_root(root, 1)
    }
    fn barrier(&self) -> Result<()> {
        Ok(())
    }
    fn abort(&self, code: i32, why: &str) -> ! {
        eprintln!("{why}");
        std::process::exit(code)
    }
}

fn check_root(root: usize, world: usize) -> Result<()> {
    if root >= world {
        return Err(Error::Distributed(format!(
            "broadcast from rank {root}, but the world has {world} ranks"
        )));
    }
    Ok(())
}

/// Rank and world size as a launcher set them in the environment: Open MPI's
/// `mpirun` (`OMPI_COMM_WORLD_RANK`/`_SIZE`), MPICH, Intel MPI and Slurm's PMI
/// (`PMI_RANK`/`PMI_SIZE`), or Taper's own `TAPER_RANK`/`TAPER_WORLD_SIZE` (for
/// launchers of the NCCL engine). Returns the variable names with the values.
/// `None` when no launcher started this process.
pub fn launcher() -> Option<Launcher> {
    let pairs = [
        ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", true),
        ("PMI_RANK", "PMI_SIZE", true),
        ("TAPER_RANK", "TAPER_WORLD_SIZE", false),
    ];
    for (r, s, mpi) in pairs {
        let (Ok(rank), Ok(size)) = (std::env::var(r), std::env::var(s)) else {
            continue;
        };
        return Some(Launcher {
            rank: rank.trim().parse().ok(),
            world_size: size.trim().parse().ok(),
            variables: format!("{r}={rank}, {s}={size}"),
            mpi,
        });
    }
    None
}

/// What [`launcher`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launcher {
    /// The rank (`None`: not a number).
    pub rank: Option<usize>,
    /// The world size (`None`: not a number).
    pub world_size: Option<usize>,
    /// The variables read, as `NAME=value` pairs, for messages.
    pub variables: String,
    /// Set by an MPI launcher (rather than `TAPER_RANK`).
    pub mpi: bool,
}

static WORLD: OnceLock<Arc<dyn Collective>> = OnceLock::new();

/// The process's collective, chosen on the first call: MPI when an MPI launcher
/// started the process, else [`Single`]. Later calls return the same one.
///
/// # Errors
/// A launcher's variables that do not parse; a process started by `mpirun`
/// with more than one rank in a binary built without the `mpi` feature; MPI
/// failing to start.
pub fn init() -> Result<Arc<dyn Collective>> {
    if let Some(w) = WORLD.get() {
        return Ok(w.clone());
    }
    let chosen = from_environment()?;
    // Two threads racing here both built a collective; MPI refuses a second
    // initialisation, so only the MPI branch can fail, and it runs once per
    // process in practice (the trainer calls this from the main thread).
    Ok(WORLD.get_or_init(|| chosen).clone())
}

/// Installs `collective` as the process's collective (an NCCL communicator, or
/// a test's own), before anything called [`init`].
///
/// # Errors
/// A collective was already chosen.
pub fn set(collective: Arc<dyn Collective>) -> Result<()> {
    WORLD.set(collective).map_err(|_| {
        Error::Distributed(
            "the process's collective was already chosen (distributed::set must come first)".into(),
        )
    })
}

/// Communication done by this process so far (by the engines that count it:
/// MPI), for logs and the cost model of docs/SCALING.md.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CommStats {
    /// Collective calls.
    pub calls: u64,
    /// Bytes of the buffers passed to them (each counted once, whatever the
    /// engine's algorithm sends).
    pub bytes: u64,
    /// Seconds spent inside them, waiting for slower ranks included.
    pub seconds: f64,
}

static COMM_CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static COMM_BYTES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static COMM_NANOS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// [`CommStats`] since the process started.
pub fn comm_stats() -> CommStats {
    use std::sync::atomic::Ordering::Relaxed;
    CommStats {
        calls: COMM_CALLS.load(Relaxed),
        bytes: COMM_BYTES.load(Relaxed),
        seconds: COMM_NANOS.load(Relaxed) as f64 * 1e-9,
    }
}

/// Adds one collective call of `bytes` that took `took` to [`comm_stats`]
/// (for engines outside this module, such as NCCL's).
pub fn record_comm(bytes: usize, took: std::time::Duration) {
    use std::sync::atomic::Ordering::Relaxed;
    COMM_CALLS.fetch_add(1, Relaxed);
    COMM_BYTES.fetch_add(bytes as u64, Relaxed);
    COMM_NANOS.fetch_add(took.as_nanos() as u64, Relaxed);
}

/// The process's collective if one was chosen already ([`init`], [`set`]);
/// starts nothing.
pub fn current() -> Option<Arc<dyn Collective>> {
    WORLD.get().cloned()
}

/// The process's rank without starting communication: the chosen collective's,
/// else the launcher's, else 0.
pub fn rank() -> usize {
    match WORLD.get() {
        Some(w) => w.rank(),
        None => launcher().and_then(|l| l.rank).unwrap_or(0),
    }
}

/// True on rank 0, the rank that writes run files, checkpoints and reports.
pub fn is_primary() -> bool {
    rank() == 0
}

fn from_environment() -> Result<Arc<dyn Collective>> {
    let Some(l) = launcher() else {
        return Ok(Arc::new(Single));
    };
    let (Some(rank), Some(world)) = (l.rank, l.world_size) else {
        return Err(Error::Distributed(format!(
            "the launcher's rank and world size must be numbers: {}",
            l.variables
        )));
    };
    if world == 0 || rank >= world {
        return Err(Error::Distributed(format!(
            "rank {rank} is outside a world of {world}: {}",
            l.variables
        )));
    }
    if !l.mpi {
        if world == 1 {
            return Ok(Arc::new(Single));
        }
        return Err(Error::Distributed(format!(
            "{}: TAPER_RANK/TAPER_WORLD_SIZE start NCCL ranks, which the trainer does not \
             choose by itself: build the communicator (taper_train::distributed::Nccl, feature \
             `cuda`) and install it with distributed::set, or start the ranks with mpirun",
            l.variables
        )));
    }
    #[cfg(feature = "mpi")]
    {
        let _ = world;
        Ok(Arc::new(mpi_engine::Mpi::init()?))
    }
    #[cfg(not(feature = "mpi"))]
    {
        if world == 1 {
            return Ok(Arc::new(Single));
        }
        Err(Error::Distributed(format!(
            "this process was started by an MPI launcher as rank {rank} of {world} ({}), \
             but was built without MPI: rebuild with `--features mpi` (`make mpi` installs \
             Open MPI), or run it without mpirun",
            l.variables
        )))
    }
}

#[cfg(feature = "mpi")]
pub use mpi_engine::Mpi;

#[cfg(feature = "cuda")]
mod nccl;
#[cfg(any(test, feature = "cuda"))]
mod nccl_id;
#[cfg(any(feature = "mpi", feature = "cuda"))]
mod watch;
#[cfg(feature = "cuda")]
pub use nccl::Nccl;
#[cfg(feature = "cuda")]
pub use nccl_id::NCCL_ID_FILE;

#[cfg(feature = "mpi")]
mod mpi_engine {
    use super::watch::{self, Watch};
    use super::{check_root, Collective};
    use crate::{Error, Result};
    use mpi::collective::{CommunicatorCollectives, Root, SystemOperation};
    use mpi::topology::Communicator;
    use std::ffi::{c_int, c_void};
    use std::sync::{Arc, Mutex};

    /// The MPI environment: kept until the process exits, when [`on_exit`]
    /// finalises it (or aborts the job after a failure).
    static UNIVERSE: Mutex<Option<mpi::environment::Universe>> = Mutex::new(None);
    /// The system MPI's `MPI_COMM_WORLD` (Open MPI, MPICH, Intel MPI), through
    /// the `mpi` crate. MPI runs in `MPI_THREAD_FUNNELED` mode: the trainer
    /// calls it from the thread that started it, while candle's and rayon's
    /// threads compute.
    #[derive(Debug)]
    pub struct Mpi {
        rank: usize,
        world: usize,
        watch: Arc<Watch>,
    }

    extern "C" {
        // glibc's `on_exit`: like `atexit`, and the handler receives the exit
        // status, which decides between MPI_Finalize and MPI_Abort.
        fn on_exit(
            function: extern "C" fn(status: c_int, arg: *mut c_void),
            arg: *mut c_void,
        ) -> c_int;
    }

    extern "C" fn at_exit(status: c_int, _arg: *mut c_void) {
        let Ok(mut guard) = UNIVERSE.lock() else {
            return;
        };
        let Some(universe) = guard.take() else {
            return;
        };
        if status == 0 {
            // Dropping the universe calls MPI_Finalize.
            drop(universe);
        } else {
            // A rank that failed must not wait in MPI_Finalize for peers that
            // wait for it in a collective: abort takes the whole job down, and
            // mpirun says which rank it was.
            universe.world().abort(status);
        }
    }

    impl Mpi {
        /// Joins the MPI job this process was launched in.
        ///
        /// # Errors
        /// MPI was already started, or fails to start.
        pub fn init() -> Result<Self> {
            let (universe, _level) = mpi::initialize_with_threading(mpi::Threading::Funneled)
                .ok_or_else(|| {
                    Error::Distributed("MPI could not start (already initialised?)".into())
                })?;
            let w = universe.world();
            let (rank, world) = (w.rank() as usize, w.size() as usize);
            *UNIVERSE
                .lock()
                .map_err(|_| Error::Distributed("MPI state poisoned".into()))? = Some(universe);
            // SAFETY: `at_exit` is an `extern "C"` function that lives for the
            // whole program and ignores its argument, which may therefore be null.
            let registered = unsafe { on_exit(at_exit, std::ptr::null_mut()) };
            if registered != 0 {
                return Err(Error::Distributed(
                    "could not register MPI's exit handler".into(),
                ));
            }
            Ok(Self {
                rank,
                world,
                // A peer that died without the launcher noticing (or stopped in
                // a debugger) must not hang the job forever.
                watch: Watch::start(rank, "MPI", watch::timeout()),
            })
        }

        fn with_world<T>(
            &self,
            what: &'static str,
            bytes: usize,
            f: impl FnOnce(&mpi::topology::SimpleCommunicator) -> T,
        ) -> Result<T> {
            let guard = UNIVERSE
                .lock()
                .map_err(|_| Error::Distributed("MPI state poisoned".into()))?;
            let universe = guard
                .as_ref()
                .ok_or_else(|| Error::Distributed("MPI has already been finalised".into()))?;
            let world = universe.world();
            Ok(self.watch.run(what, bytes, || f(&world)))
        }
    }

    impl Collective for Mpi {
        fn rank(&self) -> usize {
            self.rank
        }
        fn world_size(&self) -> usize {
            self.world
        }
        fn backend(&self) -> &'static str {
            "mpi"
        }
        fn all_reduce_sum_f32(&self, buf: &mut [f32]) -> Result<()> {
            let send = buf.to_vec();
            self.with_world("all-reduce", std::mem::size_of_val(buf), |w| {
                w.all_reduce_into(&send[..], buf, SystemOperation::sum())
            })
        }
        fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> Result<()> {
            let send = buf.to_vec();
            self.with_world("all-reduce", std::mem::size_of_val(buf), |w| {
                w.all_reduce_into(&send[..], buf, SystemOperation::sum())
            })
        }
        fn broadcast(&self, root: usize, buf: &mut [u8]) -> Result<()> {
            check_root(root, self.world)?;
            self.with_world("broadcast", buf.len(), |w| {
                w.process_at_rank(root as i32).broadcast_into(buf)
            })
        }
        fn barrier(&self) -> Result<()> {
            self.with_world("barrier", 0, |w| w.barrier())
        }
        fn abort(&self, code: i32, why: &str) -> ! {
            eprintln!("rank {}: {why}", self.rank);
            match UNIVERSE.lock().ok().and_then(|mut g| g.take()) {
                Some(u) => u.world().abort(code),
                None => std::process::exit(code),
            }
        }
    }
}

/// Sums `grads` across the ranks of `c`, in place, in buckets of about
/// `bucket_bytes` (consecutive gradients flattened and joined, one all-reduce
/// each). `None` entries (variables without a gradient) are skipped; every rank
/// must have the same entries with the same shapes, as ranks of one model do.
///
/// # Errors
/// Communication or tensor failures.
pub fn all_reduce_grads(
    c: &dyn Collective,
    grads: &mut [Option<Tensor>],
    bucket_bytes: usize,
) -> Result<()> {
    if c.world_size() == 1 {
        return Ok(());
    }
    // (slot, gradient) of the variables that have one; tensors are shared, not copied.
    let present: Vec<(usize, Tensor)> = grads
        .iter()
        .enumerate()
        .filter_map(|(i, g)| g.clone().map(|g| (i, g)))
        .collect();
    let mut rest = &present[..];
    while let Some((_, first)) = rest.first() {
        // One bucket: gradients of one dtype and device, up to `bucket_bytes`.
        let (dtype, device) = (first.dtype(), first.device().clone());
        let mut bytes = 0;
        let mut take = 0;
        for (_, g) in rest {
            let b = g.elem_count() * g.dtype().size_in_bytes();
            let same = g.dtype() == dtype && g.device().same_device(&device);
            if take > 0 && (!same || bytes + b > bucket_bytes) {
                break;
            }
            bytes += b;
            take += 1;
        }
        let (bucket, later) = rest.split_at(take);
        let flat: Vec<Tensor> = bucket
            .iter()
            .map(|(_, g)| g.flatten_all())
            .collect::<candle_core::Result<_>>()?;
        let joined = if flat.len() == 1 {
            flat[0].clone()
        } else {
            Tensor::cat(&flat, 0)?
        };
        let summed = c.all_reduce_sum_tensor(&joined)?;
        let mut offset = 0;
        for (i, g) in bucket {
            let n = g.elem_count();
            grads[*i] = Some(summed.narrow(0, offset, n)?.reshape(g.shape())?);
            offset += n;
        }
        rest = later;
    }
    Ok(())
}

/// `m` summed over all ranks (each entry's weighted sum and weight), so the
/// means are those of the whole data set.
///
/// # Errors
/// Ranks whose metrics have different names, or a communication failure.
pub fn all_reduce_metrics(c: &dyn Collective, m: &Metrics) -> Result<Metrics> {
    if c.world_size() == 1 {
        return Ok(m.clone());
    }
    let entries = m.entries();
    // The names must agree: their count and a checksum of them, summed, must be
    // the world size times this rank's.
    let names = entries
        .iter()
        .map(|(k, _, _)| k.as_str())
        .collect::<Vec<_>>()
        .join("\u{1f}");
    let digest = (taper_nn::init::mix(&[entries.len() as u64], &names) >> 24) as f64;
    let mut check = [entries.len() as f64, digest];
    c.all_reduce_sum_f64(&mut check)?;
    let w = c.world_size() as f64;
    if check[0] != entries.len() as f64 * w || check[1] != digest * w {
        return Err(Error::Distributed(format!(
            "rank {}: the ranks' metrics have different names (this rank has {names:?}); \
             every rank must report the same metrics",
            c.rank()
        )));
    }
    let mut buf: Vec<f64> = entries.iter().flat_map(|(_, s, w)| [*s, *w]).collect();
    c.all_reduce_sum_f64(&mut buf)?;
    let mut out = Metrics::new();
    for ((k, _, _), p) in entries.iter().zip(buf.chunks(2)) {
        out.add_sum(k, p[0], p[1]);
    }
    Ok(out)
}
